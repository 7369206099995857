// `clipo train` end to end on the native engine: a tiny Qwen2 model (supervised for a moment on the built-in task's
// answers so that its samples are sometimes right), the task's jsonl data, the real verifier and kernels.
// A run writes metrics and checkpoints; a run killed with SIGKILL resumes to exactly the uninterrupted run;
// CLIPO with λ = 0 follows the base trajectory on the real engine; bad resumes and flags fail clearly.
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseTrainConfig } from '../src/config/load.js';
import { loadDataset } from '../src/data/load.js';
import { Engine } from '../src/engine/engine.js';
import { loadModelDir } from '../src/model/hfdir.js';
import { buildPrompts } from '../src/rl/run.js';
import { Trainer, type StepMetrics } from '../src/rl/trainer.js';
import type { PolicyEngine } from '../src/rl/types.js';
import { reward } from '../src/verify/index.js';
import { runClipo as clipo, trainKilledAt } from './helpers/cli.js';
import { makeTaskModel } from './helpers/task-model.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'clipo-train-cli-'));
const modelDir = path.join(dir, 'model');
const dataFile = path.join(dir, 'task', 'train', 'task.jsonl');


function writeConfig(name: string, extra = ''): string {
  const f = path.join(dir, `${name}.yaml`);
  writeFileSync(f, [
    `model: {path: ${modelDir}, threads: 1}`,
    `data: {train_files: [${dataFile}], max_prompt_tokens: 96, max_response_tokens: 12}`,
    'rollout: {n: 8, temperature: 1.0}',
    'algorithm: {preset: grpo}',
    'clipo: {enabled: true, out_size: 16, temperature: 0.1, warmup_steps: 1}',
    'optim: {lr: 1.0e-3, prompts_per_step: 4, ppo_mini_batch: 2, micro_batch: 8, epochs: 10, max_steps: 5, seed: 2}',
    `output: {dir: ${path.join(dir, name)}, save_every: 2, keep_last: 2}`,
    extra,
  ].join('\n'));
  return f;
}

const rowsOf = (run: string) => readFileSync(path.join(dir, run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as StepMetrics);
const stripTimes = (m: StepMetrics) => Object.fromEntries(Object.entries(m).filter(([k]) => !k.startsWith('time_') && k !== 'tokens_per_s'));
const finalWeights = (run: string) => readFileSync(path.join(dir, run, 'checkpoints', 'step-00000005', 'policy', 'model.safetensors'));

beforeAll(async () => {
  // a tiny model supervised for a moment on "The answer is \boxed{N}." so that samples are right some of the time
  await makeTaskModel(dir);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('clipo train on the native engine', () => {
  test('a run writes metrics.jsonl, checkpoints and a loadable policy', () => {
    const r = clipo('train', '--config', writeConfig('runA'), '--json');
    expect(r.err).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.out);
    expect(summary).toMatchObject({ steps: 5, totalSteps: 5 });
    const rows = rowsOf('runA');
    expect(rows.map((m) => m.step)).toEqual([1, 2, 3, 4, 5]);
    expect(rows[0]!.warmup).toBe(true);
    expect(rows[0]!.policy_loss).toBeNull();
    expect(rows[1]!.policy_loss).not.toBeNull();
    for (const k of ['reward_mean', 'accuracy', 'contrastive_loss', 'contrastive_correct_loss_mean', 'contrastive_incorrect_loss_mean', 'contrastive_reward_mean', 'contrastive_signal_group_frac', 'positive_cos_mean', 'clip_frac_high', 'clip_frac_low', 'approx_kl', 'kl_loss', 'entropy', 'response_length_mean', 'response_length_max', 'tokens_per_s', 'time_rollout_s', 'time_scoring_s', 'time_clipo_s', 'time_update_s']) {
      expect(rows[4]).toHaveProperty(k);
    }
    // no device on the CPU backend: the step's peak device memory is null
    for (const m of rows) expect(m.device_mem_peak_gib).toBeNull();
    // the warm-up made rewards non-trivial: some responses are right, some wrong
    const acc = rows.map((m) => m.accuracy);
    expect(Math.max(...acc)).toBeGreaterThan(0);
    expect(Math.min(...acc)).toBeLessThan(1);
    expect(readdirSync(path.join(dir, 'runA', 'checkpoints')).sort()).toEqual(['step-00000004', 'step-00000005']);
    const ck = path.join(dir, 'runA', 'checkpoints', 'step-00000005');
    for (const f of ['state.json', 'head.safetensors', 'head-optim.safetensors', 'policy-optim.safetensors', 'policy/config.json', 'policy/tokenizer.json']) expect(existsSync(path.join(ck, f))).toBe(true);
    const loaded = loadModelDir(path.join(ck, 'policy'));
    expect(loaded.config.hiddenSize).toBe(32);
    expect(JSON.parse(readFileSync(path.join(ck, 'state.json'), 'utf8'))).toMatchObject({ step: 5, metricsRows: 5 });
  });

  test('a run killed with SIGKILL resumes to exactly the uninterrupted run', async () => {
    if (!existsSync(path.join(dir, 'runA', 'metrics.jsonl'))) clipo('train', '--config', writeConfig('runA'));
    const cfg = writeConfig('runB');
    const signal = await trainKilledAt(cfg, path.join(dir, 'runB', 'checkpoints', 'step-00000002', 'state.json'));
    expect(signal).toBe('SIGKILL');
    expect(rowsOf('runB').length).toBeLessThan(5);
    const r = clipo('train', '--config', cfg, '--resume');
    expect(r.code).toBe(0);
    expect(rowsOf('runB').map(stripTimes)).toEqual(rowsOf('runA').map(stripTimes));
    expect(finalWeights('runB').equals(finalWeights('runA'))).toBe(true);
  });

  test('refuses to overwrite a run, and to resume with a changed config', () => {
    if (!existsSync(path.join(dir, 'runA', 'metrics.jsonl'))) clipo('train', '--config', writeConfig('runA'));
    const a = clipo('train', '--config', writeConfig('runA'));
    expect(a.code).toBe(1);
    expect(a.err).toMatch(/already holds a run; pass --resume/);
    const b = clipo('train', '--config', writeConfig('runA'), '--resume', '--set', 'clipo.lambda=0.5', '--set', 'optim.max_steps=6');
    expect(b.code).toBe(1);
    expect(b.err).toMatch(/the config differs from the run's in clipo\.lambda/);
    const c = clipo('train', '--config', writeConfig('runA'), '--set', 'clipo.lamda=1');
    expect(c.code).toBe(2);
    expect(c.err).toMatch(/unknown key 'clipo\.lamda'/);
  });

  test('CLIPO with λ = 0 and no warm-up follows the base trajectory on the native engine', async () => {
    const base = loadModelDir(modelDir);
    const rows = (await loadDataset(dataFile)).rows;
    const run = (clipoOn: boolean) => {
      const c = parseTrainConfig({
        model: { path: modelDir }, data: { train_files: [dataFile], max_prompt_tokens: 96, max_response_tokens: 12 }, rollout: { n: 8 },
        clipo: { enabled: clipoOn, lambda: 0, warmup_steps: 0, out_size: 16 }, optim: { lr: 1e-3, prompts_per_step: 4, ppo_mini_batch: 2, max_steps: 2, seed: 4 },
      });
      const policy = Engine.create(base.config, base.weights, { threads: 1 });
      const ref = policy.cloneFrozen();
      const t = new Trainer({ config: c, policy: policy as unknown as PolicyEngine, reference: ref as unknown as PolicyEngine, prompts: buildPrompts(rows, base.tokenizer!, c).prompts, io: { decode: (x) => base.tokenizer!.decode(x, { skipSpecialTokens: true }), reward } });
      const ms = [t.runStep().metrics, t.runStep().metrics];
      const w = [...policy.exportWeights().values()].map((x) => Buffer.from(x.data.buffer, x.data.byteOffset, x.data.byteLength));
      policy.dispose();
      ref.dispose();
      return { ms, w: Buffer.concat(w) };
    };
    const a = run(false), b = run(true);
    expect(b.ms[0]!.contrastive_loss).not.toBeNull();
    expect(b.ms.map((m) => m.reward_mean)).toEqual(a.ms.map((m) => m.reward_mean));
    expect(b.w.equals(a.w)).toBe(true);
  });
});
