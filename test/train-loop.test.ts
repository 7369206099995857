// The trainer's step loop on a tiny TypeScript policy (test/helpers/bigram-policy.ts) and the real kernels:
// training raises reward for every preset, CLIPO with λ = 0 equals the base algorithm, micro-batching does not
// change the update, a killed run resumes to the same trajectory, the warm-up freezes the policy, dynamic sampling
// keeps only groups with a signal, and a NaN stops the run keeping the last good checkpoint.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseTrainConfig, type TrainConfig } from '../src/config/load.js';
import { readSafetensors, writeSafetensors } from '../src/model/safetensors.js';
import { listCheckpoints, loadCheckpoint } from '../src/rl/checkpoint.js';
import { ContrastiveHead } from '../src/rl/head.js';
import { runLoop, truncateMetrics } from '../src/rl/loop.js';
import { Trainer, type StepDetail, type StepMetrics } from '../src/rl/trainer.js';
import type { TrainPrompt } from '../src/rl/types.js';
import { BigramPolicy } from './helpers/bigram-policy.js';

// Vocabulary: 0..9 digits, 10 = EOS, 11 = the question marker. Prompt [11, a]; the answer is (a + 3) mod 10.
const EOS = 10;
const prompts: TrainPrompt[] = Array.from({ length: 20 }, (_, i) => ({ id: String(i), tokens: Int32Array.of(11, i % 10), groundTruth: String(((i % 10) + 3) % 10) }));
const io = {
  decode: (t: Int32Array) => Array.from(t).filter((x) => x < 10).join(''),
  reward: (text: string, gt: string) => (text.startsWith(gt) ? 1 : 0),
};

function config(over: Record<string, unknown> = {}, dir = 'unused'): TrainConfig {
  const base: Record<string, Record<string, unknown>> = {
    model: { path: 'toy' },
    data: { train_files: ['toy'], max_response_tokens: 3 },
    rollout: { n: 8, temperature: 1 },
    algorithm: { preset: 'grpo' },
    clipo: { enabled: false, out_size: 8, temperature: 0.1, warmup_steps: 0 },
    optim: { lr: 0.05, prompts_per_step: 4, ppo_mini_batch: 2, micro_batch: 5, epochs: 100, max_steps: 6, seed: 3, grad_clip: 5 },
    output: { dir, save_every: 0, keep_last: 2 },
  };
  for (const [k, v] of Object.entries(over)) {
    const [block, key] = k.split('.');
    base[block!]![key!] = v;
  }
  return parseTrainConfig(base, 'test config');
}

function trainer(c: TrainConfig, policy = new BigramPolicy(12, 6, EOS, 11)) {
  return new Trainer({ config: c, policy, reference: c.algorithm.kl_coef > 0 ? policy.cloneFrozen() : null, prompts, io });
}

function runSteps(t: Trainer) {
  const rows: StepMetrics[] = [];
  const details: StepDetail[] = [];
  while (!t.done) {
    const r = t.runStep();
    rows.push(r.metrics);
    details.push(r.detail);
  }
  return { rows, details };
}

const weightsOf = (t: Trainer) => [...t.policy.exportWeights().values()].map((x) => Array.from(x.data));
const stripTimes = (m: StepMetrics) => Object.fromEntries(Object.entries(m).filter(([k]) => !k.startsWith('time_') && k !== 'tokens_per_s'));
const made: string[] = [];
const tmp = () => {
  const d = mkdtempSync(path.join(os.tmpdir(), 'clipo-train-'));
  made.push(d);
  return d;
};
afterAll(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

describe('trainer on a tiny policy', () => {
  test.each(['grpo', 'dapo', 'gspo', 'gmpo'])('%s raises training reward (with and without CLIPO)', (preset) => {
    for (const clipo of [false, true]) {
      // DAPO's overlong shaping and filtering (on in its preset) are left out here: with this toy's 3-token limit the
      // buffer is one token, so they would test the length terms rather than the surrogate; train-features.test.ts
      // and train-extras-cli.test.ts test them
      const overlong = preset === 'dapo' ? { 'algorithm.overlong_shaping': false, 'algorithm.overlong_filter': false } : {};
      const t = trainer(config({ 'algorithm.preset': preset, 'clipo.enabled': clipo, 'optim.max_steps': 24, ...overlong }));
      const { rows } = runSteps(t);
      const acc = (a: StepMetrics[]) => a.reduce((s, m) => s + m.accuracy, 0) / a.length;
      const first = acc(rows.slice(0, 4)), last = acc(rows.slice(-4));
      expect(last).toBeGreaterThan(first + 0.15);
      for (const m of rows) {
        expect(m.policy_loss).not.toBeNull();
        expect(Number.isFinite(m.grad_norm!)).toBe(true);
        if (clipo) expect(m.contrastive_loss).not.toBeNull();
      }
    }
  });

  test('CLIPO with λ = 0 and no warm-up follows the base trajectory exactly', () => {
    const a = trainer(config({ 'clipo.enabled': false }));
    const b = trainer(config({ 'clipo.enabled': true, 'clipo.lambda': 0 }));
    const ra = runSteps(a), rb = runSteps(b);
    expect(weightsOf(b)).toEqual(weightsOf(a));
    expect(rb.rows.map((m) => m.reward_mean)).toEqual(ra.rows.map((m) => m.reward_mean));
    expect(rb.rows.some((m) => m.head_stepped)).toBe(true);
    // and λ > 0 does change it
    const c = trainer(config({ 'clipo.enabled': true, 'clipo.lambda': 0.5 }));
    runSteps(c);
    expect(weightsOf(c)).not.toEqual(weightsOf(a));
  });

  test('the update does not depend on the micro-batch size', () => {
    for (const preset of ['grpo', 'gspo']) {
      const a = trainer(config({ 'algorithm.preset': preset, 'optim.micro_batch': 1, 'optim.max_steps': 2 }));
      const b = trainer(config({ 'algorithm.preset': preset, 'optim.micro_batch': 16, 'optim.max_steps': 2 }));
      runSteps(a);
      runSteps(b);
      const wa = weightsOf(a).flat(), wb = weightsOf(b).flat();
      for (let i = 0; i < wa.length; i++) expect(wb[i]).toBeCloseTo(wa[i]!, 4);
    }
  });

  test('head warm-up: the policy is frozen, the head trains', () => {
    const t = trainer(config({ 'clipo.enabled': true, 'clipo.warmup_steps': 'epoch', 'optim.max_steps': 6 }));
    const w0 = weightsOf(t);
    const h0 = Array.from(t.head!.weights[0]!);
    expect(t.schedule.warmupSteps).toBe(5); // 20 prompts / 4 per step
    const rows: StepMetrics[] = [];
    for (let i = 0; i < 5; i++) rows.push(t.runStep().metrics);
    expect(weightsOf(t)).toEqual(w0);
    expect(rows.every((m) => m.warmup && m.policy_loss === null)).toBe(true);
    if (rows.some((m) => m.head_stepped)) expect(Array.from(t.head!.weights[0]!)).not.toEqual(h0);
    const m6 = t.runStep().metrics;
    expect(m6.warmup).toBe(false);
    expect(weightsOf(t)).not.toEqual(w0);
  });

  test('fixed head: CLIPO rewards flow, the head never steps', () => {
    const t = trainer(config({ 'clipo.enabled': true, 'clipo.fixed_head': true }));
    const h0 = Array.from(t.head!.weights[0]!);
    const { rows } = runSteps(t);
    expect(Array.from(t.head!.weights[0]!)).toEqual(h0);
    expect(rows.every((m) => m.head_stepped === false)).toBe(true);
  });

  test('DAPO dynamic sampling trains only on groups whose rewards differ', () => {
    const t = trainer(config({ 'algorithm.preset': 'dapo', 'optim.max_steps': 4 }));
    const { rows, details } = runSteps(t);
    for (const d of details) {
      const groups = new Map<number, Set<number>>();
      d.group.forEach((g, i) => (groups.get(g) ?? groups.set(g, new Set()).get(g)!).add(d.correct[i]!));
      for (const s of groups.values()) expect(s.size).toBe(2);
    }
    expect(rows.some((m) => m.sampling_rounds > 1)).toBe(true);
    expect(rows.every((m) => m.kept_groups <= 4)).toBe(true);
    expect(() => trainer(config({ 'algorithm.preset': 'dapo', 'rollout.n': 1 }))).toThrow(/dynamic_sampling needs rollout\.n ≥ 2/);
  });

  test('a killed run resumes to the same trajectory as an uninterrupted one', async () => {
    const over = { 'clipo.enabled': true, 'optim.max_steps': 7 };
    const full = await runLoop(trainer(config(over)), { outputDir: tmp(), saveEvery: 0, keepLast: 2, savePolicy: () => {}, configForCheck: {} });
    const fullDir = path.dirname(path.dirname(full.lastCheckpoint!));
    const fullRows = readFileSync(path.join(fullDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as StepMetrics);

    const dir = tmp();
    const policy = new BigramPolicy(12, 6, EOS, 11);
    const save = (p: BigramPolicy) => (d: string) => {
      mkdirSync(d, { recursive: true });
      writeSafetensors(path.join(d, 'w.safetensors'), [...p.exportWeights()]);
    };
    const first = await runLoop(trainer(config(over, dir), policy), { outputDir: dir, saveEvery: 3, keepLast: 2, savePolicy: save(policy), configForCheck: {}, stopAfter: 4 });
    expect(first.steps).toBe(4);
    const ck = listCheckpoints(dir);
    expect(ck.map((c) => c.step)).toEqual([3]);
    // the "killed" run wrote a metrics row past its checkpoint: resume truncates to the checkpoint
    const loaded = loadCheckpoint(ck[0]!.dir);
    const p2 = new BigramPolicy(12, 6, EOS, 999);
    p2.importWeights(readSafetensors(path.join(loaded.policyDir, 'w.safetensors')).tensors);
    p2.importOptimizerState(loaded.policyOptimizer);
    const s = loaded.state;
    const head = ContrastiveHead.fromTensors(s.head!.kind, s.head!.hiddenSize, s.head!.outSize, loaded.head!.weights, loaded.head!.optimizer, s.head!.step);
    const t2 = new Trainer({ config: config(over, dir), policy: p2, reference: new BigramPolicy(12, 6, EOS, 11), prompts, io, resume: { step: s.step, stream: s.stream, head } });
    truncateMetrics(dir, s.metricsRows);
    await runLoop(t2, { outputDir: dir, saveEvery: 3, keepLast: 2, savePolicy: save(p2), configForCheck: {} });
    const rows = readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as StepMetrics);
    expect(rows.map(stripTimes)).toEqual(fullRows.map(stripTimes));
    expect(listCheckpoints(dir).map((c) => c.step)).toEqual([6, 7]);
  });

  test('a NaN stops the run and keeps the last good checkpoint', async () => {
    const dir = tmp();
    const policy = new BigramPolicy(12, 6, EOS, 11);
    const t = trainer(config({ 'optim.max_steps': 6 }, dir), policy);
    const save = (d: string) => {
      mkdirSync(d, { recursive: true });
      writeSafetensors(path.join(d, 'w.safetensors'), [...policy.exportWeights()]);
    };
    await expect(
      runLoop(t, {
        outputDir: dir, saveEvery: 2, keepLast: 3, savePolicy: save, configForCheck: {},
        onStep: (m) => {
          if (m.step === 2) policy.W.fill(NaN);
        },
      }),
    ).rejects.toThrow(/step 3: .*non-finite.*; training stopped \(the last good checkpoint is .*step-00000002\)/);
    expect(listCheckpoints(dir).map((c) => c.step)).toEqual([2]);
    expect(existsSync(path.join(dir, 'checkpoints', 'step-00000003'))).toBe(false);
    expect(readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n')).toHaveLength(2);
  });
});
