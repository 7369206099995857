// Nothing lost, nothing crashes: one training run per output.dir (a real second process is refused, a killed run's
// lock is taken over), big data files, engine calls in flight, sizes checked before allocating, hostile model
// directories and chat templates, validation that used to give silent wrong results, and clear file messages.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { applySet, loadTrainConfig, parseTrainConfig } from '../src/config/load.js';
import { Engine } from '../src/engine/engine.js';
import { randomWeights, smallConfig } from '../src/engine/params.js';
import { LocalModel, type GenerateEngine } from '../src/eval/localmodel.js';
import { contrastiveLoss } from '../src/kernels/contrastive.js';
import { surrogateLoss } from '../src/kernels/surrogate.js';
import { loadModelDir, saveModelDir } from '../src/model/hfdir.js';
import { initModel } from '../src/model/init.js';
import { writeSafetensors } from '../src/model/safetensors.js';
import { setTemplateLimits } from '../src/model/template-render.js';
import { configTotals, expectedTensors } from '../src/model/tensors.js';
import { ModelTokenizer } from '../src/model/tokenizer.js';
import { loadNative, packageRoot } from '../src/native.js';
import { runTraining } from '../src/rl/run.js';
import { startServer } from '../src/serve/server.js';
import type { StepEngine } from '../src/serve/scheduler.js';
import { makeTaskData } from '../src/task/records.js';
import { appendText, ensureDir, writeAll } from '../src/util/atomic.js';
import { allocatableBytes } from '../src/util/limits.js';
import { maxOf, minOf } from '../src/util/stats.js';
import { clipoBin, cliEnv, runClipo } from './helpers/cli.js';

const taskTok = path.join(packageRoot, 'assets', 'task');
const root = mkdtempSync(path.join(os.tmpdir(), 'clipo-reliability-'));
chmodSync(root, 0o755); // the read-only-folder test runs a child as an unprivileged user when the suite runs as root
const modelDir = path.join(root, 'model');
const dataFile = path.join(root, 'task', 'train', 'task.jsonl');
const native = loadNative() as Record<string, (...a: unknown[]) => unknown>;

beforeAll(() => {
  makeTaskData(path.join(root, 'task'), { seed: 1, train: 32, test: 1, format: 'jsonl' });
  const tok = ModelTokenizer.fromDir(taskTok);
  const { config, weights } = initModel({ architecture: 'qwen2', numLayers: 2, hiddenSize: 32, numHeads: 4, numKvHeads: 2, intermediateSize: 64, vocabSize: 296, tieWordEmbeddings: true, eosTokenIds: [tok.eosTokenId!] }, 5);
  saveModelDir(modelDir, config, weights, { copyFrom: taskTok });
});

afterAll(() => rmSync(root, { recursive: true, force: true }));

function writeConfig(name: string, opts: { maxSteps?: number; extra?: string; model?: string; data?: string; outDir?: string } = {}): string {
  const f = path.join(root, `${name}.yaml`);
  writeFileSync(f, [
    `model: {path: ${opts.model ?? modelDir}, threads: 1}`,
    `data: {train_files: [${opts.data ?? dataFile}], max_prompt_tokens: 96, max_response_tokens: 8}`,
    'rollout: {n: 4, temperature: 1.0}',
    'algorithm: {preset: grpo}',
    `optim: {lr: 1.0e-3, prompts_per_step: 2, ppo_mini_batch: 2, micro_batch: 8, epochs: 10, max_steps: ${opts.maxSteps ?? 6}, seed: 2}`,
    `output: {dir: ${opts.outDir ?? path.join(root, name)}, save_every: 2, keep_last: 2}`,
    opts.extra ?? '',
  ].join('\n'));
  return f;
}

const stepsOf = (run: string) => readFileSync(path.join(root, run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { step: number }).step);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(cond: () => boolean, what: string, ms = 240_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

function startTrain(config: string, ...args: string[]) {
  const child = spawn(process.execPath, [clipoBin, 'train', '--config', config, ...args], { env: cliEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  child.stdout!.resume();
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; err: string }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, err })));
  return { child, done };
}

describe('one clipo train per output.dir', () => {
  test('a second process on the same output.dir is refused while the first runs, and the history stays intact', async () => {
    const steps = 40;
    const config = writeConfig('shared', { maxSteps: steps });
    const a = startTrain(config);
    await waitFor(() => existsSync(path.join(root, 'shared', '.lock')), 'the first run to take the lock');
    // paused mid-run, so that on a fast machine it cannot finish before the second process starts; it keeps its lock
    a.child.kill('SIGSTOP');
    try {
      for (const extra of [[], ['--resume']]) {
        const b = runClipo('train', '--config', config, ...extra);
        expect(b.err).toMatch(/another clipo train/);
        expect(b.code).toBe(2);
        expect(b.err).toMatch(new RegExp(`another clipo train \\(pid ${a.child.pid}\\) is writing to ${path.join(root, 'shared').replace(/[.]/g, '\\.')}`));
      }
    } finally {
      a.child.kill('SIGCONT');
    }
    const ra = await a.done;
    expect(ra.err).not.toMatch(/error/i);
    expect(ra.code).toBe(0);
    expect(stepsOf('shared')).toEqual(Array.from({ length: steps }, (_, i) => i + 1));
    const ckpts = readdirSync(path.join(root, 'shared', 'checkpoints'));
    expect(ckpts.sort()).toEqual([`step-000000${steps - 2}`, `step-000000${steps}`]);
    expect(existsSync(path.join(root, 'shared', '.lock'))).toBe(false);
  }, 600_000);

  test('a run killed with SIGKILL leaves a stale lock that --resume takes over; the history is whole', async () => {
    const config = writeConfig('killed', { maxSteps: 6 });
    const a = startTrain(config);
    const metrics = path.join(root, 'killed', 'metrics.jsonl');
    await waitFor(() => existsSync(metrics) && readFileSync(metrics, 'utf8').trim().split('\n').length >= 3, 'three steps');
    a.child.kill('SIGKILL');
    expect((await a.done).signal).toBe('SIGKILL');
    expect(existsSync(path.join(root, 'killed', '.lock'))).toBe(true);
    const r = runClipo('train', '--config', config, '--resume');
    expect(r.err).not.toMatch(/error|another/i);
    expect(r.code).toBe(0);
    expect(stepsOf('killed')).toEqual([1, 2, 3, 4, 5, 6]);
  }, 600_000);
});

describe('big data files', () => {
  test('clipo train reads a training file of 200k rows (nothing in the data path is limited by the stack)', async () => {
    const rows = 200_000;
    const line = readFileSync(dataFile, 'utf8').split('\n')[0]!;
    const file = path.join(root, 'big.jsonl');
    const fd = openSync(file, 'w');
    const chunk: string[] = [];
    for (let i = 0; i < rows; i++) {
      chunk.push(line.replace('"index":0', `"index":${i}`));
      if (chunk.length === 10_000) {
        writeFileSync(fd, chunk.join('\n') + '\n');
        chunk.length = 0;
      }
    }
    closeSync(fd);
    const c = loadTrainConfig(writeConfig('big', { maxSteps: 1, data: file }));
    let prompts = -1;
    const r = await runTraining(c, { onStart: (i) => (prompts = i.prompts) });
    expect(prompts).toBe(rows);
    expect(r.steps).toBe(1);
    // the helpers that replaced Math.max(...values) agree with it where it works, and work where it overflows
    const small = Array.from({ length: 1000 }, (_, i) => Math.sin(i * 7.3) * 1e3);
    expect(maxOf(small)).toBe(Math.max(...small));
    expect(minOf(small)).toBe(Math.min(...small));
    const big = Array.from({ length: 500_000 }, (_, i) => (i * 7919) % 1_000_003);
    expect(() => Math.max(...big)).toThrow(RangeError);
    expect(maxOf(big)).toBe(big.reduce((a, b) => (b > a ? b : a), -Infinity));
  }, 600_000);
});

/** Runs a script in a child node (a crash there is a signal, not a dead test runner). */
function runScript(code: string, env: NodeJS.ProcessEnv = {}, timeoutMs = 120_000) {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: timeoutMs });
  return { code: r.status, signal: r.signal, out: r.stdout, err: r.stderr };
}

const dist = (p: string) => JSON.stringify(pathToFileURL(path.join(packageRoot, 'dist', 'src', p)).href);

describe('engine calls in flight keep what they use alive', () => {
  test('dispose() from onProgress is deferred to the end of generate; other calls from it are refused', () => {
    const r = runScript(`
      const { Engine } = await import(${dist('engine/engine.js')});
      const { smallConfig, randomWeights } = await import(${dist('engine/params.js')});
      const c = smallConfig('qwen2', { vocab: 64, hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 64 });
      const e = Engine.create(c, randomWeights(c, { seed: 3 }), { threads: 1 });
      const req = { prompts: [Int32Array.of(1, 2, 3), Int32Array.of(4, 5)], n: 3, maxNewTokens: 24, temperature: 1, seed: 7, maxBatch: 3 };
      const want = e.generate(req).sequences.map((s) => Array.from(s.tokens).join(','));
      let calls = 0, refused = '';
      const got = e.generate({ ...req, onProgress: () => {
        if (calls++ === 0) {
          try { e.logits(Int32Array.of(1), 1, 1); } catch (x) { refused = x.message; }
          e.dispose();
          for (let i = 0; i < 50; i++) new Float32Array(1 << 16); // churn the heap while the native call goes on
        }
      } }).sequences.map((s) => Array.from(s.tokens).join(','));
      let after = '';
      try { e.logits(Int32Array.of(1), 1, 1); } catch (x) { after = x.message; }
      console.log(JSON.stringify({ same: JSON.stringify(got) === JSON.stringify(want), calls, refused, after }));
    `);
    expect(r.signal).toBeNull();
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const o = JSON.parse(r.out);
    expect(o.same).toBe(true); // the running call finished normally, with the same samples
    expect(o.calls).toBeGreaterThan(1);
    expect(o.refused).toMatch(/busy: generate is running/);
    expect(o.after).toMatch(/disposed/);
  }, 120_000);
});

describe('sizes are checked against what can be allocated before work starts', () => {
  const limitRe = /needs [\d.]+ [MG]B of memory, more than this process can allocate/;
  // sizes chosen so that the request exceeds any machine's memory while the inputs themselves are small
  const B = 1 << 20;

  test('kernels: an output or scratch too big for memory is an Error from both layers (no abort)', () => {
    const o = {
      batch: B, hiddenSize: 1, outSize: B, lossType: 'infonce' as const, level: 'group' as const, distance: 'cosine' as const,
      temperature: 0.1, maskedLabel: -1 as const, skipTrivial: true, pooled: new Float32Array(B).fill(0.5), weight: new Float32Array(B).fill(0.1),
      correct: new Uint8Array(B), group: new Int32Array(B), backend: 'cpu' as const,
    };
    expect(() => contrastiveLoss(o)).toThrow(new RegExp(`contrastiveLoss: ${limitRe.source}`));
    expect(() => native.contrastiveLoss!(o)).toThrow(new RegExp(`contrastiveLoss: ${limitRe.source}`));
    expect(() => native.contrastiveLossUnfused!(o)).toThrow(limitRe);
    expect(() => native.engineGemm!({ M: 65536, N: 1 << 20, K: 65536, mode: 'nt' })).toThrow(limitRe);
    expect(() => native.engineFmaPeak!({ seconds: 1e9 })).toThrow(/seconds: must be in \(0, 60\]/);
  });

  test('engine: generate, logits and create check their memory first', () => {
    const c = smallConfig('qwen2', { vocab: 64, hidden: 32, layers: 1, heads: 4, kvHeads: 2, intermediate: 64 });
    const e = Engine.create(c, randomWeights(c), { threads: 1 });
    try {
      expect(() => e.generate({ prompts: [Int32Array.of(1)], n: 1 << 20, maxNewTokens: 1 << 24, temperature: 1, seed: 1, maxBatch: 1 << 20 })).toThrow(new RegExp(`generate: ${limitRe.source}`));
      // the engine still works afterwards
      expect(e.generate({ prompts: [Int32Array.of(1)], maxNewTokens: 2, temperature: 0, seed: 1 }).sequences[0]!.tokens.length).toBe(2);
    } finally {
      e.dispose();
    }
    // forwardTrain keeps about 2 x intermediate floats per token: with a wide MLP, a token stream that fits easily
    // in memory asks for more activations than the machine has
    const wideMlp = smallConfig('qwen2', { vocab: 16, hidden: 8, layers: 1, heads: 2, kvHeads: 1, intermediate: 1 << 16 });
    const ew = Engine.create(wideMlp, randomWeights(wideMlp), { threads: 1 });
    try {
      const n = Math.ceil(allocatableBytes() / (4 * 2 * (1 << 16))) + 16;
      expect(() => ew.forwardTrain({ sequences: [{ prompt: Int32Array.of(1), response: new Int32Array(n) }] })).toThrow(new RegExp(`forwardTrain: ${limitRe.source}`));
    } finally {
      ew.dispose();
    }
    const wide = { ...c, vocabSize: 1 << 30 };
    const Ctor = native.EngineModel as unknown as new (o: object) => { logits(o: object): unknown };
    expect(() => new Ctor({ config: { ...c, numLayers: 1_000_000_000 }, weights: [], threads: 1 })).toThrow(new RegExp(`Engine.create: ${limitRe.source}`));
    expect(() => new Ctor({ config: wide, weights: [], threads: 1 })).toThrow(limitRe);
    expect(allocatableBytes()).toBeGreaterThan(1e8);
  });
});

/** A copy of the tiny model directory with config.json changed. */
function hostileModel(name: string, change: (cfg: Record<string, unknown>) => void, files: Record<string, string> = {}): string {
  const d = path.join(root, name);
  mkdirSync(d, { recursive: true });
  for (const f of readdirSync(modelDir)) writeFileSync(path.join(d, f), readFileSync(path.join(modelDir, f)));
  const cfg = JSON.parse(readFileSync(path.join(d, 'config.json'), 'utf8')) as Record<string, unknown>;
  change(cfg);
  writeFileSync(path.join(d, 'config.json'), JSON.stringify(cfg));
  for (const [f, text] of Object.entries(files)) writeFileSync(path.join(d, f), text);
  return d;
}

/** Puts `template` into the tokenizer_config.json of `dir` (where it takes precedence over other template files). */
function setChatTemplate(dir: string, template: string): void {
  const f = path.join(dir, 'tokenizer_config.json');
  const cfg = JSON.parse(readFileSync(f, 'utf8')) as Record<string, unknown>;
  cfg.chat_template = template;
  writeFileSync(f, JSON.stringify(cfg));
}

const LOOP_TEMPLATE = '{% for i in range(1000000000) %}{% for j in range(1000000000) %}x{% endfor %}{% endfor %}';

describe('hostile model directories', () => {
  test('config sizes are checked against the weights present before anything is allocated', () => {
    for (const [key, value] of [['num_hidden_layers', 1e9], ['num_hidden_layers', 2 ** 31 - 1]] as const) {
      const d = hostileModel(`layers-${value}`, (c) => (c[key] = value));
      const t0 = Date.now();
      expect(() => loadModelDir(d)).toThrow(/config\.json describes .* parameters in \d+ tensors .* but the weights hold \d+ parameters in \d+ tensors/);
      expect(Date.now() - t0).toBeLessThan(10_000);
      const r = spawnSync(process.execPath, [clipoBin, 'model', 'info', d], { encoding: 'utf8', env: cliEnv, timeout: 60_000 });
      expect(r.signal).toBeNull();
    }
    for (const [key, value] of [['hidden_size', 1 << 30], ['vocab_size', 1e9], ['intermediate_size', 1e9]] as const) {
      const d = hostileModel(`${key}-${value}`, (c) => (c[key] = value));
      expect(() => loadModelDir(d)).toThrow(/has shape \[[\d, ]+\], expected \[[\d, ]+\] from config\.json|does not divide|the tokenizer has ids/);
    }
    // the arithmetic totals agree with the listed tensors
    for (const cfg of [smallConfig('qwen2', { vocab: 50, hidden: 16, layers: 3, heads: 4, kvHeads: 2, intermediate: 24 }), smallConfig('llama', { vocab: 50, hidden: 16, layers: 2, heads: 4, kvHeads: 1, intermediate: 40, mlpBias: true, tie: false })]) {
      const specs = expectedTensors(cfg).filter((s) => !s.optional);
      expect(configTotals(cfg)).toEqual({ tensors: specs.length, params: specs.reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1), 0) });
    }
  });

  test('a chat template that never ends is abandoned by clipo generate, with a clear error', () => {
    const d = hostileModel('loop-template', () => {});
    setChatTemplate(d, LOOP_TEMPLATE);
    const t0 = Date.now();
    const r = spawnSync(process.execPath, [clipoBin, 'generate', '--model', d, '--prompt', 'hi', '--chat', '--max-new-tokens', '2'], { encoding: 'utf8', env: { ...cliEnv, CLIPO_TEMPLATE_TIMEOUT_MS: '1500' }, timeout: 120_000 });
    expect(r.signal).toBeNull();
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/rendering the chat template failed \(rendering the chat template did not finish within 1500 ms/);
    expect(Date.now() - t0).toBeLessThan(60_000);
  }, 120_000);

  test('clipo serve answers a runaway template with a 400 and keeps serving', async () => {
    const tplDir = path.join(root, 'tpl-tok');
    mkdirSync(tplDir, { recursive: true });
    for (const f of readdirSync(taskTok)) writeFileSync(path.join(tplDir, f), readFileSync(path.join(taskTok, f)));
    setChatTemplate(tplDir, LOOP_TEMPLATE);
    const tok = ModelTokenizer.fromDir(tplDir);
    // a step-wise engine (what clipo serve drives) that answers 'ok' and the eos token
    const answer = [...tok.encode('ok'), tok.eosTokenId!];
    const live = new Map<number, number>();
    let nextId = 1;
    const engine: StepEngine = {
      config: { eosTokenIds: [tok.eosTokenId!], maxPositionEmbeddings: 512, vocabSize: 296 },
      decodeAdd: (req) => Array.from({ length: req.n ?? 1 }, () => (live.set(nextId, 0), nextId++)),
      decodeStep: () =>
        [...live].map(([id, at]) => {
          live.set(id, at + 1);
          const finished = at + 1 === answer.length;
          if (finished) live.delete(id);
          return { id, token: answer[at], logprob: 0, finished, stopped: finished };
        }),
      decodeRemove: (id) => live.delete(id),
    };
    const prev = setTemplateLimits({ timeoutMs: 1000 });
    const s = await startServer(new LocalModel(engine as unknown as GenerateEngine, tok, 'tiny'), { port: 0 });
    try {
      const chat = await fetch(s.url + '/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }] }) });
      expect(chat.status).toBe(400);
      expect(JSON.stringify(await chat.json())).toMatch(/did not finish within 1000 ms/);
      const plain = await fetch(s.url + '/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny', prompt: 'hi', max_tokens: 4 }) });
      expect(plain.status).toBe(200);
    } finally {
      await s.close();
    }
    try {
      // a heap bomb ends the renderer thread, not this process; the next rendering gets a fresh renderer
      setTemplateLimits({ timeoutMs: 10_000 });
      setChatTemplate(tplDir, '{{ range(200000000) | length }}');
      const tok2 = ModelTokenizer.fromDir(tplDir);
      expect(() => tok2.applyChatTemplate([{ role: 'user', content: 'x' }])).toThrow(/rendering the chat template failed \(.*(heap|memory|Invalid array length)/);
      setChatTemplate(tplDir, '{{ messages[0].content }}!');
      expect(ModelTokenizer.fromDir(tplDir).applyChatTemplate([{ role: 'user', content: 'x' }])).toBe('x!');
    } finally {
      setTemplateLimits(prev);
    }
  }, 120_000);
});

describe('validation gaps that used to give silent wrong results', () => {
  test('tiny temperatures are errors, not NaN losses', () => {
    const base = { model: { path: modelDir }, data: { train_files: [dataFile] } };
    expect(() => parseTrainConfig({ ...base, rollout: { temperature: 1e-50 } })).toThrow(/rollout\.temperature: must be 0 \(greedy\) or at least 0\.0001/);
    expect(() => parseTrainConfig({ ...base, clipo: { temperature: 1e-50 } })).toThrow(/clipo\.temperature: .*>=0\.0001/);
    expect(parseTrainConfig({ ...base, rollout: { temperature: 0 } }).rollout.temperature).toBe(0);
    const B = 4, H = 8, D = 4;
    const o = {
      batch: B, hiddenSize: H, outSize: D, lossType: 'infonce' as const, level: 'group' as const, distance: 'cosine' as const, temperature: 1e-50,
      maskedLabel: -1 as const, skipTrivial: true, pooled: Float32Array.from({ length: B * H }, (_, i) => Math.sin(i)), weight: Float32Array.from({ length: D * H }, (_, i) => Math.cos(i)),
      correct: Uint8Array.of(1, 1, 0, 0), group: Int32Array.of(0, 0, 0, 0), backend: 'cpu' as const,
    };
    expect(() => contrastiveLoss(o)).toThrow(/temperature: expected a finite number >= 0\.0001/);
    expect(() => native.contrastiveLoss!(o)).toThrow(/temperature: must be >= 0\.0001/);
    const c = smallConfig('qwen2', { vocab: 64, hidden: 32, layers: 1, heads: 4, kvHeads: 2, intermediate: 64 });
    const e = Engine.create(c, randomWeights(c), { threads: 1 });
    try {
      expect(() => e.generate({ prompts: [Int32Array.of(1)], maxNewTokens: 2, temperature: 1e-50, seed: 1 })).toThrow(/temperature must be 0 \(greedy\) or at least 0\.0001/);
      expect(() => e.generate({ prompts: [Int32Array.of(1)], maxNewTokens: 2, temperature: 1e-5, seed: 1 })).toThrow(/temperature/);
      expect(() => e.generate({ prompts: [Int32Array.of(1)], maxNewTokens: 2, temperature: 1, seed: 1, stopTokens: ['a'] as unknown as number[] })).toThrow(/stopTokens\[0\] must be a token id in \[0, 64\), got "a" \(stop strings must be tokenized first\)/);
      expect(() => e.generate({ prompts: [Int32Array.of(1)], maxNewTokens: 2, temperature: 1, seed: 1, stopTokens: [64] })).toThrow(/stopTokens\[0\]/);
      expect(() => e.generate({ prompts: [Int32Array.of(1)], maxNewTokens: 2, temperature: 1, seed: 1, stopTokens: [1.5] })).toThrow(/stopTokens\[0\]/);
      const nativeGen = (e as unknown as { native: { generate(o: object): unknown } }).native;
      expect(() => nativeGen.generate({ tokens: Int32Array.of(1), promptLengths: Int32Array.of(1), maxNewTokens: 2, temperature: 1e-50, seed: 1 })).toThrow(/temperature: must be 0 \(greedy\) or at least 0\.0001/);
    } finally {
      e.dispose();
    }
  });

  test('an out buffer overlapping any input of the surrogate kernel is refused', () => {
    const B = 3, T = 4, n = B * T;
    const buf = new Float32Array(4 * n + B);
    for (let i = 0; i < buf.length; i++) buf[i] = -0.1 - 0.01 * Math.sin(i);
    const logp = buf.subarray(0, n), oldLogp = buf.subarray(n, 2 * n), advantages = buf.subarray(2 * n, 2 * n + B);
    const mask = new Uint8Array(n).fill(1);
    const base = { logp, oldLogp, advantages, mask, batch: B, length: T, mode: 'token' as const, clipLow: 0.2, clipHigh: 0.2, agg: 'token-mean' as const, backend: 'cpu' as const };
    const overAdv = buf.subarray(2 * n + B - 2, 3 * n + B - 2); // its first two values are the last advantages
    expect(() => surrogateLoss({ ...base, out: overAdv })).toThrow(/out must not overlap advantages/);
    expect(() => native.surrogateLossCpu!({ ...base, out: overAdv })).toThrow(/out: must not overlap an input array/);
    const maskBytes = new Uint8Array(new ArrayBuffer(4 * n));
    maskBytes.fill(1);
    const outOverMask = new Float32Array(maskBytes.buffer, 0, n);
    expect(() => surrogateLoss({ ...base, mask: maskBytes.subarray(0, n), out: outOverMask })).toThrow(/out must not overlap mask/);
    expect(() => native.surrogateLossCpu!({ ...base, mask: maskBytes.subarray(0, n), out: outOverMask })).toThrow(/out: must not overlap/);
    // a separate out is fine and equals the freshly allocated gradient
    const fresh = surrogateLoss(base).gradLogp;
    const out = buf.subarray(3 * n + B, 4 * n + B);
    expect(Array.from(surrogateLoss({ ...base, out }).gradLogp)).toEqual(Array.from(fresh));
  });

  test('NaN or Inf in the weights fails the load; clipo score and clipo eval exit non-zero', () => {
    for (const bad of [NaN, Infinity]) {
      const d = hostileModel(`nan-${bad}`, () => {});
      const m = loadModelDir(modelDir);
      m.weights.get('model.layers.1.mlp.down_proj.weight')!.data[17] = bad;
      // (saveModelDir refuses such weights: written here with the low-level writer)
      writeSafetensors(path.join(d, 'model.safetensors'), [...m.weights]);
      expect(() => loadModelDir(d)).toThrow(new RegExp(`tensor 'model\\.layers\\.1\\.mlp\\.down_proj\\.weight' holds a non-finite value \\(${bad}\\) at index 17`));
      const s = runClipo('score', '--model', d, '--tokens', '1,2,3,4');
      expect(s.code).not.toBe(0);
      expect(s.err).toMatch(/non-finite value/);
      const ev = runClipo('eval', '--model', d, '--data', dataFile, '--limit', '2', '--max-new-tokens', '4', '--out', path.join(root, `nan-eval-${bad}`));
      expect(ev.code).not.toBe(0);
      expect(ev.err).toMatch(/non-finite value/);
    }
  }, 300_000);
});

describe('clear messages', () => {
  test("--set __proto__.x=1 and other non-keys are unknown keys", () => {
    for (const [key, unknown] of [['__proto__.x', '__proto__'], ['constructor.x', 'constructor'], ['model.__proto__', 'model.__proto__'], ['toString', 'toString']]) {
      expect(() => applySet({}, `${key}=1`)).toThrow(new RegExp(`unknown key '${unknown!.replace(/[.]/g, '\\.')}'`));
    }
    const r = runClipo('train', '--config', writeConfig('proto'), '--set', '__proto__.x=1');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--set '__proto__\.x=1': unknown key '__proto__' \(keys of the top level: model, /);
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });

  test('a full disk (ENOSPC) is reported naming the file', () => {
    expect(() => appendText('/dev/full', 'x\n')).toThrow(/cannot append to \/dev\/full: no space left on the device \(ENOSPC\)/);
    const fd = openSync('/dev/full', 'w');
    try {
      expect(() => writeAll(fd, Buffer.from('abc'), '/some/run/metrics.jsonl')).toThrow(/cannot write \/some\/run\/metrics\.jsonl: no space left on the device \(ENOSPC\)/);
    } finally {
      closeSync(fd);
    }
    expect(() => writeSafetensors('/dev/full', [['w', { shape: [4], data: new Float32Array(4) }]])).toThrow(/cannot write \/dev\/full: no space left on the device \(ENOSPC\)/);
  });

  test('a read-only output folder is reported as such (not as ENOENT ... mkdir)', () => {
    const ro = path.join(root, 'readonly');
    mkdirSync(ro);
    chmodSync(ro, 0o555);
    const asUser = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
    const config = writeConfig('ro-run', { outDir: path.join(ro, 'sub', 'run') });
    const r = spawnSync(process.execPath, [clipoBin, 'train', '--config', config], { encoding: 'utf8', env: cliEnv, ...asUser });
    expect(r.status).not.toBe(0);
    expect(r.stderr).not.toMatch(/ENOENT/);
    expect(r.stderr).toMatch(new RegExp(`cannot create output\\.dir ${path.join(ro, 'sub', 'run').replace(/[.]/g, '\\.')}: cannot write in ${ro.replace(/[.]/g, '\\.')}: permission denied \\(EACCES\\)`));
    // the helper itself, in this process (as root only a non-directory parent can refuse)
    writeFileSync(path.join(root, 'plainfile'), 'x');
    expect(() => ensureDir(path.join(root, 'plainfile', 'out'), '--out')).toThrow(/cannot create --out .*: .*plainfile is not a folder/);
  });
});
