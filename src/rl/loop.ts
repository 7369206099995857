// The outer loop of a run: steps until the schedule ends, one metrics.jsonl row per step, checkpoints every
// save_every steps and at the end. A NaN/Inf stops the run before anything of the bad step is written, so the last
// checkpoint on disk is the last good state.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { appendText, ensureDir, writeFileAtomic } from '../util/atomic.js';
import { listCheckpoints, saveCheckpoint } from './checkpoint.js';
import type { TrainExtras } from './extras.js';
import { GuardStopError } from './guards.js';
import type { StepDetail, StepMetrics, Trainer } from './trainer.js';
import { NonFiniteError } from './types.js';

export interface LoopOptions {
  outputDir: string;
  saveEvery: number;
  keepLast: number;
  /** writes the current policy as an HF directory into `dir` */
  savePolicy: (dir: string) => void;
  /** the resolved config, stored in checkpoints for the resume check */
  configForCheck: unknown;
  onStep?: (m: StepMetrics, d: StepDetail) => void;
  /** stop after this many steps of this call (for tests that simulate a killed run) */
  stopAfter?: number;
  /** TensorBoard, rollout logs, guards, validation (extras.ts) */
  extras?: TrainExtras;
  /** stop when a guard fires (guards.stop / --strict) */
  stopOnGuard?: boolean;
}

export function metricsPath(outputDir: string): string {
  return path.join(outputDir, 'metrics.jsonl');
}

/** Keeps the first `rows` lines of metrics.jsonl (the steps a checkpoint covers); used on resume. */
export function truncateMetrics(outputDir: string, rows: number): void {
  const file = metricsPath(outputDir);
  if (!existsSync(file)) return;
  const lines = readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '');
  writeFileAtomic(file, lines.slice(0, rows).map((l) => l + '\n').join(''));
}

export function countMetricsRows(outputDir: string): number {
  const file = metricsPath(outputDir);
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '').length : 0;
}

const jsonRow = (m: object) => JSON.stringify(m, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v));

export async function runLoop(trainer: Trainer, o: LoopOptions): Promise<{ steps: number; lastCheckpoint: string | null; last: StepMetrics | null }> {
  ensureDir(o.outputDir, 'output.dir');
  const file = metricsPath(o.outputDir);
  if (!existsSync(file)) appendText(file, '');
  let rows = countMetricsRows(o.outputDir);
  let lastCheckpoint: string | null = listCheckpoints(o.outputDir).at(-1)?.dir ?? null;
  let last: StepMetrics | null = null;
  let steps = 0;
  const save = () => {
    lastCheckpoint = saveCheckpoint(o.outputDir, trainer.checkpointPayload(o.savePolicy, rows, o.configForCheck), o.keepLast);
  };
  await o.extras?.start(trainer.step);
  while (!trainer.done && (o.stopAfter === undefined || steps < o.stopAfter)) {
    let r: ReturnType<Trainer['runStep']>;
    try {
      r = trainer.runStep();
    } catch (e) {
      if (e instanceof NonFiniteError) {
        const keep = lastCheckpoint ? `the last good checkpoint is ${lastCheckpoint}` : 'no checkpoint was written yet';
        throw new NonFiniteError(`${e.message}; training stopped (${keep})`);
      }
      throw e;
    }
    const extra = o.extras ? await o.extras.afterStep(r.metrics, r.detail) : null;
    appendText(file, jsonRow({ ...r.metrics, ...extra?.row }) + '\n');
    rows++;
    steps++;
    last = r.metrics;
    o.onStep?.(r.metrics, r.detail);
    if (o.stopOnGuard && extra?.warnings.length) {
      const keep = lastCheckpoint ? `the last checkpoint is ${lastCheckpoint}` : 'no checkpoint was written yet';
      throw new GuardStopError(`step ${r.metrics.step}: ${extra.warnings.map((w) => w.message).join('; ')}; training stopped by guards.stop / --strict (${keep})`);
    }
    const atEnd = trainer.done;
    if (atEnd || (o.saveEvery > 0 && trainer.step % o.saveEvery === 0)) save();
  }
  return { steps, lastCheckpoint, last };
}
