// clipo eval, in process: the resumable store, Pass@1 aggregation, the endpoint backend's retry policy against a
// scripted loopback server, and whole runs (outputs, resume, config changes).
import { appendFileSync, existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { EndpointGenerator, FatalEndpointError, normaliseBaseURL } from '../src/eval/endpoint.js';
import { benchmarkResult } from '../src/eval/results.js';
import { runEval, type EvalResults } from '../src/eval/run.js';
import { keySeed } from '../src/util/seeds.js';
import { GenerationStore } from '../src/eval/store.js';
import type { Completion, GenRequest, SampleRecord } from '../src/eval/types.js';
import { holdLock, killHard } from './helpers/lock-holder.js';
import { questionOf, startFakeOpenAI, tmpDir, writeArithmeticJsonl, type FakeRequest } from './eval-fakes.js';

function rec(benchmark: string, problem: number, sample: number, extra: Partial<SampleRecord> = {}): SampleRecord {
  return { benchmark, problem, sample, id: String(problem), prompt: [], completion: 'x', extracted: 'x', correct: true, groundTruth: 'x', finishReason: 'stop', ...extra };
}

describe('GenerationStore', () => {
  test('drops a torn last line, keeps appending on a fresh line, and never counts a key twice', () => {
    const dir = tmpDir();
    const file = path.join(dir, 'generations.jsonl');
    const s1 = GenerationStore.open(file);
    s1.add(rec('a', 0, 0));
    s1.add(rec('a', 0, 1, { correct: false }));
    s1.flush();
    s1.add(rec('a', 1, 0));
    s1.close();
    // a killed writer leaves half a line behind
    appendFileSync(file, '{"benchmark":"a","problem":2,"sam');
    const s2 = GenerationStore.open(file);
    expect(s2.openInfo).toEqual({ lines: 3, tornBytes: '{"benchmark":"a","problem":2,"sam'.length });
    expect(s2.isFinished('a', 0, 0) && s2.isFinished('a', 0, 1) && s2.isFinished('a', 1, 0)).toBe(true);
    expect(s2.isFinished('a', 2, 0)).toBe(false);
    s2.add(rec('a', 2, 0));
    s2.add(rec('a', 0, 0, { correct: false })); // a duplicate of a finished key is ignored by the index
    s2.close();
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as SampleRecord);
    expect(lines.length).toBe(5);
    const s3 = GenerationStore.open(file);
    expect(s3.get('a', 0, 0)!.correct).toBe(true); // the first finished line wins
    expect(s3.isFinished('a', 2, 0)).toBe(true);
    s3.close();
  });

  test('error records do not count as finished and a later success supersedes them', () => {
    const file = path.join(tmpDir(), 'g.jsonl');
    const s = GenerationStore.open(file);
    s.add(rec('b', 0, 0, { error: 'HTTP 500', correct: null }));
    s.close();
    const s2 = GenerationStore.open(file);
    expect(s2.isFinished('b', 0, 0)).toBe(false);
    expect(s2.get('b', 0, 0)!.error).toBe('HTTP 500');
    s2.add(rec('b', 0, 0));
    s2.close();
    const s3 = GenerationStore.open(file);
    expect(s3.isFinished('b', 0, 0)).toBe(true);
    expect(s3.get('b', 0, 0)!.error).toBeUndefined();
    s3.close();
  });

  test('a corrupt complete line is an error naming the file and line', () => {
    const file = path.join(tmpDir(), 'g.jsonl');
    writeFileSync(file, JSON.stringify(rec('a', 0, 0)) + '\nnot json\n' + JSON.stringify(rec('a', 1, 0)) + '\n');
    expect(() => GenerationStore.open(file)).toThrow(/g\.jsonl:2: not valid JSON/);
    writeFileSync(file, JSON.stringify({ ...rec('a', 0, 0), problem: -1 }) + '\n');
    expect(() => GenerationStore.open(file)).toThrow(/g\.jsonl:1: field 'problem'/);
  });
});

describe('Pass@1 aggregation', () => {
  test('mean over problems of the per-problem mean over K samples; incomplete benchmarks are flagged', () => {
    const file = path.join(tmpDir(), 'g.jsonl');
    const s = GenerationStore.open(file);
    // problem 0: 3/4 correct, problem 1: 1/4, problem 2: 0/4 -> (0.75 + 0.25 + 0) / 3
    const pattern = [[1, 1, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]];
    pattern.forEach((row, p) => row.forEach((c, k) => s.add(rec('m', p, k, { correct: c === 1, usage: { promptTokens: 5, completionTokens: 10 + k } }))));
    const plan = { key: 'm', display: 'M', file: 'm.jsonl' };
    const r = benchmarkResult(s, plan, 3, 4);
    expect(r.pass1).toBeCloseTo((100 * (0.75 + 0.25 + 0)) / 3, 10);
    expect(r).toMatchObject({ problems: 3, expected: 12, finished: 12, correct: 4, errors: 0, complete: true, meanCompletionTokens: 11.5 });
    // a 4th problem with one correct sample and one failed one: its mean uses the finished sample only
    s.add(rec('m', 3, 0, { correct: true }));
    s.add(rec('m', 3, 1, { error: 'timeout', correct: null }));
    const r2 = benchmarkResult(s, plan, 4, 4);
    expect(r2.pass1).toBeCloseTo((100 * (0.75 + 0.25 + 0 + 1)) / 4, 10);
    expect(r2).toMatchObject({ finished: 13, errors: 1, complete: false });
    s.close();
  });
});

describe('EndpointGenerator', () => {
  const noSleep = async () => {};
  const req = (p: number, samples: number[]): GenRequest => ({ benchmark: 'b', problem: p, messages: [{ role: 'user', content: `q${p}` }], samples, k: 8, seed: 1000 + p });

  test('retries 500, 503 and 429 (honouring Retry-After) and then succeeds; each sample carries its own seed', async () => {
    const server = await startFakeOpenAI((r, n) => (n === 1 ? { status: 500 } : n === 2 ? { status: 503 } : n === 3 ? { status: 429, retryAfter: 2 } : { text: `ok seed=${r.seed}` }));
    const delays: number[] = [];
    try {
      const gen = new EndpointGenerator({ baseURL: server.url, model: 'fake-model', concurrency: 1, sleep: async (ms) => void delays.push(ms), backoffBaseMs: 100 });
      const got: Array<[number, Completion]> = [];
      await gen.generate([req(0, [0, 2])], { temperature: 0.5, topP: 0.9, maxNewTokens: 33 }, (_r, s, c) => got.push([s, c]));
      expect(got.map(([s]) => s)).toEqual([0, 2]);
      expect(got[0][1]).toMatchObject({ text: `ok seed=${keySeed(1000, 0)}`, finishReason: 'stop', attempts: 4 });
      expect(got[1][1]).toMatchObject({ text: `ok seed=${keySeed(1000, 2)}`, attempts: 1 });
      expect(delays.length).toBe(3);
      expect(delays[0]).toBeLessThanOrEqual(100); // full jitter below base·2^0
      expect(delays[1]).toBeLessThanOrEqual(200);
      expect(delays[2]).toBe(2000); // Retry-After: 2
      const sent = server.requests[0];
      expect(sent).toMatchObject({ model: 'fake-model', temperature: 0.5, top_p: 0.9, max_tokens: 33, n: 1 });
      expect(got[0][1].usage).toEqual({ promptTokens: 10, completionTokens: 2 });
    } finally {
      await server.close();
    }
  });

  test('gives up after --retries and returns an error record; a 400 is not retried', async () => {
    const server = await startFakeOpenAI((r) => (r.messages[0].content === 'q0' ? { status: 502 } : { status: 400 }));
    try {
      const gen = new EndpointGenerator({ baseURL: server.url, model: 'fake-model', concurrency: 2, maxRetries: 3, sleep: noSleep });
      const got = new Map<number, Completion>();
      await gen.generate([req(0, [0]), req(1, [0])], { temperature: 0, topP: 1, maxNewTokens: 8 }, (r, _s, c) => got.set(r.problem, c));
      expect(got.get(0)).toMatchObject({ error: expect.stringMatching(/HTTP 502/), attempts: 4 });
      expect(got.get(1)).toMatchObject({ error: expect.stringMatching(/HTTP 400/), attempts: 1 });
      expect(server.requests.length).toBe(5);
    } finally {
      await server.close();
    }
  });

  test('an unknown model (404) stops the run instead of recording an error per sample', async () => {
    const server = await startFakeOpenAI(() => ({ text: 'never' }));
    try {
      const gen = new EndpointGenerator({ baseURL: server.url, model: 'no-such-model', concurrency: 4, sleep: noSleep });
      const seen: number[] = [];
      await expect(gen.generate([req(0, [0, 1, 2, 3, 4, 5, 6, 7])], { temperature: 0, topP: 1, maxNewTokens: 8 }, (_r, s) => seen.push(s))).rejects.toThrow(FatalEndpointError);
      expect(seen.length).toBe(0);
    } finally {
      await server.close();
    }
  });

  test('a refused connection is retried, then recorded as an error', async () => {
    const server = await startFakeOpenAI(() => ({ text: 'x' }));
    const url = server.url;
    await server.close(); // nothing listens there now
    const gen = new EndpointGenerator({ baseURL: url, model: 'fake-model', concurrency: 1, maxRetries: 2, sleep: noSleep });
    const got: Completion[] = [];
    await gen.generate([req(0, [0])], { temperature: 0, topP: 1, maxNewTokens: 8 }, (_r, _s, c) => got.push(c));
    expect(got[0]).toMatchObject({ error: expect.stringMatching(/connection/i), attempts: 3 });
  });

  test('prepare(): an unreachable server or an unserved model stops the run before it starts', async () => {
    const server = await startFakeOpenAI(() => ({ text: 'x' }));
    try {
      await expect(new EndpointGenerator({ baseURL: server.url, model: 'fake-model', concurrency: 1 }).prepare()).resolves.toBeUndefined();
      await expect(new EndpointGenerator({ baseURL: server.url, model: 'nope', concurrency: 1 }).prepare()).rejects.toThrow(/does not serve 'nope' \(it serves: fake-model\)/);
    } finally {
      await server.close();
    }
    await expect(new EndpointGenerator({ baseURL: server.url, model: 'fake-model', concurrency: 1 }).prepare()).rejects.toThrow(/cannot reach .* is the server running/);
  });

  test('a server that keeps failing stops the run after a run of exhausted samples, keeping what finished', async () => {
    const server = await startFakeOpenAI((_r, n) => (n <= 2 ? { text: 'fine' } : { status: 503 }));
    try {
      const gen = new EndpointGenerator({ baseURL: server.url, model: 'fake-model', concurrency: 1, maxRetries: 1, maxConsecutiveFailures: 3, sleep: noSleep });
      const got: Completion[] = [];
      await expect(gen.generate([req(0, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])], { temperature: 0, topP: 1, maxNewTokens: 8 }, (_r, _s, c) => got.push(c))).rejects.toThrow(/3 samples in a row failed after 1 retries .*run the same command again/);
      expect(got.map((c) => c.error === undefined)).toEqual([true, true, false, false, false]);
      expect(server.requests.length).toBe(2 + 3 * 2);
    } finally {
      await server.close();
    }
  });

  test('normaliseBaseURL adds /v1 to a bare host and rejects non-http URLs', () => {
    expect(normaliseBaseURL('http://127.0.0.1:8000')).toBe('http://127.0.0.1:8000/v1');
    expect(normaliseBaseURL('http://127.0.0.1:8000/v1/')).toBe('http://127.0.0.1:8000/v1');
    expect(normaliseBaseURL('https://host/openai/v1')).toBe('https://host/openai/v1');
    expect(() => normaliseBaseURL('ftp://x')).toThrow(/http/);
    expect(() => normaliseBaseURL('nope')).toThrow(/not a URL/);
  });
});

describe('runEval against a scripted server', () => {
  /** Correct answer on even problems, wrong on odd ones; the seed is echoed so the test can check it. */
  const makeScript = (answers: Map<string, string>) => (r: FakeRequest) => {
    const q = questionOf(r);
    const gt = answers.get(q)!;
    const n = Number(q.match(/What is (\d+)/)![1]);
    const problem = (n - 3) / 7;
    const right = problem % 2 === 0;
    return { text: `Adding gives \\boxed{${right ? gt : Number(gt) + 1}}. seed=${r.seed}` };
  };

  test('writes generations.jsonl, results.json and results.md; a rerun generates nothing new', async () => {
    const dir = tmpDir();
    const { file, answers } = writeArithmeticJsonl(dir, 'arith.jsonl', 6);
    const server = await startFakeOpenAI(makeScript(answers));
    const out = path.join(dir, 'out');
    const run = () =>
      runEval({
        out,
        suite: null,
        benchmarks: [{ key: 'arith', display: 'Arith', file }],
        samples: 3,
        params: { temperature: 0.7, topP: 0.95, maxNewTokens: 64 },
        seed: 7,
        generator: new EndpointGenerator({ baseURL: server.url, model: 'fake-model', concurrency: 3 }),
      });
    try {
      const res: EvalResults = await run();
      expect(server.requests.length).toBe(18);
      expect(res.benchmarks.arith).toMatchObject({ problems: 6, samplesPerProblem: 3, finished: 18, correct: 9, errors: 0, complete: true });
      expect(res.scores.arith).toBeCloseTo(50, 10);
      expect(res.complete).toBe(true);
      expect(res.summary).toBeNull();
      const lines = readFileSync(path.join(out, 'generations.jsonl'), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as SampleRecord);
      expect(lines.length).toBe(18);
      for (const l of lines) {
        expect(l.correct).toBe(l.problem % 2 === 0);
        expect(l.prompt[0].content).toMatch(/^What is \d+ \+ \d+\?/);
        expect(l.completion).toContain(`seed=${keySeed(keySeed(7, 'arith', l.problem), l.sample)}`);
        expect(l.extracted).toBe(l.correct ? l.groundTruth : String(Number(l.groundTruth) + 1));
        expect(l.finishReason).toBe('stop');
      }
      const json = JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8')) as EvalResults;
      expect(json.scores.arith).toBeCloseTo(50, 10);
      expect(json.config).toMatchObject({ samples: 3, temperature: 0.7, topP: 0.95, maxNewTokens: 64, seed: 7 });
      const md = readFileSync(path.join(out, 'results.md'), 'utf8');
      expect(md).toMatch(/\| model \| Arith \|/);
      expect(md).toMatch(/\| fake-model \| 50\.00 \|/);
      // rerun: everything is finished, so no request is made and the numbers are the same
      const again = await run();
      expect(server.requests.length).toBe(18);
      expect(again.scores.arith).toBeCloseTo(50, 10);
      expect(again.timing.samplesThisRun).toBe(0);
      // more samples per problem in the same --out: only the new sample indices are drawn
      const more = await runEval({
        out,
        suite: null,
        benchmarks: [{ key: 'arith', display: 'Arith', file }],
        samples: 4,
        params: { temperature: 0.7, topP: 0.95, maxNewTokens: 64 },
        seed: 7,
        generator: new EndpointGenerator({ baseURL: server.url, model: 'fake-model', concurrency: 3 }),
      });
      expect(server.requests.length).toBe(24);
      expect(more.benchmarks.arith.finished).toBe(24);
    } finally {
      await server.close();
    }
  });

  test('failed samples are recorded, reported incomplete, and retried by the next run', async () => {
    const dir = tmpDir();
    const { file, answers } = writeArithmeticJsonl(dir, 'arith.jsonl', 4);
    let failing = true;
    const server = await startFakeOpenAI((r) => (failing && questionOf(r).startsWith('What is 10 ') ? { status: 500 } : { text: `\\boxed{${answers.get(questionOf(r))}}` }));
    const out = path.join(dir, 'out');
    const run = () =>
      runEval({
        out,
        suite: null,
        benchmarks: [{ key: 'arith', display: 'Arith', file }],
        samples: 2,
        params: { temperature: 0.7, topP: 1, maxNewTokens: 64 },
        seed: 0,
        generator: new EndpointGenerator({ baseURL: server.url, model: 'fake-model', concurrency: 2, maxRetries: 1, sleep: async () => {} }),
      });
    try {
      const first = await run();
      expect(first.complete).toBe(false);
      expect(first.benchmarks.arith).toMatchObject({ finished: 6, errors: 2, correct: 6 });
      expect(readFileSync(path.join(out, 'results.md'), 'utf8')).toMatch(/Arith\*/);
      failing = false;
      const second = await run();
      expect(second.complete).toBe(true);
      expect(second.benchmarks.arith).toMatchObject({ finished: 8, errors: 0, correct: 8 });
      expect(second.timing.samplesThisRun).toBe(2);
      const lines = readFileSync(path.join(out, 'generations.jsonl'), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as SampleRecord);
      expect(lines.filter((l) => l.error !== undefined).length).toBe(2);
      expect(lines.filter((l) => l.error === undefined).length).toBe(8);
    } finally {
      await server.close();
    }
  });

  test('a changed configuration in the same --out is refused, and --force starts over keeping the old file', async () => {
    const dir = tmpDir();
    const { file, answers } = writeArithmeticJsonl(dir, 'arith.jsonl', 2);
    const server = await startFakeOpenAI((r) => ({ text: `\\boxed{${answers.get(questionOf(r))}}` }));
    const out = path.join(dir, 'out');
    const run = (temperature: number, force = false) =>
      runEval({
        out,
        suite: null,
        benchmarks: [{ key: 'arith', display: 'Arith', file }],
        samples: 1,
        params: { temperature, topP: 1, maxNewTokens: 64 },
        seed: 0,
        force,
        generator: new EndpointGenerator({ baseURL: server.url, model: 'fake-model', concurrency: 2 }),
      });
    try {
      await run(0);
      await expect(run(0.5)).rejects.toThrow(/different configuration \(temperature: 0 -> 0\.5\).*--force/);
      const res = await run(0.5, true);
      expect(res.timing.samplesThisRun).toBe(2);
      expect(readdirSync(out).filter((f) => /^generations\..+\.jsonl$/.test(f)).length).toBe(1);
      expect(existsSync(path.join(out, 'generations.jsonl'))).toBe(true);
    } finally {
      await server.close();
    }
  });
});

describe('EndpointGenerator timeouts', () => {
  test('a request slower than the timeout is retried, then recorded as a timeout', async () => {
    const server = await startFakeOpenAI(() => ({ text: 'late', delayMs: 400 }));
    try {
      const run = async (maxRetries: number) => {
        const gen = new EndpointGenerator({ baseURL: server.url, model: 'fake-model', concurrency: 1, timeoutMs: 50, maxRetries, sleep: async () => {} });
        const got: Completion[] = [];
        await gen.generate([{ benchmark: 'b', problem: 0, messages: [{ role: 'user', content: 'q' }], samples: [0], k: 1, seed: 1 }], { temperature: 0, topP: 1, maxNewTokens: 8 }, (_r, _s, c) => got.push(c));
        return got[0];
      };
      expect(await run(0)).toMatchObject({ error: 'request timed out', attempts: 1 });
      expect(server.requests.length).toBe(1);
      // retried (a retry may also meet the connection the timed-out request left behind)
      expect(await run(2)).toMatchObject({ error: expect.stringMatching(/timed out|connection/), attempts: 3 });
    } finally {
      await server.close();
    }
  });
});

describe('run identity', () => {
  test('two local checkpoints with the same directory name cannot share an --out', async () => {
    const dir = tmpDir();
    const { file } = writeArithmeticJsonl(dir, 'arith.jsonl', 2);
    const fakeLocal = (d: string) => ({
      info: { backend: 'local' as const, model: 'policy', dir: d, fingerprint: '10 bytes' },
      async generate(requests: GenRequest[], _p: unknown, onSample: (r: GenRequest, s: number, c: Completion) => void) {
        for (const r of requests) for (const s of r.samples) onSample(r, s, { text: '\\boxed{0}', finishReason: 'stop' });
      },
    });
    const run = (d: string) =>
      runEval({ out: path.join(dir, 'out'), suite: null, benchmarks: [{ key: 'arith', display: 'Arith', file }], samples: 1, params: { temperature: 0, topP: 1, maxNewTokens: 8 }, seed: 0, generator: fakeLocal(d) });
    const first = await run('/ckpt/step100/policy');
    expect(first.benchmarks.arith).toMatchObject({ finished: 2, correct: 0 });
    await expect(run('/ckpt/step200/policy')).rejects.toThrow(/model: "\/ckpt\/step100\/policy \(10 bytes\)" -> "\/ckpt\/step200\/policy \(10 bytes\)"/);
  });
});

describe('data identity', () => {
  test('an edited data file is a changed configuration; the same file elsewhere is not', async () => {
    const dir = tmpDir();
    const { file } = writeArithmeticJsonl(dir, 'arith.jsonl', 2);
    const gen = {
      info: { backend: 'endpoint' as const, model: 'm' },
      async generate(requests: GenRequest[], _p: unknown, onSample: (r: GenRequest, s: number, c: Completion) => void) {
        for (const r of requests) for (const s of r.samples) onSample(r, s, { text: '\\boxed{0}', finishReason: 'stop' });
      },
    };
    const run = (f: string) => runEval({ out: path.join(dir, 'out'), suite: null, benchmarks: [{ key: 'arith', display: 'Arith', file: f }], samples: 1, params: { temperature: 0, topP: 1, maxNewTokens: 8 }, seed: 0, generator: gen });
    await run(file);
    const moved = path.join(tmpDir(), 'arith.jsonl');
    writeFileSync(moved, readFileSync(file));
    expect((await run(moved)).timing.samplesThisRun).toBe(0);
    writeArithmeticJsonl(path.dirname(moved), 'arith.jsonl', 3);
    await expect(run(moved)).rejects.toThrow(/data for 'arith': arith\.jsonl sha256:\w+ -> arith\.jsonl sha256:\w+/);
  });
});

describe('one writer per --out', () => {
  test('a live lock holder is refused; a stale lock (its process killed) is taken over and released', async () => {
    const dir = tmpDir();
    const { file } = writeArithmeticJsonl(dir, 'arith.jsonl', 2);
    const out = path.join(dir, 'out');
    const gen = {
      info: { backend: 'endpoint' as const, model: 'm' },
      async generate(requests: GenRequest[], _p: unknown, onSample: (r: GenRequest, s: number, c: Completion) => void) {
        for (const r of requests) for (const s of r.samples) onSample(r, s, { text: '\\boxed{0}', finishReason: 'stop' });
      },
    };
    const run = () => runEval({ out, suite: null, benchmarks: [{ key: 'arith', display: 'Arith', file }], samples: 1, params: { temperature: 0, topP: 1, maxNewTokens: 8 }, seed: 0, generator: gen });
    const { mkdirSync } = await import('node:fs');
    mkdirSync(out, { recursive: true });
    const holder = await holdLock(out, 'clipo eval'); // a live process
    try {
      await expect(run()).rejects.toThrow(new RegExp(`another clipo eval \\(pid ${holder.pid}\\) is writing to`));
    } finally {
      await killHard(holder);
    }
    expect(existsSync(path.join(out, '.lock'))).toBe(true); // left behind by the killed holder
    expect((await run()).benchmarks.arith.finished).toBe(2);
    expect(existsSync(path.join(out, '.lock'))).toBe(false);
    writeFileSync(path.join(out, '.lock'), '2147483646'); // a lock file of an older clipo: not held by anyone
    expect((await run()).benchmarks.arith.finished).toBe(2);
  });

  test('samples delivered before a backend failure are saved', async () => {
    const dir = tmpDir();
    const { file } = writeArithmeticJsonl(dir, 'arith.jsonl', 4);
    const out = path.join(dir, 'out');
    const gen = {
      info: { backend: 'endpoint' as const, model: 'm' },
      async generate(requests: GenRequest[], _p: unknown, onSample: (r: GenRequest, s: number, c: Completion) => void) {
        onSample(requests[0], 0, { text: '\\boxed{1}', finishReason: 'stop' });
        onSample(requests[1], 0, { text: '\\boxed{2}', finishReason: 'stop' });
        throw new Error('backend exploded');
      },
    };
    await expect(runEval({ out, suite: null, benchmarks: [{ key: 'arith', display: 'Arith', file }], samples: 1, params: { temperature: 0, topP: 1, maxNewTokens: 8 }, seed: 0, generator: gen })).rejects.toThrow(/backend exploded/);
    const lines = readFileSync(path.join(out, 'generations.jsonl'), 'utf8').trimEnd().split('\n');
    expect(lines.length).toBe(2);
    expect(existsSync(path.join(out, '.lock'))).toBe(false);
  });
});
