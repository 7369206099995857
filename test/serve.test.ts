// clipo serve's HTTP layer, in process: OpenAI wire format (driven with the official openai client), request
// validation, stop strings, context checks and serialised engine access. The engine is a scripted stand-in with
// the Engine.generate signature, the tokenizer is clipo's real byte-level tokenizer with its chat template; the
// real engine is exercised end to end in serve-engine.test.ts.
import OpenAI from 'openai';
import path from 'node:path';
import { LocalModel, type GenerateEngine } from '../src/eval/localmodel.js';
import { EndpointGenerator } from '../src/eval/endpoint.js';
import { runEval } from '../src/eval/run.js';
import { ModelTokenizer } from '../src/model/tokenizer.js';
import { startServer } from '../src/serve/server.js';
import type { StepEngine } from '../src/serve/scheduler.js';
import type { DecodeStepToken } from '../src/engine/engine.js';
import { tmpDir, writeArithmeticJsonl } from './eval-fakes.js';

const IM_END = 257;

/**
 * A step-wise engine that answers with the text `reply(prompt)` (as bytes), then the stop token; honours
 * maxNewTokens ('length' when cut). Records every decodeAdd, every removal and the largest running batch, so the
 * tests can check what reached the engine. Log-probs are a fixed function of the position; logits (for echo) put
 * 2 on token (position mod 7) and 0 elsewhere.
 */
function fakeEngine(reply: (prompt: string, sample: number, seed: number, temperature: number) => string, ctx = 512) {
  const calls: Array<{ prompts: string[]; n: number; maxNewTokens: number; temperature: number; topP?: number; topK?: number; minP?: number; repetitionPenalty?: number; logitBias?: ReadonlyMap<number, number>; topLogprobs?: number; seed: number; stopTokens?: number[]; promptIndex?: number }> = [];
  const live = new Map<number, { bytes: number[]; at: number; max: number; stops: number[]; top: number }>();
  const removed: number[] = [];
  const stats = { maxLive: 0, steps: 0, produced: 0 };
  let nextId = 1;
  const engine: StepEngine = {
    config: { eosTokenIds: [IM_END], maxPositionEmbeddings: ctx, vocabSize: 259 },
    decodeAdd(req) {
      const prompt = Buffer.from(Array.from(req.prompt).filter((t) => t < 256)).toString('utf8');
      calls.push({ prompts: [prompt], n: req.n ?? 1, maxNewTokens: req.maxNewTokens, temperature: req.temperature, topP: req.topP, topK: req.topK, minP: req.minP, repetitionPenalty: req.repetitionPenalty, logitBias: req.logitBias, topLogprobs: req.topLogprobs, seed: req.seed, stopTokens: req.stopTokens, promptIndex: req.promptIndex });
      const ids: number[] = [];
      for (let s = 0; s < (req.n ?? 1); s++) {
        const id = nextId++;
        live.set(id, { bytes: [...Buffer.from(reply(prompt, s, req.seed, req.temperature), 'utf8'), IM_END], at: 0, max: req.maxNewTokens, stops: req.stopTokens ?? [IM_END], top: req.topLogprobs ?? 0 });
        ids.push(id);
      }
      stats.maxLive = Math.max(stats.maxLive, live.size);
      return ids;
    },
    decodeStep() {
      stats.steps++;
      stats.maxLive = Math.max(stats.maxLive, live.size);
      const out: DecodeStepToken[] = [];
      for (const [id, q] of live) {
        const token = q.bytes[q.at++];
        stats.produced++;
        const stopped = q.stops.includes(token);
        const finished = stopped || q.at >= q.max || q.at >= q.bytes.length;
        const t: DecodeStepToken = { id, token, logprob: -0.25 * q.at, finished, stopped };
        if (q.top) t.top = Array.from({ length: q.top }, (_, j) => ({ token: j === 0 ? token : 65 + j, logprob: -0.25 * q.at - j }));
        out.push(t);
        if (finished) live.delete(id);
      }
      return out;
    },
    decodeRemove(id) {
      removed.push(id);
      return live.delete(id);
    },
    logits(tokens, batch, length) {
      const z = new Float32Array(batch * length * 259);
      for (let i = 0; i < length; i++) z[i * 259 + (i % 7)] = 2;
      return z;
    },
  };
  return { engine, calls, live, removed, stats };
}

type Fake = ReturnType<typeof fakeEngine>;

async function withServer<T>(reply: Parameters<typeof fakeEngine>[0], fn: (url: string, calls: Fake['calls'], fake: Fake) => Promise<T>, ctx?: number, opts: { maxBatchSequences?: number; apiKey?: string } = {}): Promise<T> {
  const fake = fakeEngine(reply, ctx);
  const model = new LocalModel(fake.engine as unknown as GenerateEngine, ModelTokenizer.byte(), 'tiny');
  const s = await startServer(model, { port: 0, ...opts });
  try {
    return await fn(s.url, fake.calls, fake);
  } finally {
    await s.close();
  }
}

async function post(url: string, route: string, body: unknown): Promise<{ status: number; json: any }> {
  const r = await fetch(url + route, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: r.status, json: await r.json() };
}

describe('clipo serve (HTTP layer)', () => {
  test('binds to loopback and answers /v1/models', async () => {
    await withServer(() => 'x', async (url) => {
      expect(new URL(url).hostname).toBe('127.0.0.1');
      const client = new OpenAI({ baseURL: url, apiKey: 'none' });
      const models = await client.models.list();
      expect(models.data.map((m) => m.id)).toEqual(['tiny']);
    });
  });

  test('chat completions through the openai client: template, n, seed, sampling params, usage', async () => {
    await withServer((prompt, s, seed, t) => `[${prompt.length}] seed ${seed} t ${t} sample ${s} ✓`, async (url, calls) => {
      const client = new OpenAI({ baseURL: url, apiKey: 'none' });
      const res = await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi é' }], n: 3, temperature: 0.7, top_p: 0.9, max_tokens: 100, seed: 42 });
      expect(calls.length).toBe(1);
      const rendered = '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi é<|im_end|>\n<|im_start|>assistant\n';
      // the engine saw the chat template's bytes (special tokens are ids >= 256, dropped by the fake's decoding)
      expect(calls[0].prompts[0]).toBe(rendered.replace(/<\|im_start\|>|<\|im_end\|>/g, ''));
      expect(calls[0]).toMatchObject({ n: 3, maxNewTokens: 100, temperature: 0.7, topP: 0.9, seed: 42, stopTokens: [IM_END] });
      expect(res.object).toBe('chat.completion');
      expect(res.model).toBe('tiny');
      expect(res.choices.map((c) => c.index)).toEqual([0, 1, 2]);
      const promptIds = ModelTokenizer.byte().encodeChat([{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi é' }]);
      for (const c of res.choices) {
        expect(c.message.content).toBe(`[${calls[0].prompts[0].length}] seed 42 t 0.7 sample ${c.index} ✓`);
        expect(c.finish_reason).toBe('stop');
      }
      const genTokens = res.choices.reduce((a, c) => a + Buffer.byteLength(c.message.content!, 'utf8') + 1, 0);
      expect(res.usage).toEqual({ prompt_tokens: promptIds.length, completion_tokens: genTokens, total_tokens: promptIds.length + genTokens });
    });
  });

  test('max_tokens cuts with finish_reason length; stop strings cut the text with finish_reason stop', async () => {
    await withServer(() => 'alpha beta gamma', async (url) => {
      const a = await post(url, '/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'q' }], max_tokens: 5, temperature: 0 });
      expect(a.status).toBe(200);
      expect(a.json.choices[0]).toMatchObject({ message: { role: 'assistant', content: 'alpha' }, finish_reason: 'length' });
      const b = await post(url, '/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'q' }], stop: [' gam', 'zzz'], max_tokens: 50 });
      expect(b.json.choices[0]).toMatchObject({ message: { content: 'alpha beta' }, finish_reason: 'stop' });
      const c = await post(url, '/completions', { model: 'tiny', prompt: 'Once', max_tokens: 50, stop: 'beta' });
      expect(c.status).toBe(200);
      expect(c.json).toMatchObject({ object: 'text_completion', choices: [{ index: 0, text: 'alpha ', finish_reason: 'stop' }] });
      expect(c.json.usage.prompt_tokens).toBe(4);
    });
  });

  test('multi-part text content is joined; developer role maps to system', async () => {
    await withServer((p) => p, async (url, calls) => {
      const r = await post(url, '/chat/completions', { model: 'tiny', messages: [{ role: 'developer', content: 'D' }, { role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }] }] });
      expect(r.status).toBe(200);
      expect(calls[0].prompts[0]).toBe('system\nD\nuser\nab\nassistant\n');
    });
  });

  const bad: Array<[string, unknown, number, RegExp]> = [
    ['/chat/completions', '{"model": "tiny", ', 400, /not valid JSON/],
    ['/chat/completions', [1, 2], 400, /JSON object/],
    ['/chat/completions', { model: 'tiny', messages: [] }, 400, /messages/],
    ['/chat/completions', { model: 'tiny' }, 400, /messages/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'wizard', content: 'x' }] }, 400, /messages\.0\.role/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 5 }] }, 400, /messages\.0\.content/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], n: 0 }, 400, /^n:/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], n: 65 }, 400, /^n:/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], n: 1.5 }, 400, /^n:/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], temperature: -0.1 }, 400, /^temperature:/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], temperature: 'hot' }, 400, /^temperature:/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], top_p: 0 }, 400, /^top_p:/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], top_p: 1.01 }, 400, /^top_p:/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], max_tokens: 0 }, 400, /^max_tokens:/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], seed: -3 }, 400, /^seed:/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], stop: ['a', 'b', 'c', 'd', 'e'] }, 400, /^stop:/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], stop: '' }, 400, /^stop:/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], stream: 'yes' }, 400, /^stream:/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], logprobs: 1 }, 400, /^logprobs:/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], top_logprobs: 2 }, 400, /^top_logprobs: needs logprobs/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], logprobs: true, top_logprobs: 21 }, 400, /^top_logprobs:/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], stream_options: { include_usage: true } }, 400, /^stream_options:/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], frequency_penalty: 0.5 }, 400, /^frequency_penalty:/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], presence_penalty: 1 }, 400, /^presence_penalty:/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], response_format: { type: 'json_object' } }, 400, /^response_format:/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], logit_bias: { 300: 5 } }, 400, /^logit_bias: token id 300 is out of range/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], logit_bias: { abc: 5 } }, 400, /^logit_bias/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], logit_bias: { 5: 101 } }, 400, /^logit_bias/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], top_k: -2 }, 400, /^top_k:/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], min_p: 1.5 }, 400, /^min_p:/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], repetition_penalty: 0 }, 400, /^repetition_penalty:/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], ignore_eos: true }, 400, /^ignore_eos:/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], tool_choice: 'auto' }, 400, /^tool_choice:/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], tools: [] }, 400, /tools are not supported/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], max_tokens: 600 }, 400, /exceeds the model's context of 512/],
    ['/chat/completions', { model: 'other', messages: [{ role: 'user', content: 'x' }] }, 404, /'other' does not exist/],
    ['/completions', { model: 'tiny', prompt: 7 }, 400, /^prompt:/],
    ['/completions', { model: 'tiny', prompt: 'x', echo: 'yes' }, 400, /^echo:/],
    ['/completions', { model: 'tiny', prompt: 'x', suffix: 'y' }, 400, /^suffix:/],
    ['/completions', { model: 'tiny', prompt: 'x', best_of: 3 }, 400, /^best_of:/],
    ['/completions', { model: 'tiny', prompt: 'x', max_tokens: 0 }, 400, /^max_tokens: 0 is only allowed with echo/],
    ['/completions', { model: 'tiny', prompt: 'x', logprobs: 21 }, 400, /^logprobs:/],
    ['/completions', { model: 'tiny', prompt: [] }, 400, /^prompt:/],
    ['/completions', { model: 'tiny', prompt: [[]] }, 400, /^prompt/],
    ['/completions', { model: 'tiny', prompt: [1, -2] }, 400, /^prompt/],
    ['/completions', { model: 'tiny', prompt: ['a', [1]] }, 400, /^prompt/],
    ['/completions', { model: 'tiny', prompt: [5, 300] }, 400, /^prompt\.0\.1: token id 300 is out of range/],
    ['/embeddings', { model: 'tiny', input: 'x' }, 404, /no route/],
  ];
  test.each(bad)('POST %s %j -> %i', async (route, body, status, msg) => {
    await withServer(() => 'x', async (url, calls) => {
      const r = await post(url, route, body);
      expect(r.status).toBe(status);
      expect(r.json.error.message).toMatch(msg);
      expect(typeof r.json.error.type).toBe('string');
      expect(calls.length).toBe(0);
    });
  });

  test('wrong methods are 405 with a JSON error', async () => {
    await withServer(() => 'x', async (url) => {
      const r = await fetch(url + '/chat/completions');
      expect(r.status).toBe(405);
      expect(((await r.json()) as { error: { message: string } }).error.message).toMatch(/POST/);
    });
  });

  test('concurrent requests are all answered, one engine call at a time, in order', async () => {
    await withServer((p) => p.slice(-12), async (url, calls) => {
      const rs = await Promise.all(Array.from({ length: 6 }, (_, i) => post(url, '/completions', { model: 'tiny', prompt: `prompt ${i}`, max_tokens: 20, seed: i })));
      expect(rs.every((r) => r.status === 200)).toBe(true);
      expect(rs.map((r) => r.json.choices[0].text)).toEqual(Array.from({ length: 6 }, (_, i) => `prompt ${i}`));
      expect(calls.length).toBe(6);
    });
  });

  test('concurrent requests share the running batch at default settings, greedy and sampled alike; each keeps its own stop strings and seed', async () => {
    await withServer((p) => `echo ${p.slice(7)} end`, async (url, calls, fake) => {
      const body = (i: number, extra: object = {}) => ({ model: 'tiny', prompt: `prompt ${i}`.padEnd(14, '.'), max_tokens: 30, temperature: 0, ...extra });
      const rs = await Promise.all([
        post(url, '/completions', body(0)),
        post(url, '/completions', body(1, { stop: ' end' })),
        post(url, '/completions', body(2, { seed: 99 })),
        post(url, '/completions', body(3, { max_tokens: 31 })),
        post(url, '/completions', body(4, { temperature: 0.5, seed: 7 })),
      ]);
      expect(rs.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
      expect(rs.map((r) => r.json.choices[0].text)).toEqual(['echo 0...... end', 'echo 1......', 'echo 2...... end', 'echo 3...... end', 'echo 4...... end']);
      expect(rs[1].json.choices[0].finish_reason).toBe('stop');
      expect(fake.stats.maxLive).toBe(5);
      expect(calls.find((c) => c.prompts[0].startsWith('prompt 4'))).toMatchObject({ temperature: 0.5, seed: 7 });
      expect(calls.find((c) => c.prompts[0].startsWith('prompt 3'))).toMatchObject({ temperature: 0, maxNewTokens: 31 });
    });
  });

  test('the running batch never exceeds maxBatchSequences', async () => {
    await withServer((p) => p, async (url, calls, fake) => {
      const rs = await Promise.all(Array.from({ length: 5 }, (_, i) => post(url, '/completions', { model: 'tiny', prompt: `p${i}`, max_tokens: 4, temperature: 0 })));
      expect(rs.every((r) => r.status === 200)).toBe(true);
      expect(fake.stats.maxLive).toBe(2);
      expect(calls.length).toBe(5);
    }, 512, { maxBatchSequences: 2 });
  });

  test('stream: true through the openai client (chat and completions): the same text, finish reasons, usage last, [DONE]', async () => {
    await withServer((p, s) => `reply ${s} to ${p.length} é✓ bytes`, async (url) => {
      const client = new OpenAI({ baseURL: url, apiKey: 'none' });
      const msgs = [{ role: 'user' as const, content: 'Hi' }];
      const whole = await client.chat.completions.create({ model: 'tiny', messages: msgs, n: 2, seed: 3, max_tokens: 100 });
      const stream = await client.chat.completions.create({ model: 'tiny', messages: msgs, n: 2, seed: 3, max_tokens: 100, stream: true, stream_options: { include_usage: true } });
      const text = ['', ''];
      const finish: Array<string | null> = [null, null];
      const chunks = [];
      for await (const c of stream) chunks.push(c);
      for (const c of chunks.slice(0, -1)) {
        expect(c.object).toBe('chat.completion.chunk');
        expect(c.usage).toBeNull();
        for (const ch of c.choices) {
          text[ch.index] += ch.delta.content ?? '';
          if (ch.finish_reason) finish[ch.index] = ch.finish_reason;
        }
      }
      expect(chunks[0].choices[0].delta.role).toBe('assistant');
      expect(chunks.length).toBeGreaterThan(6); // really streamed, piece by piece
      const last = chunks[chunks.length - 1];
      expect(last.choices).toEqual([]);
      expect(last.usage).toEqual(whole.usage);
      expect(text).toEqual(whole.choices.map((c) => c.message.content));
      expect(finish).toEqual(['stop', 'stop']);
      // completions
      const cs = await client.completions.create({ model: 'tiny', prompt: 'Once', max_tokens: 8, stream: true });
      let t = '';
      let fr = null;
      for await (const c of cs) {
        t += c.choices[0]?.text ?? '';
        fr = c.choices[0]?.finish_reason ?? fr;
      }
      expect(t).toBe('reply 0 ');
      expect(fr).toBe('length');
      // the raw wire format
      const raw = await fetch(url + '/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny', prompt: 'x', max_tokens: 3, stream: true }) });
      expect(raw.headers.get('content-type')).toMatch(/^text\/event-stream/);
      const body = await raw.text();
      expect(body.endsWith('data: [DONE]\n\n')).toBe(true);
      for (const ev of body.trim().split('\n\n')) expect(ev).toMatch(/^data: /);
    });
  });

  test('a stop string stops decoding as it appears; usage counts only the tokens made; streaming never shows a part of it', async () => {
    const long = 'alpha beta gamma ' + 'delta '.repeat(300);
    await withServer(() => long, async (url, calls, fake) => {
      const r = await post(url, '/completions', { model: 'tiny', prompt: 'q', max_tokens: 2000, stop: ['beta'] });
      expect(r.json.choices[0]).toMatchObject({ text: 'alpha ', finish_reason: 'stop' });
      expect(r.json.usage.completion_tokens).toBe('alpha beta'.length);
      expect(fake.stats.produced).toBe('alpha beta'.length);
      expect(fake.live.size).toBe(0);
      // a stop string at the first character costs one token
      const f = await post(url, '/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'q' }], max_tokens: 2000, stop: 'a' });
      expect(f.json.choices[0]).toMatchObject({ message: { content: '' }, finish_reason: 'stop' });
      expect(f.json.usage.completion_tokens).toBe(1);
      // streamed: the pieces never include the start of the stop string
      const raw = await fetch(url + '/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny', prompt: 'q', max_tokens: 2000, stop: ['a gam', 'zz'], stream: true }) });
      const pieces = (await raw.text()).split('\n\n').filter((l) => l.startsWith('data: {')).map((l) => JSON.parse(l.slice(6)).choices[0]?.text ?? '');
      expect(pieces.join('')).toBe('alpha bet');
      expect(calls.length).toBe(3);
    }, 4096);
  });

  test('a client that goes away is cancelled: its sequences leave the engine', async () => {
    await withServer(() => 'z'.repeat(5000), async (url, _calls, fake) => {
      const ac = new AbortController();
      const res = await fetch(url + '/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny', prompt: 'q', n: 3, max_tokens: 4000, stream: true }), signal: ac.signal });
      const reader = res.body!.getReader();
      await reader.read();
      expect(fake.live.size).toBe(3);
      ac.abort();
      for (let i = 0; i < 100 && fake.live.size > 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(fake.live.size).toBe(0);
      expect(fake.removed.length).toBe(3);
      expect(fake.stats.produced).toBeLessThan(3 * 4000);
      // a non-streamed request too
      const ac2 = new AbortController();
      const p = fetch(url + '/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny', prompt: 'q', max_tokens: 4000 }), signal: ac2.signal }).catch((e: Error) => e);
      for (let i = 0; i < 100 && fake.live.size === 0; i++) await new Promise((r) => setTimeout(r, 5));
      ac2.abort();
      expect((await p as Error).name).toBe('AbortError');
      for (let i = 0; i < 100 && fake.live.size > 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(fake.live.size).toBe(0);
      // the server still answers
      const ok = await post(url, '/completions', { model: 'tiny', prompt: 'q', max_tokens: 2 });
      expect(ok.json.choices[0].text).toBe('zz');
    }, 8192);
  });

  test('logprobs: chat (logprobs + top_logprobs) and completions (logprobs n, echo with max_tokens 0 as evaluation harnesses send)', async () => {
    await withServer(() => 'abc', async (url, calls) => {
      const client = new OpenAI({ baseURL: url, apiKey: 'none' });
      const r = await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'q' }], logprobs: true, top_logprobs: 2 });
      expect(calls[0].topLogprobs).toBe(2);
      const content = r.choices[0].logprobs!.content!;
      expect(content.map((t) => t.token)).toEqual(['a', 'b', 'c']);
      expect(content.map((t) => t.logprob)).toEqual([-0.25, -0.5, -0.75]);
      expect(content[0].bytes).toEqual([97]);
      expect(content[1].top_logprobs).toEqual([{ token: 'b', logprob: -0.5, bytes: [98] }, { token: 'B', logprob: -1.5, bytes: [66] }]);
      // completions, several prompts (one as token ids), n = 2: prompt-major choices
      const c = await post(url, '/completions', { model: 'tiny', prompt: ['xy', 'hi'], n: 2, max_tokens: 5, logprobs: 1, seed: 4 });
      expect(c.status).toBe(200);
      expect(c.json.choices.map((x: { index: number; text: string }) => [x.index, x.text])).toEqual([[0, 'abc'], [1, 'abc'], [2, 'abc'], [3, 'abc']]);
      expect(calls.slice(1).map((x) => [x.prompts[0], x.promptIndex, x.n, x.seed])).toEqual([['xy', 0, 2, 4], ['hi', 1, 2, 4]]);
      expect(c.json.usage.prompt_tokens).toBe(4);
      expect(c.json.choices[0].logprobs).toEqual({ tokens: ['a', 'b', 'c'], token_logprobs: [-0.25, -0.5, -0.75], top_logprobs: [{ a: -0.25 }, { b: -0.5 }, { c: -0.75 }], text_offset: [0, 1, 2] });
      // token-id prompts: one list, or a list of lists
      const ids = await post(url, '/completions', { model: 'tiny', prompt: [104, 105], max_tokens: 5 });
      const ids2 = await post(url, '/completions', { model: 'tiny', prompt: [[104, 105], [120]], max_tokens: 5 });
      expect([ids.json.choices.length, ids2.json.choices.length]).toEqual([1, 2]);
      expect(calls.slice(3).map((x) => x.prompts[0])).toEqual(['hi', 'hi', 'x']);
      calls.splice(3);
      // echo + logprobs + max_tokens 0: the prompt scored, nothing generated
      const e = await post(url, '/completions', { model: 'tiny', prompt: [1, 2, 3], max_tokens: 0, echo: true, logprobs: 1 });
      expect(e.status).toBe(200);
      const lp = e.json.choices[0].logprobs;
      expect(e.json.choices[0].text).toBe('\u0001\u0002\u0003');
      expect(e.json.usage.completion_tokens).toBe(0);
      // fake logits: row i has 2 at token i % 7, 0 elsewhere (259 tokens); token i+1 is scored on row i
      const lse = Math.log(Math.exp(2) + 258);
      expect(lp.token_logprobs[0]).toBeNull();
      expect(lp.token_logprobs[1]).toBeCloseTo(0 - lse, 5); // token 2 on row 0 (peak at 0)
      expect(lp.token_logprobs[2]).toBeCloseTo(0 - lse, 5); // token 3 on row 1 (peak at 1)
      expect(Object.values(lp.top_logprobs[1] as Record<string, number>)[0]).toBeCloseTo(2 - lse, 5);
      expect(lp.top_logprobs[0]).toBeNull();
      // echo with generation: prompt text then the completion
      const e2 = await post(url, '/completions', { model: 'tiny', prompt: 'Q: ', max_tokens: 5, echo: true });
      expect(e2.json.choices[0].text).toBe('Q: abc');
    });
  });

  test('top_k, min_p, repetition_penalty and logit_bias reach the engine; GET /v1/models/{id}', async () => {
    await withServer(() => 'ok', async (url, calls) => {
      const r = await post(url, '/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'q' }], top_k: 5, min_p: 0.1, repetition_penalty: 1.2, logit_bias: { '65': -100, '66': 3 } });
      expect(r.status).toBe(200);
      expect(calls[0]).toMatchObject({ topK: 5, minP: 0.1, repetitionPenalty: 1.2 });
      expect([...calls[0].logitBias!]).toEqual([[65, -100], [66, 3]]);
      await post(url, '/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'q' }], top_k: -1 });
      expect(calls[1]).toMatchObject({ topK: 0, minP: 0, repetitionPenalty: 1 });
      const client = new OpenAI({ baseURL: url, apiKey: 'none' });
      expect(await client.models.retrieve('tiny')).toMatchObject({ id: 'tiny', object: 'model' });
      const miss = await fetch(url + '/models/other');
      expect(miss.status).toBe(404);
      expect(((await miss.json()) as { error: { param: string } }).error.param).toBe('model');
    });
  });

  test('a 7 MB prompt is refused by its size, without tokenizing it; the server keeps answering', async () => {
    await withServer(() => 'ok', async (url, calls) => {
      const t0 = Date.now();
      const r = await post(url, '/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x'.repeat(7_000_000) }] });
      expect(r.status).toBe(400);
      expect(r.json.error).toMatchObject({ param: 'messages' });
      expect(r.json.error.message).toMatch(/at least \d+ tokens \(7000000 bytes\), more than the model's context of 512/);
      // (tokenizing 7 MB with the byte-level tokenizer takes tens of seconds)
      expect(Date.now() - t0).toBeLessThan(5000);
      const c = await post(url, '/completions', { model: 'tiny', prompt: ['ok', 'y'.repeat(100_000)] });
      expect(c.json.error).toMatchObject({ param: 'prompt' });
      expect(calls.length).toBe(0);
      expect((await post(url, '/completions', { model: 'tiny', prompt: 'q', max_tokens: 2 })).json.choices[0].text).toBe('ok');
    });
  });

  test('--api-key: /v1 needs the bearer key, /health does not', async () => {
    await withServer(() => 'ok', async (url) => {
      const bad = new OpenAI({ baseURL: url, apiKey: 'wrong', maxRetries: 0 });
      await expect(bad.models.list()).rejects.toMatchObject({ status: 401 });
      const none = await fetch(url + '/chat/completions', { method: 'POST', body: '{}' });
      expect(none.status).toBe(401);
      expect(((await none.json()) as { error: { type: string } }).error.type).toBe('authentication_error');
      const good = new OpenAI({ baseURL: url, apiKey: 's3cret' });
      expect((await good.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'q' }] })).choices[0].message.content).toBe('ok');
      expect((await fetch(url.replace(/\/v1$/, '/health'))).status).toBe(200);
    }, 512, { apiKey: 's3cret' });
  });

  test('clipo eval --endpoint against it: the whole path from data file to results', async () => {
    const dir = tmpDir();
    const { file, answers } = writeArithmeticJsonl(dir, 'arith.jsonl', 5);
    // an oracle "model": answers the question in the prompt correctly
    await withServer((p) => {
      const q = [...answers.keys()].find((k) => p.includes(k))!;
      return `The sum is \\boxed{${answers.get(q)}}.`;
    }, async (url, calls) => {
      const res = await runEval({
        out: path.join(dir, 'out'),
        suite: null,
        benchmarks: [{ key: 'arith', display: 'Arith', file }],
        samples: 2,
        params: { temperature: 0.6, topP: 0.95, maxNewTokens: 64 },
        seed: 1,
        generator: new EndpointGenerator({ baseURL: url, model: 'tiny', concurrency: 3 }),
      });
      expect(res.benchmarks.arith).toMatchObject({ problems: 5, finished: 10, correct: 10, complete: true });
      expect(res.scores.arith).toBe(100);
      expect(calls.length).toBe(10);
      expect(calls.every((c) => c.temperature === 0.6 && c.topP === 0.95 && c.maxNewTokens === 64)).toBe(true);
    });
  });
});

describe('clipo serve flags', () => {
  const parse = async (...args: string[]) => {
    const { Command } = await import('commander');
    const { registerServe } = await import('../src/cli/commands/serve.js');
    const program = new Command().exitOverride();
    registerServe(program);
    program.commands[0].exitOverride();
    return program.parseAsync(['node', 'clipo', 'serve', ...args]).then(() => null, (e: Error) => e);
  };
  test.each([
    [[], /--model DIR is required/],
    [['--model', '/nonexistent/dir'], /--model: not a directory/],
    [['--model', '.', '--port', '70000'], /--port: must be at most 65535/],
    [['--model', '.', '--port', 'x'], /--port: expected a number/],
    [['--model', '.', '--threads', '0'], /--threads: must be at least 1/],
    [['--model', '.', '--max-batch', '0'], /--max-batch: must be at least 1/],
    [['--model', '.', '--api-key', ' '], /--api-key: must not be empty/],
    [['--model', '.', '--served-model-name', ' '], /--served-model-name: must not be empty/],
  ] as Array<[string[], RegExp]>)('%j is refused', async (args, msg) => {
    const e = await parse(...args);
    expect(e?.name).toBe('UsageError');
    expect(e?.message).toMatch(msg);
  });
});
