// Report statistics against hand-computed values: Student-t quantiles (table values), the incomplete beta function
// in closed-form cases, standard errors and a paired-difference interval worked by hand.
import { incompleteBeta, logGamma, meanWithSE, pairedDifference, studentTCdf, studentTQuantile } from '../src/report/stats.js';

describe('report statistics', () => {
  test('log Gamma matches factorials and Gamma(1/2) = sqrt(pi)', () => {
    expect(logGamma(1)).toBeCloseTo(0, 12);
    expect(logGamma(5)).toBeCloseTo(Math.log(24), 12);
    expect(logGamma(0.5)).toBeCloseTo(0.5 * Math.log(Math.PI), 12);
    expect(logGamma(10.5)).toBeCloseTo(13.940625219403763, 10);
  });

  test('incomplete beta in closed-form cases: I_x(1,1) = x, I_x(a,1) = x^a, I_x(1,b) = 1-(1-x)^b', () => {
    for (const x of [0.01, 0.2, 0.5, 0.77, 0.99]) {
      expect(incompleteBeta(x, 1, 1)).toBeCloseTo(x, 12);
      expect(incompleteBeta(x, 3.5, 1)).toBeCloseTo(x ** 3.5, 12);
      expect(incompleteBeta(x, 1, 2.5)).toBeCloseTo(1 - (1 - x) ** 2.5, 12);
    }
    expect(incompleteBeta(0, 2, 3)).toBe(0);
    expect(incompleteBeta(1, 2, 3)).toBe(1);
  });

  test('t CDF: symmetric, and the closed form for 2 degrees of freedom', () => {
    for (const t of [-3, -0.4, 0, 1.1, 7]) {
      expect(studentTCdf(t, 2)).toBeCloseTo(0.5 + t / (2 * Math.sqrt(2 + t * t)), 12);
      expect(studentTCdf(t, 5) + studentTCdf(-t, 5)).toBeCloseTo(1, 12);
    }
    // 1 degree of freedom is Cauchy: F(t) = 1/2 + atan(t)/pi
    expect(studentTCdf(2.5, 1)).toBeCloseTo(0.5 + Math.atan(2.5) / Math.PI, 12);
  });

  test('t quantiles equal the table values', () => {
    const table: [number, number, number][] = [
      [0.975, 1, 12.706204736],
      [0.975, 2, 4.30265273],
      [0.975, 4, 2.776445105],
      [0.975, 10, 2.228138852],
      [0.975, 30, 2.042272456],
      [0.95, 3, 2.353363435],
      [0.995, 5, 4.032142984],
    ];
    for (const [p, df, q] of table) expect(studentTQuantile(p, df)).toBeCloseTo(q, 7);
    expect(studentTQuantile(0.025, 4)).toBeCloseTo(-2.776445105, 7);
    expect(() => studentTQuantile(1, 3)).toThrow(/p must lie/);
  });

  test('mean and standard error', () => {
    const s = meanWithSE([1, 0, 1, 1]);
    expect(s.mean).toBe(0.75);
    expect(s.se).toBeCloseTo(0.25, 12); // s = 0.5, s / sqrt(4) = 0.25
    expect(meanWithSE([3]).se).toBeNaN();
    expect(meanWithSE([]).n).toBe(0);
  });

  test('paired difference: d = [2, 3, 2] gives 2.333 ± 4.3027 · 0.3333, t = 7, p = 0.0198', () => {
    const d = pairedDifference([3, 5, 4], [1, 2, 2]);
    expect(d.n).toBe(3);
    expect(d.mean).toBeCloseTo(7 / 3, 12);
    expect(d.se).toBeCloseTo(1 / 3, 12);
    expect(d.lo).toBeCloseTo(7 / 3 - 4.30265273 / 3, 7);
    expect(d.hi).toBeCloseTo(7 / 3 + 4.30265273 / 3, 7);
    expect(d.t).toBeCloseTo(7, 10);
    expect(d.p).toBeCloseTo(1 - 7 / Math.sqrt(51), 10); // 2 (1 - F(7)), F from the 2-df closed form
  });

  test('paired difference edge cases are explicit', () => {
    expect(Number.isNaN(pairedDifference([1], [0]).lo)).toBe(true);
    const same = pairedDifference([1, 2, 3], [0, 1, 2]);
    expect([same.lo, same.hi]).toEqual([1, 1]);
    expect(() => pairedDifference([1, 2], [1])).toThrow(/2 treatment values but 1 baseline/);
  });
});
