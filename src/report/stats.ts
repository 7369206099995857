// Statistics for reports: Pass@1 with its standard error, and paired CLIPO - baseline differences with a
// Student-t confidence interval (paired seeds, or paired problems within one seed).
import { mean, stddev } from '../util/stats.js';

export interface MeanSE {
  mean: number;
  /** standard error of the mean: s / sqrt(n), s with Bessel's correction; NaN for n < 2 */
  se: number;
  n: number;
}

export function meanWithSE(values: readonly number[]): MeanSE {
  const n = values.length;
  if (n === 0) return { mean: NaN, se: NaN, n: 0 };
  return { mean: mean(values), se: n < 2 ? NaN : stddev(values) / Math.sqrt(n), n };
}

// ---- Student's t distribution -------------------------------------------------------------------------------

/** log Gamma(x) for x > 0 (Lanczos, g = 7, 9 terms; ~1e-15 relative). */
export function logGamma(x: number): number {
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  if (x < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * x))) - logGamma(1 - x);
  x -= 1;
  let a = c[0]!;
  const t = x + 7.5;
  for (let i = 1; i < 9; i++) a += c[i]! / (x + i);
  return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(a);
}

/** Continued fraction for the incomplete beta function (modified Lentz). */
function betaContinuedFraction(a: number, b: number, x: number): number {
  const tiny = 1e-300;
  let c = 1;
  let d = 1 - ((a + b) * x) / (a + 1);
  if (Math.abs(d) < tiny) d = tiny;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= 500; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((a + m2 - 1) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    aa = (-(a + m) * (a + b + m) * x) / ((a + m2) * (a + m2 + 1));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-15) break;
  }
  return h;
}

/** Regularized incomplete beta I_x(a, b). */
export function incompleteBeta(x: number, a: number, b: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const lnFront = logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) + b * Math.log(1 - x);
  // the continued fraction converges fast for x < (a+1)/(a+b+2); use the symmetry I_x(a,b) = 1 - I_{1-x}(b,a) otherwise
  if (x < (a + 1) / (a + b + 2)) return (Math.exp(lnFront) * betaContinuedFraction(a, b, x)) / a;
  return 1 - (Math.exp(lnFront) * betaContinuedFraction(b, a, 1 - x)) / b;
}

/** CDF of Student's t with `df` degrees of freedom: P(T <= t) = 1 - I_{df/(df+t^2)}(df/2, 1/2) / 2 for t >= 0. */
export function studentTCdf(t: number, df: number): number {
  if (!(df > 0)) throw new Error(`studentTCdf: degrees of freedom must be positive, got ${df}`);
  const tail = 0.5 * incompleteBeta(df / (df + t * t), df / 2, 0.5);
  return t >= 0 ? 1 - tail : tail;
}

/** Quantile of Student's t: the t with P(T <= t) = p (bisection on the CDF to ~1e-12). */
export function studentTQuantile(p: number, df: number): number {
  if (!(p > 0 && p < 1)) throw new Error(`studentTQuantile: p must lie in (0, 1), got ${p}`);
  if (p === 0.5) return 0;
  if (p < 0.5) return -studentTQuantile(1 - p, df);
  let lo = 0;
  let hi = 1;
  while (studentTCdf(hi, df) < p) hi *= 2;
  for (let i = 0; i < 200 && hi - lo > 1e-12 * Math.max(1, hi); i++) {
    const mid = 0.5 * (lo + hi);
    if (studentTCdf(mid, df) < p) lo = mid;
    else hi = mid;
  }
  return 0.5 * (lo + hi);
}

// ---- paired differences -------------------------------------------------------------------------------------

export interface PairedDifference {
  /** mean of treatment - baseline over the pairs */
  mean: number;
  se: number;
  /** confidence interval of the mean difference (NaN bounds when n < 2) */
  lo: number;
  hi: number;
  n: number;
  level: number;
  /** t statistic of the mean difference against 0 and its two-sided p-value (NaN when n < 2 or se = 0) */
  t: number;
  p: number;
}

/** Mean of treatment[i] - baseline[i] with a two-sided `level` Student-t interval: mean ± t_{(1+level)/2, n-1} · s/√n. */
export function pairedDifference(treatment: readonly number[], baseline: readonly number[], level = 0.95): PairedDifference {
  if (treatment.length !== baseline.length) {
    throw new Error(`pairedDifference: ${treatment.length} treatment values but ${baseline.length} baseline values`);
  }
  if (!(level > 0 && level < 1)) throw new Error(`pairedDifference: level must lie in (0, 1), got ${level}`);
  const d = treatment.map((v, i) => v - baseline[i]!);
  const { mean: m, se, n } = meanWithSE(d);
  if (n < 2) return { mean: m, se: NaN, lo: NaN, hi: NaN, n, level, t: NaN, p: NaN };
  const q = studentTQuantile(0.5 + level / 2, n - 1);
  const t = se > 0 ? m / se : NaN;
  const p = se > 0 ? 2 * (1 - studentTCdf(Math.abs(t), n - 1)) : NaN;
  return { mean: m, se, lo: m - q * se, hi: m + q * se, n, level, t, p };
}

// ---- proportions ----------------------------------------------------------------------------------------------

export interface Proportion {
  /** successes / trials; NaN when there are no trials */
  share: number;
  k: number;
  n: number;
  /** two-sided 95% Wilson score interval (NaN bounds when n = 0) */
  lo: number;
  hi: number;
}

/** k successes in n trials with its 95% Wilson score interval, which stays inside [0, 1] and behaves at k = 0 or n. */
export function wilsonInterval(k: number, n: number): Proportion {
  if (!Number.isInteger(k) || !Number.isInteger(n) || k < 0 || n < 0 || k > n) throw new Error(`wilsonInterval: expected integers 0 ≤ k ≤ n, got k = ${k}, n = ${n}`);
  if (n === 0) return { share: NaN, k, n, lo: NaN, hi: NaN };
  const z = 1.959963984540054; // the standard normal's 97.5% quantile
  const p = k / n;
  const z2n = (z * z) / n;
  const centre = (p + z2n / 2) / (1 + z2n);
  const half = (z * Math.sqrt((p * (1 - p)) / n + z2n / (4 * n))) / (1 + z2n);
  // at k = 0 and k = n the bound is exactly 0 or 1 (rounding would leave it a hair inside)
  return { share: p, k, n, lo: k === 0 ? 0 : Math.max(0, centre - half), hi: k === n ? 1 : Math.min(1, centre + half) };
}
