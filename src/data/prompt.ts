// Prompt building, docs/algorithm.md §4: the problem, a newline, then the instruction, as the single user message.
//   math:             "Let's think step by step and output the final answer within \boxed{}."
//   multiple choice:  "Let's think step by step and output the final answer (eg, A, B, C, D) within \boxed{}."
// The benchmark parquet files already carry the instruction; a prompt that mentions \boxed{} is left unchanged so it
// is never appended twice.

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface PromptOptions {
  /** 'auto' (default): append the instruction when the prompt lacks one; 'never': use the prompt as given */
  instruction?: 'auto' | 'never';
  /** a system message to put first (none by default, as in the paper) */
  system?: string;
}

export const MATH_INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}.";

/** The multiple-choice instruction for `n` options: all letters up to five (as the benchmark files), else A-D and "...". */
export function choiceInstruction(n: number): string {
  const letters = n <= 5 ? choiceLetters(n) : [...choiceLetters(4), '...'];
  return `Let's think step by step and output the final answer (eg, ${letters.join(', ')}) within \\boxed{}.`;
}

export function choiceLetters(n: number): string[] {
  if (!Number.isInteger(n) || n < 1 || n > 26) throw new Error(`choices: expected 1 to 26 options, got ${n}`);
  return Array.from({ length: n }, (_, i) => String.fromCharCode(65 + i));
}

/** True when the text already asks for a boxed answer (the benchmark files' prompts do). */
export function hasInstruction(text: string): boolean {
  return text.includes('\\boxed');
}

/**
 * The user message for a bare question: `question\n<instruction>`, or with options
 * `question\n\nOptions:\nA. ...\nB. ...\n<instruction>` (the layout of the benchmark files' multiple-choice rows).
 */
export function buildPrompt(question: string, choices?: readonly string[]): string {
  const q = question.replace(/\s+$/, '');
  if (!choices || choices.length === 0) return `${q}\n${MATH_INSTRUCTION}`;
  const letters = choiceLetters(choices.length);
  const lines = choices.map((c, i) => `${letters[i]}. ${c}`);
  return `${q}\n\nOptions:\n${lines.join('\n')}\n${choiceInstruction(choices.length)}`;
}

/** A row's prompt (bare string or message list) -> the chat messages sent to the model. */
export function buildMessages(prompt: string | readonly ChatMessage[], opts: PromptOptions & { choices?: readonly string[] } = {}): ChatMessage[] {
  const auto = (opts.instruction ?? 'auto') === 'auto';
  let messages: ChatMessage[];
  if (typeof prompt === 'string') {
    const content = auto && !hasInstruction(prompt) ? buildPrompt(prompt, opts.choices) : prompt;
    messages = [{ role: 'user', content }];
  } else {
    messages = prompt.map((m) => ({ role: m.role, content: m.content }));
    if (auto && !messages.some((m) => hasInstruction(m.content))) {
      // the instruction goes after the last user message's text
      for (let i = messages.length - 1; i >= 0; i--) {
        if (messages[i].role === 'user') {
          messages[i] = { role: 'user', content: buildPrompt(messages[i].content, opts.choices) };
          break;
        }
      }
    }
  }
  if (opts.system !== undefined && messages[0]?.role !== 'system') messages.unshift({ role: 'system', content: opts.system });
  return messages;
}
