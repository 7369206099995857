// The engine's CUDA kernels (native/engine/{norm_rope,mlp,head,optim}.cu: embedding gather, RMSNorm with the residual
// add, RoPE incl. Llama-3 scaling, SwiGLU, the chunked log-prob/entropy pass with its chunk products on the built-in
// GEMM and on cuBLASLt, AdamW) against float64 references written
// here from the Hugging Face formulas, on fresh random bf16 inputs of Qwen2.5-like sizes. They run only where a GPU
// is usable; elsewhere the entry point must fail with a clear Error. Everywhere (g++ and python3 present) the same
// kernels are also checked against their CPU twins under host emulation (scripts/cuda-emu/run-engine.sh).
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { availableBackends } from '../src/kernels/backend.js';
import { gpuLibUnusable } from '../src/kernels/gpulibs.js';
import { loadNative, packageRoot } from '../src/native.js';
import { Rng } from '../src/util/rng.js';
import type { ModelConfig } from '../src/model/types.js';
import { refInvFreq } from './reference/transformer_ref.js';
import { fromBf16, hasHostCompiler, toBf16 } from './helpers/cuda-twins.js';

type KernelFn = (op: string, args: object) => unknown;
const kernel = (op: string, args: object): unknown => (loadNative().engineCudaKernel as KernelFn)(op, args);

/** |a - b| within one bf16 ulp of the larger magnitude (b a float64 reference), plus `slack` for fp32 rounding
 *  inside the kernel where a result can cancel to near zero */
function bf16Close(a: number, b: number, slack = 0): boolean {
  if (a === b) return true;
  const m = Math.max(Math.abs(a), Math.abs(b));
  if (m < 1e-30) return true;
  return Math.abs(a - b) <= 2 ** (Math.floor(Math.log2(m)) - 7) * 1.0001 + slack;
}

const seed = Math.floor(Math.random() * 2 ** 31);
const rng = new Rng(seed);
function randomBf16(n: number, scale: number): Uint16Array {
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) out[i] = toBf16(rng.normal() * scale);
  return out;
}
function countBad(n: number, ok: (i: number) => boolean): number {
  let bad = 0;
  for (let i = 0; i < n; i++) if (!ok(i)) bad++;
  return bad;
}

const avail = availableBackends();
const gpu = avail.cuda && typeof loadNative().engineCudaKernel === 'function';


describe('engine CUDA kernels under host emulation', () => {
  // the .cu sources compiled as host C++ (launches rewritten into one std::thread per CUDA thread) against the CPU
  // twins on fresh random inputs; exits 1 on a mismatch
  (hasHostCompiler ? test : test.skip)('scripts/cuda-emu/run-engine.sh: every kernel agrees with its CPU twin', () => {
    const r = spawnSync('bash', [path.join(packageRoot, 'scripts', 'cuda-emu', 'run-engine.sh')], { encoding: 'utf8', timeout: 590_000 });
    expect(r.stdout + r.stderr).toMatch(/all ok \(0 failures/);
    expect(r.status).toBe(0);
  }, 600_000);
});

describe('engine CUDA kernels: without a usable GPU', () => {
  (gpu ? test.skip : test)('engineCudaKernel fails with an Error naming the cause, not a crash', () => {
    if (typeof loadNative().engineCudaKernel !== 'function') return; // an addon older than the kernels
    const args = { gu: new Uint16Array(8), rows: 2, intermediate: 2 };
    expect(() => kernel('swiglu', args)).toThrow(avail.cudaCompiled ? /engineCudaKernel swiglu: / : /built without CUDA/);
  });
});

describe(`engine CUDA kernels against float64 references (seed ${seed})${gpu ? ` on ${avail.device}` : ` — skipped: ${avail.reason ?? 'no engineCudaKernel'}`}`, () => {
  const gpuTest = gpu ? test : test.skip;

  gpuTest('bad arguments are clear errors', () => {
    expect(() => kernel('nope', {})).toThrow(/unknown op 'nope'/);
    expect(() => kernel('embed', { table: new Uint16Array(6), vocab: 3, hidden: 2, tokens: Int32Array.of(3) })).toThrow(/tokens\[0\]: out of range/);
    expect(() => kernel('swiglu', { gu: new Uint16Array(7), rows: 2, intermediate: 2 })).toThrow(/gu: expected length 8/);
    expect(() => kernel('head', { xf: new Uint16Array(8), hidden: 4, weight: new Uint16Array(12), vocab: 3, rows: Int32Array.of(2), targets: Int32Array.of(0) })).toThrow(/rows\[0\]: out of range/);
  });

  gpuTest('embedding gather copies the rows exactly', () => {
    const V = 1000, H = 896, N = 77;
    const table = randomBf16(V * H, 1);
    const tokens = Int32Array.from({ length: N }, () => rng.int(V));
    tokens[0] = 0;
    tokens[N - 1] = V - 1;
    const x = kernel('embed', { table, vocab: V, hidden: H, tokens }) as Uint16Array;
    expect(countBad(N * H, (i) => x[i] === table[tokens[Math.floor(i / H)]! * H + (i % H)])).toBe(0);
  });

  for (const [H, withDelta] of [[896, true], [1536, true], [1000, false]] as const) {
    gpuTest(`RMSNorm${withDelta ? ' with the residual add' : ''}, hidden ${H}`, () => {
      const N = 41, eps = 1e-6;
      const residual = randomBf16(N * H, 2), delta = randomBf16(N * H, 0.5), weight = randomBf16(H, 1);
      const out = kernel('rmsnorm', { residual, ...(withDelta ? { delta } : {}), weight, rows: N, hidden: H, eps }) as { y: Uint16Array; residualOut?: Uint16Array; rstd: Float32Array };
      let bad = 0;
      for (let n = 0; n < N; n++) {
        const r: number[] = [];
        for (let j = 0; j < H; j++) {
          const a = fromBf16(residual[n * H + j]!);
          r.push(withDelta ? fromBf16(toBf16(Math.fround(a + fromBf16(delta[n * H + j]!)))) : a);
        }
        if (withDelta) for (let j = 0; j < H; j++) if (fromBf16(out.residualOut![n * H + j]!) !== r[j]) bad++;
        const rstd = 1 / Math.sqrt(r.reduce((s, v) => s + v * v, 0) / H + eps);
        if (!(Math.abs(out.rstd[n]! - rstd) <= 1e-6 * rstd)) bad++;
        for (let j = 0; j < H; j++) if (!bf16Close(fromBf16(out.y[n * H + j]!), r[j]! * rstd * fromBf16(weight[j]!))) bad++;
      }
      expect(bad).toBe(0);
    });
  }

  for (const llama3 of [false, true]) {
    for (const inverse of [false, true]) {
      gpuTest(`RoPE on packed q|k|v rows${llama3 ? ', Llama-3 scaling' : ''}${inverse ? ', inverse' : ''}`, () => {
        const heads = 14, kvHeads = 2, hd = 64, N = 61;
        const stride = (heads + 2 * kvHeads) * hd, rotated = (heads + kvHeads) * hd;
        const theta = llama3 ? 500000 : 1000000;
        const scaling = llama3 ? { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 } : undefined;
        const x = randomBf16(N * stride, 1);
        const positions = Int32Array.from({ length: N }, () => rng.int(20000));
        positions[0] = 0;
        const y = kernel('rope', { x, rowStride: stride, rows: N, heads: heads + kvHeads, headDim: hd, positions, ropeTheta: theta, ...(scaling ? { ropeScaling: scaling } : {}), inverse }) as Uint16Array;
        // the float64 reference's frequencies (transformers' formula), from the fields it reads
        const inv = refInvFreq({ headDim: hd, ropeTheta: theta, ropeScaling: scaling && { type: 'llama3', ...scaling } } as ModelConfig);
        const sign = inverse ? -1 : 1;
        let bad = 0;
        for (let n = 0; n < N; n++) {
          for (let j = rotated; j < stride; j++) if (y[n * stride + j] !== x[n * stride + j]) bad++; // v untouched
          for (let h = 0; h < heads + kvHeads; h++)
            for (let i = 0; i < hd / 2; i++) {
              const k = n * stride + h * hd + i;
              const a = fromBf16(x[k]!), b = fromBf16(x[k + hd / 2]!);
              // cos/sin are fp32 in the kernel (as the CPU engine's tables): allow their rounding in absolute terms
              const ang = positions[n]! * inv[i]!, c = Math.fround(Math.cos(ang)), s = sign * Math.fround(Math.sin(ang));
              const ra = a * c - b * s, rb = b * c + a * s;
              // a*c - b*s may cancel: the kernel's fp32 products carry ~2^-24 of |a| + |b|
              const slack = 2 ** -22 * (Math.abs(a) + Math.abs(b));
              if (!bf16Close(fromBf16(y[k]!), ra, slack)) bad++;
              if (!bf16Close(fromBf16(y[k + hd / 2]!), rb, slack)) bad++;
            }
        }
        expect(bad).toBe(0);
      });
    }
  }

  gpuTest('SwiGLU', () => {
    const N = 33, I = 4864;
    const gu = randomBf16(N * 2 * I, 2);
    const act = kernel('swiglu', { gu, rows: N, intermediate: I }) as Uint16Array;
    const bad = countBad(N * I, (k) => {
      const n = Math.floor(k / I), i = k % I;
      const g = fromBf16(gu[n * 2 * I + i]!), u = fromBf16(gu[n * 2 * I + I + i]!);
      return bf16Close(fromBf16(act[k]!), (g / (1 + Math.exp(-g))) * u);
    });
    expect(bad).toBe(0);
  });

  // the head's float64 reference: logp and entropy of each scored row
  function headReference(xf: Uint16Array, wf: Float64Array, H: number, V: number, rows: Int32Array, targets: Int32Array): { logp: Float64Array; ent: Float64Array } {
    const R = rows.length, logp = new Float64Array(R), ent = new Float64Array(R);
    const z = new Float64Array(V);
    for (let r = 0; r < R; r++) {
      const x = Float64Array.from(xf.subarray(rows[r]! * H, (rows[r]! + 1) * H), fromBf16);
      let mx = -Infinity;
      for (let v = 0; v < V; v++) {
        let s = 0;
        for (let j = 0; j < H; j++) s += wf[v * H + j]! * x[j]!;
        z[v] = s;
        mx = Math.max(mx, s);
      }
      let sum = 0, sumZ = 0;
      for (let v = 0; v < V; v++) {
        const e = Math.exp(z[v]! - mx);
        sum += e;
        sumZ += e * z[v]!;
      }
      const lse = mx + Math.log(sum);
      logp[r] = z[targets[r]!]! - lse;
      ent[r] = lse - sumZ / sum;
    }
    return { logp, ent };
  }
  type HeadOut = { logprobs: Float32Array; entropy: Float32Array; used: string };
  // the chunk products through the device GEMM dispatch: the built-in kernel and, where clipo_gpulibs runs,
  // cuBLASLt (forced, and it must be what ran)
  const ltWhy = gpu ? gpuLibUnusable('cublasLt') : 'no GPU';
  const headImpls: Array<'builtin' | 'cublaslt'> = ltWhy === null ? ['builtin', 'cublaslt'] : ['builtin'];
  if (gpu && ltWhy !== null) test.skip(`LM head with cuBLASLt — skipped: ${ltWhy}`, () => {});
  for (const impl of headImpls) {
    for (const [chunkColumns, scale] of [[0, 4], [999, 4], [4096, 40]] as const) {
      gpuTest(`log-probs and entropy over the vocabulary (${impl}), chunk ${chunkColumns || 'auto'}, logit scale ${scale}`, () => {
        const V = 32000, H = 256, xfRows = 40, R = 24;
        const xf = randomBf16(xfRows * H, 1), weight = randomBf16(V * H, scale / Math.sqrt(H));
        const rows = Int32Array.from({ length: R }, () => rng.int(xfRows));
        const targets = Int32Array.from({ length: R }, () => rng.int(V));
        targets[0] = 0;
        targets[R - 1] = V - 1;
        const out = kernel('head', { xf, hidden: H, weight, vocab: V, rows, targets, chunkColumns, entropy: true, impl }) as HeadOut;
        // chunk widths not a multiple of 8 (999, and the last chunk of 32000 / 999): cuBLASLt may have no algorithm
        if (impl === 'cublaslt' && chunkColumns % 8 !== 0) expect(out.used).toMatch(/^(cublaslt|builtin \(no cuBLASLt algorithm\))$/);
        else expect(out.used).toBe(impl);
        const ref = headReference(xf, Float64Array.from(weight, fromBf16), H, V, rows, targets);
        let worst = 0;
        let bad = 0;
        for (let r = 0; r < R; r++) {
          const logp = ref.logp[r]!, ent = ref.ent[r]!;
          worst = Math.max(worst, Math.abs(out.logprobs[r]! - logp));
          if (!(Math.abs(out.logprobs[r]! - logp) <= 2e-4 * (1 + Math.abs(logp)))) bad++;
          if (!(Math.abs(out.entropy[r]! - ent) <= 2e-4 * (1 + ent))) bad++;
        }
        expect({ bad, worst: worst < 1e-2 }).toEqual({ bad: 0, worst: true });
      });
    }
    gpuTest(`LM head (${impl}): rows in several passes, and a row's bits alone equal its bits in a larger call`, () => {
      // chunk = V: passes of 2^24 / 32000 = 524 rows, so 1100 rows take three
      const V = 32000, H = 32, xfRows = 1200, R = 1100;
      const xf = randomBf16(xfRows * H, 1), weight = randomBf16(V * H, 4 / Math.sqrt(H));
      const rows = Int32Array.from({ length: R }, () => rng.int(xfRows));
      const targets = Int32Array.from({ length: R }, () => rng.int(V));
      for (const chunkColumns of [V, 0]) {
        const out = kernel('head', { xf, hidden: H, weight, vocab: V, rows, targets, chunkColumns, entropy: true, impl }) as HeadOut;
        expect(out.used).toBe(impl);
        const ref = headReference(xf, Float64Array.from(weight, fromBf16), H, V, rows, targets);
        const bad = countBad(R, (r) => Math.abs(out.logprobs[r]! - ref.logp[r]!) <= 2e-4 * (1 + Math.abs(ref.logp[r]!)) &&
          Math.abs(out.entropy[r]! - ref.ent[r]!) <= 2e-4 * (1 + ref.ent[r]!));
        expect(bad).toBe(0);
        // rows 530..559 alone (one pass, at other offsets than in the big call) and rows 0..2: the same floats
        for (const [a, b] of [[530, 560], [0, 3]] as const) {
          const alone = kernel('head', { xf, hidden: H, weight, vocab: V, rows: rows.slice(a, b), targets: targets.slice(a, b), chunkColumns, entropy: true, impl }) as HeadOut;
          expect(Array.from(alone.logprobs)).toEqual(Array.from(out.logprobs.subarray(a, b)));
          expect(Array.from(alone.entropy)).toEqual(Array.from(out.entropy.subarray(a, b)));
        }
      }
    }, 60_000);
  }
  for (const [weightDecay, maxGradNorm] of [[0.1, 0], [0, 1], [0.05, 1e6]] as const) {
    gpuTest(`AdamW step, weight decay ${weightDecay}, max grad norm ${maxGradNorm || 'off'}`, () => {
      // three steps on fp32 master weights; each step's float64 reference (torch.optim.AdamW after
      // clip_grad_norm_) starts from the kernel's own previous state, so errors do not accumulate
      const n = 1_000_003, segments = Int32Array.of(600_000, 1003, n - 601_003), decay = Uint8Array.of(1, 0, 1);
      const lr = 2e-3, beta1 = 0.9, beta2 = 0.995, eps = 1e-8;
      let weights: Float32Array = Float32Array.from({ length: n }, () => rng.normal());
      let m: Float32Array = new Float32Array(n), v: Float32Array = new Float32Array(n);
      let clipped = false;
      for (let step = 1; step <= 3; step++) {
        const grad = Float32Array.from({ length: n }, () => rng.normal() * (step === 1 ? 1e-4 : 3e-3));
        const out = kernel('adamw', { weights, m, v, grad, segments, decay, step, lr, beta1, beta2, eps, weightDecay, maxGradNorm }) as { weights: Float32Array; m: Float32Array; v: Float32Array; bf16: Uint16Array; norm: number };
        let sq = 0;
        for (let i = 0; i < n; i++) sq += grad[i]! * grad[i]!;
        const norm = Math.sqrt(sq);
        expect(Math.abs(out.norm - norm)).toBeLessThanOrEqual(1e-12 * norm);
        const clip = maxGradNorm > 0 ? Math.min(1, maxGradNorm / (norm + 1e-6)) : 1;
        clipped ||= clip < 1;
        const bc1 = 1 - beta1 ** step, bc2 = 1 - beta2 ** step;
        let bad = 0;
        for (let i = 0, seg = 0, end = segments[0]!; i < n; i++) {
          while (i >= end) end += segments[++seg]!;
          const g = grad[i]! * clip;
          const mi = beta1 * m[i]! + (1 - beta1) * g, vi = beta2 * v[i]! + (1 - beta2) * g * g;
          const w = weights[i]! * (decay[seg] ? 1 - lr * weightDecay : 1) - (lr / bc1) * mi / (Math.sqrt(vi) / Math.sqrt(bc2) + eps);
          // m = b1 m + (1-b1) g can cancel: its fp32 rounding is relative to the terms, not to the result
          if (!(Math.abs(out.m[i]! - mi) <= 1e-6 * (beta1 * Math.abs(m[i]!) + (1 - beta1) * Math.abs(g)) + 1e-30)) bad++;
          if (!(Math.abs(out.v[i]! - vi) <= 1e-6 * vi + 1e-30)) bad++;
          if (!(Math.abs(out.weights[i]! - w) <= 1e-6 * Math.abs(w) + 1e-5 * lr)) bad++;
          if (out.bf16[i] !== toBf16(out.weights[i]!)) bad++;
        }
        expect(bad).toBe(0);
        ({ weights, m, v } = out);
      }
      expect(clipped).toBe(maxGradNorm === 1);
    });
  }

  gpuTest('AdamW with a non-finite gradient is an error, not a NaN update', () => {
    const n = 5000, segments = Int32Array.of(n), decay = Uint8Array.of(1);
    const weights = Float32Array.from({ length: n }, () => rng.normal());
    for (const poison of [NaN, Infinity]) {
      const grad = Float32Array.from({ length: n }, () => rng.normal());
      grad[rng.int(n)] = poison;
      expect(() => kernel('adamw', { weights, m: new Float32Array(n), v: new Float32Array(n), grad, segments, decay, step: 1, lr: 1e-3, maxGradNorm: 1 })).toThrow(/engineCudaKernel adamw: adamwStep: the gradient is not finite/);
    }
    expect(() => kernel('adamw', { weights, m: new Float32Array(n), v: new Float32Array(n), grad: new Float32Array(n), segments: Int32Array.of(n - 1), decay, step: 1, lr: 1e-3 })).toThrow(/segments: sizes add up to/);
  });
});
