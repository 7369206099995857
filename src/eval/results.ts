// Turning the store into scores. Pass@1 of a benchmark = mean over problems of the mean correctness of its K
// samples (docs/algorithm.md §5); with every sample present that equals the mean over all samples. Scores are in
// percent, like the paper. Samples still missing or failed are left out of the mean and the benchmark is marked
// incomplete, so a partial number is never passed off as a final one.
import path from 'node:path';
import type { GenerationStore } from './store.js';

export interface BenchmarkPlan {
  key: string;
  /** the paper's column name (or the key for user data) */
  display: string;
  file: string;
}

export interface BenchmarkResult {
  display: string;
  file: string;
  problems: number;
  samplesPerProblem: number;
  expected: number;
  finished: number;
  /** samples whose last attempt failed (rerun to retry them) */
  errors: number;
  correct: number;
  /** percent; null when nothing finished */
  pass1: number | null;
  complete: boolean;
  finishReasons: Record<string, number>;
  /** mean generated tokens per finished sample, when the backend reported usage */
  meanCompletionTokens: number | null;
}

export function benchmarkResult(store: GenerationStore, plan: BenchmarkPlan, problems: number, samples: number): BenchmarkResult {
  let finished = 0;
  let errors = 0;
  let correct = 0;
  let tokenSum = 0;
  let tokenCount = 0;
  let perProblemSum = 0;
  let problemsWithSamples = 0;
  const finishReasons: Record<string, number> = {};
  for (let p = 0; p < problems; p++) {
    let pc = 0;
    let pn = 0;
    for (let s = 0; s < samples; s++) {
      const r = store.get(plan.key, p, s);
      if (!r) continue;
      if (r.error !== undefined) {
        errors++;
        continue;
      }
      pn++;
      if (r.correct) pc++;
      const fr = r.finishReason ?? 'unknown';
      finishReasons[fr] = (finishReasons[fr] ?? 0) + 1;
      if (r.usage) {
        tokenSum += r.usage.completionTokens;
        tokenCount++;
      }
    }
    finished += pn;
    correct += pc;
    if (pn > 0) {
      perProblemSum += pc / pn;
      problemsWithSamples++;
    }
  }
  const expected = problems * samples;
  return {
    display: plan.display,
    file: plan.file,
    problems,
    samplesPerProblem: samples,
    expected,
    finished,
    errors,
    correct,
    pass1: problemsWithSamples ? (100 * perProblemSum) / problemsWithSamples : null,
    complete: finished === expected,
    finishReasons,
    meanCompletionTokens: tokenCount ? tokenSum / tokenCount : null,
  };
}

const fmt = (v: number | null | undefined) => (v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(2));

/** results.md: the paper-shaped table (benchmarks as columns, then the averages), then the counts behind it. */
export function renderResultsMarkdown(doc: {
  title: string;
  benchmarks: Record<string, BenchmarkResult>;
  summary: Record<string, number | null> | null;
  averageKeys: string[];
  notes: string[];
}): string {
  const keys = Object.keys(doc.benchmarks);
  const heads = [...keys.map((k) => doc.benchmarks[k].display + (doc.benchmarks[k].complete ? '' : '*')), ...doc.averageKeys];
  const vals = [...keys.map((k) => fmt(doc.benchmarks[k].pass1)), ...doc.averageKeys.map((a) => fmt(doc.summary?.[a]))];
  const lines: string[] = [];
  lines.push(`# ${doc.title}`, '');
  lines.push(`| model | ${heads.join(' | ')} |`);
  lines.push(`| --- | ${heads.map(() => '---:').join(' | ')} |`);
  lines.push(`| ${escapeCell(doc.title.replace(/^Pass@1: /, ''))} | ${vals.join(' | ')} |`, '');
  lines.push('| benchmark | file | problems | samples/problem | finished | errors | correct | Pass@1 | truncated | mean tokens |');
  lines.push('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const k of keys) {
    const b = doc.benchmarks[k];
    const trunc = b.finished ? (100 * (b.finishReasons.length ?? 0)) / b.finished : null;
    lines.push(
      `| ${b.display} | ${escapeCell(path.basename(b.file))} | ${b.problems} | ${b.samplesPerProblem} | ${b.finished} | ${b.errors} | ${b.correct} | ${fmt(b.pass1)} | ${trunc === null ? '–' : trunc.toFixed(1) + '%'} | ${b.meanCompletionTokens === null ? '–' : b.meanCompletionTokens.toFixed(0)} |`,
    );
  }
  if (doc.notes.length) lines.push('', ...doc.notes.map((n) => `- ${n}`));
  return lines.join('\n') + '\n';
}

function escapeCell(s: string): string {
  return s.replace(/\|/g, '\\|');
}
