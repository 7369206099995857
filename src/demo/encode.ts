// Task problems as token ids for the demo's model: the chat-rendered prompt (what `clipo train` and `clipo eval`
// feed the policy) and the worked solution followed by the end-of-turn token (the supervised warm-up's target).
import type { ModelTokenizer } from '../model/tokenizer.js';
import { solutionText, type TaskProblem } from '../task/generator.js';
import { promptContent } from '../task/records.js';
import type { Equation } from '../task/templates.js';

export interface EncodedProblem {
  prompt: Int32Array;
  /** worked solution + end-of-turn token */
  solution: Int32Array;
  answer: string;
  /** the true steps, for the process check */
  equations: Equation[];
}

export function encodeProblem(tok: ModelTokenizer, p: TaskProblem): EncodedProblem {
  const eos = tok.eosTokenId;
  if (eos === null) throw new Error('the task tokenizer has no end-of-turn token');
  const prompt = Int32Array.from(tok.encodeChat([{ role: 'user', content: promptContent(p) }], { addGenerationPrompt: true }));
  const solution = Int32Array.from([...tok.encode(solutionText(p)), eos]);
  return { prompt, solution, answer: String(p.answer), equations: p.equations };
}
