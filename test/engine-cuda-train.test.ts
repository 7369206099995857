// The CUDA engine's training path (native/engine/cuda_train.cuh) on a real GPU, through the addon, against the CPU
// engine on tiny random models:
//   fp32 mode: forwardTrain's log-probs and entropies within 1e-4; gradients accumulated over two micro-batches within
//   1e-4 of the largest entry for the policy-gradient loss (d loss / d logp and d loss / d entropy) and for the
//   supervised cross-entropy (crossEntropyStep); the same gradients bit for bit when run again; one AdamW step
//   (weight decay, clipping active) within 1e-6 of a float64 torch.optim.AdamW reference on the engine's own weights
//   and gradient; optimizer state in and out;
//   bf16 mode (the default): gradients near the CPU engine's on the same bf16-rounded weights, and an AdamW step that
//   moves the fp32 master as the reference and refreshes the bf16 working weights to its rounding.
//   per-layer recomputation (checkpointing), fp32 and bf16: log-probs and gradients the same bits as without it.
// Without a usable GPU everything here is skipped, saying why; the same comparisons run under host emulation in
// test/engine-cuda-train-emu.test.ts.
import { Engine, engineBackends, type ScoreBatch } from '../src/engine/engine.js';
import { randomWeights, smallConfig } from '../src/engine/params.js';
import type { ModelConfig, TensorMap } from '../src/model/types.js';
import { Rng } from '../src/util/rng.js';
import { fromBf16, toBf16 } from './helpers/cuda-twins.js';

const backends = engineBackends();
const gpu = backends.cuda;
const gpuTest = gpu ? test : test.skip;

function randomTokens(rng: Rng, n: number, vocab: number): Int32Array {
  const t = new Int32Array(n);
  for (let i = 0; i < n; i++) t[i] = Math.floor(rng.next() * vocab);
  if (n > 3) t[3] = t[0]!; // a repeated token: the embedding gradient adds rows of one token
  return t;
}
function normal(rng: Rng, n: number, scale: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = scale * Math.sqrt(-2 * Math.log(1 - rng.next())) * Math.cos(2 * Math.PI * rng.next());
  return out;
}
function flat(m: TensorMap, names: string[]): Float64Array {
  const total = names.reduce((s, n) => s + m.get(n)!.data.length, 0);
  const out = new Float64Array(total);
  let at = 0;
  for (const n of names) {
    out.set(m.get(n)!.data, at);
    at += m.get(n)!.data.length;
  }
  return out;
}
function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}
function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}
/** max |a - b| over the largest |b| */
function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  return maxAbsDiff(a, b) / Math.max(maxAbs(b), 1e-30);
}
function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return ab / Math.sqrt(aa * bb);
}
function roundedBf16(w: TensorMap): TensorMap {
  const out: TensorMap = new Map();
  for (const [name, t] of w) out.set(name, { ...t, data: Float32Array.from(t.data, (x) => fromBf16(toBf16(x))) });
  return out;
}

/** two micro-batches of different shapes (the second with an empty response), with upstream gradients */
function microBatches(rng: Rng, vocab: number): Array<{ batch: ScoreBatch; gradLogp: Float32Array; gradEntropy?: Float32Array }> {
  const shapes = [[[3, 4], [1, 4], [6, 9]], [[2, 4], [3, 0], [4, 1], [5, 7]]];
  return shapes.map((s, k) => {
    const batch: ScoreBatch = { sequences: s.map(([p, r]) => ({ prompt: randomTokens(rng, p!, vocab), response: randomTokens(rng, r!, vocab) })) };
    const T = Math.max(...s.map(([, r]) => r!));
    return { batch, gradLogp: normal(rng, s.length * T, 0.5), ...(k === 0 ? { gradEntropy: normal(rng, s.length * T, 0.2) } : {}) };
  });
}
function accumulate(e: Engine, mbs: ReturnType<typeof microBatches>): Array<{ logprobs: Float32Array; entropy: Float32Array; mask: Uint8Array }> {
  return mbs.map((mb) => {
    const r = e.forwardTrain(mb.batch);
    e.backward(mb.gradLogp, mb.gradEntropy);
    return r;
  });
}

/** float64 torch.optim.AdamW after clip_grad_norm_ (decay on matrices only), one step from zero moments */
function adamwReference(w: Float64Array, g: Float64Array, isMatrix: Uint8Array, o: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; maxGradNorm: number }): { w: Float64Array; norm: number } {
  let sq = 0;
  for (const x of g) sq += x * x;
  const norm = Math.sqrt(sq);
  const c = o.maxGradNorm > 0 ? Math.min(1, o.maxGradNorm / (norm + 1e-6)) : 1;
  const bc1 = 1 - o.beta1, bc2 = 1 - o.beta2;
  const out = new Float64Array(w.length);
  for (let i = 0; i < w.length; i++) {
    const gi = g[i]! * c;
    const m = (1 - o.beta1) * gi, v = (1 - o.beta2) * gi * gi;
    const decay = isMatrix[i] ? 1 - o.lr * o.weightDecay : 1;
    out[i] = w[i]! * decay - (o.lr / bc1) * m / (Math.sqrt(v) / Math.sqrt(bc2) + o.eps);
  }
  return { w: out, norm };
}

function checkAdamw(e: Engine, lr: number): { master: Float64Array } {
  const names = e.parameterShapes().map((p) => p.name);
  const isMatrix = Uint8Array.from(e.parameterShapes().flatMap((p) => Array<number>(p.shape.reduce((a, b) => a * b, 1)).fill(p.shape.length >= 2 ? 1 : 0)));
  const w0 = flat(e.exportWeights(), names), g = flat(e.exportGradients()!, names);
  let sq = 0;
  for (const x of g) sq += x * x;
  const o = { lr, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, maxGradNorm: 0.5 * Math.sqrt(sq) };
  const ref = adamwReference(w0, g, isMatrix, o);
  const { gradNorm } = e.adamwStep(o);
  expect(Math.abs(gradNorm - ref.norm)).toBeLessThanOrEqual(1e-6 * ref.norm);
  const w1 = flat(e.exportWeights(), names);
  expect(maxAbsDiff(w1, ref.w)).toBeLessThan(1e-6);
  expect(maxAbsDiff(w1, w0)).toBeGreaterThan(0.5 * lr); // the step moved the weights
  expect(e.exportOptimizerState().step).toBe(1);
  return { master: w1 };
}

const variants: Array<[string, ModelConfig]> = [
  ['qwen2 (qkv bias, tied)', smallConfig('qwen2', { vocab: 96, hidden: 64, layers: 2, heads: 4, kvHeads: 2, intermediate: 96 })],
  ['llama (llama3 rope, untied, mlp bias)', smallConfig('llama', { vocab: 96, hidden: 64, layers: 2, heads: 4, kvHeads: 2, intermediate: 96, mlpBias: true })],
];

describe(`CUDA engine training${gpu ? '' : ` — skipped: ${backends.cudaReason ?? 'no CUDA engine'}`}`, () => {
  describe.each(variants)('fp32 mode against the CPU engine: %s', (_name, config) => {
    const weights = randomWeights(config, { seed: 51, std: 0.15 });
    let cpu: Engine, cuda: Engine;
    beforeAll(() => {
      if (!gpu) return;
      cpu = Engine.create(config, weights, { threads: 2, backend: 'cpu' });
      cuda = Engine.create(config, weights, { backend: 'cuda', precision: 'fp32' });
    });
    afterAll(() => {
      cpu?.dispose();
      cuda?.dispose();
    });

    gpuTest('policy-gradient loss: forwardTrain within 1e-4, gradients of 2 micro-batches within 1e-4 of the largest, deterministic', () => {
      const mbs = microBatches(new Rng(7), config.vocabSize);
      cpu.zeroGrad();
      cuda.zeroGrad();
      const a = accumulate(cpu, mbs), b = accumulate(cuda, mbs);
      for (let k = 0; k < a.length; k++) {
        expect(Array.from(b[k]!.mask)).toEqual(Array.from(a[k]!.mask));
        expect(maxAbsDiff(b[k]!.logprobs, a[k]!.logprobs)).toBeLessThan(1e-4);
        expect(maxAbsDiff(b[k]!.entropy, a[k]!.entropy)).toBeLessThan(1e-4);
      }
      const names = cpu.parameterShapes().map((p) => p.name);
      const gc = flat(cpu.exportGradients()!, names), gg = flat(cuda.exportGradients()!, names);
      expect(relDiff(gg, gc)).toBeLessThan(1e-4);
      cuda.zeroGrad();
      accumulate(cuda, mbs);
      expect(Array.from(flat(cuda.exportGradients()!, names))).toEqual(Array.from(gg));
    });

    gpuTest('cross-entropy (crossEntropyStep, 2 micro-batches): gradients within 1e-4 of the largest', () => {
      const mbs = microBatches(new Rng(8), config.vocabSize);
      cpu.zeroGrad();
      cuda.zeroGrad();
      for (const mb of mbs) {
        const a = cpu.crossEntropyStep(mb.batch, { scale: 0.5 }), b = cuda.crossEntropyStep(mb.batch, { scale: 0.5 });
        expect(b.tokens).toBe(a.tokens);
        expect(Math.abs(b.loss - a.loss)).toBeLessThan(1e-4);
      }
      const names = cpu.parameterShapes().map((p) => p.name);
      expect(relDiff(flat(cuda.exportGradients()!, names), flat(cpu.exportGradients()!, names))).toBeLessThan(1e-4);
    });

    gpuTest('one AdamW step within 1e-6 of torch.optim.AdamW (float64) on the same weights and gradient; state in and out', () => {
      checkAdamw(cuda, 1e-3);
      const s = cuda.exportOptimizerState();
      cuda.importOptimizerState({ ...s, step: 5 });
      const t = cuda.exportOptimizerState();
      expect(t.step).toBe(5);
      for (const [name, m] of s.m) expect(Array.from(t.m.get(name)!.data)).toEqual(Array.from(m.data));
    });
  });

  describe.each(['fp32', 'bf16'] as const)('per-layer recomputation (checkpointing), %s', (precision) => {
    // 4 layers: layers with a residual input (1, 2) are recomputed as well as the first; the last is kept
    const config = smallConfig('qwen2', { vocab: 96, hidden: 64, layers: 4, heads: 4, kvHeads: 2, intermediate: 96 });
    const weights = randomWeights(config, { seed: 57, std: 0.15 });

    gpuTest('log-probs, entropies and gradients (policy-gradient and cross-entropy micro-batches) the same bits as without it', () => {
      const off = Engine.create(config, weights, { backend: 'cuda', precision, training: true });
      const on = Engine.create(config, weights, { backend: 'cuda', precision, training: true, checkpointing: true });
      try {
        expect(on.checkpointing).toBe(true);
        expect(off.checkpointing).toBe(false);
        const mbs = microBatches(new Rng(11), config.vocabSize);
        const a = accumulate(off, mbs), b = accumulate(on, mbs);
        for (let k = 0; k < a.length; k++) {
          expect(Array.from(b[k]!.logprobs)).toEqual(Array.from(a[k]!.logprobs));
          expect(Array.from(b[k]!.entropy)).toEqual(Array.from(a[k]!.entropy));
        }
        for (const e of [off, on]) e.crossEntropyStep(mbs[1]!.batch, { scale: 0.5 });
        const names = off.parameterShapes().map((p) => p.name);
        const ga = flat(off.exportGradients()!, names), gb = flat(on.exportGradients()!, names);
        expect(maxAbs(ga)).toBeGreaterThan(0);
        let differ = 0;
        for (let i = 0; i < ga.length; i++) if (ga[i] !== gb[i]) differ++;
        expect(differ).toBe(0);
        // switched off between micro-batches: the next forwardTrain keeps every layer again, same bits
        on.setCheckpointing(false);
        on.zeroGrad();
        off.zeroGrad();
        accumulate(off, mbs);
        accumulate(on, mbs);
        expect(Array.from(flat(on.exportGradients()!, names))).toEqual(Array.from(flat(off.exportGradients()!, names)));
      } finally {
        off.dispose();
        on.dispose();
      }
    });
  });

  describe('bf16 mode', () => {
    const config = variants[0]![1];
    const weights = roundedBf16(randomWeights(config, { seed: 53, std: 0.15 }));
    let cpu: Engine, cuda: Engine;
    beforeAll(() => {
      if (!gpu) return;
      cuda = Engine.create(config, weights, { backend: 'cuda' });
      cpu = Engine.create(config, weights, { threads: 2, backend: 'cpu' });
    });
    afterAll(() => {
      cpu?.dispose();
      cuda?.dispose();
    });

    gpuTest('gradients of 2 micro-batches within 0.1 of the largest and cosine >= 0.995 of the CPU engine on the same weights', () => {
      const mbs = microBatches(new Rng(9), config.vocabSize);
      accumulate(cpu, mbs);
      accumulate(cuda, mbs);
      const names = cpu.parameterShapes().map((p) => p.name);
      const gc = flat(cpu.exportGradients()!, names), gg = flat(cuda.exportGradients()!, names);
      expect(relDiff(gg, gc)).toBeLessThan(0.1);
      expect(cosine(gg, gc)).toBeGreaterThanOrEqual(0.995);
    });

    gpuTest('AdamW moves the fp32 master as the reference and refreshes the bf16 working weights', () => {
      const { master } = checkAdamw(cuda, 1e-2);
      const frozen = cuda.cloneFrozen(); // a copy of the working weights
      const names = cuda.parameterShapes().map((p) => p.name);
      const working = flat(frozen.exportWeights(), names);
      frozen.dispose();
      let wrong = 0;
      for (let i = 0; i < master.length; i++) if (working[i] !== fromBf16(toBf16(master[i]!))) wrong++;
      expect(wrong).toBe(0);
    });

    gpuTest('bf16 master weights (stochastic rounding): the weights stay bf16 values and move; the fp32 engine refuses it', () => {
      // the update kernel itself is checked bit for bit against the CPU's bf16 master under emulation (run-engine.sh);
      // here, through the engine: no fp32 master, the weights stay bf16 values, and training moves them
      const e = Engine.create(config, weights, { backend: 'cuda' });
      e.setMasterWeights('bf16-sr', 3);
      const names = e.parameterShapes().map((p) => p.name);
      const before = flat(e.exportWeights(), names);
      const mbs = microBatches(new Rng(10), config.vocabSize);
      for (let k = 0; k < 3; k++) {
        e.zeroGrad();
        accumulate(e, mbs);
        e.adamwStep({ lr: 1e-3, weightDecay: 0.1 });
      }
      const after = flat(e.exportWeights(), names);
      let notBf16 = 0, moved = 0;
      for (let i = 0; i < after.length; i++) {
        if (fromBf16(toBf16(after[i]!)) !== after[i]) notBf16++;
        if (after[i] !== before[i]) moved++;
      }
      expect(notBf16).toBe(0);
      expect(moved).toBeGreaterThan(after.length / 100);
      e.dispose();
      const f = Engine.create(config, weights, { backend: 'cuda', precision: 'fp32' });
      expect(() => f.setMasterWeights('bf16-sr')).toThrow(/need bf16 storage/);
      f.dispose();
    });
  });

  gpuTest('device memory figures: the engine\'s own buffers counted as they are made and freed; one step\'s peak', () => {
    // the count is process-wide (every CUDA engine of the process), so the figures are compared as differences
    const config = variants[0]![1];
    const weights = randomWeights(config, { seed: 52, std: 0.15 });
    const probe = Engine.create(config, weights, { backend: 'cuda' });
    const m0 = probe.deviceMemory()!;
    expect(m0.totalBytes).toBeGreaterThan(2 ** 30);
    expect(m0.freeBytes).toBeLessThanOrEqual(m0.totalBytes);
    const e = Engine.create(config, weights, { backend: 'cuda', training: true });
    const P = e.numParameters();
    const m1 = e.deviceMemory()!;
    // bf16 weights + the fp32 master (6 bytes a parameter), at least
    expect(m1.currentBytes - m0.currentBytes).toBeGreaterThanOrEqual(6 * P);
    e.resetPeakDeviceMemory();
    expect(e.deviceMemory()!.peakBytes).toBe(m1.currentBytes);
    e.zeroGrad();
    accumulate(e, microBatches(new Rng(11), config.vocabSize));
    e.adamwStep({ lr: 1e-3 });
    const m2 = e.deviceMemory()!;
    // fp32 gradients and two moments stay; the activations of the step were freed, so the peak is above
    expect(m2.currentBytes - m1.currentBytes).toBeGreaterThanOrEqual(12 * P);
    expect(m2.peakBytes).toBeGreaterThan(m2.currentBytes);
    e.dispose();
    // disposing frees what the engine held (the probe's own buffers remain)
    expect(probe.deviceMemory()!.currentBytes).toBe(m0.currentBytes);
    probe.dispose();
  });
});
