// The engine's attention CUDA twins (native/engine/attention.cu: causal grouped-query attention over packed q|k|v
// spans, its deterministic flash backward, the paged KV cache write and split decoding), both storages, against a
// float64 reference written here from the formulas (softmax(q.k / sqrt(d)) v over the keys at or before the query;
// dV = P^T dO, dS = P (dO.v - D) with D = rowsum(dO * o), dQ = dS K / sqrt(d), dK = dS^T Q / sqrt(d)), on fresh random
// inputs of Qwen2.5-0.5B's and 1.5B's attention shapes (the reference's backward is itself checked against finite
// differences, everywhere). They run only where a GPU is usable; elsewhere the entry
// point must fail with a clear Error. Where no GPU is usable (and g++ and python3 exist) the same kernels are checked
// against their CPU twins under host emulation (scripts/cuda-emu/run-attention.sh) instead.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { availableBackends } from '../src/kernels/backend.js';
import { loadNative, packageRoot } from '../src/native.js';
import { Rng } from '../src/util/rng.js';
import { fromBf16, hasHostCompiler, toBf16 } from './helpers/cuda-twins.js';

type AttnFn = (op: string, args: object) => unknown;
const attn = (op: string, args: object): unknown => (loadNative().engineCudaAttention as AttnFn)(op, args);


const seed = Math.floor(Math.random() * 2 ** 31);
const rng = new Rng(seed);

type Storage = 'bf16' | 'fp32';
/** Random values already representable in bf16, so that both storages see the same inputs: the bits (bf16), the
 *  values as fp32 and as float64 (the reference's). */
interface Tensor {
  bits: Uint16Array;
  f32: Float32Array;
  f64: Float64Array;
}
function randomTensor(n: number, scale: number): Tensor {
  const bits = new Uint16Array(n);
  for (let i = 0; i < n; i++) bits[i] = toBf16(rng.normal() * scale);
  const f64 = Float64Array.from(bits, fromBf16);
  return { bits, f32: Float32Array.from(f64), f64 };
}
const input = (t: Tensor, st: Storage): Uint16Array | Float32Array => (st === 'bf16' ? t.bits : t.f32);
const decodeOut = (a: Uint16Array | Float32Array): Float64Array => (a instanceof Uint16Array ? Float64Array.from(a, fromBf16) : Float64Array.from(a));

/** Elements of `dev` outside the tolerance of `ref`: fp32 within 1e-4 relative (+ 2e-5 of the tensor's largest
 *  value, for cancellation); bf16 within one bf16 ulp of the larger magnitude (+ the same slack). */
function countBad(dev: Float64Array, ref: Float64Array, st: Storage, what: string): number {
  let maxAbs = 0;
  for (const v of ref) maxAbs = Math.max(maxAbs, Math.abs(v));
  const slack = 2e-5 * maxAbs;
  let bad = 0;
  for (let i = 0; i < ref.length; i++) {
    const a = dev[i]!, b = ref[i]!;
    let tol: number;
    if (st === 'fp32') tol = 1e-4 * Math.abs(b) + slack;
    else {
      const m = Math.max(Math.abs(a), Math.abs(b));
      tol = (m > 0 ? 2 ** (Math.floor(Math.log2(m)) - 7) * 1.0001 : 0) + slack;
    }
    if (!(Math.abs(a - b) <= tol)) {
      if (bad < 3) console.log(`${what}[${i}]: device ${a} reference ${b}`);
      bad++;
    }
  }
  return bad;
}

interface Shape {
  heads: number;
  kvHeads: number;
  headDim: number;
  rowStride: number;
}
const shapeOf = (heads: number, kvHeads: number, headDim: number, pad = 0): Shape => ({ heads, kvHeads, headDim, rowStride: (heads + 2 * kvHeads) * headDim + pad });

/** float64 causal attention of one span and head: o (rows x hd) and lse, from packed rows x. */
function refForward(s: Shape, x: Float64Array, start: number, len: number, h: number, o: Float64Array, lse: Float64Array): void {
  const hd = s.headDim, qd = s.heads * hd, g = Math.floor(h / (s.heads / s.kvHeads)), R = s.rowStride;
  const kOff = qd + g * hd, vOff = qd + s.kvHeads * hd + g * hd, scale = 1 / Math.sqrt(hd);
  const sc = new Float64Array(len);
  for (let i = 0; i < len; i++) {
    const q = (start + i) * R + h * hd;
    let mx = -Infinity;
    for (let j = 0; j <= i; j++) {
      const k = (start + j) * R + kOff;
      let d = 0;
      for (let t = 0; t < hd; t++) d += x[q + t]! * x[k + t]!;
      sc[j] = d * scale;
      if (sc[j]! > mx) mx = sc[j]!;
    }
    let sum = 0;
    for (let j = 0; j <= i; j++) sum += (sc[j] = Math.exp(sc[j]! - mx));
    const out = (start + i) * qd + h * hd;
    for (let t = 0; t < hd; t++) o[out + t] = 0;
    for (let j = 0; j <= i; j++) {
      const v = (start + j) * R + vOff, p = sc[j]! / sum;
      for (let t = 0; t < hd; t++) o[out + t] += p * x[v + t]!;
    }
    lse[(start + i) * s.heads + h] = mx + Math.log(sum);
  }
}

/** float64 flash backward of one span and head with two D vectors at once (D = rowsum(dO * o) for the o each
 *  storage was given): dq/dk per D, dv shared. Accumulates into the packed gradients. */
function refBackward(s: Shape, x: Float64Array, dO: Float64Array, lse: Float64Array, D: [Float64Array, Float64Array], start: number, len: number, h: number, dx: [Float64Array, Float64Array]): void {
  const hd = s.headDim, qd = s.heads * hd, g = Math.floor(h / (s.heads / s.kvHeads)), R = s.rowStride;
  const kOff = qd + g * hd, vOff = qd + s.kvHeads * hd + g * hd, scale = 1 / Math.sqrt(hd);
  for (let i = 0; i < len; i++) {
    const q = (start + i) * R + h * hd, go = (start + i) * qd + h * hd, row = (start + i) * s.heads + h;
    for (let j = 0; j <= i; j++) {
      const k = (start + j) * R + kOff, v = (start + j) * R + vOff;
      let d = 0, dp = 0;
      for (let t = 0; t < hd; t++) {
        d += x[q + t]! * x[k + t]!;
        dp += dO[go + t]! * x[v + t]!;
      }
      const p = Math.exp(d * scale - lse[row]!);
      for (let t = 0; t < hd; t++) dx[0][v + t] += p * dO[go + t]!;
      for (const w of [0, 1] as const) {
        const ds = p * (dp - D[w][row]!) * scale, out = dx[w];
        for (let t = 0; t < hd; t++) {
          out[q + t] += ds * x[k + t]!;
          out[k + t] += ds * x[q + t]!;
        }
      }
    }
  }
}

const avail = availableBackends();
const gpu = avail.cuda && typeof loadNative().engineCudaAttention === 'function';

describe('the float64 reference itself', () => {
  // the reference backward (with D from the exact o) must be the gradient of sum(dO * o) with respect to the packed
  // rows, padding columns included (zero): central finite differences on a small case of two groups of 2 heads
  test('refBackward is the gradient of sum(dO * o) (finite differences)', () => {
    const s = shapeOf(4, 2, 8, 3), lens = [5, 1, 7], starts = [0, 5, 6], N = 13, qd = s.heads * s.headDim;
    const x = Float64Array.from({ length: N * s.rowStride }, () => 2 * rng.normal());
    const dO = Float64Array.from({ length: N * qd }, () => rng.normal());
    const forward = (xs: Float64Array): { loss: number; o: Float64Array; lse: Float64Array } => {
      const o = new Float64Array(N * qd), lse = new Float64Array(N * s.heads);
      for (let k = 0; k < lens.length; k++) for (let h = 0; h < s.heads; h++) refForward(s, xs, starts[k]!, lens[k]!, h, o, lse);
      let loss = 0;
      for (let i = 0; i < o.length; i++) loss += o[i]! * dO[i]!;
      return { loss, o, lse };
    };
    const { o, lse } = forward(x);
    const D = new Float64Array(N * s.heads);
    for (let n = 0; n < N; n++)
      for (let h = 0; h < s.heads; h++) for (let t = 0; t < s.headDim; t++) D[n * s.heads + h] += dO[n * qd + h * s.headDim + t]! * o[n * qd + h * s.headDim + t]!;
    const dx: [Float64Array, Float64Array] = [new Float64Array(x.length), new Float64Array(x.length)];
    for (let k = 0; k < lens.length; k++) for (let h = 0; h < s.heads; h++) refBackward(s, x, dO, lse, [D, D], starts[k]!, lens[k]!, h, dx);
    let worst = 0;
    for (let i = 0; i < x.length; i++) {
      const e = 1e-6, xp = Float64Array.from(x), xm = Float64Array.from(x);
      xp[i] += e;
      xm[i] -= e;
      worst = Math.max(worst, Math.abs((forward(xp).loss - forward(xm).loss) / (2 * e) - dx[0][i]!));
    }
    expect(worst).toBeLessThan(1e-6);
  });
});

describe('engine CUDA attention under host emulation', () => {
  // the .cu source compiled as host C++ (launches rewritten into one std::thread per CUDA thread) against the CPU
  // twin on fresh random inputs; exits 1 on a mismatch. Where a GPU is usable the tests below are the real check.
  (hasHostCompiler && !gpu ? test : test.skip)('scripts/cuda-emu/run-attention.sh: every entry agrees with its CPU twin', () => {
    const r = spawnSync('bash', [path.join(packageRoot, 'scripts', 'cuda-emu', 'run-attention.sh')], { encoding: 'utf8', timeout: 590_000 });
    expect(r.stdout + r.stderr).toMatch(/all ok \(0 failures/);
    expect(r.status).toBe(0);
  }, 600_000);
});

describe('engine CUDA attention: without a usable GPU', () => {
  (gpu ? test.skip : test)('engineCudaAttention fails with an Error naming the cause, not a crash', () => {
    if (typeof loadNative().engineCudaAttention !== 'function') return; // an addon older than the attention twins
    const args = { qkv: new Uint16Array(2 * 24), rows: 2, heads: 1, kvHeads: 1, headDim: 8, spanStarts: Int32Array.of(0), spanLengths: Int32Array.of(2) };
    expect(() => attn('spans', args)).toThrow(avail.cudaCompiled ? /engineCudaAttention spans: / : /built without CUDA/);
  });
});

describe(`engine CUDA attention against a float64 reference (seed ${seed})${gpu ? ` on ${avail.device}` : ` — skipped: ${avail.reason ?? 'no engineCudaAttention'}`}`, () => {
  const gpuTest = gpu ? test : test.skip;

  gpuTest('bad arguments are clear errors', () => {
    const s = shapeOf(2, 1, 16);
    const base = { ...s, rows: 4, qkv: new Float32Array(4 * s.rowStride), spanStarts: Int32Array.of(0), spanLengths: Int32Array.of(4) };
    expect(() => attn('nope', base)).toThrow(/unknown op 'nope'/);
    expect(() => attn('spans', { ...base, qkv: new Int32Array(4 * s.rowStride) })).toThrow(/qkv: expected a Uint16Array \(bf16\) or a Float32Array/);
    expect(() => attn('spans', { ...base, spanLengths: Int32Array.of(5) })).toThrow(/a span lies outside the rows/);
    const odd = shapeOf(2, 1, 20);
    expect(() => attn('spans', { ...base, ...odd, qkv: new Float32Array(4 * odd.rowStride) })).toThrow(/headDim 20 is not supported/);
    const big = shapeOf(1, 1, 264);
    expect(() => attn('spans', { ...base, ...big, qkv: new Float32Array(4 * big.rowStride) })).toThrow(/headDim 264 is not supported/);
    expect(() => attn('spans', { ...base, heads: 3, kvHeads: 2, rowStride: undefined, qkv: new Float32Array(4 * 7 * 16) })).toThrow(/multiple of kvHeads/);
  });

  // Qwen2.5-0.5B's attention (14 query heads, 2 kv heads, head dim 64) over 4 spans up to 1024 tokens, and 1.5B's
  // (12/2/128) over shorter spans with padding columns past q|k|v in each row (the backward must zero them)
  const cases: Array<{ name: string; shape: Shape; lens: number[] }> = [
    { name: 'Qwen2.5-0.5B shape (14/2 heads, hd 64)', shape: shapeOf(14, 2, 64), lens: [1024, 517, 100, 1] },
    { name: 'Qwen2.5-1.5B shape (12/2 heads, hd 128), padded rows', shape: shapeOf(12, 2, 128, 8), lens: [300, 77, 1] },
  ];
  for (const { name, shape: s, lens } of cases) {
    gpuTest(`spans forward and backward, ${name}, spans ${lens.join(', ')}, bf16 and fp32`, () => {
      const N = lens.reduce((a, b) => a + b, 0), qd = s.heads * s.headDim;
      const spanStarts = Int32Array.from(lens.map((_, i) => lens.slice(0, i).reduce((a, b) => a + b, 0)));
      const spanLengths = Int32Array.from(lens);
      const qkv = randomTensor(N * s.rowStride, 1.5), dO = randomTensor(N * qd, 1);
      const oRef = new Float64Array(N * qd), lseRef = new Float64Array(N * s.heads);
      for (let k = 0; k < lens.length; k++) for (let h = 0; h < s.heads; h++) refForward(s, qkv.f64, spanStarts[k]!, lens[k]!, h, oRef, lseRef);
      const args = { ...s, rows: N, spanStarts, spanLengths };
      const lse32 = Float32Array.from(lseRef);
      // the o each storage's backward is given, and D = rowsum(dO * o) of it
      const oIn = { fp32: Float32Array.from(oRef), bf16: Uint16Array.from(oRef, toBf16) };
      const Ds = (['fp32', 'bf16'] as const).map((st) => {
        const o = decodeOut(oIn[st]), D = new Float64Array(N * s.heads);
        for (let n = 0; n < N; n++)
          for (let h = 0; h < s.heads; h++) {
            let d = 0;
            for (let t = 0; t < s.headDim; t++) d += dO.f64[n * qd + h * s.headDim + t]! * o[n * qd + h * s.headDim + t]!;
            D[n * s.heads + h] = d;
          }
        return D;
      }) as [Float64Array, Float64Array];
      const dRef: [Float64Array, Float64Array] = [new Float64Array(N * s.rowStride), new Float64Array(N * s.rowStride)];
      for (let k = 0; k < lens.length; k++) for (let h = 0; h < s.heads; h++) refBackward(s, qkv.f64, dO.f64, lseRef, Ds, spanStarts[k]!, lens[k]!, h, dRef);
      // dv is accumulated into dRef[0] only: copy it to the bf16 side
      const kvd = s.kvHeads * s.headDim;
      for (let n = 0; n < N; n++) for (let j = 0; j < kvd; j++) dRef[1][n * s.rowStride + qd + kvd + j] = dRef[0][n * s.rowStride + qd + kvd + j]!;
      for (const [w, st] of (['fp32', 'bf16'] as const).entries()) {
        const out = attn('spans', { ...args, qkv: input(qkv, st) }) as { o: Uint16Array | Float32Array; lse: Float32Array };
        expect(out.o instanceof (st === 'bf16' ? Uint16Array : Float32Array)).toBe(true);
        expect(countBad(decodeOut(out.o), oRef, st, `${st} o`)).toBe(0);
        let badLse = 0;
        for (let i = 0; i < lseRef.length; i++) if (!(Math.abs(out.lse[i]! - lseRef[i]!) <= 2e-5 * Math.max(1, Math.abs(lseRef[i]!)))) badLse++;
        expect(badLse).toBe(0);
        const dqkv = attn('spansBackward', { ...args, qkv: input(qkv, st), o: oIn[st], lse: lse32, dO: input(dO, st) }) as Uint16Array | Float32Array;
        expect(countBad(decodeOut(dqkv), dRef[w], st, `${st} dqkv`)).toBe(0);
        // deterministic: the same bits again
        const again = attn('spansBackward', { ...args, qkv: input(qkv, st), o: oIn[st], lse: lse32, dO: input(dO, st) }) as Uint16Array | Float32Array;
        expect(Buffer.from(again.buffer).equals(Buffer.from(dqkv.buffer))).toBe(true);
      }
    }, 300_000);
  }

  // Decoding of 8 sequences (one a single token) over a paged cache of 16-row blocks drawn in random order, each pair
  // of sequences sharing its first blocks (a prompt's samples), after the cache write of each new token; 0.5B shape.
  gpuTest('paged KV cache write and split decoding, Qwen2.5-0.5B shape, bf16 and fp32', () => {
    const s = shapeOf(14, 2, 64), hd = s.headDim, qd = s.heads * hd, kvd = s.kvHeads * hd, blockSize = 16;
    const lens = [1500, 1433, 700, 650, 129, 140, 1, 33];
    const nSeq = lens.length, maxBlocks = Math.ceil(Math.max(...lens) / blockSize);
    const total = lens.reduce((a, l) => a + Math.ceil(l / blockSize), 0);
    const numBlocks = total + 5;
    const pool = rng.shuffle(Array.from({ length: numBlocks }, (_, i) => i));
    const blockTables = new Int32Array(nSeq * maxBlocks).fill(-1);
    let next = 0;
    for (let i = 0; i < nSeq; i++) for (let b = 0; b < Math.ceil(lens[i]! / blockSize); b++) blockTables[i * maxBlocks + b] = pool[next++]!;
    for (let i = 1; i < nSeq; i += 2) {
      // the shared prompt: full blocks both sequences cover before their own last position's block
      const shared = Math.min(Math.floor((lens[i - 1]! - 1) / blockSize), Math.floor((lens[i]! - 1) / blockSize));
      for (let b = 0; b < shared; b++) blockTables[i * maxBlocks + b] = blockTables[(i - 1) * maxBlocks + b]!;
    }
    const cacheN = numBlocks * blockSize * kvd;
    const k0 = randomTensor(cacheN, 1.5), v0 = randomTensor(cacheN, 1.5), qkv = randomTensor(nSeq * s.rowStride, 1.5);
    const slots = Int32Array.from(lens, (l, i) => blockTables[i * maxBlocks + Math.floor((l - 1) / blockSize)]! * blockSize + ((l - 1) % blockSize));
    // the cache after the write (reference): the k and v parts of row i at slot i
    const kRef = Float64Array.from(k0.f64), vRef = Float64Array.from(v0.f64);
    for (let i = 0; i < nSeq; i++)
      for (let j = 0; j < kvd; j++) {
        kRef[slots[i]! * kvd + j] = qkv.f64[i * s.rowStride + qd + j]!;
        vRef[slots[i]! * kvd + j] = qkv.f64[i * s.rowStride + qd + kvd + j]!;
      }
    const oRef = new Float64Array(nSeq * qd), scale = 1 / Math.sqrt(hd);
    for (let i = 0; i < nSeq; i++)
      for (let h = 0; h < s.heads; h++) {
        const g = Math.floor(h / (s.heads / s.kvHeads)), q = i * s.rowStride + h * hd;
        const rowOf = (p: number): number => (blockTables[i * maxBlocks + Math.floor(p / blockSize)]! * blockSize + (p % blockSize)) * kvd + g * hd;
        const sc = new Float64Array(lens[i]!);
        let mx = -Infinity;
        for (let p = 0; p < lens[i]!; p++) {
          let d = 0;
          for (let t = 0; t < hd; t++) d += qkv.f64[q + t]! * kRef[rowOf(p) + t]!;
          sc[p] = d * scale;
          mx = Math.max(mx, sc[p]!);
        }
        let sum = 0;
        for (let p = 0; p < lens[i]!; p++) sum += (sc[p] = Math.exp(sc[p]! - mx));
        for (let p = 0; p < lens[i]!; p++) for (let t = 0; t < hd; t++) oRef[i * qd + h * hd + t] += (sc[p]! / sum) * vRef[rowOf(p) + t]!;
      }
    for (const st of ['fp32', 'bf16'] as const) {
      const cache = { ...s, numBlocks, blockSize };
      // one skipped row (slot -1) after the real ones
      const qkvW = st === 'bf16' ? new Uint16Array(input(qkv, st).length + s.rowStride) : new Float32Array(input(qkv, st).length + s.rowStride);
      qkvW.set(input(qkv, st));
      const w = attn('cacheWrite', { ...cache, rows: nSeq + 1, qkv: qkvW, slots: Int32Array.from([...slots, -1]), kCache: input(k0, st), vCache: input(v0, st) }) as { kCache: Uint16Array | Float32Array; vCache: Uint16Array | Float32Array };
      const kw = decodeOut(w.kCache), vw = decodeOut(w.vCache);
      let badW = 0;
      for (let i = 0; i < cacheN; i++) if (kw[i] !== kRef[i] || vw[i] !== vRef[i]) badW++;
      expect(badW).toBe(0);
      const o = attn('decode', { ...cache, qkv: input(qkv, st), seqs: nSeq, blockTables, maxBlocksPerSeq: maxBlocks, seqLens: Int32Array.from(lens), kCache: w.kCache, vCache: w.vCache }) as Uint16Array | Float32Array;
      expect(countBad(decodeOut(o), oRef, st, `${st} decode o`)).toBe(0);
    }
    // a block table entry outside the cache is a clear error
    const badTables = Int32Array.from(blockTables);
    badTables[0] = numBlocks;
    expect(() => attn('decode', { ...s, numBlocks, blockSize, qkv: qkv.f32, seqs: nSeq, blockTables: badTables, maxBlocksPerSeq: maxBlocks, seqLens: Int32Array.from(lens), kCache: k0.f32, vCache: v0.f32 })).toThrow(/block table entry lies outside the cache/);
  }, 300_000);
});
