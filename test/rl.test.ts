// Pure pieces of the trainer: advantages, the head's AdamW, the schedule and prompt stream, contrastive diagnostics.
import { computeAdvantages, groupHasSpread, groupStats } from '../src/rl/advantages.js';
import { contrastiveDiagnostics } from '../src/rl/diagnostics.js';
import { ContrastiveHead } from '../src/rl/head.js';
import { makeSchedule, PromptStream } from '../src/rl/schedule.js';
import { counterSeed } from '../src/util/seeds.js';
import { Rng } from '../src/util/rng.js';
import { clipoSchema } from '../src/config/schema.js';
import { contrastiveLoss } from '../src/kernels/contrastive.js';
import { contrastiveLevels, contrastiveLossTypes } from '../src/kernels/variants.js';
import { clipoPhase, contrastiveReward } from '../src/rl/clipo.js';

describe('group advantages', () => {
  test('GRPO: (r - mean) / (Bessel std + 1e-6), by hand', () => {
    // group 0: [1, 0, 0, 1]: mean 0.5, std sqrt(4·0.25/3) = 0.5773503 -> ±0.5/0.5773513 = ±0.8660239
    // group 1: [0.7] alone: mean 0, std 1 -> 0.7 / (1 + 1e-6)
    // group 2: [1, 1]: no spread -> 0
    const r = [1, 0, 0, 1, 0.7, 1, 1];
    const g = [0, 0, 0, 0, 1, 2, 2];
    const a = computeAdvantages(r, g, { estimator: 'grpo' });
    const s = 0.5 / (Math.sqrt(1 / 3) + 1e-6);
    expect(Array.from(a)).toEqual([s, -s, -s, s, 0.7 / (1 + 1e-6), 0, 0].map(Math.fround));
    expect(a[0]).toBeCloseTo(0.8660239, 6);
  });

  test('Dr. GRPO: r - mean only; a group of one gets mean 0', () => {
    const a = computeAdvantages([1, 0, 0, 1, 0.7, 0.2, 0.4], [5, 5, 5, 5, 9, 3, 3], { estimator: 'drgrpo' });
    expect(Array.from(a).map((x) => +x.toFixed(6))).toEqual([0.5, -0.5, -0.5, 0.5, 0.7, -0.1, 0.1]);
  });

  test('CLIPO rewards shift the correct responses: r = r_v + r_c', () => {
    // [1-0.1, 1-0.3, 0, 0]: mean 0.4, deviations [0.5, 0.3, -0.4, -0.4], std sqrt(0.66/3)
    const a = computeAdvantages([0.9, 0.7, 0, 0], [0, 0, 0, 0], { estimator: 'grpo', eps: 0 });
    const std = Math.sqrt(0.66 / 3);
    [0.5, 0.3, -0.4, -0.4].forEach((d, i) => expect(a[i]).toBeCloseTo(d / std, 5));
  });

  test('stats, spread and bad input', () => {
    expect(groupStats([2, 4], [7, 7]).get(7)).toEqual({ mean: 3, std: Math.SQRT2, size: 2 });
    expect(groupHasSpread([1, 1, 1, 0], 0, 3)).toBe(false);
    expect(groupHasSpread([1, 1, 1, 0], 1, 3)).toBe(true);
    expect(() => computeAdvantages([1, 2], [0], { estimator: 'grpo' })).toThrow(/rewards has 2 entries but group has 1/);
    expect(() => computeAdvantages([NaN], [0], { estimator: 'grpo' })).toThrow(/reward 0 is NaN/);
  });
});

describe('contrastive head', () => {
  test('AdamW step equals torch.optim.AdamW by hand (lr 0.1, wd 0.01)', () => {
    const h = ContrastiveHead.init('linear', 1, 1, 3);
    h.weights[0]![0] = 1;
    // step 1, g = 0.5: w = 1·(1 − 0.001) = 0.999; m̂ = 0.5, v̂ = 0.25 -> w −= 0.1·0.5/0.5 -> 0.899
    h.adamwStep([Float32Array.of(0.5)], { lr: 0.1, weightDecay: 0.01 });
    expect(h.weights[0]![0]).toBeCloseTo(0.899, 6);
    // step 2, g = −1: w = 0.899·0.999 = 0.898101; m = −0.055, v = 0.00124975; m̂ = −0.2894737, v̂ = 0.6251876
    // w −= 0.1·(−0.2894737)/0.7906881 -> 0.9347110
    h.adamwStep([Float32Array.of(-1)], { lr: 0.1, weightDecay: 0.01 });
    expect(h.weights[0]![0]).toBeCloseTo(0.934711, 5);
    expect(h.step).toBe(2);
  });

  test('init is seeded and bounded by 1/sqrt(H); tensors round-trip with optimizer state', () => {
    const a = ContrastiveHead.init('mlp', 16, 8, 42);
    const b = ContrastiveHead.init('mlp', 16, 8, 42);
    expect(a.weights[1]).toEqual(b.weights[1]);
    for (const w of a.weights) for (const x of w) expect(Math.abs(x)).toBeLessThanOrEqual(0.25);
    a.adamwStep([new Float32Array(256).fill(0.1), new Float32Array(128).fill(-0.2)], { lr: 1e-3, weightDecay: 0.01 });
    const t = a.toTensors();
    const c = ContrastiveHead.fromTensors('mlp', 16, 8, t.weights, t.optimizer, a.step);
    expect(c.weights).toEqual(a.weights);
    expect(c.m).toEqual(a.m);
    expect(c.v).toEqual(a.v);
    expect(() => ContrastiveHead.fromTensors('linear', 16, 8, t.weights, null, 0)).toThrow(/tensor 'weight' is missing/);
    expect(() => a.adamwStep([new Float32Array(3)], { lr: 1, weightDecay: 0 })).toThrow(/expected 2 gradient tensors/);
    expect(() => a.adamwStep([Float32Array.of(NaN, ...new Float32Array(255)), new Float32Array(128)], { lr: 1, weightDecay: 0 })).toThrow(/non-finite/);
  });

  test('embed() gives unit vectors', () => {
    const h = ContrastiveHead.init('linear', 5, 3, 1);
    const z = h.embed(Float32Array.of(1, 2, 3, 4, 5, -1, 0, 1, 0, 2), 2);
    for (let b = 0; b < 2; b++) expect(Math.hypot(z[3 * b]!, z[3 * b + 1]!, z[3 * b + 2]!)).toBeCloseTo(1, 6);
  });
});

describe('schedule and prompt stream', () => {
  test('paper schedules: 14 steps per epoch on GSM8K (512/step), 58 on MATH (128/step)', () => {
    expect(makeSchedule({ numPrompts: 7473, promptsPerStep: 512, epochs: 6, maxSteps: null, warmup: 'epoch', clipoEnabled: true })).toEqual({ stepsPerEpoch: 14, totalSteps: 84, warmupSteps: 14 });
    expect(makeSchedule({ numPrompts: 7500, promptsPerStep: 128, epochs: 10, maxSteps: 100, warmup: 'epoch', clipoEnabled: true })).toEqual({ stepsPerEpoch: 58, totalSteps: 100, warmupSteps: 58 });
    expect(makeSchedule({ numPrompts: 10, promptsPerStep: 4, epochs: 2, maxSteps: null, warmup: 'epoch', clipoEnabled: false }).warmupSteps).toBe(0);
    expect(() => makeSchedule({ numPrompts: 3, promptsPerStep: 4, epochs: 1, maxSteps: null, warmup: 0, clipoEnabled: false })).toThrow(/3 usable prompts, fewer than optim.prompts_per_step \(4\)/);
  });

  test('each epoch is a seeded permutation, the remainder is dropped, and a restored position continues exactly', () => {
    const s = new PromptStream(10, 7, true);
    const e0 = [...s.next(4), ...s.next(4)];
    expect(new Set(e0).size).toBe(8);
    const pos = { ...s.pos };
    const next = s.next(4);
    expect(pos).toEqual({ epoch: 0, offset: 8 });
    expect(s.pos).toEqual({ epoch: 1, offset: 4 });
    expect(new PromptStream(10, 7, true, pos).next(4)).toEqual(next);
    expect(new PromptStream(10, 8, true).next(10)).not.toEqual(new PromptStream(10, 7, true).next(10));
    expect(new PromptStream(5, 7, false).next(5)).toEqual([0, 1, 2, 3, 4]);
    expect(counterSeed(1, 2, 3)).toBe(counterSeed(1, 2, 3));
    expect(counterSeed(1, 2, 3)).not.toBe(counterSeed(1, 3, 2));
  });
});

describe('contrastive diagnostics', () => {
  // group 0: correct, correct, incorrect; group 1: incorrect, incorrect, correct (D = 2, τ = 1)
  const e = Float32Array.of(1, 0, 0.6, 0.8, 0, 1, 1, 0, 0.8, 0.6, 0, 1);
  const correct = Uint8Array.of(1, 1, 0, 0, 0, 1);
  const group = Int32Array.of(0, 0, 0, 1, 1, 1);
  const perSample = Float32Array.of(0.3, 0.5, 0, 0, 0, 0);
  const setup = { level: 'group' as const, distance: 'cosine' as const, lossType: 'infonce' as const, temperature: 1, maskedLabel: 0 as const, skipTrivial: true };

  test('hand-checked figures', () => {
    const d = contrastiveDiagnostics({ embeddings: e, outSize: 2, perSample, correct, group }, setup);
    expect(d.validAnchors).toBe(2);
    expect(d.signalGroupFraction).toBe(0.5);
    expect(d.positiveCosineMean).toBeCloseTo(0.6, 6);
    expect(d.correctLossMean).toBeCloseTo(0.4, 6);
    expect(d.correctLossMin).toBeCloseTo(0.3, 6);
    expect(d.correctLossMax).toBeCloseTo(0.5, 6);
    // anchor 3: ℓ' = [−0.2 (pos 4), −1 (neg 5)] -> 0.2 + log(e^−0.2 + e^−1) = 0.371101
    // anchor 4: ℓ' = [−0.2 (pos 3), −0.4 (neg 5)] -> 0.2 + log(e^−0.2 + e^−0.4) = 0.598139
    expect(d.incorrectLossMean).toBeCloseTo((0.371101 + 0.598139) / 2, 5);
  });

  test('no signal anywhere gives nulls, not NaN', () => {
    const d = contrastiveDiagnostics({ embeddings: e, outSize: 2, perSample, correct: new Uint8Array(6), group }, setup);
    expect(d).toMatchObject({ validAnchors: 0, signalGroupFraction: 0, positiveCosineMean: null, correctLossMean: null });
  });
});

describe('contrastive diagnostics at levels cross and batch', () => {
  // three groups of two, D = 2: embeddings at angles; labels [1,1 | 1,0 | 0,0]
  const ang = [0, 0.3, 0.6, 1.2, 2.0, 2.4];
  const e = Float32Array.from(ang.flatMap((a) => [Math.cos(a), Math.sin(a)]));
  const correct = Uint8Array.of(1, 1, 1, 0, 0, 0);
  const group = Int32Array.of(0, 0, 1, 1, 2, 2);
  const per = new Float32Array(6);
  const base = { distance: 'cosine' as const, lossType: 'infonce' as const, temperature: 1, skipTrivial: true };

  test('batch level: positives over the batch, by brute force', () => {
    const d = contrastiveDiagnostics({ embeddings: e, outSize: 2, perSample: per, correct, group }, { ...base, level: 'batch', maskedLabel: -1 });
    let sum = 0, n = 0;
    for (let i = 0; i < 6; i++) for (let j = 0; j < 6; j++) if (i !== j && correct[i] === correct[j]) { sum += Math.cos(ang[i]! - ang[j]!); n++; }
    expect(d.validAnchors).toBe(6);
    expect(d.positiveCosineMean).toBeCloseTo(sum / n, 6);
    expect(d.incorrectLossMean).toBeNull();
  });

  test('cross level: positives from the group, negatives from the batch', () => {
    const d = contrastiveDiagnostics({ embeddings: e, outSize: 2, perSample: per, correct, group }, { ...base, level: 'cross', maskedLabel: 0 });
    // correct anchors with a same-group correct partner: 0 and 1 (anchor 2's partner is incorrect)
    expect(d.validAnchors).toBe(2);
    expect(d.positiveCosineMean).toBeCloseTo(Math.cos(0.3), 6);
    expect(d.signalGroupFraction).toBeCloseTo(1 / 3, 6);
  });
});

describe('the CLIPO phase', () => {
  const B = 24, H = 12, D = 6;
  const rng = new Rng(3);
  const pooled = Float32Array.from({ length: B * H }, () => rng.normal());
  const group = Int32Array.from({ length: B }, (_, i) => Math.floor(i / 6));
  const correct = Uint8Array.from({ length: B }, (_, i) => (i % 6 < 2 + (i >> 3) % 3 ? 1 : 0));
  const settings = clipoSchema.parse({ enabled: true, out_size: D, temperature: 0.1 });

  test('reward from the loss before the head step, then one head step; diagnostics agree with the kernel', () => {
    for (const level of contrastiveLevels)
      for (const skip_trivial of [true, false])
        for (const masked_label of [-1, 0, 1] as const) {
          const k = { ...settings, level, skip_trivial, masked_label };
          const head = ContrastiveHead.init('linear', H, D, 7);
          const before = Float32Array.from(head.weights[0]!);
          const ref = contrastiveLoss({ pooled, batch: B, hiddenSize: H, outSize: D, ...head.kernelWeights(), correct, group, lossType: k.loss_type, level, distance: k.distance, temperature: k.temperature, maskedLabel: masked_label, skipTrivial: skip_trivial, seed: 11, backend: 'cpu' });
          const r = clipoPhase(head, { pooled, correct, group }, k, { seed: 11, backend: 'cpu', stepNo: 1 });
          expect(r.loss).toBe(ref.loss);
          expect(Array.from(r.reward)).toEqual(Array.from(contrastiveReward({ perSample: ref.perSample, correct, lambda: k.lambda, constant: k.constant, clampMin: k.clamp })));
          expect(r.diagnostics.validAnchors).toBe(ref.validAnchors);
          expect(r.headStepped).toBe(ref.validAnchors > 0);
          expect(Array.from(head.weights[0]!).some((w, i) => w !== before[i])).toBe(r.headStepped);
        }
  });

  test('a fixed head is never stepped', () => {
    const head = ContrastiveHead.init('mlp', H, D, 8);
    const before = head.weights.map((w) => Float32Array.from(w));
    const r = clipoPhase(head, { pooled, correct, group }, { ...settings, head: 'mlp', fixed_head: true }, { seed: 1, backend: 'cpu', stepNo: 1 });
    expect(r.headStepped).toBe(false);
    expect(r.diagnostics.validAnchors).toBeGreaterThan(0);
    head.weights.forEach((w, k) => expect(Array.from(w)).toEqual(Array.from(before[k]!)));
  });
});

describe('contrastive diagnostics: the incorrect anchors\' loss', () => {
  test('equals the kernel on the full embeddings (identity head), for every loss type and distance', () => {
    const rng = new Rng(21);
    const sizes = [5, 8, 3, 8, 6, 1];
    const group = Int32Array.from(sizes.flatMap((n, g) => Array(n).fill(g * 3 + 1)));
    const B = group.length, D = 24;
    const correct = Uint8Array.from({ length: B }, (_, i) => (i % 3 === 0 ? 1 : 0));
    const e = new Float32Array(B * D);
    for (let i = 0; i < B; i++) {
      let n = 0;
      for (let d = 0; d < D; d++) n += (e[i * D + d] = rng.normal()) ** 2;
      for (let d = 0; d < D; d++) e[i * D + d]! /= Math.sqrt(n);
    }
    e.copyWithin(1 * D, 0, D);  // a duplicate embedding inside a group
    const eye = new Float32Array(D * D);
    for (let d = 0; d < D; d++) eye[d * D + d] = 1;
    for (const lossType of contrastiveLossTypes)
      for (const distance of ['cosine', 'l2'] as const) {
        const d = contrastiveDiagnostics({ embeddings: e, outSize: D, perSample: new Float32Array(B), correct, group }, { level: 'group', distance, lossType, temperature: 0.1, maskedLabel: 0, skipTrivial: true });
        const full = contrastiveLoss({ pooled: e, batch: B, hiddenSize: D, outSize: D, weight: eye, correct, group, lossType: lossType === 'infonce' ? 'supcon_out' : lossType, level: 'group', distance, temperature: 0.1, maskedLabel: 1, skipTrivial: true, grad: false, backend: 'cpu' });
        let sum = 0;
        for (const v of full.perSample) sum += v;
        expect(full.validAnchors).toBeGreaterThan(3);
        // l2 near a duplicate (z·z' = 1 up to rounding) turns a 1e-7 rounding of the dot product into 1e-4 through
        // sqrt(max(2 − 2 z·z', eps)); cosine has no such amplification
        const tol = distance === 'l2' ? 2e-4 : 2e-6;
        if (!(Math.abs(d.incorrectLossMean! - sum / full.validAnchors) <= tol * Math.abs(sum / full.validAnchors))) {
          throw new Error(`${lossType}/${distance}: ${d.incorrectLossMean} vs ${sum / full.validAnchors}`);
        }
      }
  });
});
