// Contrastive diagnostics for metrics.jsonl (docs/algorithm.md §2: the masks), from the head's
// embeddings and the kernel's per-anchor losses. Which anchors are valid and the positives' cosine are counted here
// (O(B·n·D) for groups of n: pairwise work stays inside groups; level `batch` uses per-label embedding sums); the
// one loss the kernel's main call does not give (incorrect anchors, when they are masked out) comes from a
// forward-only call of the same kernel, so the loss formulas live in the kernels alone.
import { contrastiveLoss } from '../kernels/contrastive.js';
import type { BackendRequest } from '../kernels/backend.js';
import type { ContrastiveDistance, ContrastiveLevel, ContrastiveLossType, MaskedLabel } from '../kernels/variants.js';
import { maxOf, minOf } from '../util/stats.js';

export interface ContrastiveSetup {
  level: ContrastiveLevel;
  distance: ContrastiveDistance;
  lossType: ContrastiveLossType;
  temperature: number;
  maskedLabel: MaskedLabel;
  skipTrivial: boolean;
  eps?: number;
  /** backend of the forward-only kernel call (default: the best available) */
  backend?: BackendRequest;
}

export interface ContrastiveDiagnostics {
  /** anchors that enter the batch loss */
  validAnchors: number;
  /** fraction of groups with at least one valid anchor (a group needs ≥2 correct and ≥1 incorrect by default) */
  signalGroupFraction: number;
  /** per-anchor loss over valid correct anchors (from the kernel) */
  correctLossMean: number | null;
  correctLossMin: number | null;
  correctLossMax: number | null;
  /** mean loss of incorrect anchors that have a positive and a negative; InfoNCE's random positive is replaced by
   *  its expectation (the mean over P(i)), so this is a diagnostic even when incorrect anchors are masked out.
   *  Level `group` only (null otherwise: A(i) would be the whole batch) */
  incorrectLossMean: number | null;
  /** mean cosine similarity z_i·z_p over valid anchors i and their positives p (paper Figure 5) */
  positiveCosineMean: number | null;
}

interface Sets {
  pos: number[];
  all: number[];
  hasNeg: boolean;
}

/** P(i) and A(i) within the anchor's group (level `group`); other levels never build A(i) explicitly. */
function groupSets(i: number, correct: ArrayLike<number>, same: number[]): Sets {
  const yi = correct[i]! > 0;
  const pos = same.filter((j) => j !== i && correct[j]! > 0 === yi);
  const all = same.filter((j) => j !== i);
  return { pos, all, hasNeg: all.length > pos.length };
}

export function contrastiveDiagnostics(
  o: { embeddings: Float32Array; outSize: number; perSample: Float32Array; correct: ArrayLike<number>; group: ArrayLike<number> },
  s: ContrastiveSetup,
): ContrastiveDiagnostics {
  const B = o.correct.length;
  const D = o.outSize;
  const eps = s.eps ?? 1e-8;
  const members = new Map<number, number[]>();
  for (let i = 0; i < B; i++) {
    const g = o.group[i]!;
    if (!members.has(g)) members.set(g, []);
    members.get(g)!.push(i);
  }
  const dot = (i: number, j: number): number => {
    let t = 0;
    for (let d = 0; d < D; d++) t += o.embeddings[i * D + d]! * o.embeddings[j * D + d]!;
    return t;
  };
  // level `batch`: positives are every same-label response, so Σ_p z_i·z_p = z_i·(S_label − z_i) with S_label the
  // label's embedding sum: O(B·D) instead of O(B²·D)
  const labelCount = [0, 0];
  const labelSum = [new Float64Array(D), new Float64Array(D)];
  if (s.level === 'batch') {
    for (let i = 0; i < B; i++) {
      const y = o.correct[i]! > 0 ? 1 : 0;
      labelCount[y]!++;
      for (let d = 0; d < D; d++) labelSum[y]![d]! += o.embeddings[i * D + d]!;
    }
  }

  let valid = 0;
  const signalGroups = new Set<number>();
  const correctLosses: number[] = [];
  const incorrect: number[] = [];
  let cosSum = 0, cosN = 0;
  for (let i = 0; i < B; i++) {
    const yi = o.correct[i]! > 0;
    const same = members.get(o.group[i]!)!;
    let st: Sets | null = null;
    let nPos: number, hasNeg: boolean;
    if (s.level === 'batch') {
      nPos = labelCount[yi ? 1 : 0]! - 1;
      hasNeg = labelCount[yi ? 0 : 1]! > 0;
    } else {
      st = groupSets(i, o.correct, same);
      nPos = st.pos.length;
      hasNeg = s.level === 'group' ? st.hasNeg : B - 1 > nPos;
    }
    const nonTrivial = nPos >= 1 && hasNeg;
    const labelOk = s.maskedLabel === -1 || (s.maskedLabel === 0 ? yi : !yi);
    const isValid = labelOk && (!s.skipTrivial || nonTrivial);
    if (isValid) {
      valid++;
      signalGroups.add(o.group[i]!);
      if (st) {
        for (const p of st.pos) cosSum += dot(i, p);
      } else {
        const S = labelSum[yi ? 1 : 0]!;
        for (let d = 0; d < D; d++) cosSum += o.embeddings[i * D + d]! * (S[d]! - o.embeddings[i * D + d]!);
      }
      cosN += nPos;
      if (yi) correctLosses.push(o.perSample[i]!);
    }
    if (!yi && nonTrivial && s.level === 'group') incorrect.push(i);
  }
  const incorrectLosses = s.level === 'group' && incorrect.length ? incorrectAnchorLosses(o, s, eps, incorrect, members) : [];
  const stats = (a: number[]) => (a.length ? { mean: a.reduce((x, y) => x + y, 0) / a.length, min: minOf(a), max: maxOf(a) } : null);
  const c = stats(correctLosses);
  const w = stats(incorrectLosses);
  return {
    validAnchors: valid,
    signalGroupFraction: members.size ? signalGroups.size / members.size : 0,
    correctLossMean: c?.mean ?? null,
    correctLossMin: c?.min ?? null,
    correctLossMax: c?.max ?? null,
    incorrectLossMean: w?.mean ?? null,
    positiveCosineMean: cosN ? cosSum / cosN : null,
  };
}

/**
 * The losses of the given incorrect anchors (each with a positive and a negative in its group), from one forward-only
 * kernel call, incorrect anchors only, trivial anchors skipped. InfoNCE's random positive is replaced by its
 * expectation over P(i), which is the supcon_out form, so the figure does not depend on a draw.
 *
 * At level `group` an anchor's terms only involve its own group, and a group of n unit vectors spans at most n
 * dimensions. So each group's embeddings are written in an orthonormal basis of their span (Gram-Schmidt in float64,
 * O(n²·D) per group): same lengths and same dot products inside the group, K = largest group coordinates instead of
 * D. The kernel then runs on those coordinates with an identity head (normalize(I c) = c), which costs O(B·K²)
 * instead of the O(B·D²) of an identity head over the embeddings themselves. Dot products across groups change,
 * but they never enter a group-level loss (and stay at most 1, below the self term that sets the row maximum).
 */
function incorrectAnchorLosses(
  o: { embeddings: Float32Array; outSize: number; correct: ArrayLike<number>; group: ArrayLike<number> },
  s: ContrastiveSetup,
  eps: number,
  anchors: number[],
  members: Map<number, number[]>,
): number[] {
  const D = o.outSize;
  const B = o.correct.length;
  let K = 1;
  for (const m of members.values()) K = Math.max(K, m.length);
  const coords = new Float32Array(B * K);
  const basis: Float64Array[] = [];
  for (const m of members.values()) {
    basis.length = 0;
    for (const i of m) {
      const z = o.embeddings.subarray(i * D, (i + 1) * D);
      const r = Float64Array.from(z);
      basis.forEach((q, k) => {
        let c = 0;
        for (let d = 0; d < D; d++) c += q[d]! * z[d]!;
        coords[i * K + k] = c;
        for (let d = 0; d < D; d++) r[d]! -= c * q[d]!;
      });
      let n = 0;
      for (let d = 0; d < D; d++) n += r[d]! * r[d]!;
      n = Math.sqrt(n);
      if (n > 1e-9) {  // a new direction (a duplicate embedding adds none)
        for (let d = 0; d < D; d++) r[d]! /= n;
        coords[i * K + basis.length] = n;
        basis.push(r);
      }
    }
  }
  const eye = new Float32Array(K * K);
  for (let k = 0; k < K; k++) eye[k * K + k] = 1;
  const r = contrastiveLoss({
    pooled: coords, batch: B, hiddenSize: K, outSize: K, head: 'linear', weight: eye,
    correct: Uint8Array.from(o.correct, (y) => (y > 0 ? 1 : 0)), group: Int32Array.from(o.group),
    lossType: s.lossType === 'infonce' ? 'supcon_out' : s.lossType, level: 'group', distance: s.distance, temperature: s.temperature,
    maskedLabel: 1, skipTrivial: true, eps, grad: false, backend: s.backend,
  });
  return anchors.map((i) => r.perSample[i]!);
}
