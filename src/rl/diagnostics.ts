// Contrastive diagnostics for metrics.jsonl (CLIPO-SPEC section 2 masks), computed in float64 from the head's
// embeddings and the kernel's per-anchor losses. Cost O(B·n·D) for groups of n: pairwise work stays inside groups
// (level `batch` uses per-label embedding sums), so it is negligible next to a step at the paper's batch sizes.
import { maxOf, minOf } from '../util/stats.js';

export interface ContrastiveSetup {
  level: 'group' | 'cross' | 'batch';
  distance: 'cosine' | 'l2';
  lossType: 'infonce' | 'supcon_in' | 'supcon_out' | 'soft_nn';
  temperature: number;
  maskedLabel: -1 | 0 | 1;
  skipTrivial: boolean;
  eps?: number;
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
  const sim = (i: number, j: number): number => (s.distance === 'cosine' ? dot(i, j) : 1 - Math.sqrt(Math.max(2 - 2 * dot(i, j), eps)));
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
  const incorrectLosses: number[] = [];
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
    // incorrect anchors: only at level `group`, where A(i) is the group (other levels would need the B×B matrix)
    if (!yi && nonTrivial && s.level === 'group') {
      if (isValid && s.lossType !== 'infonce') incorrectLosses.push(o.perSample[i]!);
      else incorrectLosses.push(anchorLoss(i, st!, sim, s, eps));
    }
  }
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

/** One anchor's loss in float64 (InfoNCE as its expectation over the positive draw, i.e. the supcon_out form). */
function anchorLoss(i: number, st: Sets, sim: (i: number, j: number) => number, s: ContrastiveSetup, eps: number): number {
  const tau = s.temperature;
  const m = sim(i, i) / tau; // the row maximum is the self term
  const l = (j: number) => sim(i, j) / tau - m;
  let SA = 0;
  for (const a of st.all) SA += Math.exp(l(a));
  let SP = 0;
  for (const p of st.pos) SP += Math.exp(l(p));
  const logSA = Math.log(SA + eps);
  switch (s.lossType) {
    case 'supcon_in':
      return -(Math.log(SP + eps) - logSA - Math.log(st.pos.length + eps));
    case 'soft_nn':
      return -(Math.log(SP + eps) - logSA);
    default: {
      let t = 0;
      for (const p of st.pos) t += l(p) - logSA;
      return -t / (st.pos.length + (s.lossType === 'supcon_out' ? eps : 0));
    }
  }
}
