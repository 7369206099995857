// `clipo serve`: an OpenAI-compatible HTTP server over a LocalModel (native engine + tokenizer), on node:http.
// Routes: GET /v1/models, POST /v1/chat/completions, POST /v1/completions (non-streaming). Errors are JSON in
// OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
//
// Scheduling: one engine call at a time, from a queue in arrival order. Greedy requests (temperature 0) waiting
// in the queue with the same max_tokens and n are decoded together in one batched call: greedy decoding uses no
// randomness and the engine's rows are computed independently, so each answer is exactly what it would be alone.
// Sampled requests run one per call, so each keeps its own seed.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ContextLengthError, type LocalModel, type TextChoice, type TextParams } from '../eval/localmodel.js';
import { chatRequest, completionRequest, describeIssues, messageText, type ChatRequest, type CompletionRequest } from './protocol.js';

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
  /** default max_tokens when a request gives none: chat fills the context (capped here), completions 16 as OpenAI */
  defaultMaxTokens?: number;
  log?: (msg: string) => void;
  /** most sequences in one batched greedy call (default 32) */
  maxBatchSequences?: number;
  /** wait this long before starting an engine call, to gather more greedy requests (default 0: next tick) */
  batchWindowMs?: number;
}

export function createServeHandler(model: LocalModel, opts: ServeOptions = {}): http.RequestListener {
  let counter = 0;
  const log = opts.log ?? (() => {});
  const maxBatch = opts.maxBatchSequences ?? 32;
  interface Job {
    ids: number[];
    n: number;
    params: TextParams;
    resolve: (c: TextChoice[]) => void;
    reject: (e: unknown) => void;
  }
  const pending: Job[] = [];
  let busy = false;
  let scheduled = false;
  const batchable = (a: Job, b: Job) => a.params.temperature === 0 && b.params.temperature === 0 && a.params.maxNewTokens === b.params.maxNewTokens && a.n === b.n;
  /** Starts the next engine call once the engine is free; deferred so requests that arrived meanwhile are queued. */
  const schedule = () => {
    if (busy || scheduled || pending.length === 0) return;
    scheduled = true;
    const start = () => {
      scheduled = false;
      if (busy || pending.length === 0) return;
      busy = true;
      const head = pending.shift()!;
      const batch = [head];
      for (let i = 0; i < pending.length && (batch.length + 1) * head.n <= maxBatch; ) {
        if (batchable(head, pending[i])) batch.push(...pending.splice(i, 1));
        else i++;
      }
      try {
        const t0 = Date.now();
        const out = model.generate(batch.map((j) => ({ ids: j.ids, n: j.n, stop: j.params.stop ?? [] })), head.params);
        const tokens = out.reduce((a, cs) => a + cs.reduce((b, c) => b + c.completionTokens, 0), 0);
        const ms = Date.now() - t0;
        log(`engine: ${batch.length} request(s), ${batch.length * head.n} sequence(s), ${tokens} tokens in ${ms} ms (${((1000 * tokens) / Math.max(1, ms)).toFixed(0)} tokens/s)`);
        batch.forEach((j, i) => j.resolve(out[i]));
      } catch (e) {
        for (const j of batch) j.reject(e);
      } finally {
        busy = false;
        schedule();
      }
    };
    if (opts.batchWindowMs) setTimeout(start, opts.batchWindowMs);
    else setImmediate(start);
  };
  const enqueue = (ids: number[], n: number, params: TextParams) =>
    new Promise<TextChoice[]>((resolve, reject) => {
      pending.push({ ids, n, params, resolve, reject });
      schedule();
    });

  const params = (r: ChatRequest | CompletionRequest, maxTokens: number): TextParams => ({
    temperature: r.temperature ?? 1,
    topP: r.top_p ?? 1,
    maxNewTokens: maxTokens,
    // no seed: a fresh one per request, as OpenAI-style servers do
    seed: r.seed ?? Math.floor(Math.random() * 2 ** 31),
    stop: r.stop == null ? undefined : typeof r.stop === 'string' ? [r.stop] : r.stop,
  });

  const checkModel = (name: string) => {
    if (name !== model.name) throw new HttpError(404, `The model '${name}' does not exist (this server serves '${model.name}')`, 'invalid_request_error', 'model');
  };

  const run = async (ids: number[], n: number, p: TextParams): Promise<TextChoice[]> => {
    try {
      model.checkFits(ids, p.maxNewTokens);
    } catch (e) {
      if (e instanceof ContextLengthError) throw new HttpError(400, e.message, 'invalid_request_error', 'messages');
      throw e;
    }
    return enqueue(ids, n, p);
  };

  const usage = (promptTokens: number, choices: TextChoice[]) => {
    const completion = choices.reduce((a, c) => a + c.completionTokens, 0);
    return { prompt_tokens: promptTokens, completion_tokens: completion, total_tokens: promptTokens + completion };
  };

  const defaultMax = (ids: number[], fallback: number) => Math.max(1, Math.min(fallback, model.contextLength - ids.length));

  async function chat(body: unknown) {
    const parsed = chatRequest.safeParse(body);
    if (!parsed.success) {
      const d = describeIssues(parsed.error);
      throw new HttpError(400, d.message, 'invalid_request_error', d.param);
    }
    const r = parsed.data;
    if ((r as Record<string, unknown>).tools !== undefined) throw new HttpError(400, 'tools are not supported', 'invalid_request_error', 'tools');
    checkModel(r.model);
    const messages = r.messages.map((m) => ({ role: m.role === 'developer' ? 'system' : m.role, content: messageText(m.content) }));
    let ids: number[];
    try {
      ids = model.encodeChat(messages);
    } catch (e) {
      throw new HttpError(400, `messages: ${(e as Error).message}`, 'invalid_request_error', 'messages');
    }
    const maxTokens = r.max_completion_tokens ?? r.max_tokens ?? defaultMax(ids, opts.defaultMaxTokens ?? 4096);
    const choices = await run(ids, r.n ?? 1, params(r, maxTokens));
    return {
      id: `chatcmpl-${Date.now().toString(36)}${(counter++).toString(36)}`,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: model.name,
      choices: choices.map((c, index) => ({ index, message: { role: 'assistant', content: c.text }, finish_reason: c.finishReason, logprobs: null })),
      usage: usage(ids.length, choices),
    };
  }

  async function completions(body: unknown) {
    const parsed = completionRequest.safeParse(body);
    if (!parsed.success) {
      const d = describeIssues(parsed.error);
      throw new HttpError(400, d.message, 'invalid_request_error', d.param);
    }
    const r = parsed.data;
    checkModel(r.model);
    const prompt = typeof r.prompt === 'string' ? r.prompt : r.prompt[0];
    const ids = model.encodeText(prompt);
    const maxTokens = r.max_tokens ?? defaultMax(ids, 16);
    const choices = await run(ids, r.n ?? 1, params(r, maxTokens));
    return {
      id: `cmpl-${Date.now().toString(36)}${(counter++).toString(36)}`,
      object: 'text_completion',
      created: Math.floor(Date.now() / 1000),
      model: model.name,
      choices: choices.map((c, index) => ({ index, text: c.text, finish_reason: c.finishReason, logprobs: null })),
      usage: usage(ids.length, choices),
    };
  }

  return (req, res) => {
    const t0 = Date.now();
    const send = (status: number, obj: unknown) => {
      const data = JSON.stringify(obj);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) });
      res.end(data);
      log(`${req.method} ${req.url} ${status} ${Date.now() - t0} ms`);
    };
    const fail = (e: unknown) => {
      if (e instanceof HttpError) return send(e.status, { error: { message: e.message, type: e.type, param: e.param, code: null } });
      send(500, { error: { message: `internal error: ${(e as Error)?.message ?? String(e)}`, type: 'server_error', param: null, code: null } });
    };
    const url = (req.url ?? '/').split('?')[0].replace(/\/+$/, '');
    const routes: Record<string, (body: unknown) => Promise<unknown>> = { '/v1/chat/completions': chat, '/v1/completions': completions };
    if (url === '/v1/models' || url === '/health') {
      if (req.method !== 'GET') return fail(new HttpError(405, `use GET for ${url}`));
      if (url === '/health') return send(200, { status: 'ok' });
      return send(200, { object: 'list', data: [{ id: model.name, object: 'model', created: 0, owned_by: 'clipo', max_model_len: model.contextLength }] });
    }
    const handler = routes[url];
    if (!handler) return fail(new HttpError(404, `no route ${req.method} ${url} (serving /v1/chat/completions, /v1/completions, /v1/models)`));
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
      handler(body).then((r) => send(200, r), fail);
    });
  };
}

export async function startServer(model: LocalModel, opts: ServeOptions & { host?: string; port?: number } = {}): Promise<{ server: http.Server; url: string; close: () => Promise<void> }> {
  const server = http.createServer(createServeHandler(model, opts));
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
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
