// Engine.policyLossBackward (one micro-batch of the policy update in one engine call: native/engine/policy_loss.h) on
// the CPU engine, against the steps the trainer ran itself before the call existed, written out here: forwardTrain,
// the surrogate kernel through its JS API on the log-probs (the overlong-filtered responses masked out), d loss / d
// logp times the micro-batch weight in JavaScript, the entropy bonus's d loss / d H, backward. On a tiny random model,
// for GRPO, GRPO with KL (reference log-probs), the entropy bonus, DAPO with overlong filtering masking a response,
// GSPO and GMPO, over two micro-batches (the second with an empty response): the accumulated gradients and every
// figure equal, bit for bit. Then the trainer itself: a few steps with the engine's call and with the old steps
// (src/rl/policy-loss.ts policyLossBackwardOnHost) give the same metrics and weights. Then the checks at the N-API
// boundary. (The CUDA engine's device path is checked under emulation in engine-cuda-policy-loss-emu.test.ts and on
// a GPU in engine-cuda-policy-loss.test.ts.)
import { parseTrainConfig } from '../src/config/load.js';
import { presets, type AlgorithmSettings } from '../src/config/presets.js';
import { Engine, type PolicyLossFigures, type PolicyLossInput, type ScoreBatch } from '../src/engine/engine.js';
import { randomWeights, smallConfig } from '../src/engine/params.js';
import { surrogateLoss } from '../src/kernels/surrogate.js';
import { initModel } from '../src/model/init.js';
import type { TensorMap } from '../src/model/types.js';
import { policyLossBackwardOnHost, surrogateSettings } from '../src/rl/policy-loss.js';
import { Trainer, type StepMetrics } from '../src/rl/trainer.js';
import type { PolicyEngine, TrainPrompt } from '../src/rl/types.js';
import { Rng } from '../src/util/rng.js';

const config = smallConfig('qwen2', { vocab: 48, hidden: 32, layers: 2, heads: 2, kvHeads: 1, intermediate: 48 });
const weights = randomWeights(config, { seed: 21, std: 0.2 });

function normal(rng: Rng): number {
  return Math.sqrt(-2 * Math.log(1 - rng.next())) * Math.cos(2 * Math.PI * rng.next());
}
function tokens(rng: Rng, n: number): Int32Array {
  return Int32Array.from({ length: n }, () => Math.floor(rng.next() * config.vocabSize));
}

interface MicroBatch {
  batch: ScoreBatch;
  oldLogp: Float32Array;
  refLogp: Float32Array;
  advantages: Float32Array;
}
/** two micro-batches of different shapes, the second with an empty response; old and reference log-probs near the
 *  model's own (ratios around 1, some clipped) */
function microBatches(e: Engine, rng: Rng): MicroBatch[] {
  return [[[3, 5], [1, 4], [4, 6], [2, 2]], [[2, 3], [3, 0], [5, 7]]].map((shape) => {
    const batch: ScoreBatch = { sequences: shape.map(([p, r]) => ({ prompt: tokens(rng, p!), response: tokens(rng, r!) })) };
    const s = e.score(batch);
    const oldLogp = Float32Array.from(s.logprobs, (x, i) => (s.mask[i] ? x + 0.3 * normal(rng) : 0));
    const refLogp = Float32Array.from(s.logprobs, (x, i) => (s.mask[i] ? x + 0.3 * normal(rng) : 0));
    return { batch, oldLogp, refLogp, advantages: Float32Array.from(shape, () => normal(rng)) };
  });
}

/** the trainer's steps before Engine.policyLossBackward (src/rl/trainer.ts, updatePolicy's micro-batch loop) */
function oldSteps(e: Engine, batch: ScoreBatch, o: PolicyLossInput): { figures: Omit<PolicyLossFigures, 'nonFiniteLogp' | 'nonFiniteGrad' | 'accumulated'> } {
  const ft = e.forwardTrain(batch);
  const T = ft.length, b = batch.sequences.length;
  const mask = ft.mask.slice();
  let tokens = 0, kept = 0;
  for (let k = 0; k < b; k++) {
    if (o.inLoss && !o.inLoss[k]) {
      mask.fill(0, k * T, (k + 1) * T);
      continue;
    }
    tokens += batch.sequences[k]!.response.length;
    if (batch.sequences[k]!.response.length) kept++;
  }
  const sl = surrogateLoss({ logp: ft.logprobs, oldLogp: o.oldLogp, refLogp: o.refLogp, advantages: o.advantages, mask, batch: b, length: T, mode: o.mode, clipLow: o.clipLow, clipHigh: o.clipHigh, dualClip: o.dualClip, agg: o.agg, klCoef: o.klCoef, klType: o.klType, backend: 'cpu' });
  const grad = new Float32Array(sl.gradLogp.length);
  for (let i = 0; i < grad.length; i++) grad[i] = sl.gradLogp[i]! * o.weight;
  const entCoef = o.entropyCoef ?? 0;
  if (entCoef > 0) {
    const gradEnt = new Float32Array(mask.length);
    for (let i = 0; i < mask.length; i++) if (mask[i]) gradEnt[i] = -entCoef / o.entropyDenominator!;
    e.backward(grad, gradEnt);
  } else e.backward(grad);
  let ent = 0;
  for (let i = 0; i < mask.length; i++) if (mask[i]) ent += ft.entropy[i]!;
  return { figures: { loss: sl.loss, pgLoss: sl.pgLoss, klLoss: sl.klLoss ?? 0, clipFracHigh: sl.clipFracHigh, clipFracLow: sl.clipFracLow, dualClipFrac: sl.dualClipFrac, approxKl: sl.approxKl, entropySum: ent, tokens, sequences: kept } };
}

function grads(e: Engine): Float32Array {
  const g = e.exportGradients()!;
  return Float32Array.from([...g.values()].flatMap((t) => Array.from(t.data)));
}

const cases: Array<{ name: string; alg: AlgorithmSettings; ref: boolean; entropyCoef: number; filtered: number[] }> = [
  { name: 'grpo', alg: presets.grpo, ref: false, entropyCoef: 0, filtered: [] },
  { name: 'grpo with KL (reference log-probs)', alg: { ...presets.grpo, kl_coef: 0.05 }, ref: true, entropyCoef: 0, filtered: [] },
  { name: 'grpo with the entropy bonus', alg: presets.grpo, ref: false, entropyCoef: 0.01, filtered: [] },
  { name: 'dapo with overlong filtering masking a response', alg: presets.dapo, ref: false, entropyCoef: 0, filtered: [1] },
  { name: 'gspo (sequence mode)', alg: { ...presets.gspo, clip_low: 0.05, clip_high: 0.08 }, ref: false, entropyCoef: 0, filtered: [] },
  { name: 'gmpo (geo_mean) with KL and a filtered response', alg: { ...presets.gmpo, kl_coef: 0.05 }, ref: true, entropyCoef: 0.02, filtered: [2] },
];

describe('Engine.policyLossBackward on the CPU engine equals the old steps', () => {
  test.each(cases)('$name: gradients and figures bit for bit over two micro-batches', ({ alg, ref, entropyCoef, filtered }) => {
    const a = Engine.create(config, weights, { threads: 1, backend: 'cpu' });
    const b = Engine.create(config, weights, { threads: 1, backend: 'cpu' });
    try {
      const mbs = microBatches(a, new Rng(5));
      const settings = surrogateSettings(alg, ref);
      let miniTokens = 0;
      mbs.forEach((mb, k) => mb.batch.sequences.forEach((s, i) => { if (!(k === 0 && filtered.includes(i))) miniTokens += s.response.length; }));
      a.zeroGrad();
      b.zeroGrad();
      mbs.forEach((mb, k) => {
        const inLoss = Uint8Array.from(mb.batch.sequences, (_, i) => (k === 0 && filtered.includes(i) ? 0 : 1));
        const input: PolicyLossInput = { ...settings, oldLogp: mb.oldLogp, refLogp: ref ? mb.refLogp : undefined, advantages: mb.advantages, inLoss, weight: k === 0 ? 0.6 : 0.4, entropyCoef, entropyDenominator: miniTokens };
        const got = a.policyLossBackward(mb.batch, input);
        const want = oldSteps(b, mb.batch, input).figures;
        expect(got).toEqual({ ...want, nonFiniteLogp: 0, nonFiniteGrad: 0, accumulated: true });
        if (k === 0) expect(got.clipFracHigh + got.clipFracLow).toBeGreaterThan(0); // the clips are exercised
      });
      const ga = grads(a), gb = grads(b);
      expect(ga.some((x) => x !== 0)).toBe(true);
      expect(ga).toEqual(gb);
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  test('src/rl/policy-loss.ts policyLossBackwardOnHost (stand-in policies) gives the engine\'s figures and gradients', () => {
    const a = Engine.create(config, weights, { threads: 1, backend: 'cpu' });
    const b = Engine.create(config, weights, { threads: 1, backend: 'cpu' });
    try {
      const [mb] = microBatches(a, new Rng(6));
      const input: PolicyLossInput = { ...surrogateSettings({ ...presets.grpo, kl_coef: 0.05 }, true), oldLogp: mb!.oldLogp, refLogp: mb!.refLogp, advantages: mb!.advantages, inLoss: Uint8Array.of(1, 1, 0, 1), weight: 0.7, entropyCoef: 0.01, entropyDenominator: 20 };
      a.zeroGrad();
      b.zeroGrad();
      expect(policyLossBackwardOnHost(b, mb!.batch, input)).toEqual(a.policyLossBackward(mb!.batch, input));
      expect(grads(b)).toEqual(grads(a));
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  test('a non-finite log-prob is counted and nothing accumulates; a micro-batch of empty responses does nothing', () => {
    const bad: TensorMap = new Map([...weights].map(([n, t]) => [n, n === 'model.norm.weight' ? { ...t, data: Float32Array.from(t.data, (x, i) => (i === 3 ? NaN : x)) } : t]));
    const e = Engine.create(config, bad, { threads: 1, backend: 'cpu' });
    try {
      const rng = new Rng(3);
      const batch: ScoreBatch = { sequences: [{ prompt: tokens(rng, 3), response: tokens(rng, 4) }, { prompt: tokens(rng, 2), response: tokens(rng, 2) }] };
      e.zeroGrad();
      const f = e.policyLossBackward(batch, { ...surrogateSettings(presets.grpo, false), oldLogp: new Float32Array(8), advantages: Float32Array.of(1, -1), weight: 1 });
      expect(f).toMatchObject({ nonFiniteLogp: 6, accumulated: false, tokens: 6 });
      const g = e.exportGradients();
      expect(g === null || [...g.values()].every((t) => t.data.every((x) => x === 0))).toBe(true);
      const empty = e.policyLossBackward({ sequences: [{ prompt: tokens(rng, 3), response: new Int32Array(0) }] }, { ...surrogateSettings(presets.grpo, false), oldLogp: new Float32Array(0), advantages: Float32Array.of(1), weight: 1 });
      expect(empty).toMatchObject({ tokens: 0, nonFiniteLogp: 0, accumulated: false });
    } finally {
      e.dispose();
    }
  });
});

describe('the trainer on the engine\'s policyLossBackward', () => {
  const EOS = 10;
  const prompts: TrainPrompt[] = Array.from({ length: 8 }, (_, a) => ({ id: String(a), tokens: Int32Array.of(11, a), groundTruth: String((a + 3) % 10) }));
  const io = { decode: (t: Int32Array) => Array.from(t).filter((x) => x < 10).join(''), reward: (text: string, gt: string) => (text.startsWith(gt) ? 1 : 0) };

  function run(algorithm: Record<string, unknown>, oldPath: boolean): { rows: StepMetrics[]; weights: TensorMap } {
    const { config: c0, weights: w0 } = initModel({ architecture: 'qwen2', numLayers: 1, hiddenSize: 32, numHeads: 2, numKvHeads: 1, intermediateSize: 64, vocabSize: 12, tieWordEmbeddings: true, eosTokenIds: [EOS], initializerRange: 0.3 }, 7);
    const engine = Engine.create(c0, w0, { threads: 1 });
    const reference = engine.cloneFrozen();
    // oldPath: the engine's call replaced by the steps through forwardTrain, the JS surrogate kernel and backward
    const policy = (oldPath
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
      return { rows, weights: engine.exportWeights() };
    } finally {
      reference.dispose();
      engine.dispose();
    }
  }
  const figures = (rows: StepMetrics[]) => rows.map((m) => Object.fromEntries(Object.entries(m).filter(([k]) => !k.startsWith('time_') && k !== 'tokens_per_s')));

  test.each([
    ['grpo with KL and the entropy bonus', { preset: 'grpo', kl_coef: 0.05, entropy_coef: 0.01 }],
    ['dapo with overlong filtering', { preset: 'dapo', dynamic_sampling: false, overlong_shaping: false, overlong_filter: true }],
  ])('%s: the same metrics and weights as the old steps', (_name, algorithm) => {
    const a = run(algorithm, false), b = run(algorithm, true);
    expect(a.rows.some((m) => m.policy_loss !== null && m.grad_norm! > 0)).toBe(true);
    if ((algorithm as { overlong_filter?: boolean }).overlong_filter) expect(a.rows.some((m) => m.overlong_filtered > 0)).toBe(true);
    expect(figures(a.rows)).toEqual(figures(b.rows));
    for (const [name, t] of a.weights) expect(Array.from(t.data)).toEqual(Array.from(b.weights.get(name)!.data));
  });
});

describe('policyLossBackward checks its inputs at the N-API boundary', () => {
  const e = Engine.create(config, weights, { threads: 1, backend: 'cpu' });
  afterAll(() => e.dispose());
  const rng = new Rng(4);
  const batch: ScoreBatch = { sequences: [{ prompt: tokens(rng, 2), response: tokens(rng, 3) }, { prompt: tokens(rng, 1), response: tokens(rng, 1) }] };
  const ok: PolicyLossInput = { ...surrogateSettings(presets.grpo, false), oldLogp: new Float32Array(6).fill(-1), advantages: Float32Array.of(0.5, -0.5), weight: 1 };
  const native = (o: object) => (e as unknown as { native: { policyLossBackward(o: object): unknown } }).native.policyLossBackward({ tokens: Int32Array.from([...batch.sequences[0]!.prompt, ...batch.sequences[0]!.response, ...batch.sequences[1]!.prompt, ...batch.sequences[1]!.response]), promptLengths: Int32Array.of(2, 1), responseLengths: Int32Array.of(3, 1), ...ok, ...o });

  test.each([
    ['oldLogp of the wrong length', { oldLogp: new Float32Array(5) }, /oldLogp must be a Float32Array of length 6 \(batch 2 x longest response 3\)/],
    ['refLogp of the wrong type', { refLogp: new Float64Array(6) }, /refLogp must be a Float32Array of length 6/],
    ['advantages of the wrong length', { advantages: new Float32Array(3) }, /advantages must be a Float32Array of length 2 \(one per sequence\)/],
    ['inLoss of the wrong length', { inLoss: new Uint8Array(1) }, /inLoss must be a Uint8Array of length 2/],
  ])('%s (the TypeScript wrapper)', (_n, o, re) => {
    expect(() => e.policyLossBackward(batch, { ...ok, ...o } as PolicyLossInput)).toThrow(re);
  });

  test.each([
    ['oldLogp of the wrong length', { oldLogp: new Float32Array(5) }, /oldLogp: expected 6 values \(batch 2 x longest response 3\), got 5/],
    ['a non-finite old log-prob of an in-loss token', { oldLogp: Float32Array.of(-1, NaN, -1, 0, -1, 0) }, /oldLogp\[1\] \(sequence 0, token 1\): must be finite/],
    ['a non-finite reference log-prob', { klCoef: 0.1, refLogp: Float32Array.of(-1, -1, -1, Infinity, 0, 0) }, /refLogp\[3\] \(sequence 1, token 0\): must be finite/],
    ['a non-finite advantage', { advantages: Float32Array.of(NaN, 1) }, /advantages\[0\]: must be finite/],
    ['a KL coefficient without reference log-probs', { klCoef: 0.1 }, /klCoef: a KL coefficient needs refLogp/],
    ['a negative KL coefficient', { klCoef: -0.1 }, /klCoef: must be a finite number >= 0/],
    ['an infinite weight', { weight: Infinity }, /weight: must be finite/],
    ['a missing weight', { weight: undefined }, /weight: expected a number/],
    ['a negative entropy coefficient', { entropyCoef: -1 }, /entropyCoef: must be >= 0/],
    ['a zero entropy denominator', { entropyCoef: 0.1, entropyDenominator: 0 }, /entropyDenominator: must be > 0/],
    ['clipLow out of range', { clipLow: 1 }, /clipLow: expected a number in \[0, 1\)/],
    ['a dual clip in sequence mode', { mode: 'sequence', dualClip: 3 }, /dualClip: only applies to mode 'token'/],
    ['an unknown mode', { mode: 'bogus' }, /mode/],
  ])('%s', (_n, o, re) => {
    expect(() => native(o)).toThrow(re);
  });

  test('a filtered response\'s old log-probs are not read; a frozen copy refuses', () => {
    expect(native({ inLoss: Uint8Array.of(1, 0), oldLogp: Float32Array.of(-1, -1, -1, NaN, 0, 0) })).toMatchObject({ accumulated: true, tokens: 3 });
    const f = e.cloneFrozen();
    try {
      expect(() => f.policyLossBackward(batch, ok)).toThrow(/frozen/);
    } finally {
      f.dispose();
    }
  });
});
