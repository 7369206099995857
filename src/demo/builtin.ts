// Names a training config may use instead of paths, for the built-in task and the demo's warm-up model:
//
//   model.path:        builtin:demo-warmup        the demo's supervised warm-up model (the default demo settings)
//   data.train_files:  builtin:task/<split>       the built-in task's <split> file (train, test, symbolic, p1, p2, noop)
//   validation.files:  builtin:task/<split>       the same, for validation during training
//
// Both live in the same cache as `clipo demo` uses (task-<hash>, warmup-<hash>), so a demo's cache serves a recipe and
// the other way round. What is missing is made on first use: the task files in a second, the warm-up model in a few
// minutes on a 2-core CPU (with progress), then reused.
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, type TrainConfig } from '../config/load.js';
import { TASK_SPLITS, type TaskSplit } from '../task/generator.js';
import { ensureTaskData, TASK_FILES } from '../task/records.js';
import { DEFAULT_SETTINGS, type DemoSettings } from './settings.js';
import { ensureWarmup, type WarmupProgress, type WarmupResult } from './warmup.js';

export const BUILTIN_PREFIX = 'builtin:';
export const BUILTIN_WARMUP = 'builtin:demo-warmup';

/** The cache folder: --cache, else $CLIPO_CACHE_DIR, else $XDG_CACHE_HOME/clipo or ~/.cache/clipo. */
export function resolveCacheDir(explicit?: string): string {
  if (explicit !== undefined) return path.resolve(explicit);
  if (process.env.CLIPO_CACHE_DIR) return path.resolve(process.env.CLIPO_CACHE_DIR);
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'clipo');
}

/** The task data folder of these settings inside the cache (the hash covers the task settings). */
export function taskDataDir(cacheDir: string, s: DemoSettings): string {
  return path.join(cacheDir, `task-${createHash('sha256').update(JSON.stringify(s.task)).digest('hex').slice(0, 12)}`);
}

/** The task split a `builtin:task/<split>` name stands for; null for any other string. Throws on an unknown split. */
export function builtinTaskSplit(name: string, where: string): TaskSplit | null {
  if (!name.startsWith(BUILTIN_PREFIX)) return null;
  const m = /^builtin:task\/([a-z0-9]+)$/.exec(name);
  if (!m || !(TASK_SPLITS as readonly string[]).includes(m[1]!)) {
    throw new ConfigError(`${where}: unknown built-in data '${name}' (known: ${TASK_SPLITS.map((s) => `builtin:task/${s}`).join(', ')})`);
  }
  return m[1] as TaskSplit;
}

export interface BuiltinHooks {
  /** the warm-up's progress (only called when it has to be trained) */
  warmup?: WarmupProgress;
  log?: (line: string) => void;
}

/** Whether the config names any built-in data or model. */
export function usesBuiltins(c: TrainConfig): boolean {
  const files = [...c.data.train_files, ...(c.validation?.files ?? [])];
  return c.model.path.startsWith(BUILTIN_PREFIX) || files.some((f) => f.startsWith(BUILTIN_PREFIX));
}

/** The config with every `builtin:` name replaced by its path in the cache, making (and caching) what is missing.
 *  A config without such names comes back unchanged. */
export function resolveBuiltins(c: TrainConfig, cacheDir: string, hooks: BuiltinHooks = {}, s: DemoSettings = DEFAULT_SETTINGS): TrainConfig {
  if (!usesBuiltins(c)) return c;
  let modelPath = c.model.path;
  if (modelPath.startsWith(BUILTIN_PREFIX)) {
    if (modelPath !== BUILTIN_WARMUP) throw new ConfigError(`model.path: unknown built-in model '${modelPath}' (known: ${BUILTIN_WARMUP})`);
  }
  const splits = c.data.train_files.map((f, i) => builtinTaskSplit(f, `data.train_files[${i}]`));
  const valFiles = c.validation?.files ?? [];
  const valSplits = valFiles.map((f, i) => builtinTaskSplit(f, `validation.files[${i}]`));
  let taskDir: string | null = null;
  if ([...splits, ...valSplits].some((x) => x !== null)) {
    taskDir = taskDataDir(cacheDir, s);
    const t = ensureTaskData(taskDir, { ...s.task, format: 'parquet' });
    hooks.log?.(`built-in task data: ${t.reused ? 'cached' : 'generated'} in ${taskDir}`);
  }
  const trainFiles = c.data.train_files.map((f, i) => (splits[i] ? path.join(taskDir!, TASK_FILES[splits[i]!]) : f));
  const validation = c.validation ? { ...c.validation, files: valFiles.map((f, i) => (valSplits[i] ? path.join(taskDir!, TASK_FILES[valSplits[i]!]) : f)) } : c.validation;
  if (modelPath === BUILTIN_WARMUP) {
    const warm: WarmupResult = ensureWarmup(s, cacheDir, hooks.warmup);
    hooks.log?.(`built-in warm-up model: ${warm.reused ? 'cached' : 'trained'} in ${warm.modelDir} (${warm.info.steps} steps, greedy validation accuracy ${(100 * warm.info.accuracy).toFixed(1)}%)`);
    modelPath = warm.modelDir;
  }
  return { ...c, model: { ...c.model, path: modelPath }, data: { ...c.data, train_files: trainFiles }, validation };
}
