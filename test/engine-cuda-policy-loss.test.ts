// The CUDA engine's policy-loss micro-batch on a real GPU (Engine.policyLossBackward: forward, the surrogate kernel on
// the device's log-probs, the weighted gradient and the entropy bonus, backward; native/engine/cuda_policy_loss.cuh),
// through the addon, on a tiny random model, for GRPO, GRPO with KL, the entropy bonus, DAPO with a response filtered
// out, GSPO and GMPO, over two micro-batches (the second with an empty response):
//   fp32 mode: gradients within 1e-5 of the largest entry and figures within 2e-5 of the same engine's host path
//   (forwardTrain's download, the CPU surrogate kernel, backward's upload: the two differ only in the kernel's exp and
//   summation order), within 1e-4 of the CPU engine's policyLossBackward; the same bits when run again;
//   bf16 mode: near the same engine's host path (the gradient's rounding to bf16 activations can differ in the last
//   bit) and, in the token modes, near the CPU engine on the same bf16-rounded weights;
//   the trainer: a few steps on the fp32 CUDA engine with its device path and with the host path give the same
//   metrics within 1e-4.
// Without a usable GPU everything here is skipped, saying why; the fp32 comparisons run under host emulation in
// test/engine-cuda-policy-loss-emu.test.ts.
import { parseTrainConfig } from '../src/config/load.js';
import { presets, type AlgorithmSettings } from '../src/config/presets.js';
import { Engine, engineBackends, type PolicyLossFigures, type PolicyLossInput, type ScoreBatch } from '../src/engine/engine.js';
import { randomWeights, smallConfig } from '../src/engine/params.js';
import { initModel } from '../src/model/init.js';
import type { TensorMap } from '../src/model/types.js';
import { policyLossBackwardOnHost, surrogateSettings } from '../src/rl/policy-loss.js';
import { Trainer, type StepMetrics } from '../src/rl/trainer.js';
import type { PolicyEngine, TrainPrompt } from '../src/rl/types.js';
import { Rng } from '../src/util/rng.js';
import { fromBf16, toBf16 } from './helpers/cuda-twins.js';

const backends = engineBackends();
const gpu = backends.cuda;
const gpuTest = gpu ? test : test.skip;

const config = smallConfig('qwen2', { vocab: 96, hidden: 64, layers: 2, heads: 4, kvHeads: 2, intermediate: 96 });

function normal(rng: Rng): number {
  return Math.sqrt(-2 * Math.log(1 - rng.next())) * Math.cos(2 * Math.PI * rng.next());
}
function tokens(rng: Rng, n: number): Int32Array {
  return Int32Array.from({ length: n }, () => Math.floor(rng.next() * config.vocabSize));
}
function flat(m: TensorMap): Float64Array {
  return Float64Array.from([...m.values()].flatMap((t) => Array.from(t.data)));
}
function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    m = Math.max(m, Math.abs(b[i]!));
  }
  return d / Math.max(m, 1e-30);
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
function figureDiff(a: PolicyLossFigures[], b: PolicyLossFigures[]): number {
  let m = 0;
  a.forEach((x, k) => {
    const y = b[k]!;
    expect({ tokens: x.tokens, sequences: x.sequences, nonFiniteLogp: x.nonFiniteLogp, nonFiniteGrad: x.nonFiniteGrad, accumulated: x.accumulated })
      .toEqual({ tokens: y.tokens, sequences: y.sequences, nonFiniteLogp: y.nonFiniteLogp, nonFiniteGrad: y.nonFiniteGrad, accumulated: y.accumulated });
    for (const key of ['loss', 'pgLoss', 'klLoss', 'clipFracHigh', 'clipFracLow', 'dualClipFrac', 'approxKl', 'entropySum'] as const) {
      m = Math.max(m, Math.abs(x[key] - y[key]) / Math.max(1, Math.abs(y[key])));
    }
  });
  return m;
}

interface MicroBatch { batch: ScoreBatch; oldLogp: Float32Array; refLogp: Float32Array; advantages: Float32Array }
function microBatches(cpu: Engine, rng: Rng): MicroBatch[] {
  return [[[3, 5], [1, 4], [4, 6], [2, 2]], [[2, 3], [3, 0], [5, 7]]].map((shape) => {
    const batch: ScoreBatch = { sequences: shape.map(([p, r]) => ({ prompt: tokens(rng, p!), response: tokens(rng, r!) })) };
    const s = cpu.score(batch);
    const oldLogp = Float32Array.from(s.logprobs, (x, i) => (s.mask[i] ? x + 0.3 * normal(rng) : 0));
    const refLogp = Float32Array.from(s.logprobs, (x, i) => (s.mask[i] ? x + 0.3 * normal(rng) : 0));
    return { batch, oldLogp, refLogp, advantages: Float32Array.from(shape, () => normal(rng)) };
  });
}

const cases: Array<{ name: string; alg: AlgorithmSettings; ref: boolean; entropyCoef: number; filtered: number[] }> = [
  { name: 'grpo', alg: presets.grpo, ref: false, entropyCoef: 0, filtered: [] },
  { name: 'grpo with KL', alg: { ...presets.grpo, kl_coef: 0.05 }, ref: true, entropyCoef: 0, filtered: [] },
  { name: 'grpo with the entropy bonus', alg: presets.grpo, ref: false, entropyCoef: 0.01, filtered: [] },
  { name: 'dapo with overlong filtering', alg: presets.dapo, ref: false, entropyCoef: 0, filtered: [1] },
  { name: 'gspo', alg: { ...presets.gspo, clip_low: 0.05, clip_high: 0.08 }, ref: false, entropyCoef: 0, filtered: [] },
  { name: 'gmpo with KL', alg: { ...presets.gmpo, kl_coef: 0.05 }, ref: true, entropyCoef: 0.02, filtered: [2] },
];

/** the micro-batches of one case, gradients accumulated from zero; host: the engine's host methods instead */
function runCase(e: Engine, c: (typeof cases)[number], mbs: MicroBatch[], host = false): { figures: PolicyLossFigures[]; grad: Float64Array } {
  const settings = surrogateSettings(c.alg, c.ref);
  let miniTokens = 0;
  mbs.forEach((mb, k) => mb.batch.sequences.forEach((s, i) => { if (!(k === 0 && c.filtered.includes(i))) miniTokens += s.response.length; }));
  e.zeroGrad();
  const figures = mbs.map((mb, k) => {
    const input: PolicyLossInput = { ...settings, oldLogp: mb.oldLogp, refLogp: c.ref ? mb.refLogp : undefined, advantages: mb.advantages, inLoss: Uint8Array.from(mb.batch.sequences, (_, i) => (k === 0 && c.filtered.includes(i) ? 0 : 1)), weight: k === 0 ? 0.6 : 0.4, entropyCoef: c.entropyCoef, entropyDenominator: miniTokens };
    return host ? policyLossBackwardOnHost(e, mb.batch, input) : e.policyLossBackward(mb.batch, input);
  });
  return { figures, grad: flat(e.exportGradients()!) };
}

describe(`CUDA engine: the policy-loss micro-batch on the device${gpu ? '' : ` — skipped: ${backends.cudaReason ?? 'no CUDA engine'}`}`, () => {
  describe('fp32 mode', () => {
    const weights = randomWeights(config, { seed: 61, std: 0.15 });
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
    gpuTest.each(cases)('$name: = the engine\'s host path within 1e-5, = the CPU engine within 1e-4, deterministic', (c) => {
      const mbs = microBatches(cpu, new Rng(11));
      const d = runCase(cuda, c, mbs), h = runCase(cuda, c, mbs, true), p = runCase(cpu, c, mbs);
      expect(d.figures.every((f) => f.accumulated)).toBe(true);
      expect(relDiff(d.grad, h.grad)).toBeLessThan(1e-5);
      expect(figureDiff(d.figures, h.figures)).toBeLessThan(2e-5);
      expect(relDiff(d.grad, p.grad)).toBeLessThan(1e-4);
      expect(figureDiff(d.figures, p.figures)).toBeLessThan(1e-4);
      expect(Array.from(runCase(cuda, c, mbs).grad)).toEqual(Array.from(d.grad));
    });
  });

  describe('bf16 mode', () => {
    const weights: TensorMap = new Map([...randomWeights(config, { seed: 62, std: 0.15 })].map(([n, t]) => [n, { ...t, data: Float32Array.from(t.data, (x) => fromBf16(toBf16(x))) }]));
    let cpu: Engine, cuda: Engine;
    beforeAll(() => {
      if (!gpu) return;
      cpu = Engine.create(config, weights, { threads: 2, backend: 'cpu' });
      cuda = Engine.create(config, weights, { backend: 'cuda', training: true });
    });
    afterAll(() => {
      cpu?.dispose();
      cuda?.dispose();
    });
    gpuTest.each(cases)('$name: near the engine\'s host path (and, token modes, the CPU engine)', (c) => {
      const mbs = microBatches(cpu, new Rng(12));
      const d = runCase(cuda, c, mbs), h = runCase(cuda, c, mbs, true);
      expect(cosine(d.grad, h.grad)).toBeGreaterThan(0.9999);
      expect(relDiff(d.grad, h.grad)).toBeLessThan(1e-2);
      expect(figureDiff(d.figures, h.figures)).toBeLessThan(1e-4);
      // the sequence modes clip whole responses: bf16 log-probs may move one across a clip bound, so only the token
      // modes are compared with the fp32 CPU engine
      if (c.alg.mode === 'token') expect(cosine(d.grad, runCase(cpu, c, mbs).grad)).toBeGreaterThan(0.99);
    });
  });

  describe('the trainer', () => {
    const EOS = 10;
    const prompts: TrainPrompt[] = Array.from({ length: 8 }, (_, a) => ({ id: String(a), tokens: Int32Array.of(11, a), groundTruth: String((a + 3) % 10) }));
    const io = { decode: (t: Int32Array) => Array.from(t).filter((x) => x < 10).join(''), reward: (text: string, gt: string) => (text.startsWith(gt) ? 1 : 0) };
    function run(algorithm: Record<string, unknown>, host: boolean): StepMetrics[] {
      const { config: c0, weights: w0 } = initModel({ architecture: 'qwen2', numLayers: 1, hiddenSize: 32, numHeads: 2, numKvHeads: 1, intermediateSize: 64, vocabSize: 12, tieWordEmbeddings: true, eosTokenIds: [EOS], initializerRange: 0.3 }, 7);
      const engine = Engine.create(c0, w0, { backend: 'cuda', precision: 'fp32', training: true });
      const reference = engine.cloneFrozen();
      const policy = (host
        ? new Proxy(engine, { get: (e, k) => (k === 'policyLossBackward' ? (b: ScoreBatch, o: PolicyLossInput) => policyLossBackwardOnHost(e, b, o) : typeof e[k as keyof Engine] === 'function' ? (e[k as keyof Engine] as (...a: unknown[]) => unknown).bind(e) : e[k as keyof Engine]) })
        : engine) as unknown as PolicyEngine;
      try {
        const cfg = parseTrainConfig({
          model: { path: 'tiny' }, data: { train_files: ['tiny'], max_response_tokens: 3 }, rollout: { n: 4, temperature: 1 }, algorithm, clipo: { enabled: false },
          optim: { lr: 3e-2, prompts_per_step: 4, ppo_mini_batch: 2, micro_batch: 3, epochs: 100, max_steps: 3, seed: 9 }, output: { dir: 'unused' },
        }, 'test config');
        const t = new Trainer({ config: cfg, policy, reference: reference as unknown as PolicyEngine, prompts, io });
        const rows: StepMetrics[] = [];
        while (!t.done) rows.push(t.runStep().metrics);
        return rows;
      } finally {
        reference.dispose();
        engine.dispose();
      }
    }
    gpuTest.each([
      ['grpo with KL and the entropy bonus', { preset: 'grpo', kl_coef: 0.05, entropy_coef: 0.01 }],
      ['dapo with overlong filtering', { preset: 'dapo', dynamic_sampling: false, overlong_shaping: false, overlong_filter: true }],
    ])('%s: the device path\'s metrics = the host path\'s within 1e-4', (_n, algorithm) => {
      const a = run(algorithm, false), b = run(algorithm, true);
      expect(a.length).toBe(b.length);
      a.forEach((m, i) => {
        expect(m.batch_accuracy).toBe(b[i]!.batch_accuracy); // the same rollouts (the updates agree closely enough)
        for (const k of ['policy_loss', 'clip_frac_high', 'clip_frac_low', 'approx_kl', 'kl_loss', 'entropy', 'grad_norm'] as const) {
          const x = m[k], y = b[i]![k];
          if (y === null) expect(x).toBeNull();
          else expect(Math.abs(x! - y) / Math.max(1, Math.abs(y))).toBeLessThan(1e-4);
        }
      });
    });
  });
});
