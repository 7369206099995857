// The task tokenizer: loads with @huggingface/tokenizers, encodes every generated problem and solution without
// unknown tokens and decodes it back exactly, keeps words and digits whole, and matches what its build script writes.
import { Tokenizer } from '@huggingface/tokenizers';
import { Template } from '@huggingface/jinja';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { TASK_SPLITS, generateTaskSplits, problemText, solutionText } from '../src/task/generator.js';
import { ModelTokenizer } from '../src/model/tokenizer.js';
import { promptContent } from '../src/task/records.js';
import { TASK_SPECIAL_TOKENS, buildTaskTokenizer, taskTokenizerDir } from '../src/task/tokenizer.js';
import { HELDOUT_NAMES, TRAIN_NAMES } from '../src/task/templates.js';

const dir = taskTokenizerDir();
const tokenizerJson = JSON.parse(readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
const configJson = JSON.parse(readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'));
const tok = new Tokenizer(tokenizerJson, configJson);
const vocab = tokenizerJson.model.vocab as Record<string, number>;
const unk = vocab['<|unk|>']!;

describe('task tokenizer', () => {
  test('the committed files are exactly what scripts/build-task-tokenizer writes', () => {
    const built = buildTaskTokenizer();
    expect(tokenizerJson).toEqual(JSON.parse(JSON.stringify(built.tokenizer)));
    expect(configJson).toEqual(JSON.parse(JSON.stringify(built.config)));
  });

  test('a small vocabulary with the chat special tokens', () => {
    const size = Object.keys(vocab).length;
    expect(size).toBeGreaterThan(100);
    expect(size).toBeLessThanOrEqual(320);
    expect(new Set(Object.values(vocab)).size).toBe(size);
    expect(Math.max(...Object.values(vocab))).toBe(size - 1);
    for (const t of TASK_SPECIAL_TOKENS) expect(tok.token_to_id(t)).toBe(vocab[t]);
    for (const d of '0123456789') expect(vocab[d]).toBeDefined();
  });

  test('thousands of generated prompts and solutions round-trip exactly, with no unknown token', () => {
    let texts = 0;
    let tokens = 0;
    for (const seed of [11, 12]) {
      const s = generateTaskSplits({ seed, train: 700, test: 150 });
      for (const split of TASK_SPLITS) {
        for (const p of s[split]) {
          for (const text of [promptContent(p), solutionText(p)]) {
            const { ids } = tok.encode(text);
            expect(ids.includes(unk)).toBe(false);
            expect(tok.decode(ids)).toBe(text);
            texts++;
            tokens += ids.length;
          }
        }
      }
    }
    expect(texts).toBeGreaterThan(5000);
    expect(tokens / texts).toBeLessThan(70); // words are whole tokens, so texts stay short for a tiny model
  });

  test('names and words are single tokens; numbers are one token per digit', () => {
    for (const n of [...TRAIN_NAMES, ...HELDOUT_NAMES]) {
      expect(tok.encode(n).ids.length).toBe(1);
      expect(tok.encode(` ${n}`).ids.length).toBe(1);
    }
    expect(tok.tokenize('Ava has 125 apples.')).toEqual(['Ava', ' has', ' ', '1', '2', '5', ' apples', '.']);
    expect(tok.tokenize('The answer is \\boxed{42}.')).toEqual(['The', ' answer', ' is', ' \\boxed', '{', '4', '2', '}', '.']);
  });

  test('any printable ASCII text round-trips (unknown words fall back to characters)', () => {
    const text = 'Zebras ~ quux! x^2 [a] = {b}; 3.5% @ #7\nnext line';
    const { ids, tokens } = tok.encode(text);
    expect(ids.includes(unk)).toBe(false);
    expect(tok.decode(ids)).toBe(text);
    expect(tokens.slice(0, 3)).toEqual(['Z', 'e', 'b']);
  });

  test('the project model tokenizer loads it and renders the chat prompt', () => {
    const mt = ModelTokenizer.fromDir(dir);
    expect(mt.vocabSize).toBe(Object.keys(vocab).length);
    expect(mt.eosTokenId).toBe(vocab['<|im_end|>']);
    expect(mt.padTokenId).toBe(vocab['<|pad|>']);
    const p = generateTaskSplits({ seed: 2, train: 1, test: 0 }).train[0]!;
    const ids = mt.encodeChat([{ role: 'user', content: promptContent(p) }], { addGenerationPrompt: true });
    expect(mt.decode(ids)).toBe(`<|im_start|>user\n${promptContent(p)}<|im_end|>\n<|im_start|>assistant\n`);
    expect(mt.decode(mt.encode(solutionText(p)))).toBe(solutionText(p));
  });

  test('the chat template renders a Qwen2-style prompt that encodes with single special tokens', () => {
    const p = generateTaskSplits({ seed: 1, train: 1, test: 0 }).train[0]!;
    const rendered = new Template(configJson.chat_template).render({
      messages: [{ role: 'user', content: promptContent(p) }],
      add_generation_prompt: true,
    });
    expect(rendered).toBe(`<|im_start|>user\n${promptContent(p)}<|im_end|>\n<|im_start|>assistant\n`);
    const full = rendered + solutionText(p) + configJson.eos_token;
    const { ids } = tok.encode(full);
    expect(ids[0]).toBe(vocab['<|im_start|>']);
    expect(ids.at(-1)).toBe(vocab['<|im_end|>']);
    expect(ids.filter((i: number) => i === vocab['<|im_start|>']).length).toBe(2);
    expect(tok.decode(ids)).toBe(full);
    expect(tok.decode(ids, { skip_special_tokens: true })).toBe(`user\n${promptContent(p)}\nassistant\n${solutionText(p)}`);
    expect(problemText(p).length).toBeGreaterThan(20);
  });
});
