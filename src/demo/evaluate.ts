// Pass@1 of a policy on task problems: greedy decoding on the engine, the project's verifier on the decoded text.
// With greedy decoding each problem's Pass@1 is 0 or 1; the split's Pass@1 is their mean.
import type { Engine } from '../engine/engine.js';
import type { ModelTokenizer } from '../model/tokenizer.js';
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
  const scores: number[] = [];
  const chunk = s.maxBatch ?? 64;
  for (let i = 0; i < problems.length; i += chunk) {
    const part = problems.slice(i, i + chunk);
    const gen = engine.generate({ prompts: part.map((p) => p.prompt), n: 1, maxNewTokens: s.maxNewTokens, temperature: 0, seed: 0, maxBatch: chunk });
    const out = new Array<number>(part.length).fill(0);
    for (const seq of gen.sequences) {
      const text = tok.decode(seq.tokens, { skipSpecialTokens: true });
      out[seq.promptIndex] = verify(text, part[seq.promptIndex]!.answer).correct ? 1 : 0;
    }
    appendAll(scores, out);
    onProgress?.(scores.length);
  }
  return scores;
}
