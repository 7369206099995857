// Deterministic generator of the built-in task: multi-step arithmetic word problems (GSM-Symbolic style) with a
// worked solution ending in \boxed{answer}, and the six splits of the demo:
//   train     templates x train names x train number ranges, 2-4 operations
//   test      same distribution, fresh draws, no problem text shared with train
//   symbolic  held-out names, and numbers from wider ranges (at least one outside the train range)
//   p1 / p2   a fresh problem with one / two extra step sentences inserted (one more operation each)
//   noop      a fresh problem with one irrelevant sentence inserted (same solution, same answer)
// Same seed and sizes, same problems, on every platform (src/util/rng.ts).
import { Rng } from '../util/rng.js';
import {
  type Cast,
  COLORS,
  type Equation,
  HELDOUT_NAMES,
  NOOP_CLAUSES,
  type NoopClause,
  type NumberRanges,
  type Op,
  type Opening,
  type Slot,
  type Template,
  TEMPLATES,
  THINGS,
  TRAIN_NAMES,
  applyOp,
} from './templates.js';

export const TASK_SPLITS = ['train', 'test', 'symbolic', 'p1', 'p2', 'noop'] as const;
export type TaskSplit = (typeof TASK_SPLITS)[number];

/** Number ranges of train/test/p1/p2/noop. Small on purpose: the demo's model is tiny and trains on a CPU. */
export const TRAIN_RANGES: NumberRanges = { count: [2, 20], delta: [2, 15], factor: [2, 5], maxValue: 100 };
/** Ranges of the symbolic split; a symbolic problem uses at least one number beyond TRAIN_RANGES for its slot. */
export const SYMBOLIC_RANGES: NumberRanges = { count: [2, 30], delta: [2, 25], factor: [2, 6], maxValue: 100 };

/** A step sentence in a problem: template step `kind` with operand `b`. */
export interface PlannedStep {
  kind: number;
  b: number;
  /** True for the sentences a p1/p2 perturbation inserted. */
  extra?: boolean;
}

export interface TaskProblem {
  split: TaskSplit;
  template: string;
  cast: Cast;
  opening: Opening;
  steps: PlannedStep[];
  /** Irrelevant sentence (noop split): inserted after sentence `after` (0 = after the opening). */
  noop?: { text: string; after: number; n: number };
  /** The worked solution's equations, in order; the last result is the answer. */
  equations: Equation[];
  answer: number;
  /** Number of arithmetic operations (= equations.length). */
  numOps: number;
}

const STEP_WEIGHT: Record<Op, number> = { '+': 3, '-': 3, '*': 1, '/': 1 };

function templateById(id: string): Template {
  const t = TEMPLATES.find((x) => x.id === id);
  if (!t) throw new Error(`unknown task template '${id}'`);
  return t;
}

/** The operands `b` for which `x op b` stays a whole number in [1, maxValue] (a division must leave at least 2). */
export function operandChoices(op: Op, x: number, r: NumberRanges): number[] {
  const [lo, hi] = op === '+' || op === '-' ? r.delta : r.factor;
  const out: number[] = [];
  for (let b = lo; b <= hi; b++) {
    const y = applyOp(x, op, b);
    if (!Number.isInteger(y) || y < 1 || y > r.maxValue) continue;
    if (op === '/' && y < 2) continue;
    out.push(b);
  }
  return out;
}

/** Recomputes a problem's equations from its opening and steps; undefined if some value leaves [1, maxValue]. */
export function evaluate(t: Template, opening: Opening, steps: readonly PlannedStep[], maxValue: number): Equation[] | undefined {
  const eqs: Equation[] = [...opening.eqs];
  let x = opening.value;
  for (const s of steps) {
    const op = t.steps[s.kind]!.op;
    const y = applyOp(x, op, s.b);
    if (!Number.isInteger(y) || y < 1 || y > maxValue) return undefined;
    eqs.push({ a: x, op, b: s.b, result: y });
    x = y;
  }
  if (t.final) {
    const b = t.final.operand(opening);
    const y = applyOp(x, t.final.op, b);
    if (!Number.isInteger(y) || y < 1 || y > maxValue) return undefined;
    eqs.push({ a: x, op: t.final.op, b, result: y });
  }
  return eqs;
}

function pick<T>(rng: Rng, xs: readonly T[]): T {
  return xs[rng.int(xs.length)]!;
}

function drawCast(rng: Rng, t: Template, names: readonly string[]): Cast {
  const pool = rng.shuffle([...names]);
  return { name: pool[0]!, friend: pool[1]!, other: pool[2]!, obj: pick(rng, t.objects), thing: pick(rng, THINGS), color: pick(rng, COLORS) };
}

/** Draws one step that is valid at quantity x, weighting + and - above * and /; undefined if none is. */
function drawStep(rng: Rng, t: Template, x: number, r: NumberRanges): PlannedStep | undefined {
  const options = t.steps.map((k, i) => ({ i, w: STEP_WEIGHT[k.op], bs: operandChoices(k.op, x, r) })).filter((o) => o.bs.length > 0);
  if (options.length === 0) return undefined;
  let u = rng.next() * options.reduce((s, o) => s + o.w, 0);
  let chosen = options[options.length - 1]!;
  for (const o of options) {
    if ((u -= o.w) < 0) {
      chosen = o;
      break;
    }
  }
  return { kind: chosen.i, b: pick(rng, chosen.bs) };
}

/** Whether any number of the problem lies beyond its slot's train range (the symbolic split's "new numbers"). */
function usesNewNumbers(t: Template, p: { openingDraws: [Slot, number][]; steps: readonly PlannedStep[] }): boolean {
  if (p.openingDraws.some(([slot, v]) => v > TRAIN_RANGES[slot][1])) return true;
  return p.steps.some((s) => {
    const op = t.steps[s.kind]!.op;
    return s.b > (op === '+' || op === '-' ? TRAIN_RANGES.delta[1] : TRAIN_RANGES.factor[1]);
  });
}

export interface DrawOptions {
  names?: readonly string[];
  ranges?: NumberRanges;
  /** Total operations of the problem, drawn uniformly from [minOps, maxOps] (clamped to what the template allows). */
  minOps?: number;
  maxOps?: number;
  /** Redraw until some number lies beyond the train ranges. */
  requireNewNumbers?: boolean;
}

/** Draws one base problem (no perturbation); never fails (redraws internally). */
export function drawProblem(rng: Rng, split: TaskSplit, opts: DrawOptions = {}): TaskProblem {
  const names = opts.names ?? TRAIN_NAMES;
  const r = opts.ranges ?? TRAIN_RANGES;
  const minOps = opts.minOps ?? 2;
  const maxOps = opts.maxOps ?? 4;
  for (let attempt = 0; attempt < 10000; attempt++) {
    const t = pick(rng, TEMPLATES);
    const cast = drawCast(rng, t, names);
    const openingDraws: [Slot, number][] = [];
    const draw = (slot: Slot): number => {
      const [lo, hi] = r[slot];
      const v = lo + rng.int(hi - lo + 1);
      openingDraws.push([slot, v]);
      return v;
    };
    const opening = t.opening(cast, draw, r.maxValue);
    if (!opening) continue;
    const fixedOps = t.openingOps + (t.final ? 1 : 0);
    const total = minOps + rng.int(maxOps - minOps + 1);
    const nSteps = Math.max(0, total - fixedOps);
    const steps: PlannedStep[] = [];
    let x = opening.value;
    for (let i = 0; i < nSteps; i++) {
      const s = drawStep(rng, t, x, r);
      if (!s) break;
      steps.push(s);
      x = applyOp(x, t.steps[s.kind]!.op, s.b);
    }
    if (steps.length !== nSteps) continue;
    const equations = evaluate(t, opening, steps, r.maxValue);
    if (!equations || equations.length < minOps) continue;
    if (opts.requireNewNumbers && !usesNewNumbers(t, { openingDraws, steps })) continue;
    return { split, template: t.id, cast, opening, steps, equations, answer: equations[equations.length - 1]!.result, numOps: equations.length };
  }
  throw new Error('task generator: could not draw a valid problem (number ranges too tight?)');
}

/** The problem with `k` extra step sentences inserted at random places (p1: k = 1, p2: k = 2); undefined if no
 *  insertion keeps every value valid within a few tries. */
export function perturbProblem(rng: Rng, p: TaskProblem, k: number, split: TaskSplit, r: NumberRanges = TRAIN_RANGES): TaskProblem | undefined {
  const t = templateById(p.template);
  let steps = p.steps;
  for (let added = 0; added < k; added++) {
    let next: PlannedStep[] | undefined;
    for (let tries = 0; tries < 50 && !next; tries++) {
      const pos = rng.int(steps.length + 1);
      let x = p.opening.value;
      for (const s of steps.slice(0, pos)) x = applyOp(x, t.steps[s.kind]!.op, s.b);
      const s = drawStep(rng, t, x, r);
      if (!s) continue;
      const candidate = [...steps.slice(0, pos), { ...s, extra: true }, ...steps.slice(pos)];
      if (evaluate(t, p.opening, candidate, r.maxValue)) next = candidate;
    }
    if (!next) return undefined;
    steps = next;
  }
  const equations = evaluate(t, p.opening, steps, r.maxValue)!;
  return { ...p, split, steps, equations, answer: equations.at(-1)!.result, numOps: equations.length };
}

/** The problem with one irrelevant sentence inserted somewhere after the opening; the solution is unchanged. */
export function addNoop(rng: Rng, p: TaskProblem, split: TaskSplit): TaskProblem {
  const t = templateById(p.template);
  const after = rng.int(p.steps.length + 1);
  // the quantity at the insertion point: a "part of" clause must name fewer than that
  const x = after === 0 ? p.opening.value : p.equations[t.openingOps + after - 1]!.result;
  const clauses: NoopClause[] = [...t.noop, ...NOOP_CLAUSES].filter((c) => !c.part || x >= 3);
  const clause = pick(rng, clauses);
  const n = clause.part ? 2 + rng.int(Math.min(12, x - 1) - 1) : 2 + rng.int(11);
  return { ...p, split, noop: { text: clause.text(p.cast, n), after, n } };
}

/** The story's sentences in order (without the question). */
export function storySentences(p: TaskProblem): string[] {
  const t = templateById(p.template);
  const out = [p.opening.clause, ...p.steps.map((s) => t.steps[s.kind]!.text(p.cast, s.b))];
  if (p.noop) out.splice(p.noop.after + 1, 0, p.noop.text);
  return out;
}

/** The problem statement: story and question, without the instruction. */
export function problemText(p: TaskProblem): string {
  return [...storySentences(p), templateById(p.template).question(p.cast)].join(' ');
}

export function formatEquation(e: Equation): string {
  return `${e.a} ${e.op} ${e.b} = ${e.result}`;
}

/** The worked solution: one equation per line, then the boxed answer. */
export function solutionText(p: TaskProblem): string {
  return [...p.equations.map(formatEquation), `The answer is \\boxed{${p.answer}}.`].join('\n');
}

export interface TaskSizes {
  seed: number;
  train: number;
  /** Size of each evaluation split (test, symbolic, p1, p2, noop). */
  test: number;
  /** Difficulty: most operations of a base problem (2..6, default 4; p1/p2 add one/two). */
  maxOps?: number;
  /** Difficulty: largest value any intermediate result may take (20..10000, default 100). */
  maxValue?: number;
}

/** Splits get independent random streams derived from the seed, so changing one split's size leaves the others. */
function splitRng(seed: number, split: TaskSplit): Rng {
  return new Rng(seed * 64 + TASK_SPLITS.indexOf(split) + 1);
}

/** Draws until `n` distinct problems (by text) that `accept` takes; throws if the space looks exhausted. */
function drawDistinct(n: number, split: TaskSplit, draw: () => TaskProblem | undefined, exclude: ReadonlySet<string>): TaskProblem[] {
  const seen = new Set<string>();
  const out: TaskProblem[] = [];
  let misses = 0;
  while (out.length < n) {
    const p = draw();
    const key = p && problemText(p);
    if (!p || seen.has(key!) || exclude.has(key!)) {
      if (++misses > 1000 + 20 * n) throw new Error(`task generator: cannot find ${n} distinct ${split} problems (got ${out.length})`);
      continue;
    }
    seen.add(key!);
    out.push(p);
  }
  return out;
}

/** All six splits, deterministic in (seed, train, test). Evaluation problems never repeat a train problem's text,
 *  and p1/p2/noop start from problems that are not in train either. */
export function generateTaskSplits(sizes: TaskSizes): Record<TaskSplit, TaskProblem[]> {
  const { seed, train, test, maxOps = 4, maxValue = TRAIN_RANGES.maxValue } = sizes;
  if (!Number.isSafeInteger(seed) || seed < 0 || seed >= 2 ** 40) throw new Error(`task seed: expected an integer in [0, 2^40), got ${seed}`);
  for (const [k, v] of [['train', train], ['test', test]] as const) {
    if (!Number.isInteger(v) || v < 0) throw new Error(`task ${k} size: expected a non-negative integer, got ${v}`);
  }
  if (!Number.isInteger(maxOps) || maxOps < 2 || maxOps > 6) throw new Error(`task maxOps: expected an integer in [2, 6], got ${maxOps}`);
  if (!Number.isInteger(maxValue) || maxValue < 20 || maxValue > 10000) throw new Error(`task maxValue: expected an integer in [20, 10000], got ${maxValue}`);
  const ranges: NumberRanges = { ...TRAIN_RANGES, maxValue };
  const symbolicRanges: NumberRanges = { ...SYMBOLIC_RANGES, maxValue };
  const base = { ranges, maxOps };
  const rngs = Object.fromEntries(TASK_SPLITS.map((s) => [s, splitRng(seed, s)])) as Record<TaskSplit, Rng>;
  const trainProblems = drawDistinct(train, 'train', () => drawProblem(rngs.train, 'train', base), new Set());
  const inTrain = new Set(trainProblems.map(problemText));
  const fresh = (split: TaskSplit): TaskProblem | undefined => {
    const p = drawProblem(rngs[split], split, base);
    return inTrain.has(problemText(p)) ? undefined : p;
  };
  return {
    train: trainProblems,
    test: drawDistinct(test, 'test', () => fresh('test'), inTrain),
    symbolic: drawDistinct(test, 'symbolic', () => drawProblem(rngs.symbolic, 'symbolic', { names: HELDOUT_NAMES, ranges: symbolicRanges, maxOps, requireNewNumbers: true }), inTrain),
    p1: drawDistinct(test, 'p1', () => { const b = fresh('p1'); return b && perturbProblem(rngs.p1, b, 1, 'p1', ranges); }, inTrain),
    p2: drawDistinct(test, 'p2', () => { const b = fresh('p2'); return b && perturbProblem(rngs.p2, b, 2, 'p2', ranges); }, inTrain),
    noop: drawDistinct(test, 'noop', () => { const b = fresh('noop'); return b && addNoop(rngs.noop, b, 'noop'); }, inTrain),
  };
}
