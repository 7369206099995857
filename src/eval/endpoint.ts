// The OpenAI-compatible backend: any server that speaks /v1/chat/completions (vLLM, SGLang, `clipo serve`, ...),
// through the official `openai` client.
//
// - One request per sample (n = 1), each with its own seed derived from the sample's identity, so a sample's
//   seed does not depend on which other samples are still missing on a resumed run.
// - Up to `concurrency` requests in flight.
// - Retries with exponential backoff and full jitter (delay = random(0, min(maxDelay, base·2^attempt)), or the
//   server's Retry-After when it sends one) on 429, 408, 5xx, timeouts and network errors. Other 4xx answers are
//   the request's fault (e.g. a prompt longer than the context) and become an error record at once, except
//   401/403/404, which mean the endpoint or model name is wrong for every request: those stop the run.
// - A sample still failing after the last retry becomes an error record (see store.ts: retried on the next run).
// - A server that stops answering altogether (many samples in a row failing after all their retries) stops the
//   run rather than turning every remaining sample into an error record; a server that cannot be reached at all,
//   or does not serve the model, is caught before the first sample by a GET /models (prepare()).
import OpenAI from 'openai';
import { keySeed } from '../util/seeds.js';
import type { Completion, GenRequest, Generator, SamplingParams } from './types.js';

export interface EndpointOptions {
  /** e.g. http://127.0.0.1:8000/v1 (a URL without a path gets /v1) */
  baseURL: string;
  /** the served model name sent in each request */
  model: string;
  apiKey?: string;
  concurrency: number;
  /** retries after the first attempt (default 6) */
  maxRetries?: number;
  /** per-request timeout, ms (default 10 minutes: long reasoning answers are slow) */
  timeoutMs?: number;
  /** backoff base and cap, ms (default 500 and 30000) */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** for tests: replaces setTimeout-based sleeping */
  sleep?: (ms: number) => Promise<void>;
  /** called on each retry (for logging) */
  onRetry?: (info: { attempt: number; delayMs: number; error: string }) => void;
  /** consecutive samples failing after all retries that stop the run (default max(8, 2 x concurrency)) */
  maxConsecutiveFailures?: number;
}

export function normaliseBaseURL(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new Error(`--endpoint: not a URL: '${raw}'`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`--endpoint: expected an http(s) URL, got '${raw}'`);
  if (u.pathname === '/' || u.pathname === '') u.pathname = '/v1';
  return u.toString().replace(/\/+$/, '');
}

/** An error that makes every further request pointless; it stops the run instead of filling the store with errors. */
export class FatalEndpointError extends Error {}

type Classified = { retry: boolean; fatal: boolean; message: string; retryAfterMs?: number };

export function classifyError(e: unknown): Classified {
  if (e instanceof OpenAI.APIConnectionTimeoutError) return { retry: true, fatal: false, message: 'request timed out' };
  if (e instanceof OpenAI.APIConnectionError) return { retry: true, fatal: false, message: `connection error: ${e.message}` };
  if (e instanceof OpenAI.APIError) {
    const status = e.status ?? 0;
    const message = `HTTP ${status}: ${e.message}`;
    const retryAfterMs = parseRetryAfter(e.headers);
    if (status === 429 || status === 408 || status >= 500) return { retry: true, fatal: false, message, retryAfterMs };
    if (status === 401 || status === 403 || status === 404) return { retry: false, fatal: true, message };
    return { retry: false, fatal: false, message };
  }
  return { retry: true, fatal: false, message: e instanceof Error ? e.message : String(e) };
}

function parseRetryAfter(headers: Headers | undefined): number | undefined {
  const v = headers?.get?.('retry-after');
  if (!v) return undefined;
  const s = Number(v);
  if (Number.isFinite(s) && s >= 0) return s * 1000;
  const t = Date.parse(v);
  return Number.isFinite(t) ? Math.max(0, t - Date.now()) : undefined;
}

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class EndpointGenerator implements Generator {
  readonly info: Generator['info'];
  private client: OpenAI;
  private opts: Required<Omit<EndpointOptions, 'apiKey' | 'onRetry'>> & Pick<EndpointOptions, 'onRetry'>;

  constructor(opts: EndpointOptions) {
    const baseURL = normaliseBaseURL(opts.baseURL);
    this.opts = {
      baseURL,
      model: opts.model,
      concurrency: opts.concurrency,
      maxRetries: opts.maxRetries ?? 6,
      timeoutMs: opts.timeoutMs ?? 600_000,
      backoffBaseMs: opts.backoffBaseMs ?? 500,
      backoffMaxMs: opts.backoffMaxMs ?? 30_000,
      sleep: opts.sleep ?? defaultSleep,
      onRetry: opts.onRetry,
      maxConsecutiveFailures: opts.maxConsecutiveFailures ?? Math.max(8, 2 * opts.concurrency),
    };
    // maxRetries 0: the retry policy is ours (above), so that it is visible, logged and the same for every server.
    this.client = new OpenAI({ baseURL, apiKey: opts.apiKey ?? process.env.OPENAI_API_KEY ?? 'EMPTY', maxRetries: 0, timeout: this.opts.timeoutMs });
    this.info = { backend: 'endpoint', model: opts.model, endpoint: baseURL };
  }

  /** Checks that the server answers and serves the model (servers without /models are let through). */
  async prepare(): Promise<void> {
    let ids: string[];
    try {
      const page = await this.client.models.list({ timeout: Math.min(this.opts.timeoutMs, 30_000) });
      ids = page.data.map((m) => m.id);
    } catch (e) {
      if (e instanceof OpenAI.APIConnectionError) throw new FatalEndpointError(`cannot reach ${this.opts.baseURL} (${e.message}); is the server running?`);
      if (e instanceof OpenAI.APIError && (e.status === 401 || e.status === 403)) throw new FatalEndpointError(`${this.opts.baseURL}: HTTP ${e.status}: ${e.message} (check --api-key)`);
      return; // no usable /models: the first request will tell
    }
    if (ids.length && !ids.includes(this.opts.model)) {
      throw new FatalEndpointError(`${this.opts.baseURL} does not serve '${this.opts.model}' (it serves: ${ids.slice(0, 10).join(', ')})`);
    }
  }

  async generate(requests: GenRequest[], params: SamplingParams, onSample: (req: GenRequest, sample: number, c: Completion) => void): Promise<void> {
    const work: Array<[GenRequest, number]> = [];
    for (const r of requests) for (const s of r.samples) work.push([r, s]);
    let next = 0;
    let fatal: Error | undefined;
    let failuresInARow = 0;
    const worker = async () => {
      while (!fatal && next < work.length) {
        const [req, sample] = work[next++];
        try {
          const c = await this.one(req, sample, params);
          onSample(req, sample, c);
          if (c.error === undefined) failuresInARow = 0;
          else if (c.retriesExhausted && ++failuresInARow >= this.opts.maxConsecutiveFailures && !fatal) {
            fatal = new FatalEndpointError(`${this.opts.baseURL}: ${failuresInARow} samples in a row failed after ${this.opts.maxRetries} retries (last: ${c.error}); stopping, finished samples are saved, run the same command again to continue`);
          }
        } catch (e) {
          if (e instanceof FatalEndpointError) fatal = e;
          else throw e;
        }
      }
    };
    const n = Math.max(1, Math.min(this.opts.concurrency, work.length));
    await Promise.all(Array.from({ length: n }, worker));
    if (fatal) throw fatal;
  }

  /** One sample with retries; resolves to a completion or an error record, throws only FatalEndpointError. */
  private async one(req: GenRequest, sample: number, params: SamplingParams): Promise<Completion & { retriesExhausted?: boolean }> {
    const seed = keySeed(req.seed, sample);
    let last = '';
    for (let attempt = 0; attempt <= this.opts.maxRetries; attempt++) {
      const t0 = Date.now();
      try {
        const res = await this.client.chat.completions.create({
          model: this.opts.model,
          messages: req.messages as OpenAI.Chat.ChatCompletionMessageParam[],
          temperature: params.temperature,
          top_p: params.topP,
          max_tokens: params.maxNewTokens,
          seed,
          n: 1,
        });
        const choice = res.choices?.[0];
        if (!choice) throw new Error('response has no choices');
        return {
          text: choice.message?.content ?? '',
          finishReason: choice.finish_reason ?? null,
          usage: res.usage ? { promptTokens: res.usage.prompt_tokens, completionTokens: res.usage.completion_tokens } : undefined,
          attempts: attempt + 1,
        };
      } catch (e) {
        const c = classifyError(e);
        // the client reports an aborted-on-timeout request as a timeout only when the abort error comes from its
        // own realm; the elapsed time says it either way
        if (e instanceof OpenAI.APIConnectionError && Date.now() - t0 >= this.opts.timeoutMs) c.message = 'request timed out';
        last = c.message;
        if (c.fatal) throw new FatalEndpointError(`${this.opts.baseURL} (model '${this.opts.model}'): ${c.message}`);
        if (!c.retry) return { text: '', finishReason: null, error: c.message, attempts: attempt + 1 };
        if (attempt === this.opts.maxRetries) return { text: '', finishReason: null, error: c.message, attempts: attempt + 1, retriesExhausted: true };
        const cap = Math.min(this.opts.backoffMaxMs, this.opts.backoffBaseMs * 2 ** attempt);
        const delayMs = c.retryAfterMs !== undefined ? Math.min(c.retryAfterMs, this.opts.backoffMaxMs) : Math.random() * cap;
        this.opts.onRetry?.({ attempt: attempt + 1, delayMs, error: c.message });
        await this.opts.sleep(delayMs);
      }
    }
    return { text: '', finishReason: null, error: last, attempts: this.opts.maxRetries + 1, retriesExhausted: true };
  }
}
