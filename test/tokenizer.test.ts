// Tokenizers: the shipped byte-level tokenizer (ids = UTF-8 bytes, round trip of any text), a standard byte-level
// BPE tokenizer.json (Qwen2's pre-tokenizer regex and merges) through @huggingface/tokenizers, chat templates.
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { packageRoot } from '../src/native.js';
import { BYTE_TOKENIZER_VOCAB, ModelTokenizer } from '../src/model/tokenizer.js';
import { Rng } from '../src/util/rng.js';

const tmpRoot = mkdtempSync(path.join(os.tmpdir(), 'clipo-tokenizer-'));
afterAll(() => rmSync(tmpRoot, { recursive: true, force: true }));

function randomText(rng: Rng, n: number): string {
  // ASCII, controls, Latin-1, CJK, astral (emoji) and whitespace runs; lone surrogates excluded (not UTF-8)
  const ranges: Array<[number, number]> = [[0x20, 0x7e], [0x00, 0x1f], [0xa0, 0xff], [0x4e00, 0x9fff], [0x1f300, 0x1f64f], [0x0400, 0x04ff]];
  let s = '';
  for (let i = 0; i < n; i++) {
    const [lo, hi] = ranges[rng.int(ranges.length)]!;
    s += String.fromCodePoint(lo + rng.int(hi - lo + 1));
  }
  return s;
}

describe('byte tokenizer (assets/tokenizers/byte)', () => {
  const tok = ModelTokenizer.byte();

  test('vocabulary and special tokens', () => {
    expect(tok.vocabSize).toBe(BYTE_TOKENIZER_VOCAB);
    expect(tok.tokenToId('<|im_start|>')).toBe(256);
    expect(tok.eosTokenId).toBe(257);
    expect(tok.padTokenId).toBe(258);
    expect(tok.bosTokenId).toBeNull();
  });

  test('ids are the UTF-8 bytes, and arbitrary text round-trips', () => {
    const rng = new Rng(5);
    for (let trial = 0; trial < 30; trial++) {
      const text = randomText(rng, 1 + rng.int(60));
      const ids = tok.encode(text);
      expect(ids).toEqual(Array.from(Buffer.from(text, 'utf8')));
      expect(tok.decode(ids)).toBe(text);
    }
    // every single byte value, including invalid UTF-8 on its own, decodes without throwing
    for (let b = 0; b < 256; b++) expect(typeof tok.decode([b])).toBe('string');
    expect(tok.decode([0xe4, 0xbd, 0xa0])).toBe('你');
  });

  test('special tokens in text and decoding with/without them', () => {
    const ids = tok.encode('hi<|im_end|>');
    expect(ids).toEqual([104, 105, 257]);
    expect(tok.decode(ids)).toBe('hi<|im_end|>');
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('hi');
  });

  test('ChatML chat template', () => {
    const text = tok.applyChatTemplate([{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi!' }]);
    expect(text).toBe('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n');
    expect(tok.applyChatTemplate([{ role: 'user', content: 'x' }], { addGenerationPrompt: false })).toBe('<|im_start|>user\nx<|im_end|>\n');
    const ids = tok.encodeChat([{ role: 'user', content: 'é' }]);
    expect(ids).toEqual([256, ...Buffer.from('user\né'), 257, 10, 256, ...Buffer.from('assistant\n')]);
  });
});

// GPT-2's byte-to-unicode alphabet, as byte-level BPE tokenizer.json files use it.
function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let i = 33; i <= 126; i++) bs.push(i);
  for (let i = 161; i <= 172; i++) bs.push(i);
  for (let i = 174; i <= 255; i++) bs.push(i);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) if (!bs.includes(b)) (bs.push(b), cs.push(256 + n++));
  const map: string[] = new Array(256);
  bs.forEach((b, i) => (map[b] = String.fromCodePoint(cs[i]!)));
  return map;
}

const qwenRegex = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const qwen25Template =
  "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}" +
  "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}{%- endif %}" +
  '{%- for message in messages %}{%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}' +
  "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endif %}{%- endfor %}" +
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

/** A miniature Qwen2-style tokenizer directory: byte-level BPE with a few merges and ChatML specials. */
function writeQwenStyle(dir: string, template: string | null, templateFile = false, arrayMerges = false): void {
  mkdirSync(dir, { recursive: true });
  const b2u = bytesToUnicode();
  const vocab: Record<string, number> = {};
  b2u.forEach((ch, b) => (vocab[ch] = b));
  const merges = [['Ġ', 't'], ['h', 'e'], ['Ġt', 'he'], ['1', '2']];
  let next = 256;
  for (const [a, b] of merges) vocab[a! + b!] = next++;
  const specials = ['<|endoftext|>', '<|im_start|>', '<|im_end|>'].map((content, i) => ({
    id: next + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
  }));
  const bl = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
  const tokenizer = {
    version: '1.0', truncation: null, padding: null, added_tokens: specials, normalizer: { type: 'NFC' },
    pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: qwenRegex }, behavior: 'Isolated', invert: false }, bl] },
    post_processor: bl, decoder: bl,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: arrayMerges ? merges : merges.map((m) => m.join(' ')) },
  };
  const config: Record<string, unknown> = { bos_token: null, eos_token: '<|im_end|>', pad_token: '<|endoftext|>', clean_up_tokenization_spaces: false, tokenizer_class: 'Qwen2Tokenizer' };
  if (template !== null && !templateFile) config.chat_template = template;
  writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
  writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config));
  if (template !== null && templateFile) writeFileSync(path.join(dir, 'chat_template.jinja'), template);
}

describe('standard tokenizer.json (byte-level BPE, Qwen2 layout)', () => {
  test('merges apply, specials split out, decode inverts encode', () => {
    const dir = path.join(tmpRoot, 'qwen');
    writeQwenStyle(dir, qwen25Template);
    const tok = ModelTokenizer.fromDir(dir);
    expect(tok.vocabSize).toBe(263);
    expect(tok.eosTokenId).toBe(262);
    // "the" at a word start merges to Ġthe (258); '12' merges (259) but digits split one by one by the regex
    expect(tok.encode(' the')).toEqual([258]);
    expect(tok.encode('the the')).toEqual([116, 257, 258]);
    expect(tok.encode('12')).toEqual([49, 50]);
    expect(tok.encode('x<|im_end|>')).toEqual([120, 262]);
    // tokenizers >= 0.20 write merges as pairs instead of "a b" strings
    const dirPairs = path.join(tmpRoot, 'qwen-pairs');
    writeQwenStyle(dirPairs, null, false, true);
    expect(ModelTokenizer.fromDir(dirPairs).encode('the the 12')).toEqual(tok.encode('the the 12'));
    const rng = new Rng(9);
    for (let i = 0; i < 20; i++) {
      const text = randomText(rng, 40).normalize('NFC');
      expect(tok.decode(tok.encode(text))).toBe(text);
    }
  });

  test('Qwen2.5 chat template (default system prompt) and a template from chat_template.jinja', () => {
    const dir = path.join(tmpRoot, 'qwen-chat');
    writeQwenStyle(dir, qwen25Template);
    const tok = ModelTokenizer.fromDir(dir);
    expect(tok.applyChatTemplate([{ role: 'user', content: 'What is 2+2?' }])).toBe(
      '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' +
        '<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n',
    );
    const dir2 = path.join(tmpRoot, 'llama-chat');
    const llamaTemplate =
      "{{- bos_token }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}" +
      "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}";
    writeQwenStyle(dir2, llamaTemplate, true);
    const cfgPath = path.join(dir2, 'tokenizer_config.json');
    writeFileSync(cfgPath, JSON.stringify({ bos_token: { content: '<|endoftext|>', special: true }, eos_token: '<|im_end|>' }));
    const t2 = ModelTokenizer.fromDir(dir2);
    expect(t2.applyChatTemplate([{ role: 'user', content: '  hi  ' }])).toBe(
      '<|endoftext|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
    );
    expect(t2.bosTokenId).toBe(260);
  });

  test('errors: no template, failing template, broken tokenizer.json', () => {
    const none = path.join(tmpRoot, 'none');
    writeQwenStyle(none, null);
    expect(() => ModelTokenizer.fromDir(none).applyChatTemplate([{ role: 'user', content: 'x' }])).toThrow(/has no chat template/);
    const raising = path.join(tmpRoot, 'raising');
    writeQwenStyle(raising, "{%- if messages[0].role != 'user' %}{{ raise_exception('first message must be from the user') }}{%- endif %}ok");
    const tok = ModelTokenizer.fromDir(raising);
    expect(tok.applyChatTemplate([{ role: 'user', content: 'x' }])).toBe('ok');
    expect(() => tok.applyChatTemplate([{ role: 'assistant', content: 'x' }])).toThrow(/rendering the chat template failed.*first message must be from the user/);
    const broken = path.join(tmpRoot, 'broken');
    mkdirSync(broken);
    writeFileSync(path.join(broken, 'tokenizer.json'), '{"model": ');
    expect(() => ModelTokenizer.fromDir(broken)).toThrow(/tokenizer\.json: not valid JSON/);
    expect(() => ModelTokenizer.fromDir(path.join(tmpRoot, 'nowhere'))).toThrow(/no tokenizer\.json/);
  });
});

// A BPE tokenizer trained by the Rust `tokenizers` library in the Qwen2 layout, with the Rust library's encodings of
// awkward strings (contractions, whitespace runs, CJK, emoji, decomposed accents, special tokens) as reference.
const bpeFixture = path.join(packageRoot, 'test', 'fixtures', 'tokenizer-bpe');
const describeBpe = existsSync(path.join(bpeFixture, 'reference.json')) ? describe : describe.skip;
describeBpe('Rust tokenizers reference (test/fixtures/tokenizer-bpe, from scripts/reference/make_hf_fixtures.py)', () => {
  const ref = JSON.parse(readFileSync(path.join(bpeFixture, 'reference.json'), 'utf8')) as {
    probes: Array<{ text: string; ids: number[]; decoded: string }>;
    chat: Array<{ role: string; content: string }>;
    chat_text: string;
    chat_ids: number[];
    vocab_size: number;
  };
  const tok = ModelTokenizer.fromDir(bpeFixture);

  test('same ids and decoded text as the Rust library for every probe', () => {
    expect(tok.vocabSize).toBe(ref.vocab_size);
    for (const p of ref.probes) {
      expect({ text: p.text, ids: tok.encode(p.text) }).toEqual({ text: p.text, ids: p.ids });
      expect(tok.decode(p.ids)).toBe(p.decoded);
    }
  });

  test("Qwen2.5 chat template renders and tokenizes as transformers' apply_chat_template", () => {
    expect(tok.applyChatTemplate(ref.chat, { addGenerationPrompt: true })).toBe(ref.chat_text);
    expect(tok.encodeChat(ref.chat)).toEqual(ref.chat_ids);
  });
});
