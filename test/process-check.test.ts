// The built-in task's process check: is a right final answer reached through the right steps? Checked on generated
// problems: the worked solution itself passes; every kind of wrong process (a wrong intermediate result, a missing,
// extra or reordered step, wrong operands) fails even where the final answer stays right; commuted + and × pass.
import { generateTaskSplits, solutionText, formatEquation } from '../src/task/generator.js';
import { processOutcome, solutionEquations, statedEquations, stepsCorrect } from '../src/task/process.js';
import type { Equation } from '../src/task/templates.js';
import { Rng } from '../src/util/rng.js';
import { wilsonInterval } from '../src/report/stats.js';

const problems = generateTaskSplits({ seed: 11, train: 300, test: 40 });
const all = [...problems.train, ...problems.p1, ...problems.p2];
const text = (eqs: readonly Equation[], answer: number) => [...eqs.map(formatEquation), `The answer is \\boxed{${answer}}.`].join('\n');

describe('process check', () => {
  test('the worked solution of every problem passes, and its equations are read back exactly', () => {
    for (const p of all) {
      expect(solutionEquations(solutionText(p))).toEqual(p.equations);
      expect(stepsCorrect(solutionText(p), p.equations)).toBe(true);
      expect(processOutcome(true, solutionText(p), p.equations)).toBe(1);
      expect(processOutcome(false, solutionText(p), p.equations)).toBeNull();
    }
  });

  test('a wrong intermediate result fails even when the final answer is right', () => {
    const rng = new Rng(5);
    let n = 0;
    for (const p of all.filter((q) => q.equations.length >= 2)) {
      const k = rng.int(p.equations.length - 1); // not the last step: the answer stays right
      const eqs = p.equations.map((e, i) => (i === k ? { ...e, result: e.result + 1 + rng.int(5) } : e));
      expect(stepsCorrect(text(eqs, p.answer), p.equations)).toBe(false);
      expect(processOutcome(true, text(eqs, p.answer), p.equations)).toBe(0);
      n++;
    }
    expect(n).toBeGreaterThan(100);
  });

  test('a missing, an extra and a reordered step fail; commuted + and × pass; a non-commuting swap fails', () => {
    let commuted = 0, swapped = 0;
    for (const p of all.filter((q) => q.equations.length >= 2)) {
      const e = p.equations;
      expect(stepsCorrect(text(e.slice(1), p.answer), e)).toBe(false);
      expect(stepsCorrect(text([...e, { a: 1, op: '+', b: 1, result: 2 }], p.answer), e)).toBe(false);
      const reordered = [e[1]!, e[0]!, ...e.slice(2)];
      if (formatEquation(e[0]!) !== formatEquation(e[1]!)) expect(stepsCorrect(text(reordered, p.answer), e)).toBe(false);
      const k = e.findIndex((q) => q.a !== q.b);
      if (k < 0) continue;
      const flipped = e.map((q, i) => (i === k ? { ...q, a: q.b, b: q.a } : q));
      const commutes = e[k]!.op === '+' || e[k]!.op === '*';
      expect(stepsCorrect(text(flipped, p.answer), e)).toBe(commutes);
      if (commutes) commuted++;
      else swapped++;
    }
    expect(commuted).toBeGreaterThan(20);
    expect(swapped).toBeGreaterThan(20);
  });

  test('equations are read in the forms a small model writes them', () => {
    expect(statedEquations('First 3 x 4 = 12, then 12 ÷ 2 = 6\n6 - 10 = -4 and 2*3=6')).toEqual([
      { a: 3, op: '*', b: 4, result: 12 },
      { a: 12, op: '/', b: 2, result: 6 },
      { a: 6, op: '-', b: 10, result: -4 },
      { a: 2, op: '*', b: 3, result: 6 },
    ]);
    expect(statedEquations('The answer is \\boxed{12}.')).toEqual([]);
    // no steps at all is not the right process
    expect(stepsCorrect('The answer is \\boxed{12}.', [{ a: 3, op: '*', b: 4, result: 12 }])).toBe(false);
  });
});

describe('Wilson interval', () => {
  test('table values', () => {
    const a = wilsonInterval(0, 10);
    expect(a.lo).toBe(0);
    expect(a.hi).toBeCloseTo(0.27753, 5);
    const b = wilsonInterval(5, 10);
    expect(b.lo).toBeCloseTo(0.23659, 5);
    expect(b.hi).toBeCloseTo(0.76341, 5);
    expect(wilsonInterval(10, 10).hi).toBe(1);
    expect(Number.isNaN(wilsonInterval(0, 0).share)).toBe(true);
    expect(() => wilsonInterval(3, 2)).toThrow(/0 ≤ k ≤ n/);
  });

  test('the bounds solve |p̂ − p| = z·sqrt(p(1 − p)/n) (an independent root-finding reference)', () => {
    const rng = new Rng(9);
    const z = 1.959963984540054;
    for (let t = 0; t < 200; t++) {
      const n = 1 + rng.int(500);
      const k = rng.int(n + 1);
      const w = wilsonInterval(k, n);
      const ph = k / n;
      // bisection on f(p) = (ph − p)² − z² p(1 − p)/n, which is ≤ 0 exactly inside the interval
      const f = (p: number) => (ph - p) ** 2 - (z * z * p * (1 - p)) / n;
      const root = (lo: number, hi: number) => {
        for (let i = 0; i < 200; i++) {
          const mid = (lo + hi) / 2;
          if ((f(lo) > 0) === (f(mid) > 0)) lo = mid;
          else hi = mid;
        }
        return (lo + hi) / 2;
      };
      expect(w.lo).toBeCloseTo(k === 0 ? 0 : root(0, ph), 9);
      expect(w.hi).toBeCloseTo(k === n ? 1 : root(ph, 1), 9);
    }
  });
});
