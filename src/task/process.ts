// The process check of the built-in task: a response that reaches the right final answer, did it get there through
// the right steps? The generator knows every intermediate value, so this can be checked exactly, which no real
// benchmark allows. It measures what outcome rewards cannot see: a right answer reached through wrong steps
// (a wrong intermediate result that a later slip happens to cancel, a skipped or invented step, steps out of order).
//
// The rule: the equations the response states (`a op b = c`, one per line, as the worked solutions write them) must be
// the true solution's equations, the same number of them, in the same order, each with the true operands (either
// order for + and ×) and the true result. Every problem of the task is a chain (each step acts on the previous
// result), so the true order is the only one in which every step's input is known when it is used.
import type { Equation, Op } from './templates.js';

/** One stated equation of a response; the values as written (not recomputed). */
export interface StatedEquation {
  a: number;
  op: Op;
  b: number;
  result: number;
}

// `12 + 3 = 15`, also with x/×/÷ and a unary minus; a line may hold several
const EQUATION = /(-?\d+(?:\.\d+)?)\s*([+\-*/x×÷])\s*(-?\d+(?:\.\d+)?)\s*=\s*(-?\d+(?:\.\d+)?)/g;
const OPS: Record<string, Op> = { '+': '+', '-': '-', '*': '*', x: '*', '×': '*', '/': '/', '÷': '/' };

/** The equations stated in `text`, in order. */
export function statedEquations(text: string): StatedEquation[] {
  const out: StatedEquation[] = [];
  for (const m of text.matchAll(EQUATION)) {
    out.push({ a: Number(m[1]), op: OPS[m[2]!]!, b: Number(m[3]), result: Number(m[4]) });
  }
  return out;
}

function sameStep(s: StatedEquation, t: Equation): boolean {
  if (s.op !== t.op || s.result !== t.result) return false;
  if (s.a === t.a && s.b === t.b) return true;
  // + and × commute: "3 + 12" states the same step as "12 + 3"
  return (t.op === '+' || t.op === '*') && s.a === t.b && s.b === t.a;
}

/** Whether the steps stated in `text` are the true steps `truth`, in order, none missing and none extra. */
export function stepsCorrect(text: string, truth: readonly Equation[]): boolean {
  const stated = statedEquations(text);
  return stated.length === truth.length && stated.every((s, i) => sameStep(s, truth[i]!));
}

/** The true equations written in a worked solution (`extra_info.solution` of the task files). */
export function solutionEquations(solution: string): Equation[] {
  return statedEquations(solution).map((e) => {
    if (!(Number.isInteger(e.a) && Number.isInteger(e.b) && Number.isInteger(e.result))) throw new Error(`worked solution: a non-integer step in '${e.a} ${e.op} ${e.b} = ${e.result}'`);
    return e;
  });
}

/** The process outcome of one response: null when the final answer is wrong (the check is about right answers),
 *  1 when the answer is right and so are the steps, 0 when the answer is right but the steps are not. */
export function processOutcome(answerCorrect: boolean, text: string, truth: readonly Equation[]): 0 | 1 | null {
  if (!answerCorrect) return null;
  return stepsCorrect(text, truth) ? 1 : 0;
}
