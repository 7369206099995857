// Validation during training. It is `clipo eval` run on the policy in memory: the same runner (src/eval/run.ts),
// the same local generator (chat-template prompts, fixed blocks of problems, seeds derived from the problem), the
// same verifier. So a figure here equals what `clipo eval` reports on the checkpoint saved at the same step with the
// same settings (--samples n --temperature --top-p --max-new-tokens --seed --concurrency --limit). Each validation
// writes a complete eval folder (<output.dir>/validation/step-NNNNNNNN/: generations.jsonl, results.json/md).
//
// Figures per benchmark and averaged over benchmarks (plus the paper's suite averages of mean_acc):
//   mean_acc   Pass@1 averaged over the n samples (eval's Pass@1 / 100)
//   pass@k     the unbiased estimator 1 − C(n − c, k) / C(n, k) per problem (c correct of n), for k = 1, 2, 4, ... ≤ n and n
//   maj@n      majority vote over the n samples' extracted answers (normalized; ties go to the answer seen first)
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { TrainConfig } from '../config/load.js';
import { datasetName, defaultDataRoot, suites, suiteSummary, type SuiteName } from '../eval/deps.js';
import { LocalGenerator } from '../eval/local.js';
import { LocalModel, type GenerateEngine } from '../eval/localmodel.js';
import type { BenchmarkPlan } from '../eval/results.js';
import { runEval } from '../eval/run.js';
import type { SampleRecord } from '../eval/types.js';
import type { ModelTokenizer } from '../model/tokenizer.js';
import { normalizeAnswer } from '../verify/normalize.js';
import { existsSync } from 'node:fs';

export type ValidationSettings = NonNullable<TrainConfig['validation']>;

export interface ValidationPlan {
  suite: SuiteName | null;
  benchmarks: BenchmarkPlan[];
  n: number;
  temperature: number;
  topP: number;
  maxNewTokens: number;
  seed: number;
  limit: number | null;
  concurrency: number;
}

/** Resolves the validation block (suite files under data_root, user files); a missing file is an error now. */
export function planValidation(v: ValidationSettings, maxResponseTokens: number): ValidationPlan {
  const benchmarks: BenchmarkPlan[] = [];
  if (v.suite) {
    const root = path.resolve(v.data_root ?? defaultDataRoot());
    for (const b of suites[v.suite].benchmarks) benchmarks.push({ key: b.key, display: b.display, file: path.join(root, b.file) });
  }
  const used = new Set(benchmarks.map((b) => b.key));
  for (const f of v.files) {
    const base = datasetName(f);
    let key = base;
    for (let i = 2; used.has(key); i++) key = `${base}_${i}`;
    used.add(key);
    benchmarks.push({ key, display: key, file: path.resolve(f) });
  }
  if (!benchmarks.length) throw new Error('validation: give validation.suite or validation.files');
  const missing = benchmarks.filter((b) => !existsSync(b.file));
  if (missing.length) throw new Error(`validation: data file(s) not found: ${missing.map((b) => b.file).join(', ')}`);
  return { suite: v.suite, benchmarks, n: v.n, temperature: v.temperature, topP: v.top_p, maxNewTokens: v.max_response_tokens ?? maxResponseTokens, seed: v.seed, limit: v.limit, concurrency: v.concurrency };
}

/** Whether validation runs after `step` (1-based; 0 = before the first step). */
export function validationDue(v: ValidationSettings, step: number, totalSteps: number): boolean {
  if (step === 0) return v.at_start;
  return step === totalSteps || (v.every > 0 && step % v.every === 0);
}

/** log C(n, k) */
function logChoose(n: number, k: number): number {
  let s = 0;
  for (let i = 0; i < k; i++) s += Math.log(n - i) - Math.log(i + 1);
  return s;
}

/** The unbiased pass@k of one problem with c correct of n samples (Chen et al. 2021). */
export function passAtK(n: number, c: number, k: number): number {
  if (k > n) throw new Error(`pass@${k} needs at least ${k} samples, got ${n}`);
  if (n - c < k) return 1;
  return 1 - Math.exp(logChoose(n - c, k) - logChoose(n, k));
}

/** The k reported for n samples: powers of two up to n, and n. */
export function reportedKs(n: number): number[] {
  const ks: number[] = [];
  for (let k = 1; k <= n; k *= 2) ks.push(k);
  if (ks.at(-1) !== n) ks.push(n);
  return ks;
}

/** Majority vote: the answer most samples extracted (normalized); correct when that answer's samples are. */
export function majorityCorrect(samples: Array<{ extracted: string | null; correct: boolean }>): boolean {
  const votes = new Map<string, { count: number; correct: boolean }>();
  for (const s of samples) {
    if (s.extracted === null) continue;
    let key: string;
    try {
      key = normalizeAnswer(s.extracted);
    } catch {
      key = s.extracted;
    }
    const e = votes.get(key) ?? { count: 0, correct: s.correct };
    e.count++;
    votes.set(key, e);
  }
  let best: { count: number; correct: boolean } | null = null;
  for (const e of votes.values()) if (!best || e.count > best.count) best = e;
  return best?.correct ?? false;
}

export interface BenchmarkFigures {
  mean_acc: number;
  /** pass@k by k */
  pass: Record<number, number>;
  maj: number;
  problems: number;
}

/** Figures of one benchmark from its samples (problem → its n samples). */
export function benchmarkFigures(byProblem: Map<number, Array<{ extracted: string | null; correct: boolean }>>, n: number): BenchmarkFigures {
  const ks = reportedKs(n);
  let acc = 0, maj = 0;
  const pass: Record<number, number> = Object.fromEntries(ks.map((k) => [k, 0]));
  for (const samples of byProblem.values()) {
    const c = samples.filter((s) => s.correct).length;
    acc += c / samples.length;
    for (const k of ks) pass[k]! += passAtK(samples.length, c, Math.min(k, samples.length));
    if (majorityCorrect(samples)) maj++;
  }
  const P = Math.max(1, byProblem.size);
  for (const k of ks) pass[k]! /= P;
  return { mean_acc: acc / P, pass, maj: maj / P, problems: byProblem.size };
}

export interface ValidationResult {
  step: number;
  /** flat figures: `<bench>/mean_acc`, `<bench>/pass@k`, `<bench>/maj@n`, the averages `mean_acc`, `pass@k`, `maj@n`, and the suite's averages */
  figures: Record<string, number>;
  dir: string;
  seconds: number;
}

/** Flattens per-benchmark figures and adds their averages (and, for a suite, the paper's averages of mean_acc). */
export function flattenFigures(per: Record<string, BenchmarkFigures>, n: number, suite: SuiteName | null): Record<string, number> {
  const out: Record<string, number> = {};
  const keys = Object.keys(per);
  const put = (name: string, f: (b: BenchmarkFigures) => number) => {
    let s = 0;
    for (const k of keys) {
      out[`${k}/${name}`] = f(per[k]!);
      s += f(per[k]!);
    }
    out[name] = s / keys.length;
  };
  put('mean_acc', (b) => b.mean_acc);
  for (const k of reportedKs(n)) put(`pass@${k}`, (b) => b.pass[k]!);
  put(`maj@${n}`, (b) => b.maj);
  if (suite) {
    // the paper's averages over the suite's benchmarks only (files given besides the suite are not part of them)
    const suiteKeys = new Set(suites[suite].benchmarks.map((b) => b.key));
    const summary = suiteSummary(suite, Object.fromEntries(keys.filter((k) => suiteKeys.has(k)).map((k) => [k, 100 * per[k]!.mean_acc])));
    for (const [name, v] of Object.entries(summary)) if (!suiteKeys.has(name) && v !== null && Number.isFinite(v)) out[`suite/${name}`] = v / 100;
  }
  return out;
}

/** Runs one validation of the in-memory policy into `dir` (an eval folder) and returns its figures. */
export async function runValidation(o: { plan: ValidationPlan; engine: GenerateEngine; tokenizer: ModelTokenizer; dir: string; step: number; modelName: string }): Promise<ValidationResult> {
  const t0 = Date.now();
  if (!o.tokenizer.chatTemplate) throw new Error('validation needs the tokenizer\'s chat template (the prompts are rendered as clipo eval renders them)');
  const model = new LocalModel(o.engine, o.tokenizer, o.modelName);
  const generator = new LocalGenerator(model, o.plan.concurrency, o.dir, `in-memory policy at step ${o.step}`);
  const p = o.plan;
  await runEval({
    out: o.dir, suite: p.suite, benchmarks: p.benchmarks, samples: p.n, seed: p.seed, limit: p.limit ?? undefined, force: true,
    params: { temperature: p.temperature, topP: p.topP, maxNewTokens: p.maxNewTokens }, generator,
  });
  const per: Record<string, Map<number, Array<{ extracted: string | null; correct: boolean }>>> = {};
  for (const line of readFileSync(path.join(o.dir, 'generations.jsonl'), 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const r = JSON.parse(line) as SampleRecord;
    if (r.error !== undefined || r.correct === null) continue;
    const m = (per[r.benchmark] ??= new Map());
    const list = m.get(r.problem) ?? [];
    list[r.sample] = { extracted: r.extracted, correct: r.correct };
    m.set(r.problem, list);
  }
  const figs: Record<string, BenchmarkFigures> = {};
  for (const b of p.benchmarks) figs[b.key] = benchmarkFigures(new Map([...(per[b.key] ?? new Map()).entries()].map(([k, v]) => [k, v.filter(Boolean)])), p.n);
  return { step: o.step, figures: flattenFigures(figs, p.n, p.suite), dir: o.dir, seconds: (Date.now() - t0) / 1000 };
}
