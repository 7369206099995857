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
import { tmpDir, writeArithmeticJsonl } from './eval-fakes.js';

const IM_END = 257;

/**
 * Answers with the text `reply(prompt)` (as bytes), then the stop token; honours maxNewTokens ('length' when cut).
 * Records every call so the tests can check what reached the engine.
 */
function fakeEngine(reply: (prompt: string, sample: number, seed: number, temperature: number) => string, ctx = 512) {
  const calls: Array<{ prompts: string[]; n: number; maxNewTokens: number; temperature: number; topP?: number; seed: number; stopTokens?: number[] }> = [];
  let inside = false;
  const engine: GenerateEngine = {
    config: { eosTokenIds: [IM_END], maxPositionEmbeddings: ctx, vocabSize: 259 },
    generate(req) {
      if (inside) throw new Error('re-entered');
      inside = true;
      const prompts = req.prompts.map((p) => Buffer.from(Array.from(p).filter((t) => t < 256)).toString('utf8'));
      calls.push({ prompts, n: req.n ?? 1, maxNewTokens: req.maxNewTokens, temperature: req.temperature, topP: req.topP, seed: req.seed, stopTokens: req.stopTokens });
      const sequences = [];
      for (let p = 0; p < prompts.length; p++) {
        for (let s = 0; s < (req.n ?? 1); s++) {
          const all = [...Buffer.from(reply(prompts[p], s, req.seed, req.temperature), 'utf8'), IM_END];
          const tokens = Int32Array.from(all.slice(0, req.maxNewTokens));
          sequences.push({ promptIndex: p, sampleIndex: s, tokens, finishReason: (tokens.length === all.length ? 'stop' : 'length') as 'stop' | 'length' });
        }
      }
      inside = false;
      return { sequences };
    },
  };
  return { engine, calls };
}

async function withServer<T>(reply: Parameters<typeof fakeEngine>[0], fn: (url: string, calls: ReturnType<typeof fakeEngine>['calls']) => Promise<T>, ctx?: number, opts: { batchWindowMs?: number; maxBatchSequences?: number } = {}): Promise<T> {
  const { engine, calls } = fakeEngine(reply, ctx);
  const model = new LocalModel(engine, ModelTokenizer.byte(), 'tiny');
  const s = await startServer(model, { port: 0, ...opts });
  try {
    return await fn(s.url, calls);
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
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], stream: true }, 400, /^stream:/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], logprobs: true }, 400, /^logprobs:/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], tools: [] }, 400, /tools are not supported/],
    ['/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], max_tokens: 600 }, 400, /exceeds the model's context of 512/],
    ['/chat/completions', { model: 'other', messages: [{ role: 'user', content: 'x' }] }, 404, /'other' does not exist/],
    ['/completions', { model: 'tiny', prompt: 7 }, 400, /^prompt:/],
    ['/completions', { model: 'tiny', prompt: 'x', echo: true }, 400, /^echo:/],
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

  test('queued greedy requests with the same max_tokens and n share one engine call; each keeps its own stop strings', async () => {
    await withServer((p) => `echo ${p.slice(7)} end`, async (url, calls) => {
      const body = (i: number, extra: object = {}) => ({ model: 'tiny', prompt: `prompt ${i}`.padEnd(14, '.'), max_tokens: 30, temperature: 0, ...extra });
      const rs = await Promise.all([
        post(url, '/completions', body(0)),
        post(url, '/completions', body(1, { stop: ' end' })),
        post(url, '/completions', body(2, { seed: 99 })),
        post(url, '/completions', body(3, { max_tokens: 31 })), // other max_tokens: not in the batch
        post(url, '/completions', body(4, { temperature: 0.5 })), // sampled: alone
      ]);
      expect(rs.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
      expect(rs.map((r) => r.json.choices[0].text)).toEqual(['echo 0...... end', 'echo 1......', 'echo 2...... end', 'echo 3...... end', 'echo 4...... end']);
      expect(rs[1].json.choices[0].finish_reason).toBe('stop');
      expect(calls.map((c) => c.prompts.length).sort()).toEqual([1, 1, 3]);
      const batched = calls.find((c) => c.prompts.length === 3)!;
      expect(batched).toMatchObject({ temperature: 0, maxNewTokens: 30 });
    }, 512, { batchWindowMs: 300 });
  });

  test('a batch never exceeds maxBatchSequences', async () => {
    await withServer((p) => p, async (url, calls) => {
      const rs = await Promise.all(Array.from({ length: 5 }, (_, i) => post(url, '/completions', { model: 'tiny', prompt: `p${i}`, max_tokens: 4, temperature: 0 })));
      expect(rs.every((r) => r.status === 200)).toBe(true);
      expect(Math.max(...calls.map((c) => c.prompts.length))).toBeLessThanOrEqual(2);
      expect(calls.reduce((a, c) => a + c.prompts.length, 0)).toBe(5);
    }, 512, { batchWindowMs: 300, maxBatchSequences: 2 });
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
    [['--model', '.', '--batch-window', '-5'], /--batch-window: must be at least 0/],
    [['--model', '.', '--served-model-name', ' '], /--served-model-name: must not be empty/],
  ] as Array<[string[], RegExp]>)('%j is refused', async (args, msg) => {
    const e = await parse(...args);
    expect(e?.name).toBe('UsageError');
    expect(e?.message).toMatch(msg);
  });
});
