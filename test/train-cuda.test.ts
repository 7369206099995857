// `clipo train` on the CUDA engine end to end (bf16 weights and activations, fp32 master weights and moments), on the
// tiny warmed-up task model of test/train-cli.test.ts: a run writes metrics and checkpoints and its memory plan names
// the cuda backend; a run killed with SIGKILL after its first checkpoint resumes to exactly the uninterrupted run
// (metrics and final weights, bit for bit: the kernels sum in a fixed order and the sampler's stream is counter-based);
// per-layer recomputation (model.checkpointing=on) follows the same trajectory bit for bit; a checkpoint saved in bf16
// loads as a Hugging Face directory. Without a usable GPU everything here is skipped, saying why.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { engineBackends } from '../src/engine/engine.js';
import { countParameters } from '../src/engine/params.js';
import { loadModelDir } from '../src/model/hfdir.js';
import type { StepMetrics } from '../src/rl/trainer.js';
import { runClipo as clipo, trainKilledAt } from './helpers/cli.js';
import { makeTaskModel } from './helpers/task-model.js';

const backends = engineBackends();
const gpuTest = backends.cuda ? test : test.skip;
if (!backends.cuda) {
  test.skip(`train on the CUDA engine: skipped (${backends.cudaReason ?? 'no usable GPU'})`, () => {});
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'clipo-train-cuda-'));
let modelDir = '';
let dataFile = '';

function writeConfig(name: string): string {
  const f = path.join(dir, `${name}.yaml`);
  writeFileSync(f, [
    `model: {path: ${modelDir}, backend: cuda}`,
    `data: {train_files: [${dataFile}], max_prompt_tokens: 96, max_response_tokens: 12}`,
    'rollout: {n: 8, temperature: 1.0}',
    'algorithm: {preset: grpo}',
    'clipo: {enabled: true, out_size: 16, temperature: 0.1, warmup_steps: 1}',
    'optim: {lr: 1.0e-3, prompts_per_step: 4, ppo_mini_batch: 2, micro_batch: 8, epochs: 10, max_steps: 5, seed: 2}',
    `output: {dir: ${path.join(dir, name)}, save_every: 2, keep_last: 2}`,
  ].join('\n'));
  return f;
}

const rowsOf = (run: string) => readFileSync(path.join(dir, run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as StepMetrics);
// timings and the device memory's peak are measurements, not results: a resumed run may allocate in another order
const stripTimes = (m: StepMetrics) => Object.fromEntries(Object.entries(m).filter(([k]) => !k.startsWith('time_') && k !== 'tokens_per_s' && k !== 'device_mem_peak_gib'));
const finalWeights = (run: string) => readFileSync(path.join(dir, run, 'checkpoints', 'step-00000005', 'policy', 'model.safetensors'));

beforeAll(async () => {
  if (!backends.cuda) return;
  ({ modelDir, dataFile } = await makeTaskModel(dir));
}, 120_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('clipo train on the CUDA engine', () => {
  gpuTest('a run writes metrics and checkpoints, and its memory plan is the cuda backend\'s', () => {
    const r = clipo('train', '--config', writeConfig('runA'), '--json');
    expect(r.err).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.out) as { steps: number; memoryPlan: { backend: string } };
    expect(summary.steps).toBe(5);
    expect(summary.memoryPlan.backend).toBe('cuda');
    const rows = rowsOf('runA');
    expect(rows.map((m) => m.step)).toEqual([1, 2, 3, 4, 5]);
    for (const m of rows.slice(1)) {
      expect(Number.isFinite(m.policy_loss)).toBe(true);
      expect(Number.isFinite(m.entropy)).toBe(true);
    }

    const acc = rows.map((m) => m.accuracy);
    expect(Math.max(...acc)).toBeGreaterThan(0);
    const loaded = loadModelDir(path.join(dir, 'runA', 'checkpoints', 'step-00000005', 'policy'));
    expect(loaded.config.hiddenSize).toBe(32);
    // each updating step's peak device memory: at least the policy's bf16 weights, fp32 master, gradients and moments
    // (18 bytes a parameter), and less than a GiB for this tiny model
    for (const m of rows.slice(1)) {
      expect(m.device_mem_peak_gib!).toBeGreaterThanOrEqual((18 * countParameters(loaded.config)) / 2 ** 30);
      expect(m.device_mem_peak_gib!).toBeLessThan(1);
    }
  }, 180_000);

  gpuTest('a run killed with SIGKILL resumes to exactly the uninterrupted run', async () => {
    if (!existsSync(path.join(dir, 'runA', 'metrics.jsonl'))) clipo('train', '--config', writeConfig('runA'));
    const cfg = writeConfig('runB');
    await trainKilledAt(cfg, path.join(dir, 'runB', 'checkpoints', 'step-00000002', 'state.json'));
    const r = clipo('train', '--config', cfg, '--resume');
    expect(r.code).toBe(0);
    expect(rowsOf('runB').map(stripTimes)).toEqual(rowsOf('runA').map(stripTimes));
    expect(finalWeights('runB').equals(finalWeights('runA'))).toBe(true);
  }, 240_000);

  gpuTest('per-layer recomputation follows the same trajectory bit for bit', () => {
    if (!existsSync(path.join(dir, 'runA', 'metrics.jsonl'))) clipo('train', '--config', writeConfig('runA'));
    const r = clipo('train', '--config', writeConfig('runC'), '--set', 'model.checkpointing=on', '--json');
    expect(r.code).toBe(0);
    expect((JSON.parse(r.out) as { memoryPlan: { checkpointing: string } }).memoryPlan.checkpointing).toBe('on');
    expect(rowsOf('runC').map(stripTimes)).toEqual(rowsOf('runA').map(stripTimes));
    expect(finalWeights('runC').equals(finalWeights('runA'))).toBe(true);
  }, 180_000);

  gpuTest('a policy saved in bf16 loads as a Hugging Face directory', () => {
    const r = clipo('train', '--config', writeConfig('runD'), '--set', 'model.save_dtype=bf16', '--set', 'optim.max_steps=2');
    expect(r.code).toBe(0);
    const loaded = loadModelDir(path.join(dir, 'runD', 'checkpoints', 'step-00000002', 'policy'));
    expect(loaded.config.hiddenSize).toBe(32);
    expect([...loaded.dtypes.values()].every((d) => d === 'BF16')).toBe(true);
  }, 120_000);
});
