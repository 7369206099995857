// Pass@1 of a policy on task problems: greedy decoding on the engine, the project's verifier on the decoded text.
// With greedy decoding each problem's Pass@1 is 0 or 1; the split's Pass@1 is their mean.
import type { Engine } from '../engine/engine.js';
import type { ModelTokenizer } from '../model/tokenizer.js';
import { processOutcome } from '../task/process.js';
import { verify } from '../verify/index.js';
import type { EncodedProblem } from './encode.js';
import { appendAll } from '../util/stats.js';

export interface EvalSettings {
  maxNewTokens: number;
  /** sequences decoded at once */
  maxBatch?: number;
}

/** Per-problem scores (1 correct, 0 not), in the order of `problems`. `onProgress(done)` after each chunk. */
export function evaluateGreedy(engine: Engine, tok: ModelTokenizer, problems: readonly EncodedProblem[], s: EvalSettings, onProgress?: (done: number) => void): number[] {
  return evaluateGreedyDetailed(engine, tok, problems, s, onProgress).scores;
}

export interface GreedyEval {
  /** 1 correct final answer, 0 not */
  scores: number[];
  /** the process check (src/task/process.ts): 1 right answer through the right steps, 0 right answer through wrong
   *  steps, null wrong answer */
  process: Array<0 | 1 | null>;
}

/** Scores and the process check of each problem, in the order of `problems`. */
export function evaluateGreedyDetailed(engine: Engine, tok: ModelTokenizer, problems: readonly EncodedProblem[], s: EvalSettings, onProgress?: (done: number) => void): GreedyEval {
  const scores: number[] = [];
  const process: Array<0 | 1 | null> = [];
  const chunk = s.maxBatch ?? 64;
  for (let i = 0; i < problems.length; i += chunk) {
    const part = problems.slice(i, i + chunk);
    const gen = engine.generate({ prompts: part.map((p) => p.prompt), n: 1, maxNewTokens: s.maxNewTokens, temperature: 0, seed: 0, maxBatch: chunk });
    const out = new Array<number>(part.length).fill(0);
    const proc = new Array<0 | 1 | null>(part.length).fill(null);
    for (const seq of gen.sequences) {
      const text = tok.decode(seq.tokens, { skipSpecialTokens: true });
      const p = part[seq.promptIndex]!;
      const ok = verify(text, p.answer).correct;
      out[seq.promptIndex] = ok ? 1 : 0;
      proc[seq.promptIndex] = processOutcome(ok, text, p.equations);
    }
    appendAll(scores, out);
    appendAll(process, proc);
    onProgress?.(scores.length);
  }
  return { scores, process };
}
