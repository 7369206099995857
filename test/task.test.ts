// The built-in task generator: determinism, split properties, and answers correct by construction (each worked
// solution's arithmetic is re-checked from its text, independently of the generator's own bookkeeping).
import { Rng } from '../src/util/rng.js';
import {
  TASK_SPLITS,
  TRAIN_RANGES,
  type TaskProblem,
  drawProblem,
  evaluate,
  generateTaskSplits,
  perturbProblem,
  problemText,
  solutionText,
  storySentences,
} from '../src/task/generator.js';
import { HELDOUT_NAMES, TEMPLATES, TRAIN_NAMES } from '../src/task/templates.js';

const splits = generateTaskSplits({ seed: 7, train: 600, test: 150 });
const all = TASK_SPLITS.flatMap((s) => splits[s]);

/** Checks a solution from its text alone: each line `a op b = r` is true, each line starts from the previous
 *  result (after the opening), and the boxed answer is the last result. Returns the number of equations. */
function checkSolution(text: string, answer: number): number {
  const lines = text.split('\n');
  const last = lines.pop()!;
  expect(last).toBe(`The answer is \\boxed{${answer}}.`);
  let prev: bigint | undefined;
  for (const line of lines) {
    const m = /^(\d+) ([-+*/]) (\d+) = (\d+)$/.exec(line);
    expect(m).not.toBeNull();
    const [a, b, r] = [BigInt(m![1]!), BigInt(m![3]!), BigInt(m![4]!)];
    const op = m![2]!;
    if (op === '/') {
      expect(a % b).toBe(0n);
      expect(a / b).toBe(r);
    } else expect(op === '+' ? a + b : op === '-' ? a - b : a * b).toBe(r);
    if (prev !== undefined) expect(a).toBe(prev);
    prev = r;
  }
  expect(prev).toBe(BigInt(answer));
  return lines.length;
}

const numbersIn = (text: string) => new Set((text.match(/\d+/g) ?? []).map(Number));

describe('task generator', () => {
  test('same seed and sizes give the same problems; another seed gives others', () => {
    const again = generateTaskSplits({ seed: 7, train: 600, test: 150 });
    for (const s of TASK_SPLITS) expect(again[s].map(problemText)).toEqual(splits[s].map(problemText));
    const other = generateTaskSplits({ seed: 8, train: 600, test: 150 });
    const shared = other.train.map(problemText).filter((t) => new Set(splits.train.map(problemText)).has(t));
    expect(shared.length).toBeLessThan(30);
  });

  test('a split does not change when another split changes size', () => {
    const bigger = generateTaskSplits({ seed: 7, train: 600, test: 151 });
    expect(bigger.train.map(problemText)).toEqual(splits.train.map(problemText));
    expect(bigger.p1.slice(0, 150).map(problemText)).toEqual(splits.p1.map(problemText));
  });

  test('sizes, uniqueness within each split, and no evaluation problem repeats a train problem', () => {
    const train = new Set(splits.train.map(problemText));
    expect(splits.train.length).toBe(600);
    expect(train.size).toBe(600);
    for (const s of TASK_SPLITS.filter((x) => x !== 'train')) {
      const texts = splits[s].map(problemText);
      expect(texts.length).toBe(150);
      expect(new Set(texts).size).toBe(150);
      for (const t of texts) expect(train.has(t)).toBe(false);
    }
  });

  test('every worked solution is arithmetically right, chained, and ends in the ground truth', () => {
    for (const p of all) {
      expect(Number.isInteger(p.answer)).toBe(true);
      expect(p.answer).toBeGreaterThanOrEqual(1);
      expect(p.answer).toBeLessThanOrEqual(TRAIN_RANGES.maxValue);
      expect(checkSolution(solutionText(p), p.answer)).toBe(p.numOps);
    }
  });

  test('every operand of the solution is a number stated in the problem', () => {
    for (const p of all) {
      const nums = numbersIn(problemText(p));
      for (const e of p.equations) expect(nums.has(e.b)).toBe(true);
      expect(nums.has(p.equations[0]!.a)).toBe(true);
    }
  });

  test('train, test and symbolic use 2 to 4 operations; p1 and p2 add one and two', () => {
    for (const s of ['train', 'test', 'symbolic', 'noop'] as const) {
      for (const p of splits[s]) expect(p.numOps >= 2 && p.numOps <= 4).toBe(true);
    }
    const meanOps = (ps: TaskProblem[]) => ps.reduce((t, p) => t + p.numOps, 0) / ps.length;
    expect(meanOps(splits.p1)).toBeGreaterThan(meanOps(splits.test) + 0.7);
    expect(meanOps(splits.p2)).toBeGreaterThan(meanOps(splits.p1) + 0.7);
    for (const [s, k] of [['p1', 1], ['p2', 2]] as const) {
      for (const p of splits[s]) {
        const extra = p.steps.filter((x) => x.extra).length;
        expect(extra).toBe(k);
        // without the inserted sentences it is a valid base problem with k fewer operations, told in the same order
        const t = TEMPLATES.find((x) => x.id === p.template)!;
        const baseSteps = p.steps.filter((x) => !x.extra);
        const baseEqs = evaluate(t, p.opening, baseSteps, TRAIN_RANGES.maxValue);
        expect(baseEqs).toBeDefined();
        expect(baseEqs!.length).toBe(p.numOps - k);
        const base: TaskProblem = { ...p, steps: baseSteps, equations: baseEqs!, numOps: baseEqs!.length, answer: baseEqs!.at(-1)!.result };
        const sentences = storySentences(p);
        let j = 0;
        for (const sent of storySentences(base)) {
          while (j < sentences.length && sentences[j] !== sent) j++;
          expect(j).toBeLessThan(sentences.length);
          j++;
        }
        expect(storySentences(p).length).toBe(storySentences(base).length + k);
      }
    }
  });

  test('perturbation builds on a given problem and changes its chain', () => {
    const rng = new Rng(3);
    let changed = 0;
    for (let i = 0; i < 200; i++) {
      const base = drawProblem(rng, 'test');
      const p1 = perturbProblem(rng, base, 1, 'p1');
      if (!p1) continue;
      expect(p1.numOps).toBe(base.numOps + 1);
      expect(p1.opening).toEqual(base.opening);
      if (p1.answer !== base.answer) changed++;
    }
    expect(changed).toBeGreaterThan(150);
  });

  test('the no-op sentence is irrelevant: same solution and answer as the problem without it', () => {
    const trainAndTest = [...splits.train, ...splits.test].map(problemText).join(' ');
    for (const p of splits.noop) {
      expect(p.noop).toBeDefined();
      const without: TaskProblem = { ...p, noop: undefined };
      expect(storySentences(p).length).toBe(storySentences(without).length + 1);
      expect(problemText(p)).toContain(p.noop!.text);
      expect(problemText(p).replace(` ${p.noop!.text}`, '')).toBe(problemText(without));
      const t = TEMPLATES.find((x) => x.id === p.template)!;
      expect(evaluate(t, p.opening, p.steps, TRAIN_RANGES.maxValue)).toEqual(p.equations);
      expect(solutionText(p)).toBe(solutionText(without));
      // its wording never appears in training or in-distribution test problems
      const wording = new RegExp(p.noop!.text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/\d+/g, '\\d+'));
      expect(wording.test(problemText(p))).toBe(true);
      expect(wording.test(trainAndTest)).toBe(false);
    }
  });

  test('symbolic problems use held-out names and at least one number beyond the train ranges', () => {
    const trainNames = new Set<string>(TRAIN_NAMES);
    const heldout = new Set<string>(HELDOUT_NAMES);
    for (const p of splits.symbolic) {
      expect(heldout.has(p.cast.name) && heldout.has(p.cast.friend)).toBe(true);
      const words = problemText(p).match(/[A-Z][a-z]+/g) ?? [];
      for (const w of words) expect(trainNames.has(w)).toBe(false);
      // could train ranges have drawn it? openings: a plain count, a product factor * count, or count + delta
      const R = TRAIN_RANGES;
      const o = p.opening;
      const openingBeyond =
        o.eqs.length === 0 ? o.value > R.count[1]
        : o.eqs[0]!.op === '*' ? o.eqs[0]!.a > R.factor[1] || o.eqs[0]!.b > R.count[1]
        : o.eqs[0]!.a > R.count[1] || o.eqs[0]!.b > R.delta[1];
      const stepEqs = p.equations.slice(o.eqs.length, o.eqs.length + p.steps.length);
      const stepBeyond = stepEqs.some((e) => e.b > (e.op === '+' || e.op === '-' ? R.delta[1] : R.factor[1]));
      expect(openingBeyond || stepBeyond).toBe(true);
    }
    for (const p of [...splits.train, ...splits.test]) expect(heldout.has(p.cast.name)).toBe(false);
  });

  test('every template and operation occurs in train', () => {
    const templates = new Set(splits.train.map((p) => p.template));
    expect(templates.size).toBe(TEMPLATES.length);
    const ops = new Set(splits.train.flatMap((p) => p.equations.map((e) => e.op)));
    expect([...ops].sort()).toEqual(['*', '+', '-', '/']);
  });

  test('difficulty knobs: fewer operations and smaller values', () => {
    const easy = generateTaskSplits({ seed: 4, train: 200, test: 40, maxOps: 3, maxValue: 30 });
    for (const s of TASK_SPLITS) {
      for (const p of easy[s]) {
        for (const e of p.equations) expect(e.result).toBeLessThanOrEqual(30);
        const extra = s === 'p1' ? 1 : s === 'p2' ? 2 : 0;
        expect(p.numOps).toBeLessThanOrEqual(3 + extra);
        expect(checkSolution(solutionText(p), p.answer)).toBe(p.numOps);
      }
    }
    expect(() => generateTaskSplits({ seed: 0, train: 1, test: 1, maxOps: 7 })).toThrow(/maxOps/);
    expect(() => generateTaskSplits({ seed: 0, train: 1, test: 1, maxValue: 5 })).toThrow(/maxValue/);
  });

  test('bad sizes and seeds are refused with a message', () => {
    expect(() => generateTaskSplits({ seed: -1, train: 1, test: 1 })).toThrow(/seed/);
    expect(() => generateTaskSplits({ seed: 0, train: 1.5, test: 1 })).toThrow(/train size/);
  });
});
