// The verifier: the training reward and the evaluation's correctness (docs/algorithm.md §5).
//
//   verify(completion, groundTruth) -> { correct, extracted, reason? }
//
// 1. extract the last \boxed{...} / \fbox{...} of the completion (balanced braces); the ground truth's own last
//    box when it has one (MATH training rows hold the whole solution);
// 2. normalise both the same way (normalize.ts);
// 3. decide equivalence (compare.ts): text, option letters, booleans, numbers, structures, then the compute engine
//    and a numeric check at random points.
//
// Synchronous. Never throws (any internal error is an incorrect answer with a reason), never executes model text.
// Its time bound in this thread: answers over MAX_ANSWER_CHARS or nested deeper than MAX_DEPTH are refused up front,
// LaTeX the engine's parser takes exponential time on is rewritten or refused before parsing (guard.ts), the engine
// only evaluates screened expressions, and a budget is checked between steps — but one engine call can still run
// past the budget. The hard bound is VerifierPool (pool.ts): worker threads with a deadline per answer, which is
// how training and eval call it.
import { allBoxed, groundTruthAnswer, lastBoxed } from './extract.js';
import { normalizeAnswer, nestingDepth } from './normalize.js';
import { compareNormalized, Timeout } from './compare.js';
import { screenLatex } from './guard.js';

export interface VerifyResult {
  correct: boolean;
  /** the boxed answer as written (before normalisation), or null when there is none */
  extracted: string | null;
  /** why it is incorrect (absent for a plain mismatch), or a note */
  reason?: string;
  /** the answer ran out of time (scored 0) */
  timedOut?: boolean;
}

export interface VerifyOptions {
  /** time budget per call in milliseconds, checked between steps (default 2000) */
  timeoutMs?: number;
  /**
   * Which boxes answer: 'last' (default; docs/algorithm.md §5 and the official implementation read the last box), or 'all':
   * when the last box alone is wrong, the contents of every box, joined as a list, may match a list ground truth
   * (`\boxed{2}` and `\boxed{3}` for `2, 3`). A single-value ground truth never matches several boxes.
   */
  boxes?: 'last' | 'all';
}

export const MAX_ANSWER_CHARS = 1000;
export const MAX_DEPTH = 24;

export function verify(completion: string, groundTruth: string, opts: VerifyOptions = {}): VerifyResult {
  if (typeof completion !== 'string') return { correct: false, extracted: null, reason: 'completion is not a string' };
  if (typeof groundTruth !== 'string') return { correct: false, extracted: null, reason: 'ground truth is not a string' };
  const deadline = Date.now() + (opts.timeoutMs ?? 2000);
  const box = lastBoxed(completion);
  if (box.content === null) return { correct: false, extracted: null, reason: box.reason };
  const r = verifyAnswer(box.content, groundTruth, deadline);
  if (r.correct || opts.boxes !== 'all' || r.timedOut) return r;
  // boxes: 'all' — a list ground truth may be answered one box per element (`\boxed{2} and \boxed{3}`)
  const boxes = allBoxed(completion);
  if (boxes.length < 2) return r;
  const joined = verifyAnswer(boxes.join(', '), groundTruth, deadline);
  return joined.correct ? joined : r;
}

/** One extracted answer against the ground truth: screen, normalise, compare. Never throws. */
function verifyAnswer(extracted: string, groundTruth: string, deadline: number): VerifyResult {
  try {
    if (extracted.length > MAX_ANSWER_CHARS) return { correct: false, extracted: extracted.slice(0, 200), reason: `answer longer than ${MAX_ANSWER_CHARS} characters` };
    const gtRaw = groundTruthAnswer(groundTruth);
    if (gtRaw.length > MAX_ANSWER_CHARS) return { correct: false, extracted, reason: `ground truth longer than ${MAX_ANSWER_CHARS} characters` };
    const sa = screenLatex(normalizeAnswer(extracted));
    if (!sa.ok) return { correct: false, extracted, reason: `answer refused: ${sa.reason}` };
    const sg = screenLatex(normalizeAnswer(gtRaw));
    if (!sg.ok) return { correct: false, extracted, reason: `ground truth refused: ${sg.reason}` };
    const ans = sa.text;
    const gt = sg.text;
    if (ans === '') return { correct: false, extracted, reason: 'empty answer' };
    if (nestingDepth(ans) > MAX_DEPTH) return { correct: false, extracted, reason: `answer nested deeper than ${MAX_DEPTH} levels` };
    const r = compareNormalized(ans, gt, { deadline });
    return r.reason && !r.equal ? { correct: r.equal, extracted, reason: r.reason } : { correct: r.equal, extracted };
  } catch (e) {
    if (e instanceof Timeout) return { correct: false, extracted, reason: 'comparison took too long', timedOut: true };
    const msg = e instanceof Error ? e.message : String(e);
    return { correct: false, extracted, reason: `verifier error: ${msg.slice(0, 200)}` };
  }
}

/** The reward: 1 when correct, else 0. */
export function reward(completion: string, groundTruth: string, opts?: VerifyOptions): number {
  return verify(completion, groundTruth, opts).correct ? 1 : 0;
}

export { lastBoxed, allBoxed, groundTruthAnswer } from './extract.js';
export { normalizeAnswer } from './normalize.js';
