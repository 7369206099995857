// The measuring discipline every CPU suite follows, so that each published figure is physically possible:
// - limits (read bandwidth, FMA peak) are probed *between* the kernel's repeats, round by round, so limit and kernel
//   see the same load; a figure is then compared with the probe of the same rounds;
// - repeats run back to back (no idle gap in which OpenMP's threads fall asleep, so a multi-thread row measures the
//   kernel, not the wake-up);
// - one-thread rows are timed on the calling thread's own CPU clock as well as the wall clock: the CPU clock leaves
//   out the time the thread was descheduled by other processes, which on a shared machine is most of the noise;
// - a fraction of a limit above 1 is not a result but a fault of the bench (the probe under-read the machine, or
//   the byte/FLOP count is wrong); it is reported as an error and never published as a figure;
// - the load average is recorded before and after, with a note when it moved.
import os from 'node:os';
import { nativeFunction } from '../native.js';
import { median } from '../util/stats.js';
import { round } from './bandwidth.js';
import type { BenchReport, BenchRow } from './types.js';

export const threadCpuSeconds = (): number => nativeFunction<() => number>('threadCpuSeconds')();
export const poolCpuSeconds = (threads: number): number => nativeFunction<(o: object) => number>('poolCpuSeconds')({ threads });

/** Threads an all-thread row uses: `--threads N` when given, else every core the process may run on. */
export function allThreads(threads?: number): number {
  return threads ?? os.availableParallelism();
}

/** The thread counts a suite measures: one thread, and the all-thread count when it is more than one
 *  (`clipo bench --threads 1`: one-thread rows only). */
export function threadCounts(threads?: number): number[] {
  const all = allThreads(threads);
  return all > 1 ? [1, all] : [1];
}

/** One timed call: wall seconds, and CPU seconds (calling thread for one thread, the OpenMP team otherwise). */
export interface Sample {
  wall: number;
  cpu: number;
}

/** Times one synchronous call. One thread: the calling thread's clock (the kernel runs on it). More: the team's. */
export function timeCall(fn: () => void, threads: number): Sample {
  const cpu0 = threads === 1 ? threadCpuSeconds() : poolCpuSeconds(threads);
  const t0 = performance.now();
  fn();
  const wall = (performance.now() - t0) / 1000;
  const cpu = (threads === 1 ? threadCpuSeconds() : poolCpuSeconds(threads)) - cpu0;
  return { wall, cpu };
}

/** `n` back-to-back calls timed as one sample, reported per call (calls too short, or too noisy, to time alone). */
export function timeCallMean(fn: () => void, n: number, threads: number): Sample {
  const s = timeCall(() => { for (let q = 0; q < n; q++) fn(); }, threads);
  return { wall: s.wall / n, cpu: s.cpu / n };
}

/** An entry of an interleaved measurement: a call that returns its own sample (so a peer process or a probe that
 *  times itself can take part). */
export interface Entry {
  name: string;
  run: () => Sample | Promise<Sample>;
}

/**
 * Runs every entry once per round, in order, back to back, for `rounds` rounds after `warmup` untimed rounds.
 * Returns each entry's samples. Interleaving makes load changes hit every entry alike; no sleeps in between.
 */
export async function interleave(entries: Entry[], rounds: number, warmup = 1, log?: (m: string) => void): Promise<Map<string, Sample[]>> {
  const out = new Map<string, Sample[]>(entries.map((e) => [e.name, []]));
  for (let r = 0; r < warmup + rounds; r++) {
    for (const e of entries) {
      const s = await e.run();
      if (r >= warmup) out.get(e.name)!.push(s);
    }
    if (log && r >= warmup) log(`    round ${r - warmup + 1}/${rounds}`);
  }
  return out;
}

/** The time a row reports: for one thread the CPU clock of the thread (robust to other processes), for more the
 *  wall clock (the team's CPU time includes spin-waiting at barriers). */
export function rowSeconds(samples: Sample[], threads: number): number {
  return median(samples.map((s) => (threads === 1 ? s.cpu : s.wall)));
}

export function medianWall(samples: Sample[]): number {
  return median(samples.map((s) => s.wall));
}

/**
 * A rate as a fraction of a limit probed in the same rounds, paired round by round: the median over rounds r of
 * (bytes / t_r) / (limitBytes / l_r). Pairing each sample with the probe of its own round cancels load that drifts
 * between rounds (on a shared machine the memory bandwidth left to us moves by 10% within seconds), which a ratio of
 * two medians does not. Both sample lists come from the same `interleave` call (one sample per round each).
 */
export function pairedFraction(bytes: number, samples: Sample[], limitBytes: number, limitSamples: Sample[], threads: number): number {
  if (samples.length !== limitSamples.length || samples.length === 0) throw new Error(`pairedFraction: ${samples.length} samples against ${limitSamples.length} probe samples (one each per round expected)`);
  const t = (s: Sample) => (threads === 1 ? s.cpu : s.wall);
  return median(samples.map((s, r) => (bytes / t(s)) / (limitBytes / t(limitSamples[r]!))));
}

/**
 * A fraction of a measured limit. Above 1 it is a bench error: returns null and the reason, never the number.
 * `spread` (relative, >= 0) is the limit's own run-to-run spread measured in the same rounds (limitSpread): a kernel
 * that reaches the limit measures above it about half the time, so a fraction in (1, 1 + spread] is published as
 * measured, with `atLimit` set, and only a fraction beyond the probe's own noise is an error.
 */
export function checkedFraction(value: number, limit: number, what: string, spread = 0): { fraction: number | null; error?: string; atLimit?: boolean } {
  const f = value / limit;
  if (!Number.isFinite(f)) return { fraction: null, error: `${what}: not finite (${value} / ${limit})` };
  if (f > 1 + Math.max(0, spread)) return { fraction: null, error: `${what}: ${round(f)} of the limit measured in the same rounds${spread > 0 ? ` (beyond the probe's own spread of ${round(100 * spread, 2)}%)` : ''} — impossible, so the bench is wrong here (a probe under-read the machine or a byte/FLOP count is off); not published` };
  return f > 1 ? { fraction: round(f), atLimit: true } : { fraction: round(f) };
}

/**
 * The relative spread of a probe's samples (rates from times): half the interquartile range of its times over
 * their median. The clock is the rows' (thread CPU for one thread, wall for more).
 */
export function limitSpread(samples: Sample[], threads: number): number {
  const xs = samples.map((s) => (threads === 1 ? s.cpu : s.wall)).sort((a, b) => a - b);
  if (xs.length < 4) return 0;
  const q = (p: number) => {
    const i = p * (xs.length - 1), lo = Math.floor(i), hi = Math.ceil(i);
    return xs[lo] + (xs[hi] - xs[lo]) * (i - lo);
  };
  const m = q(0.5);
  return m > 0 ? (q(0.75) - q(0.25)) / 2 / m : 0;
}

/** Records an error on a row (`benchError`, joined when several) and in the report's error list. */
export function flagRow(row: BenchRow, errors: string[], error: string | undefined): void {
  if (!error) return;
  row.benchError = row.benchError ? `${row.benchError}; ${error}` : error;
  errors.push(error);
}

export interface LoadRecord {
  before: number[];
  after: number[];
  cores: number;
  /** a sentence when the 1-minute load moved by more than half a core or 25% during the suite */
  note: string | null;
}

export function loadBefore(): number[] {
  return os.loadavg().map((x) => round(x, 3));
}

export function loadRecord(before: number[]): LoadRecord {
  const after = os.loadavg().map((x) => round(x, 3));
  const cores = os.cpus().length;
  const d = after[0]! - before[0]!;
  const changed = Math.abs(d) > Math.max(0.5, 0.25 * Math.max(before[0]!, after[0]!));
  const note = changed
    ? `load changed during the run: 1-minute load average ${before[0]} -> ${after[0]} on ${cores} cores; figures from this run are less comparable with a quiet machine's`
    : null;
  return { before, after, cores, note };
}

/** Notes that state the load; the error notes that say what was withheld. */
export function standardNotes(load: LoadRecord, errors: string[]): string[] {
  const notes = [`load average (1, 5, 15 min) before ${load.before.join(' ')}, after ${load.after.join(' ')} on ${load.cores} cores.`];
  if (load.note) notes.push(load.note);
  for (const e of errors) notes.push(`BENCH ERROR: ${e}`);
  return notes;
}

/**
 * The report of a `--backend cuda` suite when the CUDA engine cannot run here: nothing measured, the reason in
 * `unavailable` and `errors` (then `clipo bench` exits 1: the user asked for something this machine cannot do).
 */
export function unavailableReport(suite: 'engine' | 'train', reason: string, load: LoadRecord): BenchReport {
  const why = `${suite} --backend cuda cannot run: ${reason}`;
  const step = suite === 'engine' ? 'CLIPO_GPU_ENGINE_BENCH=1' : 'CLIPO_GPU_TRAIN_BENCH=1';
  return {
    suite, rows: [], unavailable: why, errors: [why], load,
    notes: [`${why}. Run it on a machine with a GPU and a CUDA build (scripts/gpu/run-all.sh with ${step}), or use --backend cpu for the CPU suite.`],
  };
}
