#!/usr/bin/env node
// Writes assets/tokenizers/byte/{tokenizer.json,tokenizer_config.json}: a byte-level tokenizer in the standard
// Hugging Face format (loads in transformers' PreTrainedTokenizerFast and in @huggingface/tokenizers).
//   ids 0..255  the bytes (a BPE model with no merges over GPT-2's byte-to-unicode alphabet, so id = byte value)
//   256 <|im_start|>   257 <|im_end|> (end of turn = EOS)   258 <|pad|>
// A ChatML chat template, the format of the Qwen2.5 instruct models.
import { writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const out = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'assets', 'tokenizers', 'byte');

// GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to code points 256+.
function bytesToUnicode() {
  const bs = [];
  for (let i = 33; i <= 126; i++) bs.push(i);
  for (let i = 161; i <= 172; i++) bs.push(i);
  for (let i = 174; i <= 255; i++) bs.push(i);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n++); }
  const map = new Array(256);
  bs.forEach((b, i) => { map[b] = String.fromCodePoint(cs[i]); });
  return map;
}

const vocab = {};
bytesToUnicode().forEach((ch, b) => { vocab[ch] = b; });
const specials = ['<|im_start|>', '<|im_end|>', '<|pad|>'];
const added = specials.map((content, i) => ({
  id: 256 + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
}));
const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
const tokenizer = {
  version: '1.0',
  truncation: null,
  padding: null,
  added_tokens: added,
  normalizer: null,
  pre_tokenizer: byteLevel,
  post_processor: byteLevel,
  decoder: byteLevel,
  model: {
    type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
    fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: [],
  },
};
const chatTemplate =
  "{%- for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{%- endfor %}" +
  "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}";
const config = {
  tokenizer_class: 'PreTrainedTokenizerFast',
  added_tokens_decoder: Object.fromEntries(added.map(({ id, ...t }) => [String(id), t])),
  additional_special_tokens: ['<|im_start|>', '<|im_end|>'],
  bos_token: null,
  eos_token: '<|im_end|>',
  pad_token: '<|pad|>',
  unk_token: null,
  clean_up_tokenization_spaces: false,
  model_max_length: 131072,
  chat_template: chatTemplate,
};
mkdirSync(out, { recursive: true });
writeFileSync(path.join(out, 'tokenizer.json'), JSON.stringify(tokenizer, null, 2) + '\n');
writeFileSync(path.join(out, 'tokenizer_config.json'), JSON.stringify(config, null, 2) + '\n');
console.log(`wrote ${out}`);
