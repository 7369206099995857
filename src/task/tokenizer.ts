// The built-in task's tokenizer: a Hugging Face tokenizer.json small enough for a tiny model (a few hundred tokens).
//
// Shape: a Split pre-tokenizer cuts text into words with their leading space (" apples"), single digits, single
// punctuation marks (with their leading space), `\boxed`, and single whitespace characters. The model is BPE with
// `ignore_merges` and no merges: a piece found in the vocabulary is one token, any other piece falls back to its
// characters, and every printable ASCII character is in the vocabulary. So any ASCII text encodes and decodes
// losslessly (decoder Fuse = plain concatenation), and the task's own text encodes as whole words and digits.
// Special tokens follow Qwen2's chat format: <|im_start|>, <|im_end|> (end of turn and eos), and <|pad|>.
import path from 'node:path';
import { packageRoot } from '../native.js';
import { TASK_SPLITS, generateTaskSplits, problemText, solutionText } from './generator.js';
import { COLORS, HELDOUT_NAMES, INSTRUCTION, NOOP_CLAUSES, TEMPLATES, THINGS, TRAIN_NAMES, type Cast } from './templates.js';

export const TASK_SPECIAL_TOKENS = ['<|pad|>', '<|unk|>', '<|im_start|>', '<|im_end|>'] as const;

/** The pre-tokenizer's pattern (Oniguruma syntax as tokenizer.json expects; also valid JavaScript). */
export const TASK_SPLIT_PATTERN = String.raw` ?\\boxed| ?[A-Za-z]+|[0-9]| ?[^A-Za-z0-9\s]|\s`;

/** Qwen2-style chat template, reduced to what the task needs (no tools, no default system prompt). */
export const TASK_CHAT_TEMPLATE =
  "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{%- endfor %}" +
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

/** Folder of the committed tokenizer files (assets/task in the package). */
export function taskTokenizerDir(): string {
  return path.join(packageRoot, 'assets', 'task');
}

/** Texts that together contain every word form the generator can produce: each template sentence rendered with
 *  every name in every role and every object, plus the instruction, the solution format and the chat roles. */
export function taskVocabularyCorpus(): string[] {
  const names = [...TRAIN_NAMES, ...HELDOUT_NAMES];
  const out: string[] = [INSTRUCTION, 'The answer is \\boxed{12}.', '1 + 2 = 3\n4 - 5 = 6\n7 * 8 = 9\n0 / 1 = 2', 'user', 'assistant', 'system'];
  for (const t of TEMPLATES) {
    const n = Math.max(names.length, t.objects.length, THINGS.length, COLORS.length);
    for (let i = 0; i < n; i++) {
      const c: Cast = {
        name: names[i % names.length]!,
        friend: names[(i + 1) % names.length]!,
        other: names[(i + 2) % names.length]!,
        obj: t.objects[i % t.objects.length]!,
        thing: THINGS[i % THINGS.length]!,
        color: COLORS[i % COLORS.length]!,
      };
      const opening = t.opening(c, () => 7, 1000);
      if (opening) out.push(opening.clause);
      for (const s of t.steps) out.push(s.text(c, 7));
      for (const s of [...t.noop, ...NOOP_CLAUSES]) out.push(s.text(c, 7));
      out.push(t.question(c));
    }
  }
  // a drawn sample as well, so that sentence joins (". " before a capitalized word) are covered as they occur
  const sample = generateTaskSplits({ seed: 0, train: 200, test: 50 });
  for (const s of TASK_SPLITS) for (const p of sample[s]) out.push(problemText(p), solutionText(p));
  return out;
}

/** Splits text the way the tokenizer's pre-tokenizer does. */
export function preTokenize(text: string): string[] {
  return text.match(new RegExp(TASK_SPLIT_PATTERN, 'g')) ?? [];
}

export interface TaskTokenizerFiles {
  tokenizer: Record<string, unknown>;
  config: Record<string, unknown>;
}

/** Builds tokenizer.json and tokenizer_config.json from the generator's vocabulary (deterministic). */
export function buildTaskTokenizer(): TaskTokenizerFiles {
  const pieces = new Set<string>();
  for (const text of taskVocabularyCorpus()) for (const p of preTokenize(text)) if (p.length > 1) pieces.add(p);
  const chars = ['\n', ...Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i))];
  const words = [...pieces].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const vocab: Record<string, number> = {};
  for (const tok of [...TASK_SPECIAL_TOKENS, ...chars, ...words]) if (!(tok in vocab)) vocab[tok] = Object.keys(vocab).length;
  const added = TASK_SPECIAL_TOKENS.map((content) => ({
    id: vocab[content]!,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: { type: 'Split', pattern: { Regex: TASK_SPLIT_PATTERN }, behavior: 'Isolated', invert: false },
    post_processor: null,
    decoder: { type: 'Fuse' },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<|unk|>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: true,
      vocab,
      merges: [],
    },
  };
  const config = {
    added_tokens_decoder: Object.fromEntries(added.map(({ id, ...rest }) => [String(id), rest])),
    bos_token: null,
    eos_token: '<|im_end|>',
    pad_token: '<|pad|>',
    unk_token: '<|unk|>',
    chat_template: TASK_CHAT_TEMPLATE,
    clean_up_tokenization_spaces: false,
    model_max_length: 1024,
    split_special_tokens: false,
    tokenizer_class: 'PreTrainedTokenizerFast',
  };
  return { tokenizer, config };
}
