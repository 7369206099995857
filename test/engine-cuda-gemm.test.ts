// The CUDA engine's device GEMM (native/engine/gemm.cu; cuBLASLt through clipo_gpulibs.so, else the built-in tiled
// kernel): the three products of a linear layer (NT forward with a bias, NN input gradient, TN weight gradient into
// fp32, with and without accumulation) in bf16 and fp32 storage, each implementation against a float64 reference
// computed here on fresh random inputs, at Qwen2.5-0.5B shapes and at odd ones. On a GPU both implementations run
// (cuBLASLt only where the library loads); the fp32 bound is tight enough that TF32 would fail it. Also on a GPU:
// within a shape class a row's bits do not depend on the other rows of the call (the batch-independence rule of
// gemm.h), and repeated calls give the same bits. Without a GPU the built-in kernel is checked under host emulation
// (scripts/cuda-emu/run-gemm.sh) and the entry must fail with a clear Error.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { availableBackends } from '../src/kernels/backend.js';
import { engineGemmInfo, gpuLibUnusable, ltPlans } from '../src/kernels/gpulibs.js';
import { loadNative, packageRoot } from '../src/native.js';
import { Rng } from '../src/util/rng.js';
import { fromBf16, hasHostCompiler, toBf16 } from './helpers/cuda-twins.js';

type Op = 'nt' | 'nn' | 'tn';
type Storage = 'bf16' | 'fp32';
type Impl = 'builtin' | 'cublaslt';
interface GemmArgs {
  op: Op; in: Storage; out: Storage; impl?: Impl | 'auto'; shapeClass?: 'wide' | 'rows'; accumulate?: boolean;
  M: number; N: number; K: number; a: Uint16Array | Float32Array; b: Uint16Array | Float32Array;
  bias?: Uint16Array | Float32Array; c?: Uint16Array | Float32Array;
}
type GemmFn = (o: GemmArgs) => { c: Uint16Array | Float32Array; used: string };
const gemmFn = loadNative().engineCudaGemm as GemmFn | undefined;
const gemm = (o: GemmArgs) => gemmFn!(o);

const avail = availableBackends();
const gpu = avail.cuda && typeof gemmFn === 'function';
const ltWhy = gpuLibUnusable('cublasLt');
const impls: Impl[] = gpu && ltWhy === null ? ['builtin', 'cublaslt'] : ['builtin'];

const seed = Math.floor(Math.random() * 2 ** 31);
const rng = new Rng(seed);

/** n values of the storage, as the typed array that carries them and their exact float64 values */
function stored(s: Storage, n: number, scale: number): { a: Uint16Array | Float32Array; v: Float64Array } {
  if (s === 'bf16') {
    const a = Uint16Array.from({ length: n }, () => toBf16(rng.normal() * scale));
    return { a, v: Float64Array.from(a, fromBf16) };
  }
  const a = Float32Array.from({ length: n }, () => rng.normal() * scale);
  return { a, v: Float64Array.from(a) };
}
const read = (s: Storage, a: Uint16Array | Float32Array): Float64Array => (s === 'bf16' ? Float64Array.from(a as Uint16Array, fromBf16) : Float64Array.from(a as Float32Array));

interface Problem {
  op: Op; inS: Storage; outS: Storage; M: number; N: number; K: number; bias: boolean; accumulate: boolean;
  a: ReturnType<typeof stored>; b: ReturnType<typeof stored>; biasV?: ReturnType<typeof stored>; c0?: ReturnType<typeof stored>;
  ref: Float64Array; /** sqrt(sum (a b)^2 + bias^2 + c^2) per output: the size of a random sum's rounding error */
  scale: Float64Array;
}

/** A random problem and its float64 reference (opA(i, p), opB(p, j) as gemm.h defines them). */
function problem(op: Op, inS: Storage, outS: Storage, M: number, N: number, K: number, bias: boolean, accumulate: boolean): Problem {
  const a = stored(inS, M * K, 1), b = stored(inS, N * K, 1 / Math.sqrt(K));
  const biasV = bias ? stored(inS, N, 0.5) : undefined;
  const c0 = accumulate ? stored(outS, M * N, 0.5) : undefined;
  // row-major opA [M x K] and opB^T [N x K] so the inner loop runs over contiguous memory
  const A = new Float64Array(M * K), Bt = new Float64Array(N * K);
  for (let i = 0; i < M; i++) for (let p = 0; p < K; p++) A[i * K + p] = op === 'tn' ? a.v[p * M + i]! : a.v[i * K + p]!;
  for (let j = 0; j < N; j++) for (let p = 0; p < K; p++) Bt[j * K + p] = op === 'nt' ? b.v[j * K + p]! : b.v[p * N + j]!;
  const ref = new Float64Array(M * N), scale = new Float64Array(M * N);
  for (let i = 0; i < M; i++)
    for (let j = 0; j < N; j++) {
      let s = 0, s2 = 0;
      const ai = i * K, bj = j * K;
      for (let p = 0; p < K; p++) {
        const x = A[ai + p]! * Bt[bj + p]!;
        s += x;
        s2 += x * x;
      }
      if (biasV) (s += biasV.v[j]!), (s2 += biasV.v[j]! ** 2);
      if (c0) (s += c0.v[i * N + j]!), (s2 += c0.v[i * N + j]! ** 2);
      ref[i * N + j] = s;
      scale[i * N + j] = Math.sqrt(s2);
    }
  return { op, inS, outS, M, N, K, bias, accumulate, a, b, biasV, c0, ref, scale };
}

function run(p: Problem, impl: Impl, extra: Partial<GemmArgs> = {}) {
  return gemm({
    op: p.op, in: p.inS, out: p.outS, impl, M: p.M, N: p.N, K: p.K, a: p.a.a, b: p.b.a, accumulate: p.accumulate,
    ...(p.biasV ? { bias: p.biasV.a } : {}), ...(p.c0 ? { c: p.c0.a } : {}), ...extra,
  });
}

const U = 2 ** -24;
/** Worst |got - ref| over its tolerance: fp32 out u|ref| + 8 u sqrt(K) scale; bf16 out 2^-8 |ref| + the same. An
 *  fp32 product through TF32 (inputs rounded to 10 bits) errs by about 2^-11 scale: 10-70x this bound at these K. */
function worstOfTolerance(p: Problem, got: Float64Array): { worst: number; at: number } {
  const rel = p.outS === 'bf16' ? 2 ** -8 : U;
  let worst = 0, at = -1;
  for (let i = 0; i < got.length; i++) {
    const tol = rel * Math.abs(p.ref[i]!) + 8 * U * Math.sqrt(p.K) * p.scale[i]!;
    const r = Math.abs(got[i]! - p.ref[i]!) / tol;
    if (!(r <= worst)) (worst = Number.isNaN(r) ? Infinity : r), (at = i);
  }
  return { worst, at };
}

describe('engine GEMM: the built-in kernel under host emulation', () => {
  // where a GPU is usable the kernels run for real below (and the GPU run's time budget is short)
  (hasHostCompiler && !gpu ? test : test.skip)(`scripts/cuda-emu/run-gemm.sh: NT/NN/TN, bf16 and fp32, against float64${gpu ? ' — skipped: a GPU is usable, the kernels run for real below' : ''}`, () => {
    const r = spawnSync('bash', [path.join(packageRoot, 'scripts', 'cuda-emu', 'run-gemm.sh')], { encoding: 'utf8', timeout: 290_000 });
    expect(r.stdout + r.stderr).toMatch(/all ok \(0 failures/);
    expect(r.status).toBe(0);
  }, 300_000);
});

describe('engine GEMM: without a usable GPU', () => {
  (gpu ? test.skip : test)('engineCudaGemm fails with an Error naming the cause; the report says which GEMM the engine would take', () => {
    const info = engineGemmInfo();
    expect(['builtin', 'none']).toContain(info.impl);
    expect(info.why.length).toBeGreaterThan(0);
    if (typeof gemmFn !== 'function') return; // an addon older than the entry
    const args: GemmArgs = { op: 'nt', in: 'fp32', out: 'fp32', M: 2, N: 2, K: 2, a: new Float32Array(4), b: new Float32Array(4) };
    expect(() => gemm(args)).toThrow(avail.cudaCompiled ? /engineCudaGemm: / : /built without CUDA/);
  });
});

test('CLIPO_CUDA_GEMM picks the GEMM, and a value it does not know is reported (`clipo bench backends`, row engine gemm)', () => {
  const row = (value: string) => {
    const r = spawnSync(process.execPath, [path.join(packageRoot, 'bin', 'clipo'), 'bench', 'backends', '--json'], { encoding: 'utf8', env: { ...process.env, CLIPO_CUDA_GEMM: value }, timeout: 60_000 });
    expect(r.status).toBe(0);
    return (JSON.parse(r.stdout).reports[0].rows as Array<{ backend: string; detail: string; usable: boolean }>).find((x) => x.backend === 'engine gemm')!;
  };
  if (!avail.cudaCompiled) {
    expect(row('auto').detail).toMatch(/built without CUDA/);
    return;
  }
  expect(row('builtin').detail).toBe('builtin (CLIPO_CUDA_GEMM=builtin: the built-in kernel, as asked)');
  const bad = row('nope');
  expect(bad.detail).toContain("CLIPO_CUDA_GEMM: expected auto, builtin or cublaslt, got 'nope'");
  expect(bad.usable).toBe(false);
  // cublaslt where the library cannot run: reported as an error (the CUDA engine refuses to start with it)
  if (ltWhy !== null) expect(row('cublaslt').detail).toMatch(/CLIPO_CUDA_GEMM=cublaslt, but cuBLASLt cannot run: /);
}, 120_000);

const title = gpu
  ? `engine GEMM against float64 (seed ${seed}) on ${avail.device}: ${impls.join(' and ')}${ltWhy ? ` (cuBLASLt skipped: ${ltWhy})` : ''}`
  : `engine GEMM against float64 — skipped: ${avail.reason ?? 'no engineCudaGemm in this build'}`;
describe(title, () => {
  const gpuTest = gpu ? test : test.skip;

  gpuTest('bad arguments are clear errors', () => {
    const f = new Float32Array(4);
    expect(() => gemm({ op: 'xx' as Op, in: 'fp32', out: 'fp32', M: 2, N: 2, K: 2, a: f, b: f })).toThrow(/op: unknown value 'xx'/);
    expect(() => gemm({ op: 'nt', in: 'fp32', out: 'bf16', M: 2, N: 2, K: 2, a: f, b: f })).toThrow(/fp32 inputs with a bf16 output/);
    expect(() => gemm({ op: 'nt', in: 'bf16', out: 'bf16', M: 2, N: 2, K: 2, a: f, b: f })).toThrow(/a: expected a Uint16Array/);
    expect(() => gemm({ op: 'nt', in: 'fp32', out: 'fp32', M: 2, N: 2, K: 3, a: f, b: f })).toThrow(/a: expected length 6/);
    expect(() => gemm({ op: 'nn', in: 'fp32', out: 'fp32', M: 2, N: 2, K: 2, a: f, b: f, bias: new Float32Array(2) })).toThrow(/bias: only with op 'nt'/);
    expect(() => gemm({ op: 'tn', in: 'fp32', out: 'fp32', M: 2, N: 2, K: 2, a: f, b: f, accumulate: true })).toThrow(/c: required/);
  });

  // [op, in, out, M, N, K, bias, accumulate]: Qwen2.5-0.5B's qkv (with its bias) forward, its o input gradient,
  // its gate_up weight gradient (fp32, accumulated), the head's logits (bf16 in, fp32 out); odd sizes (K not a
  // multiple of 8: cuBLASLt may have no algorithm, the built-in kernel then runs) and one token
  const cases: Array<[Op, Storage, Storage, number, number, number, boolean, boolean]> = [
    ['nt', 'bf16', 'bf16', 77, 1152, 896, true, false],
    ['nt', 'fp32', 'fp32', 77, 1152, 896, true, false],
    ['nt', 'bf16', 'fp32', 33, 4096, 896, false, false],
    ['nn', 'bf16', 'bf16', 77, 896, 896, false, true],
    ['nn', 'fp32', 'fp32', 77, 896, 896, false, false],
    ['tn', 'bf16', 'fp32', 896, 1024, 77, false, true],
    ['tn', 'fp32', 'fp32', 896, 1024, 77, false, false],
    ['nt', 'bf16', 'bf16', 5, 37, 100, true, false],
    ['nn', 'fp32', 'fp32', 1, 40, 24, false, true],
    ['tn', 'bf16', 'fp32', 24, 40, 3, false, true],
  ];
  for (const [op, inS, outS, M, N, K, bias, acc] of cases) {
    gpuTest(`${op} ${inS} -> ${outS}${bias ? ' + bias' : ''}${acc ? ', accumulating' : ''}, M ${M} N ${N} K ${K}: ${impls.join(' and ')} within tolerance of float64`, () => {
      const p = problem(op, inS, outS, M, N, K, bias, acc);
      for (const impl of impls) {
        const r = run(p, impl);
        const engineShape = K % 8 === 0 && N % 8 === 0 && (op !== 'tn' || M % 8 === 0);
        if (impl === 'cublaslt' && engineShape) expect(r.used).toBe('cublaslt');
        else if (impl === 'cublaslt') expect(r.used).toMatch(/^(cublaslt|builtin \(no cuBLASLt algorithm\))$/);
        else expect(r.used).toBe('builtin');
        const got = read(outS, r.c);
        const w = worstOfTolerance(p, got);
        expect({ impl, worst: w.worst <= 1 ? 'within' : `${w.worst.toFixed(2)}x at ${w.at}: got ${got[w.at]} want ${p.ref[w.at]}` }).toEqual({ impl, worst: 'within' });
        // the same call again: the same bits
        expect(Buffer.compare(Buffer.from(run(p, impl).c.buffer), Buffer.from(r.c.buffer))).toBe(0);
      }
    }, 60_000);
  }

  (gpu && impls.includes('cublaslt') ? test : test.skip)(`within a shape class a row's bits do not depend on the other rows of the call${impls.includes('cublaslt') ? '' : ` — skipped: ${ltWhy ?? 'no GPU'}`}`, () => {
    // the first rows of a larger call and of a smaller one over the same leading rows: bit-identical, in the wide
    // class (prefill, scoring) from 1 to 4099 rows and in the rows class (decoding) from 1 to 256
    for (const [cls, sizes] of [['wide', [1, 37, 300, 4099]], ['rows', [1, 16, 100, 256]]] as const) {
      for (const [inS, outS] of [['bf16', 'bf16'], ['fp32', 'fp32']] as const) {
        const N = 896, K = 4864; // Qwen2.5-0.5B's down projection
        const big = Math.max(...sizes);
        const a = stored(inS, big * K, 1), w = stored(inS, N * K, 1 / Math.sqrt(K)), bias = stored(inS, N, 0.5);
        const first = (M: number) => {
          const r = gemm({ op: 'nt', in: inS, out: outS, impl: 'cublaslt', shapeClass: cls, M, N, K, a: a.a.subarray(0, M * K), b: w.a, bias: bias.a });
          expect(r.used).toBe('cublaslt');
          return Buffer.from(r.c.buffer, r.c.byteOffset, N * r.c.BYTES_PER_ELEMENT); // row 0
        };
        const row0 = first(sizes[0]!);
        for (const M of sizes.slice(1)) expect({ cls, inS, M, same: Buffer.compare(first(M), row0) === 0 }).toEqual({ cls, inS, M, same: true });
      }
    }
    // the weight gradient: the same tokens give the same bits on every call
    const p = problem('tn', 'bf16', 'fp32', 896, 1024, 300, false, true);
    expect(Buffer.compare(Buffer.from(run(p, 'cublaslt').c.buffer), Buffer.from(run(p, 'cublaslt').c.buffer))).toBe(0);
    // the plans say what they chose: cuBLASLt algorithms for the engine's shapes, fp32 accumulation
    const plans = ltPlans();
    expect(plans.length).toBeGreaterThan(0);
    for (const pl of plans.filter((x) => x.fixed.every((d) => d % 8 === 0))) expect(pl).toMatchObject({ supported: true });
  }, 120_000);

  gpuTest('the engine reports the GEMM its projections take', () => {
    const info = engineGemmInfo();
    if (info.mode === 'auto') expect(info.impl).toBe(ltWhy === null ? 'cublaslt' : 'builtin');
    expect(info.why.length).toBeGreaterThan(0);
  });
});
