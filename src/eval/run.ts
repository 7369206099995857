// `clipo eval` as a library call: plan -> resume check -> generate the missing samples -> verify -> store ->
// results.json / results.md. See docs/eval.md for the file formats and the resume rules.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync } from 'node:fs';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { ensureDir, writeFileAtomic, writeJsonAtomic } from '../util/atomic.js';
import { lockDir } from '../util/lock.js';
import { loadDataset, suiteSummary, verify, VerifierPool, type DataRow, type SuiteName, type VerifyResult } from './deps.js';
import { startProgress } from './progress.js';
import { benchmarkResult, renderResultsMarkdown, type BenchmarkPlan, type BenchmarkResult } from './results.js';
import { keySeed } from '../util/seeds.js';
import { GenerationStore } from './store.js';
import type { Completion, GenRequest, Generator, SampleRecord, SamplingParams } from './types.js';

export type { BenchmarkPlan, BenchmarkResult } from './results.js';

export interface RunEvalOptions {
  out: string;
  suite: SuiteName | null;
  benchmarks: BenchmarkPlan[];
  /** K samples per problem */
  samples: number;
  params: SamplingParams;
  seed: number;
  /** first N problems of each benchmark */
  limit?: number;
  /** discard an incompatible previous run in `out` instead of refusing */
  force?: boolean;
  generator: Generator;
  progress?: boolean;
  log?: (msg: string) => void;
  /** flush and exit on SIGINT/SIGTERM (the CLI sets this) */
  handleSignals?: boolean;
  /** verifier worker threads (default: min(4, cores)) */
  verifyThreads?: number;
  /** hard verification limit per sample in milliseconds (default 5000): a sample over it counts as incorrect */
  verifyTimeoutMs?: number;
  /** which boxes answer (default 'last', as in the paper) */
  verifyBoxes?: 'last' | 'all';
}

/** What must stay the same for samples in one --out to belong to one evaluation. */
export interface RunIdentity {
  backend: string;
  model: string;
  temperature: number;
  topP: number;
  maxNewTokens: number;
  seed: number;
  /** benchmark key -> data file name and content hash (moving the data folder is fine, editing a file is not) */
  files: Record<string, string>;
}

export interface EvalResults {
  clipoEval: 1;
  suite: string | null;
  generator: Generator['info'];
  config: { samples: number; limit: number | null; temperature: number; topP: number; maxNewTokens: number; seed: number };
  benchmarks: Record<string, BenchmarkResult>;
  /** Pass@1 per benchmark, percent */
  scores: Record<string, number | null>;
  /** the paper's averages (suite runs with every benchmark scored), else null */
  summary: Record<string, number | null> | null;
  complete: boolean;
  /** why samples failed, most frequent first (at most 5) */
  errorReasons: Array<{ reason: string; count: number }>;
  /** samples whose verification ran out of time (each counted incorrect) */
  verifyTimeouts: number;
  timing: { startedAt: string; finishedAt: string; wallSeconds: number; samplesThisRun: number; samplesPerSecond: number | null; perBenchmarkSeconds: Record<string, number> };
  data: Record<string, { used: number; skipped: number }>;
}

const RUN_FILE = 'run.json';

/** Compares a new identity with the one stored in --out; returns the differences (empty = compatible). */
export function identityDiff(old: RunIdentity, now: RunIdentity): string[] {
  const diffs: string[] = [];
  for (const k of ['backend', 'model', 'temperature', 'topP', 'maxNewTokens', 'seed'] as const) {
    if (old[k] !== now[k]) diffs.push(`${k}: ${JSON.stringify(old[k])} -> ${JSON.stringify(now[k])}`);
  }
  for (const [b, f] of Object.entries(now.files)) {
    if (old.files[b] !== undefined && old.files[b] !== f) diffs.push(`data for '${b}': ${old.files[b]} -> ${f}`);
  }
  return diffs;
}

function prepareOut(out: string, identity: RunIdentity, force: boolean, log: (m: string) => void): void {
  const runFile = path.join(out, RUN_FILE);
  const gens = path.join(out, 'generations.jsonl');
  let merged = identity;
  if (existsSync(runFile)) {
    let old: RunIdentity;
    try {
      old = (JSON.parse(readFileSync(runFile, 'utf8')) as { identity: RunIdentity }).identity;
      if (!old || typeof old.files !== 'object') throw new Error('no identity');
    } catch (e) {
      throw new UsageError(`${runFile} is unreadable (${(e as Error).message}); use another --out, or --force to start over`);
    }
    const diffs = identityDiff(old, identity);
    if (diffs.length && !force) {
      throw new UsageError(`--out ${out} holds an evaluation with a different configuration (${diffs.join('; ')}); use another --out, or --force to start over`);
    }
    if (diffs.length) {
      const kept = path.join(out, `generations.${new Date().toISOString().replace(/[:.]/g, '-')}.jsonl`);
      if (existsSync(gens)) renameSync(gens, kept);
      log(`--force: previous generations moved to ${kept}`);
    } else {
      merged = { ...identity, files: { ...old.files, ...identity.files } };
    }
  } else if (existsSync(gens) && !force) {
    throw new UsageError(`--out ${out} has a generations.jsonl but no ${RUN_FILE}; use another --out, or --force to start over`);
  }
  writeJsonAtomic(runFile, { identity: merged, updatedAt: new Date().toISOString() });
}

export async function runEval(opts: RunEvalOptions): Promise<EvalResults> {
  const log = opts.log ?? (() => {});
  const started = Date.now();
  const out = path.resolve(opts.out);
  const info = opts.generator.info;
  const identity: RunIdentity = {
    backend: info.backend,
    // a local model is identified by its resolved directory and a fingerprint of its weight files (two
    // checkpoints both called 'policy' must not share an --out); an endpoint by the served model name
    model: info.backend === 'local' ? `${String(info.dir ?? info.model)}${info.fingerprint ? ` (${String(info.fingerprint)})` : ''}` : info.model,
    temperature: opts.params.temperature,
    topP: opts.params.topP,
    maxNewTokens: opts.params.maxNewTokens,
    seed: opts.seed,
    files: Object.fromEntries(opts.benchmarks.map((b) => [b.key, fileIdentity(b.file)])),
  };

  // Load every data file first: a bad file fails the run before any generation.
  const datasets = new Map<string, DataRow[]>();
  const data: EvalResults['data'] = {};
  for (const b of opts.benchmarks) {
    const ds = await loadDataset(b.file, { limit: opts.limit });
    if (ds.rows.length === 0) throw new UsageError(`${b.file}: no usable rows`);
    datasets.set(b.key, ds.rows);
    data[b.key] = { used: ds.used, skipped: ds.skipped };
    log(`${b.key}: ${ds.rows.length} problems from ${b.file}${ds.skipped ? ` (${ds.skipped} rows skipped)` : ''}`);
  }

  await opts.generator.prepare?.();
  ensureDir(out, '--out');
  const releaseLock = lockDir(out, 'clipo eval').release;
  let store: GenerationStore;
  try {
    prepareOut(out, identity, !!opts.force, log);
    store = GenerationStore.open(path.join(out, 'generations.jsonl'));
  } catch (e) {
    releaseLock();
    throw e;
  }
  if (store.openInfo.tornBytes) log(`generations.jsonl: dropped a torn last line (${store.openInfo.tornBytes} bytes) from an interrupted run`);
  if (store.openInfo.lines) log(`resuming: ${store.openInfo.lines} lines already in ${store.file}`);

  // samples generated but still with the verifier pool: on a signal they are verified here, in this thread (the
  // pool's threads are not waited for), so every sample answered before the signal is saved
  const awaitingVerification = new Map<string, { row: DataRow; req: GenRequest; sample: number; c: Completion }>();
  const onSignal = (sig: NodeJS.Signals) => {
    try {
      for (const p of awaitingVerification.values()) store.add(sampleRecord(p.row, p.req, p.sample, p.c, verify(p.c.text, p.row.groundTruth, { boxes: opts.verifyBoxes })));
      awaitingVerification.clear();
      store.flush();
      releaseLock();
    } finally {
      if (process.stderr.isTTY) process.stderr.write('\u001b[?25h'); // the progress bar hid the cursor
      process.stderr.write(`\nclipo eval: ${sig}: finished samples are saved; run the same command to continue\n`);
      process.exit(sig === 'SIGINT' ? 130 : 143);
    }
  };
  if (opts.handleSignals) {
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  }

  // samples arriving slowly are still on disk within about a second
  const flushTimer = setInterval(() => store.maybeFlush(), 1000);
  flushTimer.unref();
  const verifier = new VerifierPool({ threads: opts.verifyThreads, timeoutMs: opts.verifyTimeoutMs, boxes: opts.verifyBoxes });
  // the verifier threads load the compute engine before generation starts, so samples are saved as they come
  let samplesThisRun = 0;
  const perBenchmarkSeconds: Record<string, number> = {};
  try {
    await verifier.ready();
    for (const b of opts.benchmarks) {
      const t0 = Date.now();
      const rows = datasets.get(b.key)!;
      const requests: GenRequest[] = [];
      let done = 0;
      let correct = 0;
      for (let p = 0; p < rows.length; p++) {
        const missing: number[] = [];
        for (let s = 0; s < opts.samples; s++) {
          if (store.isFinished(b.key, p, s)) {
            done++;
            if (store.get(b.key, p, s)!.correct) correct++;
          } else missing.push(s);
        }
        // every problem is passed, finished or not: the local backend batches fixed blocks of problems (see local.ts)
        requests.push({ benchmark: b.key, problem: p, messages: rows[p].messages, samples: missing, k: opts.samples, seed: keySeed(opts.seed, b.key, p) });
      }
      const total = rows.length * opts.samples;
      const bar = startProgress(!!opts.progress, b.display, total, done, correct);
      const verifying = new Set<Promise<void>>();
      const onSample = (req: GenRequest, sample: number, c: Completion) => {
        const key = `${b.key}/${req.problem}/${sample}`;
        awaitingVerification.set(key, { row: rows[req.problem], req, sample, c });
        const task = record(rows[req.problem], req, sample, c, verifier).then((r) => {
          if (!awaitingVerification.delete(key)) return; // saved by the signal handler
          store.add(r);
          store.maybeFlush();
          samplesThisRun++;
          bar.tick(r.error !== undefined ? null : !!r.correct);
        });
        verifying.add(task);
        // (a failure surfaces through Promise.all below; this derived promise must not be an unhandled rejection)
        task.finally(() => verifying.delete(task)).catch(() => {});
      };
      let genError: unknown;
      try {
        if (requests.some((r) => r.samples.length)) await opts.generator.generate(requests, opts.params, onSample);
      } catch (e) {
        genError = e;
      }
      // even when the backend failed, the samples it delivered are verified and saved before giving up
      const settled = await Promise.allSettled([...verifying]);
      store.flush();
      bar.stop();
      if (genError !== undefined) throw genError;
      const failed = settled.find((x) => x.status === 'rejected');
      if (failed) throw (failed as PromiseRejectedResult).reason;
      perBenchmarkSeconds[b.key] = (Date.now() - t0) / 1000;
      const r = benchmarkResult(store, b, rows.length, opts.samples);
      log(`${b.key}: Pass@1 ${r.pass1 === null ? '-' : r.pass1.toFixed(2)} (${r.finished}/${r.expected} samples${r.errors ? `, ${r.errors} failed` : ''}) in ${perBenchmarkSeconds[b.key].toFixed(1)} s`);
    }
  } finally {
    clearInterval(flushTimer);
    await verifier.close();
    store.close();
    releaseLock();
    if (opts.handleSignals) {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  }

  const benchmarks: Record<string, BenchmarkResult> = {};
  for (const b of opts.benchmarks) benchmarks[b.key] = benchmarkResult(store, b, datasets.get(b.key)!.length, opts.samples);
  const scores = Object.fromEntries(Object.entries(benchmarks).map(([k, r]) => [k, r.pass1]));
  const complete = Object.values(benchmarks).every((r) => r.complete);
  const summary = opts.suite ? suiteSummary(opts.suite, scores) : null;
  const reasons = new Map<string, number>();
  let verifyTimeouts = 0;
  for (const b of opts.benchmarks) {
    for (let p = 0; p < datasets.get(b.key)!.length; p++) {
      for (let s = 0; s < opts.samples; s++) {
        const rec = store.get(b.key, p, s);
        if (rec?.verifyTimedOut) verifyTimeouts++;
        const e = rec?.error;
        if (e !== undefined) reasons.set(e, (reasons.get(e) ?? 0) + 1);
      }
    }
  }
  const errorReasons = [...reasons].sort((a, b) => b[1] - a[1]).slice(0, 5).map(([reason, count]) => ({ reason, count }));
  const wall = (Date.now() - started) / 1000;
  const results: EvalResults = {
    clipoEval: 1,
    suite: opts.suite,
    generator: opts.generator.info,
    config: { samples: opts.samples, limit: opts.limit ?? null, temperature: opts.params.temperature, topP: opts.params.topP, maxNewTokens: opts.params.maxNewTokens, seed: opts.seed },
    benchmarks,
    scores,
    summary,
    complete,
    errorReasons,
    verifyTimeouts,
    timing: { startedAt: new Date(started).toISOString(), finishedAt: new Date().toISOString(), wallSeconds: wall, samplesThisRun, samplesPerSecond: samplesThisRun ? samplesThisRun / wall : null, perBenchmarkSeconds },
    data,
  };
  writeJsonAtomic(path.join(out, 'results.json'), results);
  const notes: string[] = [];
  if (!complete) notes.push('\\* incomplete: some samples are missing or failed; run the same command again to finish them.');
  if (opts.limit !== undefined) notes.push(`--limit ${opts.limit}: only the first ${opts.limit} problems of each benchmark; not comparable with the paper.`);
  notes.push(`${opts.samples} sample(s) per problem, temperature ${opts.params.temperature}, top-p ${opts.params.topP}, max ${opts.params.maxNewTokens} new tokens, seed ${opts.seed}.`);
  const averageKeys = opts.suite ? ['M-Avg', opts.suite === 'track1' ? 'G-Avg' : 'C-Avg', 'Avg'] : [];
  writeFileAtomic(path.join(out, 'results.md'), renderResultsMarkdown({ title: `Pass@1: ${opts.generator.info.model}`, benchmarks, summary, averageKeys, notes }));
  return results;
}

function fileIdentity(file: string): string {
  const hash = createHash('sha256').update(readFileSync(file)).digest('hex');
  return `${path.basename(file)} sha256:${hash.slice(0, 16)}`;
}

async function record(row: DataRow, req: GenRequest, sample: number, c: Completion, verifier: VerifierPool): Promise<SampleRecord> {
  return sampleRecord(row, req, sample, c, c.error !== undefined ? null : await verifier.verify(c.text, row.groundTruth));
}

function sampleRecord(row: DataRow, req: GenRequest, sample: number, c: Completion, v: VerifyResult | null): SampleRecord {
  const base = { benchmark: req.benchmark, problem: req.problem, sample, id: row.id, prompt: req.messages, groundTruth: row.groundTruth };
  if (c.error !== undefined || v === null) {
    return { ...base, completion: c.text, extracted: null, correct: null, finishReason: c.finishReason, usage: c.usage, error: c.error ?? 'not verified', attempts: c.attempts };
  }
  return { ...base, completion: c.text, extracted: v.extracted, correct: v.correct, finishReason: c.finishReason, usage: c.usage, attempts: c.attempts, ...(v.reason ? { verifyReason: v.reason } : {}), ...(v.timedOut ? { verifyTimedOut: true as const } : {}) };
}
