// clipo serve and clipo eval on the real native engine with a tiny random model and the byte-level tokenizer:
//  - the local backend's samples do not depend on which samples were still missing (resume = uninterrupted run);
//  - `clipo serve` + `clipo eval --endpoint` and `clipo eval --model` give the same greedy completions, through
//    the real CLI processes (serve on an ephemeral loopback port).
// Skipped (with a message) when the native addon was built without the engine.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Engine } from '../src/engine/engine.js';
import { LocalGenerator } from '../src/eval/local.js';
import { LocalModel, type GenerateEngine } from '../src/eval/localmodel.js';
import type { Completion, GenRequest, SampleRecord } from '../src/eval/types.js';
import { initModel } from '../src/model/init.js';
import { ModelTokenizer } from '../src/model/tokenizer.js';
import { loadNative, packageRoot } from '../src/native.js';
import { tmpDir, writeArithmeticJsonl } from './eval-fakes.js';

function engineBuilt(): boolean {
  try {
    return loadNative().buildInfo().modules.includes('engine');
  } catch {
    return false;
  }
}
const haveEngine = engineBuilt();
if (!haveEngine) console.warn('serve-engine.test: the native addon has no engine module; skipping the real-engine tests');
const maybe = haveEngine ? describe : describe.skip;

const bin = path.join(packageRoot, 'bin', 'clipo');
const env = { ...process.env, FORCE_COLOR: '0' };

maybe('eval and serve on the native engine', () => {
  test('local backend: a sample gets the same tokens whether or not its neighbours were already done', async () => {
    const { config, weights } = initModel({ architecture: 'qwen2', numLayers: 2, hiddenSize: 32, numHeads: 4, numKvHeads: 2, intermediateSize: 64, vocabSize: 259, eosTokenIds: [257] }, 3);
    const engine = Engine.create(config, weights, { threads: 1 });
    try {
      const model = new LocalModel(engine as unknown as GenerateEngine, ModelTokenizer.byte(), 'tiny');
      const gen = new LocalGenerator(model, 6, '.'); // K = 3 -> blocks of 2 problems
      const K = 3;
      const reqs = (missing: (p: number) => number[]): GenRequest[] =>
        [0, 1, 2, 3, 4].map((p) => ({ benchmark: 'b', problem: p, messages: [{ role: 'user', content: `problem ${p}` }], samples: missing(p), k: K, seed: 100 + p }));
      const params = { temperature: 1.0, topP: 0.9, maxNewTokens: 12 };
      const collect = async (rs: GenRequest[]) => {
        const got = new Map<string, Completion>();
        await gen.generate(rs, params, (r, s, c) => got.set(`${r.problem}/${s}`, c));
        return got;
      };
      const full = await collect(reqs(() => [0, 1, 2]));
      expect(full.size).toBe(15);
      const texts = new Set([...full.values()].map((c) => c.text));
      expect(texts.size).toBeGreaterThan(10); // really sampled: different samples differ
      // a resumed run: some samples already finished
      const partial = await collect(reqs((p) => (p === 0 ? [2] : p === 1 ? [] : p === 3 ? [0, 2] : [1])));
      expect(partial.size).toBe(5);
      for (const [k, c] of partial) expect(c.text).toBe(full.get(k)!.text);
      for (const c of full.values()) {
        expect(['stop', 'length']).toContain(c.finishReason);
        expect(c.usage!.completionTokens).toBeLessThanOrEqual(12);
      }
    } finally {
      engine.dispose();
    }
  });

  test('clipo serve + clipo eval --endpoint equals clipo eval --model (greedy), end to end', async () => {
    const dir = tmpDir();
    const modelDir = path.join(dir, 'tiny');
    const init = spawnSync(process.execPath, [bin, 'model', 'init', '--arch', 'llama', '--layers', '2', '--hidden', '32', '--heads', '4', '--kv-heads', '2', '--intermediate', '64', '--vocab', '259', '--tokenizer', 'byte', '--seed', '5', '--out', modelDir], { encoding: 'utf8', env });
    expect(init.stderr + init.stdout).toMatch(/wrote/);
    const { file } = writeArithmeticJsonl(dir, 'arith.jsonl', 4);

    // eval's concurrent greedy requests share the running batch: the comparison with the local backend then also
    // checks that batching does not change an answer
    const serve = spawn(process.execPath, [bin, 'serve', '--model', modelDir, '--port', '0', '--threads', '1'], { env });
    let serveErr = '';
    serve.stderr.on('data', (d) => (serveErr += d));
    const exited = new Promise<number | null>((r) => serve.on('close', (code) => r(code)));
    try {
      const line = await new Promise<string>((resolve, reject) => {
        const rl = createInterface({ input: serve.stdout });
        rl.once('line', resolve);
        serve.once('close', () => reject(new Error(`clipo serve exited: ${serveErr}`)));
      });
      const url = line.match(/at (http:\/\/127\.0\.0\.1:\d+\/v1)/)![1];
      const models = (await (await fetch(url + '/models')).json()) as { data: Array<{ id: string }> };
      expect(models.data[0].id).toBe('tiny');

      const run = (args: string[]) =>
        new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
          const c = spawn(process.execPath, [bin, 'eval', ...args, '--data', file, '--temperature', '0', '--max-new-tokens', '16', '--json'], { env });
          let out = '';
          let err = '';
          c.stdout.on('data', (d) => (out += d));
          c.stderr.on('data', (d) => (err += d));
          c.on('close', (code) => resolve({ code, out, err }));
        });
      const viaServer = await run(['--endpoint', url, '--served-model', 'tiny', '--concurrency', '3', '--out', path.join(dir, 'remote')]);
      expect(viaServer.err).not.toMatch(/failed/);
      expect(viaServer.code).toBe(0);
      const local = await run(['--model', modelDir, '--concurrency', '3', '--out', path.join(dir, 'local')]);
      expect(local.code).toBe(0);
      const a = JSON.parse(viaServer.out);
      const b = JSON.parse(local.out);
      expect(a.benchmarks.arith).toMatchObject({ problems: 4, finished: 4, errors: 0, complete: true });
      expect(b.benchmarks.arith.finished).toBe(4);
      const lines = (d: string) => readFileSync(path.join(dir, d, 'generations.jsonl'), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as SampleRecord).sort((x, y) => x.problem - y.problem);
      const remote = lines('remote');
      const loc = lines('local');
      expect(remote.map((r) => r.completion)).toEqual(loc.map((r) => r.completion));
      expect(remote.map((r) => r.finishReason)).toEqual(loc.map((r) => r.finishReason));
      expect(remote.map((r) => r.usage)).toEqual(loc.map((r) => r.usage));
      expect(remote[0].completion.length).toBeGreaterThan(0);
      // request log lines: time in the queue and in the engine
      expect(serveErr).toMatch(/POST \/v1\/chat\/completions 200 \d+ ms \(queue \d+ ms, engine \d+ ms, \d+\+\d+ tokens\)/);
    } finally {
      serve.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  });
});
