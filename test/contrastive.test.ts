// The contrastive kernel against its float64 reference (docs/algorithm.md §2): every variant on fresh random inputs,
// gradients by finite differences, the edge cases, bad inputs, and (when a GPU is present) CUDA against the CPU.
import {
  contrastiveLoss,
  contrastiveLossUnfused,
  contrastiveLossTypes,
  contrastiveLevels,
  contrastiveDistances,
  type ContrastiveLossOptions,
  type ContrastiveLossResult,
} from '../src/kernels/contrastive.js';
import { availableBackends } from '../src/kernels/backend.js';
import { contrastiveReward } from '../src/rl/clipo.js';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { nativeFunction, packageRoot } from '../src/native.js';
import { Rng } from '../src/util/rng.js';
import { refContrastive, refPositiveHash, type RefInput } from './reference/contrastive_ref.js';

type Head = 'linear' | 'mlp';

function randn(rng: Rng, n: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let k = 0; k < n; k++) a[k] = rng.normal() * scale;
  return a;
}

/** float -> bf16 bits (round to nearest even) and back, so the reference sees exactly what the kernel sees */
function toBf16(a: Float32Array): Uint16Array {
  const u = new Uint32Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength));
  const out = new Uint16Array(a.length);
  for (let k = 0; k < a.length; k++) out[k] = (u[k]! + 0x7fff + ((u[k]! >>> 16) & 1)) >>> 16;
  return out;
}
function fromBf16(b: Uint16Array): Float32Array {
  const u = new Uint32Array(b.length);
  for (let k = 0; k < b.length; k++) u[k] = b[k]! << 16;
  return new Float32Array(u.buffer);
}

/**
 * Groups of mixed composition (in shuffled order): one with 2 correct + 2 incorrect, one with 3 + 1, one random,
 * so every loss type and level has valid anchors and masked ones.
 */
function makeLabels(rng: Rng, sizes = [4, 4, 4]): { correct: Uint8Array; group: Int32Array } {
  const items: [number, number][] = [];
  sizes.forEach((n, gi) => {
    for (let k = 0; k < n; k++) {
      const y = gi === 0 ? (k < 2 ? 1 : 0) : gi === 1 ? (k < 3 ? 1 : 0) : rng.int(2);
      items.push([gi * 7 + 3, y]);  // arbitrary non-contiguous ids
    }
  });
  rng.shuffle(items);
  return { correct: Uint8Array.from(items.map((t) => t[1])), group: Int32Array.from(items.map((t) => t[0])) };
}

interface Case {
  opts: ContrastiveLossOptions;
  ref: RefInput;
}

function makeCase(
  rng: Rng,
  v: Pick<ContrastiveLossOptions, 'lossType' | 'level' | 'distance' | 'maskedLabel' | 'skipTrivial'> & {
    head: Head;
    input: 'pooled' | 'tokens' | 'bf16';
    H?: number;
    D?: number;
    L?: number;
    temperature?: number;
    labels?: { correct: Uint8Array; group: Int32Array };
  },
): Case {
  const labels = v.labels ?? makeLabels(rng);
  const B = labels.correct.length, H = v.H ?? 16, D = v.D ?? 8, L = v.L ?? 5;
  const temperature = v.temperature ?? 0.05;
  const seed = rng.nextU32();
  const weights =
    v.head === 'linear'
      ? { weight: randn(rng, D * H, 1 / Math.sqrt(H)) }
      : { weight1: randn(rng, H * H, 1 / Math.sqrt(H)), weight2: randn(rng, D * H, 1 / Math.sqrt(H)) };
  const base = {
    batch: B, hiddenSize: H, outSize: D, head: v.head, ...weights, ...labels,
    lossType: v.lossType, level: v.level, distance: v.distance, temperature,
    maskedLabel: v.maskedLabel, skipTrivial: v.skipTrivial, seed, backend: 'cpu' as const,
  };
  const refBase = {
    B, H, D, head: v.head, weight: v.head === 'linear' ? weights.weight! : weights.weight2!, weight1: weights.weight1,
    correct: labels.correct, group: labels.group, lossType: v.lossType, level: v.level, distance: v.distance,
    temperature, maskedLabel: v.maskedLabel, skipTrivial: v.skipTrivial, eps: 1e-8, seed,
  };
  if (v.input === 'pooled') {
    const pooled = randn(rng, B * H);
    return { opts: { ...base, pooled }, ref: { ...refBase, pooled } };
  }
  // random response lengths 1..L, the rest padding filled with garbage that must not be read into the mean
  const mask = new Uint8Array(B * L);
  for (let i = 0; i < B; i++) {
    const n = 1 + rng.int(L);
    for (let t = 0; t < n; t++) mask[i * L + t] = 1;
  }
  const f = randn(rng, B * L * H);
  for (let r = 0; r < B * L; r++) if (!mask[r]) f.fill(1e6, r * H, (r + 1) * H);
  if (v.input === 'bf16') {
    const bits = toBf16(f);
    return { opts: { ...base, tokens: bits, dtype: 'bf16', mask, length: L }, ref: { ...refBase, tokens: fromBf16(bits), mask, L } };
  }
  return { opts: { ...base, tokens: f, mask, length: L }, ref: { ...refBase, tokens: f, mask, L } };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let k = 0; k < a.length; k++) m = Math.max(m, Math.abs(a[k]! - b[k]!));
  return m;
}

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, rtol: number, what: string): void {
  let scale = 0;
  for (let k = 0; k < want.length; k++) scale = Math.max(scale, Math.abs(want[k]!));
  const err = maxAbsDiff(got, want);
  if (!(err <= rtol * (1 + scale))) throw new Error(`${what}: max |diff| ${err} > ${rtol} * (1 + ${scale})`);
}

function expectMatchesRef(r: ContrastiveLossResult, c: Case, what: string): void {
  const ref = refContrastive({ ...c.ref, positives: c.opts.positives });
  expect(r.validAnchors).toBe(ref.validAnchors);
  expect(Array.from(r.positives)).toEqual(ref.positives);
  expectClose(r.embeddings, ref.embeddings, 2e-5, `${what} embeddings`);
  expectClose(r.perSample, ref.perSample, 2e-4, `${what} perSample`);
  expectClose([r.loss], [ref.loss], 2e-4, `${what} loss`);
}

const variants = (() => {
  const out: { maskedLabel: -1 | 0 | 1; skipTrivial: boolean; head: Head; distance: 'cosine' | 'l2'; input: 'pooled' | 'tokens' | 'bf16' }[] = [];
  for (const maskedLabel of [-1, 0, 1] as const)
    for (const skipTrivial of [true, false])
      for (const head of ['linear', 'mlp'] as const)
        for (const distance of contrastiveDistances)
          for (const input of ['pooled', 'tokens', 'bf16'] as const) out.push({ maskedLabel, skipTrivial, head, distance, input });
  return out;
})();

describe('contrastiveLoss (CPU) against the float64 reference', () => {
  for (const lossType of contrastiveLossTypes)
    for (const level of contrastiveLevels) {
      test(`${lossType} / ${level}: all maskedLabel, skipTrivial, head, distance and input variants`, () => {
        const rng = new Rng(1000 + contrastiveLossTypes.indexOf(lossType) * 10 + contrastiveLevels.indexOf(level));
        let anyValid = 0;
        for (const v of variants) {
          const c = makeCase(rng, { lossType, level, ...v });
          const what = `${lossType}/${level}/${JSON.stringify(v)}`;
          const fused = contrastiveLoss(c.opts);
          expectMatchesRef(fused, c, `fused ${what}`);
          const unfused = contrastiveLossUnfused(c.opts);
          expectMatchesRef(unfused, c, `unfused ${what}`);
          // the two native implementations agree on the gradient too (the reference checks it by finite differences)
          const gF = fused.gradWeight ?? fused.gradWeight2!, gU = unfused.gradWeight ?? unfused.gradWeight2!;
          expectClose(gF, gU, 1e-4, `grad fused vs unfused ${what}`);
          if (v.head === 'mlp') expectClose(fused.gradWeight1!, unfused.gradWeight1!, 1e-4, `grad1 fused vs unfused ${what}`);
          anyValid += fused.validAnchors > 0 ? 1 : 0;
        }
        // the label layout guarantees valid anchors in (nearly) every variant: the comparison is not vacuous
        expect(anyValid).toBeGreaterThanOrEqual(variants.length - 4);
      });
    }
});

/** Central finite differences of the float64 reference loss with respect to every weight. */
function fdGrad(ref: RefInput, key: 'weight' | 'weight1'): number[] {
  const w = Float64Array.from(ref[key]!);
  const h = 1e-6;
  const g: number[] = [];
  for (let k = 0; k < w.length; k++) {
    const w0 = w[k]!;
    w[k] = w0 + h;
    const lp = refContrastive({ ...ref, [key]: w }).loss;
    w[k] = w0 - h;
    const lm = refContrastive({ ...ref, [key]: w }).loss;
    w[k] = w0;
    g.push((lp - lm) / (2 * h));
  }
  return g;
}

describe('contrastiveLoss gradients against finite differences of the float64 reference', () => {
  for (const lossType of contrastiveLossTypes)
    for (const head of ['linear', 'mlp'] as const) {
      test(`${lossType} / ${head}: every level and distance`, () => {
        const rng = new Rng(77 + contrastiveLossTypes.indexOf(lossType) * 2 + (head === 'mlp' ? 1 : 0));
        for (const level of contrastiveLevels)
          for (const distance of contrastiveDistances) {
            const c = makeCase(rng, {
              lossType, level, distance, head, maskedLabel: -1, skipTrivial: true,
              input: level === 'cross' ? 'tokens' : 'pooled', H: 6, D: 4, L: 4, temperature: 0.1,
            });
            const r = contrastiveLoss(c.opts);
            expect(r.validAnchors).toBeGreaterThan(0);
            // hold the drawn InfoNCE positives fixed while the weights move
            const ref = { ...c.ref, positives: r.positives };
            const what = `${lossType}/${level}/${distance}/${head}`;
            if (head === 'linear') {
              expectClose(r.gradWeight!, fdGrad(ref, 'weight'), 2e-3, `${what} gradWeight`);
            } else {
              expectClose(r.gradWeight2!, fdGrad(ref, 'weight'), 2e-3, `${what} gradWeight2`);
              expectClose(r.gradWeight1!, fdGrad(ref, 'weight1'), 2e-3, `${what} gradWeight1`);
            }
          }
      });
    }
});

describe('contrastiveLoss at medium sizes (full register tiles and ragged edges of the CPU GEMMs)', () => {
  for (const head of ['linear', 'mlp'] as const)
    test(`${head}: every loss type; gradients by directional finite differences`, () => {
      const rng = new Rng(31 + (head === 'mlp' ? 1 : 0));
      for (const lossType of contrastiveLossTypes) {
        const labels = makeLabels(rng, [8, 8, 9, 7, 6]);
        const c = makeCase(rng, { lossType, level: 'cross', distance: 'cosine', head, maskedLabel: -1, skipTrivial: true, input: 'tokens', H: 70, D: 45, L: 9, temperature: 0.1, labels });
        const r = contrastiveLoss(c.opts);
        expectMatchesRef(r, c, `medium ${lossType}/${head}`);
        const ref = { ...c.ref, positives: r.positives };
        // d/dh L(W + h V) at h = 0 equals <gradW, V>; central differences on the float64 reference
        const keys = head === 'linear' ? (['weight'] as const) : (['weight', 'weight1'] as const);
        for (const key of keys) {
          const grad = key === 'weight1' ? r.gradWeight1! : (r.gradWeight ?? r.gradWeight2!);
          const w = Float64Array.from(ref[key]!);
          for (let dir = 0; dir < 3; dir++) {
            const V = Float64Array.from(w, () => rng.normal());
            const shift = (s: number) => Float64Array.from(w, (x, k) => x + s * V[k]!);
            const h = 1e-6;
            const fd = (refContrastive({ ...ref, [key]: shift(h) }).loss - refContrastive({ ...ref, [key]: shift(-h) }).loss) / (2 * h);
            let dot = 0, norm = 0;
            for (let k = 0; k < w.length; k++) {
              dot += grad[k]! * V[k]!;
              norm += Math.abs(grad[k]! * V[k]!);
            }
            if (!(Math.abs(dot - fd) <= 1e-3 * (norm + 1e-3))) throw new Error(`${lossType}/${head}/${key}: <grad, V> ${dot} vs finite difference ${fd}`);
          }
        }
      }
    });
});

describe('contrastiveLoss: InfoNCE positives', () => {
  test('the seeded draw is the reference hash, differs across seeds, and given positives are used', () => {
    const rng = new Rng(5);
    const labels = makeLabels(rng, [6, 6, 6, 6]);
    const c = makeCase(rng, { lossType: 'infonce', level: 'batch', distance: 'cosine', head: 'linear', maskedLabel: -1, skipTrivial: true, input: 'pooled', labels });
    const a = contrastiveLoss({ ...c.opts, seed: 1 });
    const b = contrastiveLoss({ ...c.opts, seed: 2 });
    expect(Array.from(a.positives)).toEqual(refContrastive({ ...c.ref, seed: 1 }).positives);
    expect(Array.from(a.positives)).not.toEqual(Array.from(b.positives));
    expect(refPositiveHash(1, 0)).not.toBe(refPositiveHash(2, 0));
    // give b's positives explicitly under seed 1: the result is b's
    const given = contrastiveLoss({ ...c.opts, seed: 1, positives: b.positives });
    expect(Array.from(given.positives)).toEqual(Array.from(b.positives));
    expect(given.loss).toBeCloseTo(b.loss, 5);
    expectMatchesRef(given, { ...c, opts: { ...c.opts, positives: b.positives } }, 'given positives');
    // -1 for an anchor removes it from InfoNCE
    const some = Int32Array.from(b.positives);
    const first = some.findIndex((j) => j >= 0);
    some[first] = -1;
    const fewer = contrastiveLoss({ ...c.opts, positives: some });
    expect(fewer.validAnchors).toBe(b.validAnchors - 1);
    expect(fewer.perSample[first]).toBe(0);
  });
});

describe('contrastiveLoss edge cases', () => {
  const base = { lossType: 'infonce' as const, level: 'group' as const, distance: 'cosine' as const, head: 'linear' as const, maskedLabel: 0 as const, skipTrivial: true, input: 'pooled' as const };
  const labelsOf = (correct: number[], group: number[]) => ({ correct: Uint8Array.from(correct), group: Int32Array.from(group) });

  test('groups with 0, 1 and all correct give no valid anchor; loss and gradient are exactly 0', () => {
    const rng = new Rng(9);
    for (const correct of [[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]]) {
      for (const lossType of contrastiveLossTypes) {
        const c = makeCase(rng, { ...base, lossType, labels: labelsOf(correct, [0, 0, 0, 0]) });
        const r = contrastiveLoss(c.opts);
        expect(r.validAnchors).toBe(0);
        expect(r.loss).toBe(0);
        expect(Array.from(r.perSample).every((v) => v === 0)).toBe(true);
        expect(Array.from(r.gradWeight!).every((v) => v === 0)).toBe(true);
        expectMatchesRef(r, c, `correct=${correct}`);
      }
    }
  });

  test('grad: false gives the same forward and no gradient arrays', () => {
    const c = makeCase(new Rng(15), { ...base, head: 'mlp', input: 'tokens' });
    const full = contrastiveLoss(c.opts);
    const fwd = contrastiveLoss({ ...c.opts, grad: false });
    expect(fwd.gradWeight1).toBeUndefined();
    expect(fwd.gradWeight2).toBeUndefined();
    expect(fwd.loss).toBe(full.loss);
    expect(Array.from(fwd.perSample)).toEqual(Array.from(full.perSample));
  });

  test('threads: 1 gives bit-identical results (each response and each GEMM tile is summed by one thread)', () => {
    const c = makeCase(new Rng(16), { ...base, head: 'mlp', input: 'tokens', H: 70, D: 40, L: 30, labels: makeLabels(new Rng(17), [9, 9, 9]) });
    const all = contrastiveLoss(c.opts);
    const one = contrastiveLoss({ ...c.opts, threads: 1 });
    expect(one.loss).toBe(all.loss);
    expect(Array.from(one.gradWeight1!)).toEqual(Array.from(all.gradWeight1!));
    expect(Array.from(one.gradWeight2!)).toEqual(Array.from(all.gradWeight2!));
  });

  test('a group with 2 correct and 1 incorrect is the smallest with signal', () => {
    const c = makeCase(new Rng(10), { ...base, labels: labelsOf([1, 0, 1], [4, 4, 4]) });
    const r = contrastiveLoss(c.opts);
    expect(r.validAnchors).toBe(2);
    expect(Array.from(r.positives)).toEqual([2, -1, 0]);
    expectMatchesRef(r, c, '2+1');
  });

  test('B = 1 (one group of one): no anchor with skipTrivial; the raw formulas without it', () => {
    const rng = new Rng(11);
    for (const lossType of contrastiveLossTypes)
      for (const skipTrivial of [true, false]) {
        const c = makeCase(rng, { ...base, lossType, skipTrivial, maskedLabel: -1, labels: labelsOf([1], [0]) });
        const r = contrastiveLoss(c.opts);
        expectMatchesRef(r, c, `B=1 ${lossType} skipTrivial=${skipTrivial}`);
        expect(Number.isFinite(r.loss)).toBe(true);
        expect(Array.from(r.gradWeight!).every(Number.isFinite)).toBe(true);
        // without skipTrivial the lone anchor counts (InfoNCE with the empty sum over positives: L = 0)
        expect(r.validAnchors).toBe(skipTrivial ? 0 : 1);
      }
  });

  test('skipTrivial false: an anchor without a positive or without a negative still counts (official semantics)', () => {
    // groups: [1 0 0] (correct anchor 0 has no positive), [1 1 0], [1 1 1] (no negative), [0] (alone)
    const labels = labelsOf([1, 0, 0, 1, 1, 0, 1, 1, 1, 0], [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]);
    const labelOk = { 0: (y: number) => y === 1, 1: (y: number) => y === 0, [-1]: () => true } as const;
    const rng = new Rng(18);
    for (const lossType of contrastiveLossTypes)
      for (const level of contrastiveLevels)
        for (const maskedLabel of [-1, 0, 1] as const) {
          const c = makeCase(rng, { ...base, lossType, level, maskedLabel, skipTrivial: false, labels, H: 12, D: 6 });
          const what = `${lossType}/${level}/maskedLabel ${maskedLabel}`;
          const fused = contrastiveLoss(c.opts);
          const unfused = contrastiveLossUnfused(c.opts);
          // every anchor whose label passes the mask is valid, whatever its positives and negatives
          const want = Array.from(labels.correct).filter((y) => labelOk[maskedLabel](y)).length;
          for (const r of [fused, unfused]) {
            expect(r.validAnchors).toBe(want);
            let total = 0;
            for (const v of r.perSample) total += v;
            expect(r.loss).toBeCloseTo(total / want, 5);
            expectMatchesRef(r, c, what);
          }
          expectClose(fused.gradWeight!, unfused.gradWeight!, 1e-4, `grad fused vs unfused ${what}`);
          if (lossType === 'infonce' && level === 'group') {
            // the anchors without a positive: no drawn positive, loss 0
            for (const i of maskedLabel === 1 ? [9] : [0, ...(maskedLabel === -1 ? [9] : [])]) {
              expect(fused.positives[i]).toBe(-1);
              expect(fused.perSample[i]).toBe(0);
            }
          }
        }
  });

  test('skipTrivial false: a given positive of -1 keeps the anchor, with loss 0 and no gradient from it', () => {
    const c = makeCase(new Rng(19), { ...base, skipTrivial: false, labels: labelsOf([1, 1, 0, 1, 1, 0], [0, 0, 0, 1, 1, 1]) });
    const drawn = contrastiveLoss(c.opts);
    const given = Int32Array.from(drawn.positives);
    given[0] = -1;
    const r = contrastiveLoss({ ...c.opts, positives: given });
    expect(r.validAnchors).toBe(drawn.validAnchors);
    expect(r.perSample[0]).toBe(0);
    expectMatchesRef(r, { ...c, opts: { ...c.opts, positives: given } }, 'given -1');
    // the same loss as the other anchors alone, over the unchanged count
    let rest = 0;
    for (let i = 1; i < 6; i++) rest += drawn.perSample[i]!;
    expect(r.loss).toBeCloseTo(rest / drawn.validAnchors, 5);
  });

  test('very long masks: the mean over 3000 tokens matches the float64 mean', () => {
    const rng = new Rng(12);
    const c = makeCase(rng, { ...base, maskedLabel: -1, input: 'tokens', L: 3000, H: 8, D: 4, labels: labelsOf([1, 1, 0, 1, 0], [0, 0, 0, 1, 1]) });
    c.opts.mask!.fill(1);
    expectMatchesRef(contrastiveLoss(c.opts), c, 'long');
  });

  test('an all-masked response is rejected, naming the response', () => {
    const c = makeCase(new Rng(13), { ...base, input: 'tokens' });
    const L = c.opts.length!;
    c.opts.mask!.fill(0, 2 * L, 3 * L);
    expect(() => contrastiveLoss(c.opts)).toThrow(/mask: response 2 has no response token/);
    // the native boundary says the same when called directly
    const native = nativeFunction<(o: object) => unknown>('contrastiveLoss');
    expect(() => native(c.opts)).toThrow(/mask: response 2 has no response token/);
  });
});

describe('contrastiveLoss rejects bad input with a clear Error', () => {
  const c = makeCase(new Rng(14), { lossType: 'infonce', level: 'group', distance: 'cosine', head: 'linear', maskedLabel: 0, skipTrivial: true, input: 'tokens' });
  const native = nativeFunction<(o: object) => unknown>('contrastiveLoss');
  const bad: [string, Partial<ContrastiveLossOptions> | Record<string, unknown>, RegExp][] = [
    ['short weight', { weight: new Float32Array(3) }, /weight: expected length/],
    ['weight of the wrong type', { weight: new Float64Array(8 * 16) }, /weight: expected a Float32Array/],
    ['short mask', { mask: new Uint8Array(3) }, /mask: expected length/],
    ['tokens of the wrong dtype', { dtype: 'bf16' }, /tokens: expected a Uint16Array/],
    ['unknown dtype', { dtype: 'fp8' }, /dtype: unknown value 'fp8'/],
    ['unknown loss type', { lossType: 'triplet' }, /lossType: unknown value 'triplet'/],
    ['unknown level', { level: 'global' }, /level: unknown value 'global'/],
    ['unknown distance', { distance: 'dot' }, /distance: unknown value 'dot'/],
    ['unknown head', { head: 'deep' }, /head: unknown value 'deep'/],
    ['NaN temperature', { temperature: NaN }, /temperature/],
    ['zero temperature', { temperature: 0 }, /temperature: .*>= 0\.0001/],
    ['tiny temperature (0 in fp32)', { temperature: 1e-50 }, /temperature: .*>= 0\.0001/],
    ['maskedLabel 2', { maskedLabel: 2 }, /maskedLabel/],
    ['missing skipTrivial', { skipTrivial: undefined }, /skipTrivial: expected a boolean/],
    ['negative group id', { group: Int32Array.from(c.opts.group, (g, i) => (i === 3 ? -1 : g)) }, /group: ids must be >= 0.*index 3/],
    ['correct = 2', { correct: Uint8Array.from(c.opts.correct, (y, i) => (i === 1 ? 2 : y)) }, /correct: values must be 0 or 1.*index 1/],
    ['mask = 5', { mask: Uint8Array.from(c.opts.mask!, (m, i) => (i === 0 ? 5 : m)) }, /mask: values must be 0 or 1/],
    ['both pooled and tokens', { pooled: new Float32Array(12 * 16) }, /exactly one/],
    ['non-integer batch', { batch: 2.5 }, /batch: expected an integer/],
    ['positive of self', { positives: Int32Array.from({ length: 12 }, (_, i) => (i === 0 ? 0 : -1)) }, /positives: entry 0 = 0 is not -1 and not in the positive set/],
    ['positive out of range', { positives: Int32Array.from({ length: 12 }, (_, i) => (i === 0 ? 99 : -1)) }, /positives: entry 0 = 99/],
    ['bad seed', { seed: -1 }, /seed/],
    ['bad threads', { threads: 1.5 }, /threads: expected an integer/],
  ];
  for (const [name, patch, re] of bad) {
    test(name, () => {
      const o = { ...c.opts, ...patch } as ContrastiveLossOptions;
      expect(() => contrastiveLoss(o)).toThrow(re);
      // and the native boundary on its own, with the same message
      expect(() => native(o)).toThrow(re);
    });
  }

  test('a positive from another group (level group) is rejected', () => {
    const { group, correct } = c.opts;
    const i = 0;
    const j = [...group.keys()].find((k) => group[k] !== group[i] && correct[k] === correct[i])!;
    const positives = new Int32Array(12).fill(-1);
    positives[i] = j;
    expect(() => contrastiveLoss({ ...c.opts, positives })).toThrow(/positives: entry 0/);
    expect(() => native({ ...c.opts, positives })).toThrow(/positives: entry 0/);
  });

  test('the cuda backend without CUDA says why', () => {
    if (availableBackends().cuda) return;
    expect(() => contrastiveLoss({ ...c.opts, backend: 'cuda' })).toThrow(/backend: 'cuda' is not available: /);
  });
});

describe('contrastiveReward (docs/algorithm.md §1 step 5)', () => {
  test('r = max(c - lambda * L * correct, clampMin) with defaults c = 0, clampMin = -0.5', () => {
    const perSample = Float32Array.from([0.5, 3, 1, 0, 2.4]);
    const correct = Uint8Array.from([1, 1, 0, 1, 1]);
    const r = contrastiveReward({ perSample, correct, lambda: 0.2 });
    const want = [-0.1, -0.5, 0, 0, -0.48];
    want.forEach((w, k) => expect(r[k]).toBeCloseTo(w, 6));
    const r2 = contrastiveReward({ perSample, correct, lambda: 0.2, constant: 0.1, clampMin: -1 });
    [0, -0.5, 0.1, 0.1, -0.38].forEach((w, k) => expect(r2[k]).toBeCloseTo(w, 6));
  });
  test('bad input throws naming the field', () => {
    const perSample = new Float32Array(3);
    expect(() => contrastiveReward({ perSample, correct: new Uint8Array(2), lambda: 0.2 })).toThrow(/correct: expected length 3/);
    expect(() => contrastiveReward({ perSample, correct: new Uint8Array(3), lambda: NaN })).toThrow(/lambda/);
    expect(() => contrastiveReward({ perSample: [1, 2, 3] as unknown as Float32Array, correct: new Uint8Array(3), lambda: 1 })).toThrow(/perSample: expected a Float32Array/);
  });
});

describe('clipo bench contrastive', () => {
  test('--quick --json: fused, pooling pass and unfused rows at one and all threads, fractions never above 1', () => {
    const r = spawnSync(process.execPath, [path.join(packageRoot, 'bin', 'clipo'), 'bench', 'contrastive', '--quick', '--json', '--repeats', '1', '--backend', 'cpu'], {
      encoding: 'utf8', env: { ...process.env, FORCE_COLOR: '0', CLIPO_PYTHON: '/nonexistent/python3' },
    });
    expect(r.status).toBe(0);
    const doc = JSON.parse(r.stdout);
    const rows = doc.reports[0].rows as Record<string, number | string | null>[];
    const threads = [...new Set(rows.map((x) => x.threads))];
    expect(threads[0]).toBe(1);
    for (const t of threads) expect(rows.filter((x) => x.threads === t).map((x) => x.impl)).toEqual(['clipo (fused)', 'clipo pooling pass', 'clipo unfused']);
    for (const row of rows) {
      expect(row.ms as number).toBeGreaterThan(0);
      // a fraction is published only when it is physically possible; otherwise the row carries the error
      if (row.ofRead === null) expect(String(row.benchError)).toMatch(/impossible/);
      else expect(row.ofRead as number).toBeLessThanOrEqual(1);
    }
    expect(doc.reports[0].load.before.length).toBe(3);
  });
});

// CUDA twin against the CPU kernel: runs only where a GPU is visible to a CUDA build of the addon.
const cuda = availableBackends();
const cudaTest = cuda.cuda ? test : test.skip;
if (!cuda.cuda) console.log(`contrastive CUDA tests skipped: ${cuda.reason}`);

describe('contrastiveLoss CUDA against CPU', () => {
  cudaTest('every variant, fp32 and bf16 tokens, pooled input; outputs poisoned with NaN before the launch', () => {
    const rng = new Rng(4242);
    for (const lossType of contrastiveLossTypes)
      for (const level of contrastiveLevels)
        for (const v of variants) {
          const c = makeCase(rng, { lossType, level, ...v, H: 40, D: 24, L: 7 });
          const cpu = contrastiveLoss({ ...c.opts, backend: 'cpu' });
          const gpu = contrastiveLoss({ ...c.opts, backend: 'cuda' });
          const what = `cuda ${lossType}/${level}/${JSON.stringify(v)}`;
          expect(gpu.backend).toBe('cuda');
          for (const a of [gpu.perSample, gpu.embeddings, gpu.gradWeight ?? gpu.gradWeight2!, ...(gpu.gradWeight1 ? [gpu.gradWeight1] : [])])
            expect(Array.from(a).every(Number.isFinite)).toBe(true);
          expect(gpu.validAnchors).toBe(cpu.validAnchors);
          expect(Array.from(gpu.positives)).toEqual(Array.from(cpu.positives));
          expectClose(gpu.embeddings, cpu.embeddings, 1e-4, `${what} embeddings`);
          expectClose(gpu.perSample, cpu.perSample, 1e-3, `${what} perSample`);
          expectClose([gpu.loss], [cpu.loss], 1e-3, `${what} loss`);
          expectClose(gpu.gradWeight ?? gpu.gradWeight2!, cpu.gradWeight ?? cpu.gradWeight2!, 1e-3, `${what} grad`);
          if (v.head === 'mlp') expectClose(gpu.gradWeight1!, cpu.gradWeight1!, 1e-3, `${what} grad1`);
        }
  });

  cudaTest('odd hidden size (scalar-load fallback), given positives, forward only', () => {
    const rng = new Rng(4444);
    for (const input of ['tokens', 'bf16', 'pooled'] as const) {
      const c = makeCase(rng, { lossType: 'infonce', level: 'cross', distance: 'l2', head: 'mlp', maskedLabel: -1, skipTrivial: true, input, H: 37, D: 19, L: 33, temperature: 0.1 });
      const cpu = contrastiveLoss({ ...c.opts, backend: 'cpu' });
      const given = Int32Array.from(cpu.positives);
      const gpu = contrastiveLoss({ ...c.opts, backend: 'cuda', positives: given, seed: 12345 });
      expect(Array.from(gpu.positives)).toEqual(Array.from(given));
      expectClose(gpu.perSample, cpu.perSample, 1e-3, `${input} perSample`);
      expectClose(gpu.gradWeight2!, cpu.gradWeight2!, 1e-3, `${input} grad2`);
      expectClose(gpu.gradWeight1!, cpu.gradWeight1!, 1e-3, `${input} grad1`);
      const fwd = contrastiveLoss({ ...c.opts, backend: 'cuda', grad: false });
      expect(fwd.gradWeight2).toBeUndefined();
      expectClose([fwd.loss], [cpu.loss], 1e-3, `${input} forward-only loss`);
    }
  });

  cudaTest('larger sizes (B=64, H=512, D=256, L=300) in bf16 and fp32', () => {
    const rng = new Rng(4343);
    for (const input of ['tokens', 'bf16'] as const) {
      const labels = makeLabels(rng, Array(8).fill(8));
      const c = makeCase(rng, { lossType: 'infonce', level: 'group', distance: 'cosine', head: 'linear', maskedLabel: 0, skipTrivial: true, input, H: 512, D: 256, L: 300, labels });
      const cpu = contrastiveLoss({ ...c.opts, backend: 'cpu' });
      const gpu = contrastiveLoss({ ...c.opts, backend: 'cuda' });
      expect(gpu.validAnchors).toBeGreaterThan(0);
      expectClose(gpu.embeddings, cpu.embeddings, 1e-4, `${input} embeddings`);
      expectClose(gpu.perSample, cpu.perSample, 1e-3, `${input} perSample`);
      expectClose(gpu.gradWeight!, cpu.gradWeight!, 1e-3, `${input} grad`);
    }
  });
});
