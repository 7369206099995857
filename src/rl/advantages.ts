// Group advantages (docs/algorithm.md §3), computed from each response's total reward r_i = r_v,i + r_c,i.
//   GRPO:     A_i = (r_i − mean_g(r)) / (std_g(r) + eps), std with Bessel's correction (n − 1)
//   Dr. GRPO: A_i =  r_i − mean_g(r)
// A group of one has no spread: it gets mean 0 and std 1 (as verl does), so A_i = r_i / (1 + eps) under GRPO.
// The reward sits on the last response token; with outcome rewards and no discount every token of the response
// gets the same A_i, which is how the surrogate kernel takes it (one advantage per sequence).

export type AdvantageEstimator = 'grpo' | 'drgrpo';

export interface GroupStats {
  mean: number;
  std: number;
  size: number;
}

/** Per-group mean and Bessel-corrected std of `rewards`, keyed by group id. */
export function groupStats(rewards: ArrayLike<number>, group: ArrayLike<number>): Map<number, GroupStats> {
  if (rewards.length !== group.length) throw new Error(`groupStats: rewards has ${rewards.length} entries but group has ${group.length}`);
  const acc = new Map<number, number[]>();
  for (let i = 0; i < rewards.length; i++) {
    const g = group[i]!;
    let list = acc.get(g);
    if (!list) acc.set(g, (list = []));
    list.push(rewards[i]!);
  }
  const out = new Map<number, GroupStats>();
  for (const [g, list] of acc) {
    if (list.length === 1) {
      out.set(g, { mean: 0, std: 1, size: 1 });
      continue;
    }
    let m = 0;
    for (const r of list) m += r;
    m /= list.length;
    let s = 0;
    for (const r of list) s += (r - m) * (r - m);
    out.set(g, { mean: m, std: Math.sqrt(s / (list.length - 1)), size: list.length });
  }
  return out;
}

export function computeAdvantages(
  rewards: ArrayLike<number>,
  group: ArrayLike<number>,
  opts: { estimator: AdvantageEstimator; eps?: number },
): Float32Array {
  const eps = opts.eps ?? 1e-6;
  const stats = groupStats(rewards, group);
  const adv = new Float32Array(rewards.length);
  for (let i = 0; i < rewards.length; i++) {
    const r = rewards[i]!;
    if (!Number.isFinite(r)) throw new Error(`computeAdvantages: reward ${i} is ${r}`);
    const s = stats.get(group[i]!)!;
    adv[i] = opts.estimator === 'drgrpo' ? r - s.mean : (r - s.mean) / (s.std + eps);
  }
  return adv;
}

/** DAPO dynamic sampling: a group is kept when its rewards are not all equal (it then carries a gradient signal). */
export function groupHasSpread(rewards: ArrayLike<number>, start: number, size: number): boolean {
  for (let j = start + 1; j < start + size; j++) if (rewards[j] !== rewards[start]) return true;
  return false;
}
