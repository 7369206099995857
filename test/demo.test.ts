// `clipo demo --quick` end to end as a user runs it (a child process): the report with its table, figures and
// times; the per-arm runs; a second demo that reuses the cached warm-up (same starting model, same start scores)
// and pairs two seeds; flag errors. Plus the pieces the report's claims rest on: both arms get the same config
// except CLIPO, the warm-up cache key covers the settings, the warm-up learning-rate schedule.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { encodeProblem } from '../src/demo/encode.js';
import { evaluateGreedy } from '../src/demo/evaluate.js';
import { armConfig, EVAL_SPLITS } from '../src/demo/run.js';
import type { Engine } from '../src/engine/engine.js';
import { ModelTokenizer } from '../src/model/tokenizer.js';
import { generateTaskSplits } from '../src/task/generator.js';
import { taskTokenizerDir } from '../src/task/tokenizer.js';
import { DEFAULT_SETTINGS, QUICK_SETTINGS } from '../src/demo/settings.js';
import { warmupKey, warmupLr } from '../src/demo/warmup.js';
import { runClipo as clipo } from './helpers/cli.js';


const tmp = mkdtempSync(path.join(os.tmpdir(), 'clipo-demo-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const cache = path.join(tmp, 'cache');

interface DemoJson {
  outDir: string;
  report: string;
  warmup: { reused: boolean; steps: number; modelDir: string };
  splits: Array<{
    split: string;
    arms: Record<string, { mean: number; se: number; n: number; seeds: number }>;
    difference: { unit: string; n: number } | null;
    differences: Array<{ treatment: string; baseline: string; difference: { unit: string; n: number; mean: number } | null }>;
    process: Record<string, { share: number; lo: number; hi: number; correct: number; withCorrectSteps: number }>;
  }>;
  timings: Array<{ phase: string; seconds: number }>;
}

describe('clipo demo --quick', () => {
  let first: DemoJson;
  const outA = path.join(tmp, 'a');

  test('writes report.md with the tables, the figures and the times, and the runs of all three arms', () => {
    const r = clipo('demo', '--quick', '--out', outA, '--cache', cache, '--json');
    expect(r.err).not.toMatch(/Error/);
    expect(r.code).toBe(0);
    first = JSON.parse(r.out) as DemoJson;
    expect(first.warmup.reused).toBe(false);
    expect(first.warmup.steps).toBeGreaterThan(0);

    const md = readFileSync(path.join(outA, 'report.md'), 'utf8');
    expect(md).toMatch(/^\| split \| GRPO \| GRPO\+CLIPO \| start \(warm-up\) \| GRPO\+CLIPO-fixed \| GRPO\+CLIPO − GRPO \(95% CI\) \| reading \|$/m);
    expect(md).toMatch(/^\| split \| GRPO − start \(warm-up\) \| GRPO\+CLIPO − GRPO \| GRPO\+CLIPO-fixed − GRPO \|$/m);
    expect(md).toContain('## Process check: correct answers reached through correct steps (%)');
    for (const split of EVAL_SPLITS) expect(md).toMatch(new RegExp(`^\\| ${split} \\| \\d+\\.\\d ± `, 'm'));
    for (const fig of ['reward-accuracy', 'contrastive', 'embeddings']) {
      expect(md).toContain(`(figures/${fig}.svg)`);
      expect(readFileSync(path.join(outA, 'figures', `${fig}.svg`), 'utf8')).toMatch(/^<svg/);
    }
    expect(md).toMatch(/^\| supervised warm-up \| \d+\.\d \|$/m);
    expect(md).toMatch(/^\| RL GRPO\+CLIPO \| \d+\.\d \|$/m);
    expect(md).toMatch(/^\| total \| \d+\.\d \|$/m);

    // every split evaluated for all three arms on the same problems, one seed
    expect(first.splits.map((s) => s.split)).toEqual([...EVAL_SPLITS]);
    for (const s of first.splits) {
      expect(Object.keys(s.arms).sort()).toEqual(['GRPO', 'GRPO+CLIPO', 'GRPO+CLIPO-fixed', 'start (warm-up)']);
      for (const a of Object.values(s.arms)) expect(a.n).toBe(QUICK_SETTINGS.evalProblems);
      expect(s.difference?.unit).toBe('problems');
      expect(s.differences.map((d) => `${d.treatment} − ${d.baseline}`)).toEqual(['GRPO − start (warm-up)', 'GRPO+CLIPO − GRPO', 'GRPO+CLIPO-fixed − GRPO']);
      expect(s.differences.every((d) => d.difference?.unit === 'problems')).toBe(true);
      // the process check of every arm: counts that fit the Pass@1 (a right answer is needed to be checked)
      expect(Object.keys(s.process).sort()).toEqual(Object.keys(s.arms).sort());
      for (const [arm, p] of Object.entries(s.process)) {
        expect(p.correct).toBe(Math.round((s.arms[arm]!.mean / 100) * QUICK_SETTINGS.evalProblems));
        expect(p.withCorrectSteps).toBeLessThanOrEqual(p.correct);
      }
    }

    // the RL runs: one metrics row per step; only the CLIPO arm has contrastive figures
    const rows = (arm: string) => readFileSync(path.join(outA, 'runs', `${arm}-seed1`, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const grpo = rows('grpo');
    const clipoRows = rows('grpo-clipo');
    const fixedRows = rows('grpo-clipo-fixed');
    expect(grpo.map((m) => m.step)).toEqual([1, 2, 3]);
    expect(clipoRows.map((m) => m.step)).toEqual([1, 2, 3]);
    expect(fixedRows.map((m) => m.step)).toEqual([1, 2, 3]);
    expect(grpo.every((m) => m.contrastive_loss === null)).toBe(true);
    expect(clipoRows.every((m) => typeof m.contrastive_loss === 'number')).toBe(true);
    // CLIPO-fixed: the contrastive reward is there, the head never steps
    expect(fixedRows.every((m) => typeof m.contrastive_loss === 'number' && m.head_stepped === false)).toBe(true);
    // the process check is logged per step on the built-in task (null only when a step had no correct rollout)
    expect(grpo.every((m) => 'process_correct_frac' in m)).toBe(true);
    // checkpoints are removed once evaluated (the report keeps the numbers)
    expect(existsSync(path.join(outA, 'runs', 'grpo-seed1', 'checkpoints'))).toBe(false);
  }, 60_000);

  test('a second demo reuses the cached warm-up and pairs seeds', () => {
    const outB = path.join(tmp, 'b');
    const r = clipo('demo', '--quick', '--seeds', '2', '--steps', '2', '--out', outB, '--cache', cache, '--json');
    expect(r.code).toBe(0);
    const second = JSON.parse(r.out) as DemoJson;
    expect(second.warmup.reused).toBe(true);
    expect(second.warmup.modelDir).toBe(first.warmup.modelDir);
    expect(second.timings.find((t) => t.phase.startsWith('supervised warm-up'))!.phase).toBe('supervised warm-up (cached)');
    // the same starting model gives the same greedy scores
    for (let i = 0; i < EVAL_SPLITS.length; i++) expect(second.splits[i]!.arms['start (warm-up)']!.mean).toBe(first.splits[i]!.arms['start (warm-up)']!.mean);
    for (const s of second.splits) {
      expect(s.arms['GRPO']!.seeds).toBe(2);
      expect(s.difference).toMatchObject({ unit: 'seeds', n: 2 });
    }
    expect(existsSync(path.join(outB, 'runs', 'grpo-clipo-seed2', 'metrics.jsonl'))).toBe(true);
    expect(readFileSync(path.join(outB, 'report.md'), 'utf8')).toMatch(/supervised warm-up \(cached\)/);
  }, 60_000);

  test('--arms and --algo: the chosen arms only, on another algorithm', () => {
    const outC = path.join(tmp, 'c');
    const r = clipo('demo', '--quick', '--steps', '1', '--arms', 'fixed,base', '--algo', 'gspo', '--out', outC, '--cache', cache, '--json');
    expect(r.code).toBe(0);
    const third = JSON.parse(r.out) as DemoJson;
    expect(Object.keys(third.splits[0]!.arms).sort()).toEqual(['GSPO', 'GSPO+CLIPO-fixed', 'start (warm-up)']);
    expect(third.splits[0]!.differences.map((d) => `${d.treatment} − ${d.baseline}`)).toEqual(['GSPO − start (warm-up)', 'GSPO+CLIPO-fixed − GSPO']);
    const cfg = JSON.parse(readFileSync(path.join(outC, 'runs', 'gspo-clipo-fixed-seed1', 'train-config.json'), 'utf8'));
    expect(cfg.algorithm.mode).toBe('sequence');
    expect(cfg.clipo.fixed_head).toBe(true);
  }, 60_000);

  test('bad flags are usage errors', () => {
    const d = clipo('demo', '--quick', '--arms', 'base,ppo', '--cache', cache);
    expect(d.code).toBe(2);
    expect(d.err).toMatch(/--arms: expected a comma-separated list of base, clipo, fixed, got 'ppo'/);
    const e = clipo('demo', '--quick', '--algo', 'ppo', '--cache', cache);
    expect(e.code).toBe(2);
    expect(e.err).toMatch(/--algo: expected one of grpo, dapo, gspo, gmpo, got 'ppo'/);
    const a = clipo('demo', '--quick', '--seeds', '0', '--cache', cache);
    expect(a.code).toBe(2);
    expect(a.err).toMatch(/--seeds: must be at least 1/);
    const b = clipo('demo', '--quick', '--steps', 'many', '--cache', cache);
    expect(b.code).toBe(2);
    expect(b.err).toMatch(/--steps: expected a number/);
    // an existing demo folder is not overwritten
    const c = clipo('demo', '--quick', '--out', path.join(tmp, 'a'), '--cache', cache);
    expect(c.code).toBe(1);
    expect(c.err).toMatch(/already holds a demo; choose another output folder/);
  });
});

describe('demo pieces', () => {
  test('the arms get the same config except the clipo block (same start, seed, data and budget)', () => {
    const o = { modelDir: '/m', trainFile: '/t.parquet', outDir: '/o', seed: 3 };
    const g = armConfig(DEFAULT_SETTINGS, { ...o, arm: 'base' });
    const c = armConfig(DEFAULT_SETTINGS, { ...o, arm: 'clipo' });
    const f = armConfig(DEFAULT_SETTINGS, { ...o, arm: 'fixed' });
    expect(c.clipo.enabled).toBe(true);
    expect(c.clipo.fixed_head).toBe(false);
    expect(f.clipo.enabled).toBe(true);
    expect(f.clipo.fixed_head).toBe(true);
    expect(g.clipo.enabled).toBe(false);
    expect({ ...c, clipo: { ...c.clipo, enabled: false } }).toEqual(g);
    expect({ ...f, clipo: { ...f.clipo, fixed_head: false } }).toEqual(c);
    const d = armConfig(DEFAULT_SETTINGS, { ...o, arm: 'base', algo: 'dapo' });
    expect(d.algorithm.preset).toBe('dapo');
    expect(d.algorithm.dynamic_sampling).toBe(true);
    expect(g.optim.seed).toBe(3);
    expect(g.optim.max_steps).toBe(DEFAULT_SETTINGS.rl.steps);
    expect(g.algorithm.preset).toBe('grpo');
  });

  test('the warm-up cache key changes with anything that changes the warm-up, and only then', () => {
    const base = warmupKey(DEFAULT_SETTINGS);
    expect(warmupKey(structuredClone(DEFAULT_SETTINGS))).toBe(base);
    const changed = (f: (s: typeof DEFAULT_SETTINGS) => void) => {
      const s = structuredClone(DEFAULT_SETTINGS);
      f(s);
      return warmupKey(s);
    };
    expect(changed((s) => (s.model.hidden = 96))).not.toBe(base);
    expect(changed((s) => (s.task.seed = 5))).not.toBe(base);
    expect(changed((s) => (s.warmup.maxSteps += 1))).not.toBe(base);
    expect(changed((s) => (s.warmup.targetAccuracy += 0.1))).not.toBe(base);
    // RL settings do not touch the warm-up
    expect(changed((s) => (s.rl.steps = 99))).toBe(base);
    expect(changed((s) => (s.clipo.lambda = 0.5))).toBe(base);
  });

  test('greedy evaluation scores each problem by its own answer, whatever order the engine returns', () => {
    const tok = ModelTokenizer.fromDir(taskTokenizerDir());
    const problems = generateTaskSplits({ seed: 4, train: 0, test: 7 }).test.map((p) => encodeProblem(tok, p));
    // a stand-in engine: the worked solution for even prompts, the next problem's solution for odd ones, in reverse
    // order and in chunks of 3 (so the chunking and the promptIndex mapping are both exercised)
    const requests: number[] = [];
    const fake = {
      generate(req: { prompts: Int32Array[]; temperature: number; maxNewTokens: number }) {
        requests.push(req.prompts.length);
        expect(req.temperature).toBe(0);
        const seqs = req.prompts.map((prompt, i) => {
          const k = problems.findIndex((p) => p.prompt === prompt);
          const tokens = k % 2 === 0 ? problems[k]!.solution : problems[(k + 1) % problems.length]!.solution;
          return { promptIndex: i, sampleIndex: 0, tokens, logprobs: new Float32Array(tokens.length), finishReason: 'stop' as const };
        });
        return { sequences: seqs.reverse() };
      },
    } as unknown as Engine;
    const seen: number[] = [];
    const scores = evaluateGreedy(fake, tok, problems, { maxNewTokens: 60, maxBatch: 3 }, (d) => seen.push(d));
    const expected = problems.map((p, k) => (k % 2 === 0 ? 1 : p.answer === problems[(k + 1) % problems.length]!.answer ? 1 : 0));
    expect(scores).toEqual(expected);
    expect(scores.filter((x) => x === 1).length).toBeGreaterThanOrEqual(4);
    expect(requests).toEqual([3, 3, 1]);
    expect(seen).toEqual([3, 6, 7]);
  });

  test('warm-up learning rate: linear ramp, then cosine from the peak down to 10%', () => {
    const total = 200, peak = 1e-3;
    expect(warmupLr(1, total, peak)).toBeCloseTo(peak / 10, 12);
    expect(warmupLr(10, total, peak)).toBeCloseTo(peak, 12);
    expect(warmupLr(total, total, peak)).toBeCloseTo(0.1 * peak, 12);
    const mid = 10 + (total - 10) / 2;
    expect(warmupLr(mid, total, peak)).toBeCloseTo(0.55 * peak, 12);
    for (let s = 11; s < total; s++) expect(warmupLr(s + 1, total, peak)).toBeLessThanOrEqual(warmupLr(s, total, peak));
  });
});
