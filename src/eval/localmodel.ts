// A model directory ready to answer prompts: the native engine plus the tokenizer's chat template. Shared by the
// local `clipo eval` backend and `clipo serve`. The engine is reached through `GenerateEngine` (the part of the
// Engine API used here) so that the text layer can be tested on its own.
import type { ModelTokenizer } from '../model/tokenizer.js';
import type { ChatMessage } from './types.js';
import type { GenerateRequest } from '../engine/engine.js';

/** The slice of Engine (src/engine/engine.ts) this module needs. */
export interface GenerateEngine {
  readonly config: { eosTokenIds: number[]; maxPositionEmbeddings: number; vocabSize: number };
  generate(req: GenerateRequest): { sequences: Array<{ promptIndex: number; sampleIndex: number; tokens: Int32Array; finishReason: 'stop' | 'length' }> };
}

export interface TextRequest {
  /** prompt token ids (from chat messages via the template, or raw text) */
  ids: number[];
  /** samples of this prompt */
  n: number;
  /** stop strings for this request (overrides params.stop) */
  stop?: string[];
}

export interface TextParams {
  temperature: number;
  topP: number;
  maxNewTokens: number;
  seed: number;
  /** stop strings: the text is cut before the first one and the finish reason becomes 'stop' */
  stop?: string[];
  /** most sequences decoded at once (engine default when absent) */
  maxBatch?: number;
}

export interface TextChoice {
  text: string;
  finishReason: 'stop' | 'length';
  completionTokens: number;
}

/** A prompt that does not fit in the model's context together with the requested new tokens. */
export class ContextLengthError extends Error {}

export class LocalModel {
  readonly stopTokens: number[];

  constructor(
    readonly engine: GenerateEngine,
    readonly tokenizer: ModelTokenizer,
    readonly name: string,
  ) {
    // config.json's eos ids plus the tokenizer's eos (chat models end a turn with e.g. <|im_end|>)
    const stops = new Set(engine.config.eosTokenIds);
    const eos = tokenizer.eosTokenId;
    if (eos !== null) stops.add(eos);
    this.stopTokens = [...stops];
  }

  get contextLength(): number {
    return this.engine.config.maxPositionEmbeddings;
  }

  encodeChat(messages: ChatMessage[]): number[] {
    return this.tokenizer.encodeChat(messages, { addGenerationPrompt: true });
  }

  encodeText(text: string): number[] {
    return this.tokenizer.encode(text);
  }

  /** Throws ContextLengthError when prompt + maxNewTokens exceeds the context, or the prompt is empty. */
  checkFits(ids: number[], maxNewTokens: number): void {
    if (ids.length === 0) throw new ContextLengthError('the prompt is empty after tokenization');
    if (ids.length + maxNewTokens > this.contextLength) {
      throw new ContextLengthError(`the prompt has ${ids.length} tokens; with max ${maxNewTokens} new tokens that exceeds the model's context of ${this.contextLength}`);
    }
  }

  /**
   * Samples every request in one engine call (prompt-major, n per prompt). All requests share `params.seed`; the
   * engine's per-sequence random streams make a sequence's tokens independent of the batch around it.
   */
  generate(requests: TextRequest[], params: TextParams): TextChoice[][] {
    for (const r of requests) this.checkFits(r.ids, params.maxNewTokens);
    const out: TextChoice[][] = requests.map(() => []);
    // the engine takes one n per call: group prompts by n (usually all equal)
    const byN = new Map<number, number[]>();
    requests.forEach((r, i) => byN.set(r.n, [...(byN.get(r.n) ?? []), i]));
    for (const [n, idx] of byN) {
      const res = this.engine.generate({
        prompts: idx.map((i) => Int32Array.from(requests[i].ids)),
        n,
        maxNewTokens: params.maxNewTokens,
        temperature: params.temperature,
        topP: params.topP,
        seed: params.seed,
        stopTokens: this.stopTokens,
        ...(params.maxBatch ? { maxBatch: params.maxBatch } : {}),
      });
      for (const s of res.sequences) out[idx[s.promptIndex]][s.sampleIndex] = this.toChoice(s.tokens, s.finishReason, requests[idx[s.promptIndex]].stop ?? params.stop);
    }
    return out;
  }

  private toChoice(tokens: Int32Array, finish: 'stop' | 'length', stop: string[] | undefined): TextChoice {
    // the stop token itself is not part of the answer
    const body = finish === 'stop' && tokens.length > 0 && this.stopTokens.includes(tokens[tokens.length - 1]) ? tokens.subarray(0, tokens.length - 1) : tokens;
    // (the tokenizers library refuses an empty list: a sequence that stopped at once is the empty answer)
    let text = body.length ? this.tokenizer.decode(body, { skipSpecialTokens: true }) : '';
    let finishReason = finish;
    if (stop?.length) {
      let cut = -1;
      for (const s of stop) {
        const at = text.indexOf(s);
        if (at >= 0 && (cut < 0 || at < cut)) cut = at;
      }
      if (cut >= 0) {
        text = text.slice(0, cut);
        finishReason = 'stop';
      }
    }
    return { text, finishReason, completionTokens: tokens.length };
  }
}
