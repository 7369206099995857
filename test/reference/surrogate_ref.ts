// Float64 reference of the surrogate loss, written literally after verl's compute_policy_loss (vanilla / gspo /
// geo_mean), kl_penalty('low_var_kl') and agg_loss, independent of the kernels' structure. The gradient is derived
// op by op the way autograd would (torch.maximum/minimum ties split the gradient, and both halves carry the same
// derivative inside the clip range, so a tie counts as the unclipped branch).
//
// `live` (sequence mode) is the logp that carries the gradient in s_it = sg(s_i) * exp(live_t - sg(logp_t)) and in
// the KL term: finite differences perturb `live` to check d loss / d logp as the stop-gradient construction defines
// it. Other modes have no stop-gradient: perturb logp itself.

export interface SurrogateRefInput {
  logp: ArrayLike<number>;
  oldLogp: ArrayLike<number>;
  refLogp?: ArrayLike<number>;
  advantages: ArrayLike<number>;
  mask: ArrayLike<number>;
  batch: number;
  length: number;
  mode: 'token' | 'sequence' | 'geo_mean';
  clipLow: number;
  clipHigh: number;
  dualClip?: number;
  agg: 'token-mean' | 'seq-mean-token-mean' | 'seq-mean-token-sum';
  klCoef?: number;
}

export interface SurrogateRefOutput {
  loss: number;
  pgLoss: number;
  klLoss: number;
  grad: Float64Array;
  clipFracHigh: number;
  clipFracLow: number;
  dualClipFrac: number;
  approxKl: number;
  tokens: number;
  sequences: number;
}

const clamp = (x: number, lo: number, hi: number) => Math.min(Math.max(x, lo), hi);

export function surrogateRef(o: SurrogateRefInput, live?: ArrayLike<number>): SurrogateRefOutput {
  const { batch: B, length: T } = o;
  const M = (i: number, t: number) => o.mask[i * T + t] !== 0;
  const lp = (i: number, t: number) => o.logp[i * T + t]!;
  const old = (i: number, t: number) => o.oldLogp[i * T + t]!;
  const grad = new Float64Array(B * T);

  // lengths and the aggregation: agg_loss over a [B, T] loss matrix, returning the loss and d loss / d l_it
  const n: number[] = [];
  let N = 0;
  let Bv = 0;
  for (let i = 0; i < B; i++) {
    let c = 0;
    for (let t = 0; t < T; t++) if (M(i, t)) c++;
    n.push(c);
    N += c;
    if (c > 0) Bv++;
  }
  const weight = (i: number): number => {
    if (n[i] === 0) return 0;
    if (o.agg === 'token-mean') return 1 / N;
    if (o.agg === 'seq-mean-token-mean') return 1 / (n[i]! * Bv);
    return 1 / Bv;
  };

  let pgLoss = 0;
  let high = 0;
  let low = 0;
  let dual = 0;
  let negDelta = 0;
  for (let i = 0; i < B; i++) for (let t = 0; t < T; t++) if (M(i, t)) negDelta += -(lp(i, t) - old(i, t));

  if (o.mode === 'token' || o.mode === 'sequence') {
    for (let i = 0; i < B; i++) {
      if (n[i] === 0) continue;
      const A = o.advantages[i]!;
      let seqLog = 0;
      if (o.mode === 'sequence') {
        for (let t = 0; t < T; t++) if (M(i, t)) seqLog += lp(i, t) - old(i, t);
        seqLog /= Math.max(n[i]!, 1);
      }
      for (let t = 0; t < T; t++) {
        if (!M(i, t)) continue;
        let ratio: number;
        let logRatioLive: boolean; // false where a clamp on the log-ratio cuts the gradient
        if (o.mode === 'token') {
          const d = lp(i, t) - old(i, t);
          ratio = Math.exp(clamp(d, -20, 20));
          logRatioLive = d >= -20 && d <= 20;
        } else {
          const x = (live ? live[i * T + t]! : lp(i, t)) - lp(i, t) + seqLog;
          ratio = Math.exp(Math.min(x, 10));
          logRatioLive = x <= 10;
        }
        const pg1 = -A * ratio;
        const pg2 = -A * clamp(ratio, 1 - o.clipLow, 1 + o.clipHigh);
        const c1 = Math.max(pg1, pg2);
        let l = c1;
        let dualActive = false;
        if (o.mode === 'token' && o.dualClip !== undefined && A < 0) {
          const pg3 = -A * o.dualClip;
          l = Math.min(pg3, c1);
          dualActive = c1 > pg3;
        }
        const clipActive = pg2 > pg1;
        if (clipActive && A > 0) high++;
        if (clipActive && A < 0) low++;
        if (dualActive) dual++;
        const w = weight(i);
        pgLoss += w * l;
        // d l / d logp: through min (dual), max (clip) and the ratio's exp
        const dl = dualActive || clipActive || !logRatioLive ? 0 : -A * ratio;
        grad[i * T + t] += w * dl;
      }
    }
  } else {
    for (let i = 0; i < B; i++) {
      if (n[i] === 0) continue;
      const A = o.advantages[i]!;
      const sgn = Math.sign(A);
      let s = 0;
      const pass: boolean[] = [];
      for (let t = 0; t < T; t++) {
        const d = lp(i, t) - old(i, t);
        const dc = clamp(d, -o.clipLow, o.clipHigh);
        const dmin = Math.min(sgn * d, sgn * dc);
        pass.push(sgn !== 0 && sgn * d <= sgn * dc);
        if (!M(i, t)) continue;
        s += sgn * dmin;
        if (A > 0 && d > o.clipHigh) high++;
        if (A < 0 && d < -o.clipLow) low++;
      }
      const R = Math.exp(s / n[i]!);
      pgLoss += (-A * R) / Bv;
      for (let t = 0; t < T; t++) if (M(i, t) && pass[t]) grad[i * T + t] += (-A * R) / Bv / n[i]!;
    }
  }

  let klLoss = 0;
  const klCoef = o.klCoef ?? 0;
  if (o.refLogp) {
    for (let i = 0; i < B; i++) {
      for (let t = 0; t < T; t++) {
        if (!M(i, t)) continue;
        const x = o.refLogp[i * T + t]! - (live ? live[i * T + t]! : lp(i, t));
        const xc = clamp(x, -20, 20);
        const k = Math.exp(xc) - xc - 1;
        klLoss += weight(i) * clamp(k, -10, 10);
        const inRange = x >= -20 && x <= 20 && k >= -10 && k <= 10;
        if (inRange) grad[i * T + t] += klCoef * weight(i) * (1 - Math.exp(xc));
      }
    }
  }
  return {
    loss: pgLoss + (o.refLogp ? klCoef * klLoss : 0),
    pgLoss,
    klLoss: o.refLogp ? klLoss : 0,
    grad,
    clipFracHigh: N ? high / N : 0,
    clipFracLow: N ? low / N : 0,
    dualClipFrac: N ? dual / N : 0,
    approxKl: N ? negDelta / N : 0,
    tokens: N,
    sequences: Bv,
  };
}
