// Configs that name the built-in task data and the demo's warm-up model instead of paths: resolved into the cache,
// made on first use and reused after; unknown names refused; the nano recipes run from a fresh clone as they are.
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadTrainConfig, parseTrainConfig } from '../src/config/load.js';
import { loadDataset } from '../src/data/load.js';
import { BUILTIN_WARMUP, resolveBuiltins, resolveCacheDir, taskDataDir } from '../src/demo/builtin.js';
import { QUICK_SETTINGS } from '../src/demo/settings.js';
import { loadModelDir } from '../src/model/hfdir.js';
import { packageRoot } from '../src/native.js';
import { TASK_SPLITS } from '../src/task/generator.js';

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'clipo-builtin-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const cfg = (model: string, files: string[]) => parseTrainConfig({ model: { path: model }, data: { train_files: files }, optim: { prompts_per_step: 4, ppo_mini_batch: 2 } });

describe('builtin: names in training configs', () => {
  test('the warm-up model and every task split resolve into the cache, made once and then reused', () => {
    const cache = path.join(tmp, 'cache');
    const lines: string[] = [];
    let warmupSteps = 0;
    const hooks = { log: (l: string) => lines.push(l), warmup: { start: () => {}, update: (s: number) => (warmupSteps = s), stop: () => {} } };
    const c = cfg(BUILTIN_WARMUP, TASK_SPLITS.map((s) => `builtin:task/${s}`));
    const r = resolveBuiltins(c, cache, hooks, QUICK_SETTINGS);
    expect(warmupSteps).toBeGreaterThan(0); // trained now, with progress
    expect(r.model.path.startsWith(path.join(cache, 'warmup-'))).toBe(true);
    expect(loadModelDir(r.model.path).tokenizer).not.toBeNull();
    expect(r.data.train_files.map((f) => path.relative(taskDataDir(cache, QUICK_SETTINGS), f))).toEqual([
      'train/task.parquet', 'test/task.parquet', 'test/task_symbolic.parquet', 'test/task_p1.parquet', 'test/task_p2.parquet', 'test/task_noop.parquet',
    ]);
    for (const f of r.data.train_files) expect(existsSync(f)).toBe(true);
    expect(lines.join('\n')).toMatch(/task data: generated[\s\S]*warm-up model: trained/);
    // the rest of the config is untouched
    expect({ ...r, model: c.model, data: c.data }).toEqual(c);

    lines.length = 0;
    warmupSteps = 0;
    const again = resolveBuiltins(c, cache, hooks, QUICK_SETTINGS);
    expect(again).toEqual(r);
    expect(warmupSteps).toBe(0);
    expect(lines.join('\n')).toMatch(/task data: cached[\s\S]*warm-up model: cached/);
    expect(readdirSync(cache).sort().map((n) => n.replace(/-.*/, ''))).toEqual(['task', 'warmup']);
  });

  test('the resolved train split is the built-in task, with its worked solutions', async () => {
    const r = resolveBuiltins(cfg('/some/model', ['builtin:task/train', '/my/own.jsonl']), path.join(tmp, 'cache2'), {}, QUICK_SETTINGS);
    expect(r.model.path).toBe('/some/model'); // a real path stays as it is
    expect(r.data.train_files[1]).toBe('/my/own.jsonl');
    const d = await loadDataset(r.data.train_files[0]!);
    expect(d.rows.length).toBe(QUICK_SETTINGS.task.train);
    expect(d.rows[0]!.source).toBe('clipo/task_train');
    expect(d.rows[0]!.solution).toMatch(/\\boxed\{\d+\}/);
  });

  test('a config without builtin: names comes back as it was; unknown names are refused', () => {
    const plain = cfg('/m', ['/d.parquet']);
    expect(resolveBuiltins(plain, path.join(tmp, 'never'))).toBe(plain);
    expect(existsSync(path.join(tmp, 'never'))).toBe(false);
    expect(() => resolveBuiltins(cfg('builtin:gpt2', ['/d']), tmp)).toThrow(/unknown built-in model 'builtin:gpt2' \(known: builtin:demo-warmup\)/);
    expect(() => resolveBuiltins(cfg('/m', ['builtin:task/validation']), tmp)).toThrow(/data.train_files\[0\]: unknown built-in data 'builtin:task\/validation' \(known: builtin:task\/train, /);
    expect(() => resolveBuiltins(cfg('/m', ['builtin:gsm8k']), tmp)).toThrow(/unknown built-in data/);
  });

  test('cache folder: the argument, else $CLIPO_CACHE_DIR, else $XDG_CACHE_HOME/clipo', () => {
    const saved = { c: process.env.CLIPO_CACHE_DIR, x: process.env.XDG_CACHE_HOME };
    try {
      process.env.CLIPO_CACHE_DIR = path.join(tmp, 'env');
      process.env.XDG_CACHE_HOME = path.join(tmp, 'xdg');
      expect(resolveCacheDir('rel')).toBe(path.resolve('rel'));
      expect(resolveCacheDir()).toBe(path.join(tmp, 'env'));
      delete process.env.CLIPO_CACHE_DIR;
      expect(resolveCacheDir()).toBe(path.join(tmp, 'xdg', 'clipo'));
    } finally {
      if (saved.c === undefined) delete process.env.CLIPO_CACHE_DIR;
      else process.env.CLIPO_CACHE_DIR = saved.c;
      if (saved.x === undefined) delete process.env.XDG_CACHE_HOME;
      else process.env.XDG_CACHE_HOME = saved.x;
    }
  });

  test('every nano recipe names the built-in model and data, so it runs from a fresh clone', () => {
    const dir = path.join(packageRoot, 'recipes');
    const nano = readdirSync(dir).filter((f) => /^nano-.*\.yaml$/.test(f));
    expect(nano.length).toBe(8);
    for (const f of nano) {
      const c = loadTrainConfig(path.join(dir, f));
      expect(c.model.path).toBe(BUILTIN_WARMUP);
      expect(c.data.train_files).toEqual(['builtin:task/train']);
    }
  });
});
