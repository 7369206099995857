// The engine's backward CUDA twins (native/engine/{norm_rope,mlp,head}.cu: RMSNorm backward into the residual
// stream's gradient with the norm weight's gradient, SwiGLU backward, bias column sums, the embedding gradient, the
// LM head's log-prob/entropy backward) in both storages (bf16 and fp32), against float64 references written here
// from the formulas, on fresh random inputs of Qwen2.5-like sizes. They run only where a GPU is usable; elsewhere
// the entry point must fail with a clear Error. Without a usable GPU (and with g++ and python3) the same kernels are
// checked against their CPU twins under host emulation instead (scripts/cuda-emu/run-backward.sh).
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { availableBackends } from '../src/kernels/backend.js';
import { loadNative, packageRoot } from '../src/native.js';
import { Rng } from '../src/util/rng.js';
import { fromBf16, hasHostCompiler, toBf16 } from './helpers/cuda-twins.js';

type BackwardFn = (op: string, args: object) => unknown;
const backward = (op: string, args: object): unknown => (loadNative().engineCudaBackward as BackwardFn)(op, args);


type Storage = 'bf16' | 'fp32';
const storages: Storage[] = ['bf16', 'fp32'];
/** values representable in the storage, as float64 numbers, and the typed array that carries them */
function stored(s: Storage, values: number[]): { v: Float64Array; a: Uint16Array | Float32Array } {
  if (s === 'bf16') {
    const a = Uint16Array.from(values, toBf16);
    return { v: Float64Array.from(a, fromBf16), a };
  }
  const a = Float32Array.from(values);
  return { v: Float64Array.from(a), a };
}
function readStored(s: Storage, a: unknown): Float64Array {
  return s === 'bf16' ? Float64Array.from(a as Uint16Array, fromBf16) : Float64Array.from(a as Float32Array);
}
/** a stored result against a float64 reference: fp32 within `rel` of the value plus `abs`; bf16 within one bf16 ulp
 *  of the larger magnitude plus `abs` (the output's one rounding; fp32 sums inside the kernel add `abs`) */
function storedClose(s: Storage, got: number, want: number, rel: number, abs: number): boolean {
  if (s === 'fp32') return Math.abs(got - want) <= rel * Math.abs(want) + abs;
  const m = Math.max(Math.abs(got), Math.abs(want));
  return Math.abs(got - want) <= (m > 0 ? 2 ** (Math.floor(Math.log2(m)) - 7) * 1.0001 : 0) + abs;
}
const maxAbs = (a: ArrayLike<number>): number => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
};

const seed = Math.floor(Math.random() * 2 ** 31);
const rng = new Rng(seed);
const normals = (n: number, scale: number): number[] => Array.from({ length: n }, () => rng.normal() * scale);

const avail = availableBackends();
const gpu = avail.cuda && typeof loadNative().engineCudaBackward === 'function';

describe('engine backward CUDA kernels under host emulation', () => {
  // the .cu sources compiled as host C++ (launches rewritten into one std::thread per CUDA thread) against the CPU
  // twins that the CPU engine's backward calls, both storages, on fresh random inputs; exits 1 on a mismatch
  // where a GPU is usable the compiled kernels are checked below instead (and the GPU run's time budget is short)
  (hasHostCompiler && !gpu ? test : test.skip)(`scripts/cuda-emu/run-backward.sh: every backward kernel agrees with its CPU twin${gpu ? ' — skipped: a GPU is usable, the kernels run for real below' : ''}`, () => {
    const r = spawnSync('bash', [path.join(packageRoot, 'scripts', 'cuda-emu', 'run-backward.sh')], { encoding: 'utf8', timeout: 590_000 });
    expect(r.stdout + r.stderr).toMatch(/all ok \(0 failures/);
    expect(r.status).toBe(0);
  }, 600_000);
});

describe('engine backward CUDA kernels: without a usable GPU', () => {
  (gpu ? test.skip : test)('engineCudaBackward fails with an Error naming the cause, not a crash', () => {
    if (typeof loadNative().engineCudaBackward !== 'function') return; // an addon older than the kernels
    const args = { storage: 'bf16', gu: new Uint16Array(8), dact: new Uint16Array(4), rows: 2, intermediate: 2 };
    expect(() => backward('swiglu', args)).toThrow(avail.cudaCompiled ? /engineCudaBackward swiglu: / : /built without CUDA/);
  });
});

describe(`engine backward CUDA kernels against float64 references (seed ${seed})${gpu ? ` on ${avail.device}` : ` — skipped: ${avail.reason ?? 'no engineCudaBackward'}`}`, () => {
  const gpuTest = gpu ? test : test.skip;

  gpuTest('bad arguments are clear errors', () => {
    expect(() => backward('nope', { storage: 'fp32' })).toThrow(/unknown op 'nope'/);
    expect(() => backward('swiglu', { storage: 'fp16' })).toThrow(/storage: unknown value 'fp16'/);
    expect(() => backward('swiglu', { storage: 'fp32', gu: new Uint16Array(8), dact: new Float32Array(4), rows: 2, intermediate: 2 })).toThrow(/gu: expected a Float32Array/);
    expect(() => backward('embed', { storage: 'fp32', dx: new Float32Array(2), hidden: 2, tokens: Int32Array.of(3), vocab: 3, grad: new Float32Array(6) })).toThrow(/tokens\[0\]: out of range/);
    const head = { storage: 'fp32', xf: new Float32Array(8), hidden: 4, weight: new Float32Array(12), vocab: 3, rows: Int32Array.of(1), targets: Int32Array.of(0), logp: Float32Array.of(-1), gradLogp: Float32Array.of(1), dxf: new Float32Array(8) };
    expect(() => backward('head', { ...head, rows: Int32Array.of(2) })).toThrow(/rows\[0\]: out of range/);
    expect(() => backward('head', { ...head, gradLogp: Float32Array.of(NaN) })).toThrow(/gradLogp\[0\] is not finite/);
    expect(() => backward('head', { ...head, gradEntropy: Float32Array.of(1) })).toThrow(/gradEntropy: needs the forward's entropy/);
  });

  for (const s of storages) {
    for (const H of [896, 1536]) {
      gpuTest(`RMSNorm backward into the residual gradient, ${s}, hidden ${H}`, () => {
        const N = 150, eps = 1e-6; // three row parts for the weight gradient
        const x = stored(s, normals(N * H, 1.5)), w = stored(s, normals(H, 1)), dy = stored(s, normals(N * H, 0.8)), dx = stored(s, normals(N * H, 0.5));
        const gw = Float32Array.from(normals(H, 2));
        const rstd = new Float32Array(N);
        for (let n = 0; n < N; n++) {
          let ss = 0;
          for (let j = 0; j < H; j++) ss += x.v[n * H + j]! ** 2;
          rstd[n] = 1 / Math.sqrt(ss / H + eps);
        }
        const out = backward('rmsnorm', { storage: s, dy: dy.a, x: x.a, weight: w.a, rstd, dx: dx.a, gw, rows: N, hidden: H }) as { dx: unknown; gw: Float32Array };
        const got = readStored(s, out.dx);
        const wantDx = new Float64Array(N * H), wantGw = Float64Array.from(gw);
        for (let n = 0; n < N; n++) {
          const r = rstd[n]!;
          let dot = 0;
          for (let j = 0; j < H; j++) dot += w.v[j]! * dy.v[n * H + j]! * x.v[n * H + j]!;
          for (let j = 0; j < H; j++) {
            const k = n * H + j;
            wantDx[k] = dx.v[k]! + r * w.v[j]! * dy.v[k]! - (x.v[k]! * r ** 3 * dot) / H;
            wantGw[j] += dy.v[k]! * x.v[k]! * r;
          }
        }
        const sx = maxAbs(wantDx), sg = maxAbs(wantGw);
        let bad = 0;
        for (let k = 0; k < N * H; k++) if (!storedClose(s, got[k]!, wantDx[k]!, 1e-5, 2e-6 * sx)) bad++;
        for (let j = 0; j < H; j++) if (!(Math.abs(out.gw[j]! - wantGw[j]!) <= 1e-5 * Math.abs(wantGw[j]!) + 2e-6 * sg)) bad++;
        expect(bad).toBe(0);
        // deterministic: the same call again gives the same bits
        const again = backward('rmsnorm', { storage: s, dy: dy.a, x: x.a, weight: w.a, rstd, dx: dx.a, gw, rows: N, hidden: H }) as { dx: Uint16Array | Float32Array; gw: Float32Array };
        expect(Buffer.from(again.gw.buffer).equals(Buffer.from(out.gw.buffer))).toBe(true);
        expect(Buffer.from(again.dx.buffer).equals(Buffer.from((out.dx as Uint16Array | Float32Array).buffer))).toBe(true);
      });
    }

    gpuTest(`SwiGLU backward, ${s}`, () => {
      const N = 33, I = 4864;
      const gu = stored(s, normals(N * 2 * I, 2)), dact = stored(s, normals(N * I, 1));
      const got = readStored(s, backward('swiglu', { storage: s, gu: gu.a, dact: dact.a, rows: N, intermediate: I }));
      let bad = 0;
      for (let n = 0; n < N; n++)
        for (let i = 0; i < I; i++) {
          const g = gu.v[n * 2 * I + i]!, u = gu.v[n * 2 * I + I + i]!, d = dact.v[n * I + i]!;
          const sg = 1 / (1 + Math.exp(-g));
          // d gate = dact * up * sigmoid(g) (1 + g (1 - sigmoid(g))), d up = dact * silu(g); expf is approximate
          if (!storedClose(s, got[n * 2 * I + i]!, d * u * sg * (1 + g * (1 - sg)), 1e-5, 1e-6 * Math.abs(d * u))) bad++;
          if (!storedClose(s, got[n * 2 * I + I + i]!, d * g * sg, 1e-5, 1e-6 * Math.abs(d))) bad++;
        }
      expect(bad).toBe(0);
    });

    gpuTest(`bias gradient column sums, ${s}`, () => {
      const N = 3000, C = 896;
      const dy = stored(s, normals(N * C, 1));
      const gb = Float32Array.from(normals(C, 3));
      const got = backward('colsum', { storage: s, dy: dy.a, rows: N, cols: C, gb }) as Float32Array;
      const want = Float64Array.from(gb);
      for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) want[c] += dy.v[n * C + c]!;
      // fp32 partial sums over 64-row parts: ~sqrt(N) * 2^-24 of a typical row value
      expect(Array.from(got).filter((v, c) => !(Math.abs(v - want[c]!) <= 1e-5 * Math.abs(want[c]!) + 2e-5)).length).toBe(0);
      const again = backward('colsum', { storage: s, dy: dy.a, rows: N, cols: C, gb }) as Float32Array;
      expect(Buffer.from(again.buffer).equals(Buffer.from(got.buffer))).toBe(true);
    });

    gpuTest(`embedding gradient with repeated tokens, ${s}`, () => {
      const V = 5000, H = 896, N = 2000;
      const tokens = Int32Array.from({ length: N }, () => rng.int(300)); // many repeats
      tokens[0] = V - 1;
      const dx = stored(s, normals(N * H, 1));
      const grad = Float32Array.from(normals(V * H, 0.1));
      const got = backward('embed', { storage: s, dx: dx.a, hidden: H, tokens, vocab: V, grad }) as Float32Array;
      const want = Float64Array.from(grad);
      for (let n = 0; n < N; n++) for (let j = 0; j < H; j++) want[tokens[n]! * H + j] += dx.v[n * H + j]!;
      let bad = 0;
      for (let i = 0; i < V * H; i++) if (!(Math.abs(got[i]! - want[i]!) <= 1e-5 * Math.abs(want[i]!) + 1e-6)) bad++;
      expect(bad).toBe(0);
    });

    for (const [chunkColumns, withEntropy, scale] of [[0, true, 4], [4096, false, 4], [3000, true, 30]] as const) {
      gpuTest(`LM-head log-prob${withEntropy ? '/entropy' : ''} backward, ${s}, chunk ${chunkColumns || 'auto'}, logit scale ${scale}`, () => {
        const V = 32000, H = 256, xfRows = 40, R = 24;
        const xf = stored(s, normals(xfRows * H, 1)), W = stored(s, normals(V * H, scale / Math.sqrt(H)));
        const rows = Int32Array.from({ length: R }, () => rng.int(xfRows));
        rows[R - 1] = rows[0]!; // a row scored twice
        const targets = Int32Array.from({ length: R }, () => rng.int(V));
        targets[0] = 0;
        targets[R - 1] = V - 1;
        const gradLogp = Float32Array.from(normals(R, 1)), gradEntropy = Float32Array.from(normals(R, 0.5));
        gradLogp[1] = 0;
        // float64 reference: logits, softmax, the forward's logp/entropy (handed to the kernel as fp32), dz, dX, dW
        const logp = new Float32Array(R), entropy = new Float32Array(R);
        const dz = new Float64Array(R * V);
        for (let r = 0; r < R; r++) {
          const x = xf.v.subarray(rows[r]! * H, (rows[r]! + 1) * H);
          const z = new Float64Array(V);
          let mx = -Infinity;
          for (let v = 0; v < V; v++) {
            let acc = 0;
            for (let j = 0; j < H; j++) acc += W.v[v * H + j]! * x[j]!;
            z[v] = acc;
            mx = Math.max(mx, acc);
          }
          let sum = 0, sumZ = 0;
          for (let v = 0; v < V; v++) {
            const e = Math.exp(z[v]! - mx);
            sum += e;
            sumZ += e * z[v]!;
          }
          const lse = mx + Math.log(sum), ez = sumZ / sum;
          logp[r] = z[targets[r]!]! - lse;
          entropy[r] = lse - ez;
          const gl = gradLogp[r]!, ge = withEntropy ? gradEntropy[r]! : 0;
          for (let v = 0; v < V; v++) {
            const p = Math.exp(z[v]! - lse);
            // d logp_t/dz = 1[v = t] - p_v;  dH/dz_v = -p_v (z_v - E_p[z])
            dz[r * V + v] = gl * ((v === targets[r] ? 1 : 0) - p) - ge * p * (z[v]! - ez);
          }
        }
        const dX = new Float64Array(xfRows * H), dW = new Float64Array(V * H);
        for (let r = 0; r < R; r++) {
          const xo = rows[r]! * H;
          for (let v = 0; v < V; v++) {
            const d = dz[r * V + v]!;
            if (d === 0) continue;
            for (let j = 0; j < H; j++) {
              dX[xo + j] += d * W.v[v * H + j]!;
              dW[v * H + j] += d * xf.v[xo + j]!;
            }
          }
        }
        const dxf0 = stored(s, normals(xfRows * H, 0.05)), dw0 = Float32Array.from(normals(V * H, 0.01));
        const out = backward('head', { storage: s, xf: xf.a, hidden: H, weight: W.a, vocab: V, rows, targets, logp, gradLogp, dxf: dxf0.a, dw: dw0, chunkColumns, ...(withEntropy ? { entropy, gradEntropy } : {}) }) as { dxf: unknown; dw: Float32Array };
        const gotX = readStored(s, out.dxf);
        // fp32 logits round at ~2^-24 sum |x w| (and logp/entropy arrive as fp32): a relative error of that size in
        // every p; dX sums 32k such terms
        const sX = maxAbs(dX), sW = maxAbs(dW);
        let bad = 0, worstX = 0, worstW = 0;
        for (let i = 0; i < xfRows * H; i++) {
          const want = dxf0.v[i]! + dX[i]!;
          worstX = Math.max(worstX, Math.abs(gotX[i]! - want) / sX);
          if (!storedClose(s, gotX[i]!, want, 1e-4, 1e-4 * sX)) bad++;
        }
        for (let i = 0; i < V * H; i++) {
          const want = dw0[i]! + dW[i]!;
          worstW = Math.max(worstW, Math.abs(out.dw[i]! - want) / sW);
          if (!(Math.abs(out.dw[i]! - want) <= 1e-4 * Math.abs(want) + 1e-4 * sW)) bad++;
        }
        expect({ bad, worstX: worstX < 1e-3, worstW: worstW < 1e-3 }).toEqual({ bad: 0, worstX: true, worstW: true });
      }, 120_000);
    }
  }
});
