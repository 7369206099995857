// The trainer's research features on a tiny TypeScript policy (test/helpers/bigram-policy.ts) and the real kernels:
// DAPO overlong shaping and filtering, the learning-rate schedule, guards (warnings and the strict stop), custom
// reward modules run in a worker with a time limit, rollout logs, and the validation figures (pass@k, maj@n).
// The same features run end to end on the native engine in train-extras-cli.test.ts.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseTrainConfig, type TrainConfig } from '../src/config/load.js';
import { listCheckpoints } from '../src/rl/checkpoint.js';
import { Guards, GuardStopError } from '../src/rl/guards.js';
import { runLoop } from '../src/rl/loop.js';
import { learningRate } from '../src/rl/lr-schedule.js';
import { overlongBuffer, overlongPenalty } from '../src/rl/overlong.js';
import { RewardModule } from '../src/rl/reward-module.js';
import { rolloutRecords, writeRolloutLog } from '../src/rl/rollout-log.js';
import { Trainer, type StepMetrics } from '../src/rl/trainer.js';
import type { TrainIO, TrainPrompt } from '../src/rl/types.js';
import { benchmarkFigures, flattenFigures, majorityCorrect, passAtK, planValidation, reportedKs, validationDue } from '../src/rl/validation.js';
import { defaultDataRoot, suites } from '../src/data/suites.js';
import { existsSync } from 'node:fs';
import { Rng } from '../src/util/rng.js';
import { BigramPolicy } from './helpers/bigram-policy.js';

const EOS = 10;
const prompts: TrainPrompt[] = Array.from({ length: 20 }, (_, i) => ({ id: String(i), tokens: Int32Array.of(11, i % 10), groundTruth: String(((i % 10) + 3) % 10), text: `q${i % 10}`, row: { i } }));
const io: TrainIO = {
  decode: (t: Int32Array) => Array.from(t).filter((x) => x < 10).join(''),
  reward: (text: string, gt: string) => (text.startsWith(gt) ? 1 : 0),
};
const dir = mkdtempSync(path.join(os.tmpdir(), 'clipo-features-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function config(over: Record<string, unknown> = {}): TrainConfig {
  const base: Record<string, Record<string, unknown>> = {
    model: { path: 'toy' },
    data: { train_files: ['toy'], max_response_tokens: 3 },
    rollout: { n: 8, temperature: 1 },
    algorithm: { preset: 'grpo', kl_coef: 0 },
    clipo: { enabled: false, out_size: 8, temperature: 0.1, warmup_steps: 0 },
    optim: { lr: 0.05, prompts_per_step: 4, ppo_mini_batch: 2, micro_batch: 5, epochs: 100, max_steps: 6, seed: 3, grad_clip: 5 },
    output: { dir: path.join(dir, 'unused'), save_every: 0, keep_last: 2 },
  };
  for (const [k, v] of Object.entries(over)) {
    const [block, key] = k.split('.');
    (base[block!] ??= {})[key!] = v;
  }
  return parseTrainConfig(base, 'test config');
}
const trainer = (c: TrainConfig, theIo: TrainIO = io, policy = new BigramPolicy(12, 6, EOS, 11)) => new Trainer({ config: c, policy, reference: null, prompts, io: theIo });
const weights = (t: Trainer) => [...t.policy.exportWeights().values()].flatMap((x) => Array.from(x.data));

describe('DAPO overlong shaping and filtering', () => {
  test('the penalty follows the DAPO formula; the dapo preset turns both on, the others leave them off', () => {
    // L_max 20, L_cache 5: no penalty up to 15, then linear to -1 at 20
    const expected = (l: number) => (l <= 15 ? 0 : l > 20 ? -1 : (15 - l) / 5);
    for (let l = 0; l <= 22; l++) expect(overlongPenalty(l, 20, 5, 1)).toBeCloseTo(expected(l), 12);
    expect(overlongPenalty(18, 20, 5, 0.5)).toBeCloseTo(-0.3, 12);
    expect(overlongBuffer({ overlong_buffer: null }, 20480)).toBe(4096);
    expect(overlongBuffer({ overlong_buffer: 7 }, 5)).toBe(5);
    const d = config({ 'algorithm.preset': 'dapo' }).algorithm;
    expect([d.overlong_shaping, d.overlong_filter, d.overlong_penalty]).toEqual([true, true, 1]);
    for (const p of ['grpo', 'gspo', 'gmpo']) expect(config({ 'algorithm.preset': p }).algorithm.overlong_shaping).toBe(false);
    expect(config({ 'algorithm.preset': 'dapo', 'algorithm.overlong_filter': false }).algorithm.overlong_filter).toBe(false);
  });

  test('shaping adds R_length to the verifier reward of each response; truncation share is in the metrics', () => {
    const c = config({ 'algorithm.overlong_shaping': true, 'algorithm.overlong_buffer': 2, 'algorithm.overlong_penalty': 0.5 });
    const t = trainer(c);
    const { metrics: m, detail: d } = t.runStep();
    let trunc = 0;
    d.responses.forEach((r, i) => {
      expect(r.scored.overlong).toBeCloseTo(overlongPenalty(r.length, 3, 2, 0.5), 6);
      expect(d.rewards[i]).toBeCloseTo(r.scored.verifier + r.scored.overlong, 6);
      if (r.scored.truncated) trunc++;
    });
    expect(m.truncated_frac).toBeCloseTo(trunc / d.responses.length, 12);
    expect(trunc).toBeGreaterThan(0);
    expect(m.overlong_penalty_mean).not.toBeNull();
  });

  test('filtering masks truncated responses out of the loss: the update does not depend on micro-batching, and a batch with only truncated responses leaves the policy unchanged', () => {
    const over = { 'algorithm.overlong_filter': true, 'optim.max_steps': 2 };
    const a = trainer(config({ ...over, 'optim.micro_batch': 3 }));
    const b = trainer(config({ ...over, 'optim.micro_batch': 64 }));
    const ra = a.runStep(), rb = b.runStep();
    expect(ra.metrics.overlong_filtered).toBe(ra.detail.responses.filter((r) => r.scored.truncated).length);
    expect(ra.metrics.overlong_filtered).toBeGreaterThan(0);
    const wa = weights(a), wb = weights(b);
    wa.forEach((x, i) => expect(Math.abs(x - wb[i]!)).toBeLessThan(1e-5));
    // filtering changes the update relative to no filtering
    const c = trainer(config({ 'optim.max_steps': 2 }));
    c.runStep();
    expect(Math.max(...weights(c).map((x, i) => Math.abs(x - wa[i]!)))).toBeGreaterThan(1e-6);
    // a policy whose end-of-sequence id is outside the vocabulary never stops: every response is truncated, and
    // with filtering nothing is trained
    const never = trainer(config(over), io, new BigramPolicy(12, 6, 12, 11));
    const before = weights(never);
    const r = never.runStep();
    expect(r.detail.responses.every((x) => x.scored.truncated)).toBe(true);
    expect(r.metrics.truncated_frac).toBe(1);
    expect(weights(never)).toEqual(before);
    const unfiltered = trainer(config({ 'optim.max_steps': 2 }), io, new BigramPolicy(12, 6, 12, 11));
    unfiltered.runStep();
    expect(weights(unfiltered)).not.toEqual(before);
  });
});

describe('learning-rate schedule', () => {
  test('linear warm-up, then constant or cosine decay to lr × min_lr_ratio', () => {
    const s = { lr: 1e-3, lr_schedule: 'cosine' as const, lr_warmup_steps: 3, min_lr_ratio: 0.1 };
    expect([0, 1, 2].map((k) => learningRate(s, k, 13))).toEqual([1e-3 / 3, 2e-3 / 3, 1e-3].map((x) => expect.closeTo(x, 15)));
    expect(learningRate(s, 3, 13)).toBeCloseTo(1e-3, 15);
    expect(learningRate(s, 12, 13)).toBeCloseTo(1e-4, 15);
    // halfway through the decay: lr (m + (1 - m) / 2)
    expect(learningRate(s, 3 + 4.5, 13)).toBeCloseTo(1e-3 * (0.1 + 0.9 * 0.5), 12);
    expect(learningRate({ ...s, lr_schedule: 'constant' }, 10, 13)).toBe(1e-3);
  });

  test('the trainer steps with the scheduled rate (metrics.lr), counting policy steps after the head warm-up', () => {
    const c = config({ 'clipo.enabled': true, 'clipo.warmup_steps': 2, 'optim.max_steps': 7, 'optim.lr_schedule': 'cosine', 'optim.lr_warmup_steps': 2 });
    const t = trainer(c);
    const lrs: Array<number | null> = [];
    while (!t.done) lrs.push(t.runStep().metrics.lr);
    expect(lrs.slice(0, 2)).toEqual([null, null]);
    lrs.slice(2).forEach((x, k) => expect(x).toBeCloseTo(learningRate(c.optim, k, 5), 15));
    // a zero learning rate leaves the policy where it was
    const z = trainer(config({ 'optim.lr_warmup_steps': 1000000, 'optim.max_steps': 1 }));
    const before = weights(z);
    z.runStep();
    const after = weights(z);
    expect(Math.max(...after.map((x, i) => Math.abs(x - before[i]!)))).toBeLessThan(1e-6);
  });
});

describe('guards', () => {
  const g = { stop: false, window: 3, max_truncated: 0.5, max_no_spread: 0.9, max_reward_errors: 0.05, min_entropy: 0.01, max_entropy: 5 };
  const step = (s: number, o: Partial<{ truncated_frac: number; no_spread_group_frac: number; reward_error_frac: number; entropy: number | null }> = {}) => ({ step: s, truncated_frac: 0, no_spread_group_frac: 0, reward_error_frac: 0, entropy: 1, ...o });

  test('each guard fires on the mean over its window, and only then', () => {
    const G = new Guards(g);
    expect(G.observe(step(1, { truncated_frac: 1 })).map((w) => w.guard)).toEqual(['truncation']);
    expect(G.observe(step(2, { truncated_frac: 0 })).map((w) => w.guard)).toEqual([]); // mean 0.5: not above
    expect(G.observe(step(3, { truncated_frac: 0.6 })).map((w) => w.guard)).toEqual(['truncation']); // mean 0.533
    const H = new Guards(g);
    const fired = H.observe(step(1, { no_spread_group_frac: 1, reward_error_frac: 0.1, entropy: 0.001 })).map((w) => w.guard);
    expect(fired).toEqual(['no_spread', 'reward_errors', 'entropy_low']);
    expect(new Guards(g).observe(step(1, { entropy: 9 })).map((w) => w.guard)).toEqual(['entropy_high']);
    expect(new Guards(g).observe(step(1, { entropy: null }))).toEqual([]);
  });

  test('guards.stop ends the run at the step that fires, with a message naming the last checkpoint', async () => {
    const out = path.join(dir, 'guard-stop');
    const c = config({ 'guards.max_truncated': 0, 'guards.window': 1, 'guards.stop': true, 'optim.max_steps': 6 });
    const t = trainer(c);
    // runLoop's guard check needs the extras' observations; a minimal stand-in that reports what Guards says
    const G = new Guards(c.guards);
    const extras = { start: async () => {}, afterStep: async (m: StepMetrics) => ({ row: {}, warnings: G.observe(m) }), close: () => {} };
    await expect(runLoop(t, { outputDir: out, saveEvery: 1, keepLast: 5, savePolicy: () => {}, configForCheck: {}, extras: extras as never, stopOnGuard: true })).rejects.toThrow(GuardStopError);
    await expect(runLoop(trainer(c), { outputDir: path.join(dir, 'guard-stop2'), saveEvery: 1, keepLast: 5, savePolicy: () => {}, configForCheck: {}, extras: extras as never, stopOnGuard: true }))
      .rejects.toThrow(/step 1: .*hit data\.max_response_tokens.*training stopped by guards\.stop \/ --strict \(no checkpoint was written yet\)/);
    // a guard that fires at step 3 keeps the checkpoint of step 2 and writes nothing of a checkpoint for step 3
    const late = { ...extras, afterStep: async (m: StepMetrics) => ({ row: {}, warnings: m.step === 3 ? G.observe(m) : [] }) };
    const out3 = path.join(dir, 'guard-stop3');
    await expect(runLoop(trainer(c), { outputDir: out3, saveEvery: 1, keepLast: 5, savePolicy: () => {}, configForCheck: {}, extras: late as never, stopOnGuard: true }))
      .rejects.toThrow(/step 3: .*\(the last checkpoint is .*step-00000002\)/);
    expect(listCheckpoints(out3).map((x) => x.step)).toEqual([1, 2]);
    expect(readFileSync(path.join(out3, 'metrics.jsonl'), 'utf8').trim().split('\n')).toHaveLength(3);
  });
});

describe('custom reward modules', () => {
  const write = (name: string, body: string) => {
    const f = path.join(dir, name);
    writeFileSync(f, body);
    return f;
  };

  test('scores, named parts, throws, invalid values and timeouts; the worker is replaced after a timeout', () => {
    const f = write('r1.mjs', `export default async function ({ response, verifierReward, row }) {
      if (response === 'throw') throw new Error('boom');
      if (response === 'loop') for (;;) {}
      if (response === 'nan') return NaN;
      if (response === 'str') return 'x';
      return { score: 0.5 * verifierReward + response.length / 10, parts: { length: response.length / 10, row: row.i } };
    }`);
    const m = RewardModule.open(f, 300);
    try {
      const item = (response: string, v = 1) => ({ prompt: 'p', response, groundTruth: '1', row: { i: 7 }, verifierReward: v });
      expect(m.score(item('abc'))).toEqual({ score: 0.5 + 0.3, parts: { length: 0.3, row: 7 }, error: null });
      expect(m.score(item('throw'))).toMatchObject({ score: 0, error: 'throw', message: 'boom' });
      expect(m.score(item('nan'))).toMatchObject({ score: 0, error: 'invalid' });
      expect(m.score(item('str'))).toMatchObject({ score: 0, error: 'invalid' });
      const t0 = Date.now();
      expect(m.score(item('loop'))).toMatchObject({ score: 0, error: 'timeout' });
      expect(Date.now() - t0).toBeLessThan(5000);
      expect(m.score(item('ab', 0))).toEqual({ score: 0.2, parts: { length: 0.2, row: 7 }, error: null });
    } finally {
      m.close();
    }
  }, 30000);

  test('a module that does not load is a clear error', () => {
    expect(() => RewardModule.open(path.join(dir, 'missing.mjs'), 1000)).toThrow(/reward\.module: file not found/);
    expect(() => RewardModule.open(write('r2.mjs', 'export const x = 1;'), 1000)).toThrow(/exports no function/);
    expect(() => RewardModule.open(write('r3.mjs', 'throw new Error("bad init");'), 1000)).toThrow(/bad init/);
  });

  test('in the trainer: weighted sum with the verifier, parts and failures in the metrics, CLIPO\'s correct stays the verifier\'s', () => {
    const f = write('r4.mjs', `export function reward({ response }) {
      if (response.startsWith('9')) throw new Error('no nines');
      return { score: response.length % 2, parts: { odd: response.length % 2 } };
    }`);
    const m = RewardModule.open(f, 2000);
    try {
      const theIo: TrainIO = { ...io, customReward: (x) => m.score(x) };
      const c = config({ 'reward.verifier_weight': 2, 'reward.module_weight': 0.25, 'clipo.enabled': true });
      const { metrics, detail } = trainer(c, theIo).runStep();
      let errs = 0;
      detail.responses.forEach((r, i) => {
        const text = r.scored.text;
        const expectModule = text.startsWith('9') ? 0 : text.length % 2;
        if (text.startsWith('9')) errs++;
        expect(r.scored.module).toBe(expectModule);
        expect(r.scored.reward).toBeCloseTo(2 * r.scored.verifier + 0.25 * expectModule, 12);
        expect(detail.correct[i]).toBe(r.scored.verifier > 0 ? 1 : 0);
        expect(detail.rewards[i]).toBeCloseTo(r.scored.reward + detail.contrastiveReward![i]!, 6);
      });
      expect(metrics.reward_module_errors).toBe(errs);
      expect(metrics.reward_parts).toHaveProperty('odd');
      expect(metrics.module_reward_mean).not.toBeNull();
      // correct_from: reward labels a response correct when its total task reward is positive
      const c2 = config({ 'reward.correct_from': 'reward', 'clipo.enabled': true });
      const d2 = trainer(c2, theIo).runStep().detail;
      d2.responses.forEach((r, i) => expect(d2.correct[i]).toBe(r.scored.reward > 0 ? 1 : 0));
    } finally {
      m.close();
    }
  }, 30000);
});

describe('rollout logs', () => {
  test('every N steps a jsonl of the trained batch: prompts, responses, rewards, CLIPO figures, advantages, lengths', () => {
    const c = config({ 'clipo.enabled': true, 'optim.max_steps': 2 });
    const t = trainer(c);
    const out = path.join(dir, 'rollouts');
    const d1 = t.runStep().detail;
    expect(writeRolloutLog(out, d1, 2, 0, null)).toBeNull();
    const d2 = t.runStep().detail;
    const file = writeRolloutLog(out, d2, 2, 0, null)!;
    expect(path.basename(file)).toBe('step-00000002.jsonl');
    const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(d2.rewards.length);
    lines.forEach((r, i) => {
      expect(r).toMatchObject({ step: 2, index: i, group: d2.group[i], response: d2.responses[i]!.scored.text, length: d2.responses[i]!.length, correct: d2.correct[i] === 1 });
      expect(r.prompt).toMatch(/^q\d$/);
      expect(r.reward).toBeCloseTo(d2.rewards[i]!, 6);
      expect(r.advantage).toBeCloseTo(d2.advantages[i]!, 6);
      expect(r.contrastive_reward).toBeCloseTo(d2.contrastiveReward![i]!, 6);
      expect(typeof r.contrastive_loss).toBe('number');
    });
    expect(rolloutRecords(d2)).toHaveLength(lines.length);
  });
});

describe('validation figures', () => {
  const choose = (n: number, k: number): number => (k < 0 || k > n ? 0 : k === 0 ? 1 : (choose(n - 1, k - 1) * n) / k);
  test('unbiased pass@k equals the share of k-subsets with a correct sample (enumerated)', () => {
    const rng = new Rng(5);
    for (let trial = 0; trial < 30; trial++) {
      const n = 1 + Math.floor(rng.next() * 7);
      const correct = Array.from({ length: n }, () => rng.next() < 0.4);
      const c = correct.filter(Boolean).length;
      for (let k = 1; k <= n; k++) {
        let hit = 0, all = 0;
        for (let mask = 0; mask < 1 << n; mask++) {
          let bits = 0, any = false;
          for (let i = 0; i < n; i++) if (mask & (1 << i)) { bits++; any ||= correct[i]!; }
          if (bits !== k) continue;
          all++;
          if (any) hit++;
        }
        expect(all).toBe(choose(n, k));
        expect(passAtK(n, c, k)).toBeCloseTo(hit / all, 10);
      }
    }
    expect(reportedKs(1)).toEqual([1]);
    expect(reportedKs(6)).toEqual([1, 2, 4, 6]);
    expect(reportedKs(8)).toEqual([1, 2, 4, 8]);
  });

  test('maj@n votes on normalized answers; mean accuracy averages per problem', () => {
    expect(majorityCorrect([{ extracted: '2', correct: false }, { extracted: '3', correct: true }, { extracted: '3', correct: true }])).toBe(true);
    expect(majorityCorrect([{ extracted: '2', correct: false }, { extracted: '2', correct: false }, { extracted: '3', correct: true }])).toBe(false);
    expect(majorityCorrect([{ extracted: null, correct: false }, { extracted: null, correct: false }, { extracted: '3', correct: true }])).toBe(true);
    expect(majorityCorrect([{ extracted: null, correct: false }])).toBe(false);
    const f = benchmarkFigures(new Map([
      [0, [{ extracted: '1', correct: true }, { extracted: '2', correct: false }, { extracted: '1', correct: true }, { extracted: '5', correct: false }]],
      [1, [{ extracted: '4', correct: false }, { extracted: '4', correct: false }, { extracted: '9', correct: true }, { extracted: null, correct: false }]],
    ]), 4);
    expect(f.mean_acc).toBeCloseTo((2 / 4 + 1 / 4) / 2, 12);
    expect(f.maj).toBe(0.5);
    expect(f.pass[1]).toBeCloseTo(f.mean_acc, 12);
    expect(f.pass[2]).toBeCloseTo((passAtK(4, 2, 2) + passAtK(4, 1, 2)) / 2, 12);
    expect(f.pass[4]).toBe(1);
  });

  test('suite averages: the paper\'s M-Avg / G-Avg / Avg of mean_acc over the suite\'s benchmarks; extra files stay out of them', () => {
    const rng = new Rng(8);
    const per: Record<string, ReturnType<typeof benchmarkFigures>> = {};
    for (const b of suites.track1.benchmarks) per[b.key] = { mean_acc: rng.next(), pass: { 1: 0, 2: 0 }, maj: 0, problems: 3 };
    per.mydata = { mean_acc: 0.99, pass: { 1: 0.99, 2: 1 }, maj: 1, problems: 3 };
    const f = flattenFigures(per, 2, 'track1');
    const m = ['gsm8k', 'gsm_symbolic', 'gsm_p1', 'gsm_p2'].map((k) => per[k]!.mean_acc);
    const g = suites.track1.benchmarks.filter((b) => b.group === 'G-Avg').map((b) => per[b.key]!.mean_acc);
    const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
    expect(f['suite/M-Avg']).toBeCloseTo(mean(m), 12);
    expect(f['suite/G-Avg']).toBeCloseTo(mean(g), 12);
    expect(f['suite/Avg']).toBeCloseTo(mean([...m, ...g]), 12);
    expect(Object.keys(f).filter((k) => k.startsWith('suite/')).sort()).toEqual(['suite/Avg', 'suite/G-Avg', 'suite/M-Avg']);
    expect(f.mean_acc).toBeCloseTo(mean(Object.values(per).map((x) => x.mean_acc)), 12);
    expect(f['mydata/maj@2']).toBe(1);
  });

  test('when validation runs; a suite resolves to its files under data_root, a missing file is an error', () => {
    const v = config({ 'validation.files': ['x'] }).validation!;
    expect([0, 1, 2, 3, 4, 5].filter((s) => validationDue({ ...v, every: 2 }, s, 5))).toEqual([0, 2, 4, 5]);
    expect([0, 1, 5].filter((s) => validationDue({ ...v, at_start: false }, s, 5))).toEqual([5]);
    expect(() => planValidation({ ...v, files: [path.join(dir, 'nope.jsonl')] }, 100)).toThrow(/validation: data file\(s\) not found: .*nope\.jsonl/);
    expect(() => planValidation({ ...v, files: [] }, 100)).toThrow(/give validation\.suite or validation\.files/);
    const root = defaultDataRoot();
    if (existsSync(path.join(root, 'test', 'gsm8k.parquet'))) {
      const p = planValidation({ ...v, files: [], suite: 'track2', data_root: root }, 100);
      expect(p.benchmarks.map((b) => b.key)).toEqual(suites.track2.benchmarks.map((b) => b.key));
      expect(p.maxNewTokens).toBe(100);
    } else console.warn(`train-features.test: benchmark data not found at ${root}; the suite part is skipped`);
  });
});
