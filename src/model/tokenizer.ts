// Tokenizer + chat template of a model directory: tokenizer.json through @huggingface/tokenizers, the chat template
// (tokenizer_config.json "chat_template", chat_template.jinja or chat_template.json) through @huggingface/jinja,
// the way transformers' apply_chat_template renders it (special-token strings in scope, add_generation_prompt).
import { Template } from '@huggingface/jinja';
import { renderTemplatesBounded } from './template-render.js';
import { Tokenizer } from '@huggingface/tokenizers';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../native.js';

export interface ChatMessage {
  role: string;
  content: string;
}

/** Files that belong to the tokenizer; copied along when a model directory is saved. */
export const tokenizerFiles = [
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'chat_template.jinja',
  'chat_template.json',
  'vocab.json',
  'merges.txt',
  'added_tokens.json',
];

/** The byte-level tokenizer that ships with clipo (ids 0..255 are the bytes, then <|im_start|> <|im_end|> <|pad|>). */
export const byteTokenizerDir = path.join(packageRoot, 'assets', 'tokenizers', 'byte');
export const BYTE_TOKENIZER_VOCAB = 259;

function readJson(file: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${file}: expected a JSON object`);
  return v as Record<string, unknown>;
}

/** A special token in tokenizer_config.json is a string or an AddedToken dict {content: ...}. */
function tokenString(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return null;
}

export class ModelTokenizer {
  /** max token id + 1 (the model's vocab_size must be at least this) */
  readonly vocabSize: number;
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly padToken: string | null;
  readonly chatTemplate: string | null;
  private readonly template: Template | null;

  private constructor(
    private readonly tok: Tokenizer,
    private readonly config: Record<string, unknown>,
    chatTemplate: string | null,
    readonly source: string,
  ) {
    let max = -1;
    for (const id of tok.get_vocab(true).values()) if (id > max) max = id;
    this.vocabSize = max + 1;
    this.bosToken = tokenString(config.bos_token);
    this.eosToken = tokenString(config.eos_token);
    this.padToken = tokenString(config.pad_token);
    this.chatTemplate = chatTemplate;
    try {
      this.template = chatTemplate === null ? null : new Template(chatTemplate);
    } catch (e) {
      throw new Error(`${source}: the chat template does not parse (${(e as Error).message})`);
    }
  }

  /** Loads tokenizer.json (+ tokenizer_config.json and chat template files next to it) from a directory. */
  static fromDir(dir: string): ModelTokenizer {
    const file = path.join(dir, 'tokenizer.json');
    if (!existsSync(file)) throw new Error(`${dir}: no tokenizer.json`);
    const json = readJson(file);
    const cfgFile = path.join(dir, 'tokenizer_config.json');
    const config = existsSync(cfgFile) ? readJson(cfgFile) : {};
    let tok: Tokenizer;
    try {
      tok = new Tokenizer(json, config);
    } catch (e) {
      throw new Error(`${file}: cannot build the tokenizer (${(e as Error).message})`);
    }
    return new ModelTokenizer(tok, config, findChatTemplate(dir, config), dir);
  }

  /** The byte-level tokenizer shipped with clipo. */
  static byte(): ModelTokenizer {
    return ModelTokenizer.fromDir(byteTokenizerDir);
  }

  /** Text -> ids. Special-token strings in the text become their ids; no BOS/EOS is added unless asked. */
  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): number[] {
    return this.tok.encode(text, { add_special_tokens: opts.addSpecialTokens ?? false }).ids;
  }

  /**
   * Ids -> text. A model's vocab_size is often larger than its tokenizer (padding rows); ids the tokenizer does not
   * know would silently vanish in the library, so they are written as `<|unk:ID|>` instead.
   */
  decode(ids: ArrayLike<number>, opts: { skipSpecialTokens?: boolean } = {}): string {
    const all = Array.from(ids);
    const o = { skip_special_tokens: opts.skipSpecialTokens ?? false };
    if (all.every((id) => id >= 0 && id < this.vocabSize && this.tok.id_to_token(id) !== undefined)) return this.tok.decode(all, o);
    let out = '';
    let run: number[] = [];
    for (const id of all) {
      if (id >= 0 && id < this.vocabSize && this.tok.id_to_token(id) !== undefined) {
        run.push(id);
        continue;
      }
      if (run.length) out += this.tok.decode(run, o);
      run = [];
      out += `<|unk:${id}|>`;
    }
    if (run.length) out += this.tok.decode(run, o);
    return out;
  }

  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.tok.id_to_token(id);
  }

  get bosTokenId(): number | null {
    return this.bosToken === null ? null : (this.tok.token_to_id(this.bosToken) ?? null);
  }

  /**
   * The most UTF-8 bytes any token's vocabulary string has (added tokens included): a token never covers more input
   * bytes than that for byte-level and SentencePiece-style vocabularies, so a text of B bytes has at least
   * B / maxTokenBytes tokens (a cheap bound that refuses an over-long prompt without tokenizing it).
   */
  get maxTokenBytes(): number {
    if (this.maxBytes === undefined) {
      let m = 1;
      for (const t of this.tok.get_vocab(true).keys()) m = Math.max(m, Buffer.byteLength(t, 'utf8'));
      this.maxBytes = m;
    }
    return this.maxBytes;
  }
  private maxBytes: number | undefined;

  get eosTokenId(): number | null {
    return this.eosToken === null ? null : (this.tok.token_to_id(this.eosToken) ?? null);
  }

  get padTokenId(): number | null {
    return this.padToken === null ? null : (this.tok.token_to_id(this.padToken) ?? null);
  }

  /** Renders messages with the chat template, like transformers' apply_chat_template(tokenize=False). */
  applyChatTemplate(messages: ChatMessage[], opts: { addGenerationPrompt?: boolean; extra?: Record<string, unknown> } = {}): string {
    return this.applyChatTemplateMany([messages], opts)[0]!;
  }

  /**
   * applyChatTemplate for many conversations at once. The template comes with the model directory, so it is
   * untrusted: it renders in a separate thread with a time limit, a heap limit and a size limit on the output
   * (template-render.ts); a batch pays that thread's round trip once.
   */
  applyChatTemplateMany(conversations: ChatMessage[][], opts: { addGenerationPrompt?: boolean; extra?: Record<string, unknown> } = {}): string[] {
    if (!this.template) throw new Error(`${this.source}: the tokenizer has no chat template (tokenizer_config.json "chat_template" or chat_template.jinja)`);
    const specials: Record<string, string> = {};
    for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token', 'sep_token', 'cls_token', 'mask_token']) {
      const s = tokenString(this.config[key]);
      if (s !== null) specials[key] = s;
    }
    const contexts = conversations.map((messages) => ({ ...specials, ...opts.extra, messages, add_generation_prompt: opts.addGenerationPrompt ?? true }));
    try {
      return renderTemplatesBounded(this.chatTemplate!, contexts);
    } catch (e) {
      throw new Error(`${this.source}: rendering the chat template failed (${(e as Error).message})`);
    }
  }

  /** Chat messages -> prompt ids (the rendered template, tokenized without adding special tokens, as HF does). */
  encodeChat(messages: ChatMessage[], opts: { addGenerationPrompt?: boolean } = {}): number[] {
    return this.encode(this.applyChatTemplate(messages, opts));
  }
}

function findChatTemplate(dir: string, config: Record<string, unknown>): string | null {
  const pick = (v: unknown): string | null => {
    if (typeof v === 'string') return v;
    // a list of named templates: [{name: 'default', template: ...}, ...]
    if (Array.isArray(v)) {
      const named = v.find((t) => t && t.name === 'default') ?? v[0];
      return typeof named?.template === 'string' ? named.template : null;
    }
    return null;
  };
  const fromConfig = pick(config.chat_template);
  if (fromConfig !== null) return fromConfig;
  const jinja = path.join(dir, 'chat_template.jinja');
  if (existsSync(jinja)) return readFileSync(jinja, 'utf8');
  const json = path.join(dir, 'chat_template.json');
  if (existsSync(json)) return pick(readJson(json).chat_template);
  return null;
}
