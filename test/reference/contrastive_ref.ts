// Float64 reference of the contrastive loss, written straight from docs/algorithm.md §2 (no fusion, no tricks):
// the tests compare the native kernels with it and check their gradients by finite differences of refContrastive.
import type { ContrastiveDistance, ContrastiveLevel, ContrastiveLossType } from '../../src/kernels/variants.js';

export interface RefInput {
  B: number;
  H: number;
  D: number;
  /** pooled h [B*H], or tokens [B*L*H] (already decoded to numbers) with mask [B*L] */
  pooled?: ArrayLike<number>;
  tokens?: ArrayLike<number>;
  mask?: ArrayLike<number>;
  L?: number;
  head: 'linear' | 'mlp';
  /** linear: W [D*H]; mlp: W2 [D*H] */
  weight: ArrayLike<number>;
  /** mlp: W1 [H*H] */
  weight1?: ArrayLike<number>;
  correct: ArrayLike<number>;
  group: ArrayLike<number>;
  lossType: ContrastiveLossType;
  level: ContrastiveLevel;
  distance: ContrastiveDistance;
  temperature: number;
  maskedLabel: -1 | 0 | 1;
  skipTrivial: boolean;
  eps: number;
  positives?: ArrayLike<number>;
  seed: number;
}

export interface RefOutput {
  perSample: number[];
  loss: number;
  embeddings: number[];
  positives: number[];
  validAnchors: number;
}

function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/** The counter-based positive draw shared with the native kernels (contrastive_loss.h positiveHash). */
export function refPositiveHash(seed: number, anchor: number): number {
  let x = (seed ^ Math.imul(anchor + 1, 0x9e3779b9)) >>> 0;
  x = mix32(x);
  x = (x + Math.imul(seed, 0x85ebca6b)) >>> 0;
  return mix32(x);
}

/** Masked mean over the response tokens. */
export function refPool(B: number, L: number, H: number, tokens: ArrayLike<number>, mask: ArrayLike<number>): number[] {
  const h = new Array<number>(B * H).fill(0);
  for (let i = 0; i < B; i++) {
    let n = 0;
    for (let t = 0; t < L; t++) {
      if (!mask[i * L + t]) continue;
      n++;
      for (let k = 0; k < H; k++) h[i * H + k]! += tokens[(i * L + t) * H + k]!;
    }
    for (let k = 0; k < H; k++) h[i * H + k]! /= n;
  }
  return h;
}

export function refContrastive(x: RefInput): RefOutput {
  const { B, H, D, eps } = x;
  const pooled = x.pooled ? Array.from(x.pooled) : refPool(B, x.L!, H, x.tokens!, x.mask!);

  // head: u = W h, or W2 relu(W1 h); z = u / max(|u|, 1e-12)
  const Z: number[] = [];
  for (let i = 0; i < B; i++) {
    let hin = pooled.slice(i * H, (i + 1) * H);
    if (x.head === 'mlp') {
      const a: number[] = [];
      for (let r = 0; r < H; r++) {
        let s = 0;
        for (let k = 0; k < H; k++) s += x.weight1![r * H + k]! * hin[k]!;
        a.push(Math.max(s, 0));
      }
      hin = a;
    }
    const u: number[] = [];
    for (let d = 0; d < D; d++) {
      let s = 0;
      for (let k = 0; k < H; k++) s += x.weight[d * H + k]! * hin[k]!;
      u.push(s);
    }
    const n = Math.max(Math.sqrt(u.reduce((t, v) => t + v * v, 0)), 1e-12);
    for (const v of u) Z.push(v / n);
  }

  const y = (i: number) => (x.correct[i]! ? 1 : 0);
  const g = (i: number) => x.group[i]!;
  const inA = (i: number, j: number) => j !== i && (x.level !== 'group' || g(i) === g(j));
  const inP = (i: number, j: number) =>
    inA(i, j) && y(i) === y(j) && (x.level === 'batch' || g(i) === g(j));

  const perSample = new Array<number>(B).fill(0);
  const positives = new Array<number>(B).fill(-1);
  let total = 0;
  let valid = 0;
  for (let i = 0; i < B; i++) {
    // logits over all j (self included), shifted by the row max
    const l: number[] = [];
    for (let j = 0; j < B; j++) {
      let dot = 0;
      for (let d = 0; d < D; d++) dot += Z[i * D + d]! * Z[j * D + d]!;
      const s = x.distance === 'cosine' ? dot : 1 - Math.sqrt(Math.max(2 - 2 * dot, eps));
      l.push(s / x.temperature);
    }
    const m = Math.max(...l);
    const ls = l.map((v) => v - m);
    const A = [...Array(B).keys()].filter((j) => inA(i, j));
    const P = A.filter((j) => inP(i, j));
    const labelOk = x.maskedLabel === -1 || (x.maskedLabel === 0 ? y(i) === 1 : y(i) === 0);
    let ok = labelOk && (!x.skipTrivial || (P.length >= 1 && A.length - P.length >= 1));
    let pos = -1;
    if (ok && x.lossType === 'infonce') {
      if (x.positives) pos = x.positives[i]!;
      else if (P.length > 0) pos = P[refPositiveHash(x.seed, i) % P.length]!;
      // without a positive the anchor stays valid unless trivial anchors are skipped (then only a given -1 gets here)
      ok = pos >= 0 || !x.skipTrivial;
    }
    if (!ok) continue;
    const SA = A.reduce((t, j) => t + Math.exp(ls[j]!), 0);
    const SP = P.reduce((t, j) => t + Math.exp(ls[j]!), 0);
    let Li: number;
    switch (x.lossType) {
      case 'infonce':
        // the term of the drawn positive; with none drawn the sum is empty
        Li = pos >= 0 ? -(ls[pos]! - Math.log(SA + eps)) : 0;
        positives[i] = pos;
        break;
      case 'supcon_in':
        Li = -(Math.log(SP + eps) - Math.log(SA + eps) - Math.log(P.length + eps));
        break;
      case 'supcon_out':
        Li = -(1 / (P.length + eps)) * P.reduce((t, p) => t + (ls[p]! - Math.log(SA + eps)), 0);
        break;
      case 'soft_nn':
        Li = -(Math.log(SP + eps) - Math.log(SA + eps));
        break;
    }
    perSample[i] = Li;
    total += Li;
    valid++;
  }
  return { perSample, loss: valid ? total / (valid + eps) : 0, embeddings: Z, positives, validAnchors: valid };
}
