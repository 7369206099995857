// `clipo eval` as a user runs it: flag checking, --json output, and the crash test: a run against a slow server is
// SIGKILLed midway (a torn line is added, as a kill during a write would leave), then rerun; every sample must be
// there exactly once and the scores must equal those of an uninterrupted run.
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { UsageError } from '../src/cli/errors.js';
import { registerEval } from '../src/cli/commands/eval.js';
import type { EvalResults } from '../src/eval/run.js';
import type { SampleRecord } from '../src/eval/types.js';
import { questionOf, startFakeOpenAI, tmpDir, writeArithmeticJsonl } from './eval-fakes.js';
import { clipoBin as bin, cliEnv as env, runClipo as clipoSync } from './helpers/cli.js';


/** Async spawn: the fake server lives in this process, so its event loop must keep running. */
function clipo(args: string[]): { done: Promise<{ code: number | null; signal: string | null; out: string; err: string }>; kill: (sig?: NodeJS.Signals) => void } {
  const child = spawn(process.execPath, [bin, ...args], { env });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const done = new Promise<{ code: number | null; signal: string | null; out: string; err: string }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, out, err })));
  return { done, kill: (sig: NodeJS.Signals = 'SIGKILL') => child.kill(sig) };
}

function readLines(file: string): SampleRecord[] {
  return readFileSync(file, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as SampleRecord);
}

describe('clipo eval flags', () => {
  const dir = tmpDir();
  const { file } = writeArithmeticJsonl(dir, 'a.jsonl', 2);
  const cases: Array<[string[], RegExp]> = [
    [['--data', file, '--out', dir], /--model DIR .* or --endpoint URL/],
    [['--model', dir, '--endpoint', 'http://127.0.0.1:1/v1', '--data', file, '--out', dir], /not both/],
    [['--endpoint', 'http://127.0.0.1:1/v1', '--data', file, '--out', dir], /--served-model NAME/],
    [['--model', dir, '--served-model', 'x', '--data', file, '--out', dir], /--served-model goes with --endpoint/],
    [['--endpoint', 'http://127.0.0.1:1/v1', '--served-model', 'm', '--out', dir], /--suite track1\|track2 or --data/],
    [['--endpoint', 'http://127.0.0.1:1/v1', '--served-model', 'm', '--suite', 'track1', '--data', file, '--out', dir], /--suite NAME or --data FILE/],
    [['--endpoint', 'http://127.0.0.1:1/v1', '--served-model', 'm', '--data', file], /--out DIR is required/],
    [['--endpoint', 'http://127.0.0.1:1/v1', '--served-model', 'm', '--suite', 'track3', '--out', dir], /unknown suite 'track3'/],
    [['--endpoint', 'http://127.0.0.1:1/v1', '--served-model', 'm', '--suite', 'track1', '--data-root', path.join(dir, 'nope'), '--out', dir], /data folder not found/],
    [['--endpoint', 'http://127.0.0.1:1/v1', '--served-model', 'm', '--data', file, '--data-root', dir, '--out', dir], /--data-root goes with --suite/],
    [['--endpoint', 'http://127.0.0.1:1/v1', '--served-model', 'm', '--data', path.join(dir, 'missing.jsonl'), '--out', dir], /file not found/],
    [['--endpoint', 'ftp://x', '--served-model', 'm', '--data', file, '--out', dir], /--endpoint: expected an http\(s\) URL/],
    [['--endpoint', 'http://127.0.0.1:1/v1', '--served-model', 'm', '--data', file, '--out', dir, '--samples', '0'], /--samples: must be at least 1/],
    [['--endpoint', 'http://127.0.0.1:1/v1', '--served-model', 'm', '--data', file, '--out', dir, '--temperature', '-1'], /--temperature: must be at least 0/],
    [['--endpoint', 'http://127.0.0.1:1/v1', '--served-model', 'm', '--data', file, '--out', dir, '--top-p', '0'], /--top-p: must be greater than 0/],
    [['--endpoint', 'http://127.0.0.1:1/v1', '--served-model', 'm', '--data', file, '--out', dir, '--top-p', '1.5'], /--top-p: must be at most 1/],
    [['--endpoint', 'http://127.0.0.1:1/v1', '--served-model', 'm', '--data', file, '--out', dir, '--max-new-tokens', '2.5'], /--max-new-tokens: expected an integer/],
    [['--endpoint', 'http://127.0.0.1:1/v1', '--served-model', 'm', '--data', file, '--out', dir, '--concurrency', 'lots'], /--concurrency: expected a number/],
    [['--endpoint', 'http://127.0.0.1:1/v1', '--served-model', 'm', '--data', file, '--out', dir, '--limit', '0'], /--limit: must be at least 1/],
    [['--model', dir, '--data', file, '--out', dir, '--retries', '2'], /--retries goes with --endpoint/],
    [['--model', path.join(dir, 'nope'), '--data', file, '--out', dir], /--model: not a directory/],
  ];
  // In process (spawning a CLI per case is slow on 2 cores); the two spawned cases below check the exit path.
  test.each(cases)('%j is refused with a clear message', async (args, msg) => {
    const program = new Command().exitOverride();
    registerEval(program);
    program.commands[0].exitOverride();
    const err = await program.parseAsync(['node', 'clipo', 'eval', ...args]).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toMatch(msg);
  });
  test('the CLI exits 2 with one line for a bad combination', () => {
    for (const i of [0, 12]) {
      const r = clipoSync('eval', ...cases[i][0]);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(cases[i][1]);
      expect(r.err.trim().split('\n').length).toBe(1);
    }
  });
});

describe('clipo eval --endpoint', () => {
  test('--json prints results.json; SIGKILL midway then rerun: no sample lost or duplicated', async () => {
    const dir = tmpDir();
    const problems = 12;
    const K = 4;
    const { file, answers } = writeArithmeticJsonl(dir, 'arith.jsonl', problems);
    // right on problems divisible by 3, and on sample seeds that are even: a pattern that depends on the seed, so a
    // resumed run only matches an uninterrupted one if every sample gets the same seed either way
    const script = (r: Parameters<Parameters<typeof startFakeOpenAI>[0]>[0]) => {
      const q = questionOf(r);
      const problem = (Number(q.match(/What is (\d+)/)![1]) - 3) / 7;
      const right = problem % 3 === 0 || r.seed! % 2 === 0;
      const gt = answers.get(q)!;
      return { text: `so \\boxed{${right ? gt : gt + '1'}}`, delayMs: 100 };
    };
    const slow = await startFakeOpenAI(script);
    const args = (out: string, url: string) => ['eval', '--endpoint', url, '--served-model', 'fake-model', '--data', file, '--samples', String(K), '--temperature', '0.8', '--concurrency', '2', '--out', out];
    try {
      // reference: one uninterrupted run
      const refOut = path.join(dir, 'ref');
      const ref = await clipo([...args(refOut, slow.url), '--json']).done;
      expect(ref.code).toBe(0);
      const refDoc = JSON.parse(ref.out) as EvalResults;
      expect(refDoc.benchmarks.arith).toMatchObject({ problems, finished: problems * K, complete: true });
      expect(JSON.parse(readFileSync(path.join(refOut, 'results.json'), 'utf8'))).toEqual(refDoc);
      const before = slow.requests.length;

      // interrupted run: kill it once some samples are on disk (the first flush comes after about 1 s, when roughly
      // 20 of the 48 samples (2 in flight, 100 ms each) are done)
      const out = path.join(dir, 'killed');
      const gens = path.join(out, 'generations.jsonl');
      const run = clipo(args(out, slow.url));
      const t0 = Date.now();
      while (!(existsSync(gens) && readLines(gens).length >= 4) && Date.now() - t0 < 20000) await new Promise((r) => setTimeout(r, 20));
      run.kill();
      const killed = await run.done;
      expect(killed.signal).toBe('SIGKILL');
      const atKill = readLines(gens).length;
      expect(atKill).toBeGreaterThanOrEqual(4);
      expect(atKill).toBeLessThan(problems * K);
      appendFileSync(gens, '{"benchmark":"arith","problem":11,"sample":'); // what a kill mid-write leaves behind

      const requestsBefore = slow.requests.length;
      const resumed = await clipo([...args(out, slow.url), '--json']).done;
      expect(resumed.code).toBe(0);
      expect(resumed.err).toMatch(/dropped a torn last line/);
      const doc = JSON.parse(resumed.out) as EvalResults;
      // only the missing samples were requested
      expect(slow.requests.length - requestsBefore).toBe(problems * K - atKill);
      expect(doc.timing.samplesThisRun).toBe(problems * K - atKill);
      const lines = readLines(gens);
      const keys = lines.map((l) => `${l.problem}/${l.sample}`);
      expect(new Set(keys).size).toBe(keys.length);
      expect(keys.length).toBe(problems * K);
      expect(doc.benchmarks.arith).toEqual(refDoc.benchmarks.arith);
      expect(doc.scores).toEqual(refDoc.scores);
      // the samples themselves are the same as the uninterrupted run's
      const refLines = new Map(readLines(path.join(refOut, 'generations.jsonl')).map((l) => [`${l.problem}/${l.sample}`, l.completion]));
      for (const l of lines) expect(l.completion).toBe(refLines.get(`${l.problem}/${l.sample}`));
      expect(before).toBe(problems * K);
    } finally {
      await slow.close();
    }
  });

  test('Ctrl-C (SIGINT) saves the finished samples, exits 130 and says how to continue', async () => {
    const dir = tmpDir();
    const { file, answers } = writeArithmeticJsonl(dir, 'a.jsonl', 20);
    const server = await startFakeOpenAI((r) => ({ text: `\\boxed{${answers.get(questionOf(r))}}`, delayMs: 100 }));
    try {
      const out = path.join(dir, 'o');
      const args = ['eval', '--endpoint', server.url, '--served-model', 'fake-model', '--data', file, '--concurrency', '2', '--out', out];
      const run = clipo(args);
      const t0 = Date.now();
      while (server.requests.length < 5 && Date.now() - t0 < 20000) await new Promise((r) => setTimeout(r, 10));
      run.kill('SIGINT');
      const r = await run.done;
      expect(r.code).toBe(130);
      expect(r.err).toMatch(/SIGINT: finished samples are saved; run the same command to continue/);
      const text = readFileSync(path.join(out, 'generations.jsonl'), 'utf8');
      expect(text.endsWith('\n')).toBe(true);
      // everything answered before the signal was written (the in-flight requests may or may not have been)
      expect(readLines(path.join(out, 'generations.jsonl')).length).toBeGreaterThanOrEqual(3);
      const again = await clipo([...args, '--json']).done;
      expect(again.code).toBe(0);
      expect(JSON.parse(again.out).benchmarks.a).toMatchObject({ finished: 20, correct: 20 });
      expect(readLines(path.join(out, 'generations.jsonl')).length).toBe(20);
    } finally {
      await server.close();
    }
  });

  test('samples that keep failing make the command exit 1 and say how to retry', async () => {
    const dir = tmpDir();
    const { file } = writeArithmeticJsonl(dir, 'a.jsonl', 2);
    const server = await startFakeOpenAI(() => ({ status: 400 }));
    try {
      const r = await clipo(['eval', '--endpoint', server.url, '--served-model', 'fake-model', '--data', file, '--out', path.join(dir, 'o')]).done;
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/2 sample\(s\) failed after retries .* run the same command again/);
    } finally {
      await server.close();
    }
  });

  test('a wrong --served-model stops before the first sample, naming the served models', async () => {
    const dir = tmpDir();
    const { file } = writeArithmeticJsonl(dir, 'a.jsonl', 2);
    const server = await startFakeOpenAI(() => ({ text: 'x' }));
    try {
      const r = await clipo(['eval', '--endpoint', server.url, '--served-model', 'other', '--data', file, '--out', path.join(dir, 'o')]).done;
      expect(r.code).toBe(1);
      expect(existsSync(path.join(dir, 'o'))).toBe(false);
      expect(r.err).toMatch(/does not serve 'other' \(it serves: fake-model\)/);
      expect(server.requests.length).toBe(0);
    } finally {
      await server.close();
    }
  });
});
