// `clipo serve`: an OpenAI-compatible HTTP server on node:http over a ServeBackend (src/serve/backend.ts).
// Routes: GET /health, GET /metrics (Prometheus text), GET /v1/models, GET /v1/models/{id},
// POST /v1/chat/completions, POST /v1/completions (both with `stream: true` as server-sent events). Errors are JSON
// in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
//
// This thread only parses, validates, formats and writes: the engine runs in the backend (a worker thread for
// `clipo serve`), which batches requests continuously, so /health answers at once whatever the load. A request
// whose client goes away is cancelled in the engine.
import http from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { LocalModel } from '../eval/localmodel.js';
import { InProcessBackend, type ServeBackend } from './backend.js';
import { chatRequest, completionRequest, describeIssues, messageText, refusedField, type ChatRequest, type CompletionRequest } from './protocol.js';
import type { JobEvent, JobSpec, TokenLogprob } from './scheduler.js';

const MAX_BODY = 8 * 1024 * 1024;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type = 'invalid_request_error',
    readonly param: string | null = null,
  ) {
    super(message);
  }
}

export interface ServeOptions {
  /** default max_tokens for chat requests that give none (capped by the context); completions default to 16 */
  defaultMaxTokens?: number;
  log?: (msg: string) => void;
  /** most sequences in the running batch (default 32) */
  maxBatchSequences?: number;
  /** when set, /v1 routes need `Authorization: Bearer <apiKey>` */
  apiKey?: string;
}

const errorBody = (e: HttpError) => ({ error: { message: e.message, type: e.type, param: e.param, code: null } });

function badRequest(err: import('zod').ZodError): HttpError {
  const d = describeIssues(err);
  return new HttpError(400, d.message, 'invalid_request_error', d.param);
}

/** Chat log-probs in OpenAI's format. */
function chatLogprobs(lps: TokenLogprob[]) {
  return lps.map((t) => ({ token: t.token, logprob: t.logprob ?? 0, bytes: t.bytes, top_logprobs: t.top.map((x) => ({ token: x.token, logprob: x.logprob, bytes: x.bytes })) }));
}

/** Legacy completions log-probs: parallel lists; text_offset counts characters from the start of the choice's text. */
class CompletionLogprobs {
  tokens: string[] = [];
  token_logprobs: Array<number | null> = [];
  top_logprobs: Array<Record<string, number> | null> = [];
  text_offset: number[] = [];
  private offset = 0;
  add(lps: TokenLogprob[]): CompletionLogprobs {
    const part = new CompletionLogprobs();
    for (const t of lps) {
      for (const target of [this, part]) {
        target.tokens.push(t.token);
        target.token_logprobs.push(t.logprob);
        target.top_logprobs.push(t.logprob === null ? null : Object.fromEntries(t.top.map((x) => [x.token, x.logprob])));
        target.text_offset.push(this.offset);
      }
      this.offset += t.token.length;
    }
    return part;
  }
  toJSON() {
    return { tokens: this.tokens, token_logprobs: this.token_logprobs, top_logprobs: this.top_logprobs, text_offset: this.text_offset };
  }
}

function bearerMatches(header: string | undefined, key: string): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(header ?? '');
  if (!m) return false;
  const a = Buffer.from(m[1].trim()), b = Buffer.from(key);
  return a.length === b.length && timingSafeEqual(a, b);
}

export function createServeHandler(backend: ServeBackend, opts: ServeOptions = {}): http.RequestListener {
  let counter = 0;
  const log = opts.log ?? (() => {});
  const info = backend.info;
  const modelCard = () => ({ id: info.name, object: 'model', created: 0, owned_by: 'clipo', max_model_len: info.contextLength });

  const checkModel = (name: string) => {
    if (name !== info.name) throw new HttpError(404, `The model '${name}' does not exist (this server serves '${info.name}')`, 'invalid_request_error', 'model');
  };

  /** The fields both endpoints share, as a JobSpec (kind-specific fields filled by the caller). */
  const baseSpec = (r: ChatRequest | CompletionRequest): Omit<JobSpec, 'kind' | 'maxTokens' | 'logprobs' | 'echo'> => {
    const bias: Array<[number, number]> = [];
    for (const [k, v] of Object.entries(r.logit_bias ?? {})) {
      const id = Number(k);
      if (id >= info.vocabSize) throw new HttpError(400, `logit_bias: token id ${k} is out of range [0, ${info.vocabSize})`, 'invalid_request_error', 'logit_bias');
      bias.push([id, v]);
    }
    if (r.stream_options != null && !r.stream) throw new HttpError(400, 'stream_options: only allowed with stream: true', 'invalid_request_error', 'stream_options');
    return {
      n: r.n ?? 1,
      temperature: r.temperature ?? 1,
      topP: r.top_p ?? 1,
      topK: r.top_k == null || r.top_k < 0 ? 0 : r.top_k,
      minP: r.min_p ?? 0,
      repetitionPenalty: r.repetition_penalty ?? 1,
      logitBias: bias,
      // no seed: a fresh one per request, as OpenAI-style servers do
      seed: r.seed ?? Math.floor(Math.random() * 2 ** 31),
      stop: r.stop == null ? [] : typeof r.stop === 'string' ? [r.stop] : r.stop,
    };
  };

  function parseChat(body: Record<string, unknown>): { spec: JobSpec; r: ChatRequest } {
    const parsed = chatRequest.safeParse(body);
    if (!parsed.success) throw badRequest(parsed.error);
    const r = parsed.data;
    checkModel(r.model);
    if (r.top_logprobs != null && !r.logprobs) throw new HttpError(400, 'top_logprobs: needs logprobs: true', 'invalid_request_error', 'top_logprobs');
    const messages = r.messages.map((m) => ({ role: m.role === 'developer' ? 'system' : m.role, content: messageText(m.content) }));
    const maxTokens = r.max_completion_tokens ?? r.max_tokens ?? null;
    return { r, spec: { kind: 'chat', messages, maxTokens, logprobs: r.logprobs ? r.top_logprobs ?? 0 : null, echo: false, ...baseSpec(r) } };
  }

  function parseCompletion(body: Record<string, unknown>): { spec: JobSpec; r: CompletionRequest } {
    const parsed = completionRequest.safeParse(body);
    if (!parsed.success) throw badRequest(parsed.error);
    const r = parsed.data;
    checkModel(r.model);
    if (r.best_of != null && r.best_of !== 1 && r.best_of !== (r.n ?? 1)) throw new HttpError(400, 'best_of: only best_of = n (or 1) is supported (no ranking of samples)', 'invalid_request_error', 'best_of');
    if (r.max_tokens === 0 && !r.echo) throw new HttpError(400, 'max_tokens: 0 is only allowed with echo: true', 'invalid_request_error', 'max_tokens');
    const p = r.prompt;
    const prompts: Array<string | number[]> = typeof p === 'string' ? [p] : p.length > 0 && typeof p[0] === 'number' ? [p as number[]] : (p as Array<string | number[]>);
    if (prompts.length * (r.n ?? 1) > 4 * 64) throw new HttpError(400, `prompt: at most 256 prompts x n per request`, 'invalid_request_error', 'prompt');
    return { r, spec: { kind: 'completion', prompts, maxTokens: r.max_tokens ?? null, logprobs: r.logprobs ?? null, echo: r.echo ?? false, ...baseSpec(r) } };
  }

  /** Runs one request: JSON body in, JSON or SSE out. */
  function serve(kind: 'chat' | 'completion', body: Record<string, unknown>, req: http.IncomingMessage, res: http.ServerResponse, done: (status: number, note: string) => void) {
    const refusedBy = refusedField(body);
    if (refusedBy) throw new HttpError(400, refusedBy.message, 'invalid_request_error', refusedBy.param);
    const { spec, r } = kind === 'chat' ? parseChat(body) : parseCompletion(body);
    const stream = r.stream === true;
    const includeUsage = stream && r.stream_options?.include_usage === true;
    const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${Date.now().toString(36)}${(counter++).toString(36)}`;
    const created = Math.floor(Date.now() / 1000);
    const object = kind === 'chat' ? 'chat.completion' : 'text_completion';
    const chunkObject = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    const nChoices = (spec.kind === 'chat' ? 1 : spec.prompts!.length) * spec.n;
    const texts: string[] = Array(nChoices).fill('');
    const finish: Array<'stop' | 'length' | null> = Array(nChoices).fill(null);
    const chatLps: Array<ReturnType<typeof chatLogprobs>> = Array.from({ length: nChoices }, () => []);
    const cmplLps = Array.from({ length: nChoices }, () => new CompletionLogprobs());
    const completionTokens: number[] = Array(nChoices).fill(0);
    let promptTokens = 0;
    let queueMs = 0;
    let finished = false;
    let started = false;
    const usage = () => {
      const c = completionTokens.reduce((a, b) => a + b, 0);
      return { prompt_tokens: promptTokens, completion_tokens: c, total_tokens: promptTokens + c };
    };
    const sse = (obj: unknown) => res.write(`data: ${JSON.stringify(obj)}\n\n`);
    const chunk = (choices: unknown[]) => sse({ id, object: chunkObject, created, model: info.name, choices, ...(includeUsage ? { usage: null } : {}) });
    const startStream = () => {
      if (started) return;
      started = true;
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
      if (kind === 'chat') chunk(Array.from({ length: nChoices }, (_, index) => ({ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null })));
    };

    const onEvent = (e: JobEvent) => {
      if (finished) return;
      if (e.type === 'error') {
        finished = true;
        const err = new HttpError(e.status, e.message, e.status >= 500 ? 'server_error' : 'invalid_request_error', e.param);
        if (started) {
          sse(errorBody(err));
          res.end('data: [DONE]\n\n');
          done(e.status, 'error in stream');
        } else sendJson(res, e.status, errorBody(err), () => done(e.status, ''));
        return;
      }
      if (e.type === 'start') {
        promptTokens = e.promptTokens;
        queueMs = e.queueMs;
        if (stream) startStream();
      } else if (e.type === 'delta') {
        texts[e.choice] += e.text;
        let lpChat: ReturnType<typeof chatLogprobs> | null = null;
        let lpCmpl: CompletionLogprobs | null = null;
        if (e.logprobs) {
          if (kind === 'chat') {
            lpChat = chatLogprobs(e.logprobs);
            for (const x of lpChat) chatLps[e.choice].push(x);
          }
          else lpCmpl = cmplLps[e.choice].add(e.logprobs);
        }
        if (stream && (e.text || e.logprobs?.length)) {
          if (kind === 'chat') chunk([{ index: e.choice, delta: { content: e.text }, logprobs: lpChat ? { content: lpChat, refusal: null } : null, finish_reason: null }]);
          else chunk([{ index: e.choice, text: e.text, logprobs: lpCmpl, finish_reason: null }]);
        }
      } else if (e.type === 'finish') {
        finish[e.choice] = e.finishReason;
        completionTokens[e.choice] = e.completionTokens;
        if (stream) {
          if (kind === 'chat') chunk([{ index: e.choice, delta: {}, logprobs: null, finish_reason: e.finishReason }]);
          else chunk([{ index: e.choice, text: '', logprobs: null, finish_reason: e.finishReason }]);
        }
      } else if (e.type === 'done') {
        finished = true;
        const note = `queue ${queueMs} ms, engine ${e.engineMs} ms, ${e.promptTokens}+${e.completionTokens} tokens`;
        if (stream) {
          if (includeUsage) sse({ id, object: chunkObject, created, model: info.name, choices: [], usage: usage() });
          res.end('data: [DONE]\n\n');
          done(200, note);
          return;
        }
        const choices =
          kind === 'chat'
            ? texts.map((text, index) => ({ index, message: { role: 'assistant', content: text }, finish_reason: finish[index], logprobs: spec.logprobs !== null ? { content: chatLps[index], refusal: null } : null }))
            : texts.map((text, index) => ({ index, text, finish_reason: finish[index], logprobs: spec.logprobs !== null ? cmplLps[index].toJSON() : null }));
        sendJson(res, 200, { id, object, created, model: info.name, choices, usage: usage() }, () => done(200, note));
      }
    };
    const cancel = backend.submit(spec, onEvent);
    // the client went away before the answer was complete: free its sequences in the engine
    res.on('close', () => {
      if (!finished) {
        finished = true;
        cancel();
        done(499, 'client closed the connection; cancelled');
      }
    });
  }

  function sendJson(res: http.ServerResponse, status: number, obj: unknown, after?: () => void) {
    const data = JSON.stringify(obj);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) });
    res.end(data);
    after?.();
  }

  async function metricsText(): Promise<string> {
    const m = await backend.metrics();
    const lines = [
      ['clipo_requests_total', 'counter', 'requests accepted by the engine', m.requests],
      ['clipo_requests_cancelled_total', 'counter', 'requests cancelled (client gone)', m.cancelled],
      ['clipo_decode_steps_total', 'counter', 'decode steps', m.steps],
      ['clipo_decode_step_sequences_total', 'counter', 'sum over decode steps of the sequences in the batch (mean batch size = this / steps)', m.stepSequences],
      ['clipo_generated_tokens_total', 'counter', 'tokens generated', m.generatedTokens],
      ['clipo_prompt_tokens_total', 'counter', 'prompt tokens prefilled', m.promptTokens],
      ['clipo_running_sequences', 'gauge', 'sequences in the running batch', m.running],
      ['clipo_waiting_requests', 'gauge', 'requests waiting for room in the batch', m.waiting],
    ] as const;
    return lines.map(([name, type, help, v]) => `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${name} ${v}\n`).join('');
  }

  return (req, res) => {
    const t0 = Date.now();
    const url = (req.url ?? '/').split('?')[0].replace(/\/+$/, '') || '/';
    const done = (status: number, note: string) => log(`${req.method} ${url} ${status} ${Date.now() - t0} ms${note ? ` (${note})` : ''}`);
    const fail = (e: unknown) => {
      const err = e instanceof HttpError ? e : new HttpError(500, `internal error: ${(e as Error)?.message ?? String(e)}`, 'server_error');
      if (res.headersSent) {
        res.destroy();
        return done(err.status, err.message);
      }
      sendJson(res, err.status, errorBody(err), () => done(err.status, err.status >= 500 ? err.message : ''));
    };
    if (url === '/health') {
      if (req.method !== 'GET') return fail(new HttpError(405, `use GET for ${url}`));
      return sendJson(res, backend.healthy() ? 200 : 503, { status: backend.healthy() ? 'ok' : 'engine down' });
    }
    if (opts.apiKey !== undefined && !bearerMatches(req.headers.authorization, opts.apiKey)) {
      return fail(new HttpError(401, 'missing or wrong API key (send Authorization: Bearer <key>)', 'authentication_error'));
    }
    if (url === '/metrics') {
      if (req.method !== 'GET') return fail(new HttpError(405, `use GET for ${url}`));
      metricsText().then((t) => {
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
        res.end(t);
      }, fail);
      return;
    }
    if (url === '/v1/models' || url.startsWith('/v1/models/')) {
      if (req.method !== 'GET') return fail(new HttpError(405, `use GET for ${url}`));
      if (url === '/v1/models') return sendJson(res, 200, { object: 'list', data: [modelCard()] });
      const name = decodeURIComponent(url.slice('/v1/models/'.length));
      if (name !== info.name) return fail(new HttpError(404, `The model '${name}' does not exist (this server serves '${info.name}')`, 'invalid_request_error', 'model'));
      return sendJson(res, 200, modelCard());
    }
    const kinds: Record<string, 'chat' | 'completion'> = { '/v1/chat/completions': 'chat', '/v1/completions': 'completion' };
    const kind = kinds[url];
    if (!kind) return fail(new HttpError(404, `no route ${req.method} ${url} (serving /v1/chat/completions, /v1/completions, /v1/models, /health, /metrics)`));
    if (req.method !== 'POST') return fail(new HttpError(405, `use POST for ${url}`));
    const chunks: Buffer[] = [];
    let size = 0;
    let aborted = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY && !aborted) {
        aborted = true;
        fail(new HttpError(413, `request body over ${MAX_BODY} bytes`));
        req.destroy();
      } else if (!aborted) chunks.push(c);
    });
    req.on('end', () => {
      if (aborted) return;
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        return fail(new HttpError(400, 'the request body is not valid JSON'));
      }
      if (typeof body !== 'object' || body === null || Array.isArray(body)) return fail(new HttpError(400, 'the request body must be a JSON object'));
      try {
        serve(kind, body as Record<string, unknown>, req, res, done);
      } catch (e) {
        fail(e);
      }
    });
  };
}

export interface RunningServer {
  server: http.Server;
  url: string;
  backend: ServeBackend;
  close: () => Promise<void>;
}

/** Starts the server over a backend, or over a model in process (its engine must support step-wise decoding). */
export async function startServer(model: LocalModel | ServeBackend, opts: ServeOptions & { host?: string; port?: number } = {}): Promise<RunningServer> {
  const backend: ServeBackend = 'submit' in model ? model : new InProcessBackend(model, { maxBatchSequences: opts.maxBatchSequences, defaultMaxTokens: opts.defaultMaxTokens });
  const server = http.createServer(createServeHandler(backend, opts));
  // generous keep-alive: evaluation clients reuse connections between requests
  server.keepAliveTimeout = 65_000;
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 8000, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const shownHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    server,
    url: `http://${shownHost}:${addr.port}/v1`,
    backend,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => void backend.close().then(r, r));
      }),
  };
}
