// The run report: report.md with the Pass@1 table (split × arm, with standard errors), the paired
// treatment - baseline differences with 95% confidence intervals, the phase timings, and the pictures (SVG), plus
// summary.json with the same numbers for scripts. Inputs are plain data so any driver (the demo, a sweep script)
// can call it: evaluation scores per problem, metrics.jsonl rows per run, head embeddings at two moments.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic.js';
import { maxOf, mean, minOf } from '../util/stats.js';
import { type MetricPanel, type MetricRow, type MetricSeries, embeddingMapSpec, metricsChartSpec, renderSvg, type MapPoint } from './charts.js';
import { embed2d } from './embedding.js';
import { type PairedDifference, meanWithSE, pairedDifference, wilsonInterval } from './stats.js';

/** Per-problem scores of one arm and seed on one split: Pass@1 of each problem in [0, 1] (the mean over its
 *  samples), in the split's problem order, so that arms evaluated on the same split pair up problem by problem. */
export interface EvalResult {
  arm: string;
  seed: number;
  split: string;
  scores: readonly number[];
  /** the process check per problem, where the task knows the true steps: 1 right answer through the right steps,
   *  0 right answer through wrong steps, null wrong answer */
  process?: readonly (0 | 1 | null)[];
}

export interface RunMetrics {
  arm: string;
  seed: number;
  rows: readonly MetricRow[];
}

/** Head embeddings [n × dim] of one arm at one moment ("start", "end"), with each response's correctness. */
export interface EmbeddingSnapshot {
  arm: string;
  seed: number;
  phase: string;
  vectors: Float32Array | Float64Array;
  dim: number;
  correct: ArrayLike<number | boolean>;
}

export interface PhaseTiming {
  phase: string;
  seconds: number;
}

export interface ReportInput {
  title: string;
  /** paragraphs under the title (setup, model, budget) */
  intro?: readonly string[];
  baseline: string;
  treatment: string;
  /** differences to tabulate, each `treatment − baseline` with its 95% CI (default: the one above) */
  comparisons?: readonly Comparison[];
  /** split order of the table; default: order of first appearance in `evals` */
  splits?: readonly string[];
  evals: readonly EvalResult[];
  metrics: readonly RunMetrics[];
  embeddings?: readonly EmbeddingSnapshot[];
  timings?: readonly PhaseTiming[];
  notes?: readonly string[];
  /** seed of the embedding maps' layout */
  mapSeed?: number;
}

export interface Comparison {
  treatment: string;
  baseline: string;
}

export type SplitDifference = PairedDifference & { unit: 'seeds' | 'problems' };

export interface SplitSummary {
  split: string;
  /** Pass@1 in percent per arm: mean ± standard error (over problems for one seed, over seeds' Pass@1 for several) */
  arms: Record<string, { mean: number; se: number; n: number; seeds: number }>;
  /** treatment - baseline in percentage points; `unit` says what was paired */
  difference: SplitDifference | null;
  /** every comparison's difference in percentage points, in the order of `comparisons` */
  differences: Array<Comparison & { difference: SplitDifference | null }>;
  /** the process check per arm: of the correct answers (pooled over seeds), the share reached through the right
   *  steps, in percent, with its 95% Wilson interval; only arms whose evaluation carried the check */
  process: Record<string, { share: number; lo: number; hi: number; correct: number; withCorrectSteps: number }>;
}

export interface ReportSummary {
  title: string;
  baseline: string;
  treatment: string;
  splits: SplitSummary[];
  timings: PhaseTiming[];
  totalSeconds: number;
  figures: string[];
}

export const REWARD_PANELS: MetricPanel[] = [
  { key: 'reward_mean', title: 'reward (mean)' },
  { key: 'accuracy', title: 'accuracy' },
  { key: 'process_correct_frac', title: 'correct answers with correct steps' },
];
export const CONTRASTIVE_PANELS: MetricPanel[] = [
  { key: 'contrastive_loss', title: 'contrastive loss' },
  { key: 'positive_cos_mean', title: 'positive-pair cosine (mean)' },
];

/** Reads a metrics.jsonl file (one object with a numeric `step` per line); names the line of a bad row. */
export function readMetricsJsonl(file: string): MetricRow[] {
  const rows: MetricRow[] = [];
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((line, i) => {
      if (!line.trim()) return;
      let row: unknown;
      try {
        row = JSON.parse(line);
      } catch {
        throw new Error(`${file}:${i + 1}: not a JSON object`);
      }
      if (typeof row !== 'object' || row === null || typeof (row as MetricRow).step !== 'number') throw new Error(`${file}:${i + 1}: a metrics row needs a numeric 'step'`);
      rows.push(row as MetricRow);
    });
  return rows;
}

/** Mean over seeds of each finite figure at each step. */
export function averageRuns(runs: readonly RunMetrics[], keys: readonly string[]): MetricRow[] {
  const bySteps = new Map<number, Map<string, number[]>>();
  for (const run of runs) {
    for (const row of run.rows) {
      let m = bySteps.get(row.step);
      if (!m) bySteps.set(row.step, (m = new Map()));
      for (const k of keys) {
        const v = row[k];
        if (typeof v === 'number' && Number.isFinite(v)) {
          if (!m.has(k)) m.set(k, []);
          m.get(k)!.push(v);
        }
      }
    }
  }
  return [...bySteps.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([step, m]) => ({ step, ...Object.fromEntries([...m.entries()].map(([k, vs]) => [k, mean(vs)])) }));
}

function uniq<T>(xs: readonly T[]): T[] {
  return [...new Set(xs)];
}

/**
 * treatment − baseline in percentage points on one split. Several seeds in both arms: paired seed by seed. One
 * baseline run (a fixed starting model) and several treatment seeds: each seed's Pass@1 minus the baseline's, an
 * interval over seeds. One seed each: paired problem by problem (this one pair of runs, not run-to-run variation).
 */
export function splitDifference(t: ReadonlyMap<number, readonly number[]>, b: ReadonlyMap<number, readonly number[]>): SplitDifference | null {
  const seeds = [...t.keys()].filter((s) => b.has(s)).sort((x, y) => x - y);
  if (seeds.length >= 2) {
    return { ...pairedDifference(seeds.map((s) => 100 * mean(t.get(s)!)), seeds.map((s) => 100 * mean(b.get(s)!))), unit: 'seeds' };
  }
  if (b.size === 1 && t.size >= 2) {
    const base = 100 * mean([...b.values()][0]!);
    const ts = [...t.keys()].sort((x, y) => x - y).map((s) => 100 * mean(t.get(s)!));
    return { ...pairedDifference(ts, ts.map(() => base)), unit: 'seeds' };
  }
  if (seeds.length === 1 && t.get(seeds[0]!)!.length === b.get(seeds[0]!)!.length) {
    return { ...pairedDifference(t.get(seeds[0]!)!.map((v) => 100 * v), b.get(seeds[0]!)!.map((v) => 100 * v)), unit: 'problems' };
  }
  return null;
}

/** Pass@1 table rows, paired differences (percent / percentage points) and the process check per arm. */
export function summarizeEvals(input: Pick<ReportInput, 'evals' | 'baseline' | 'treatment' | 'splits' | 'comparisons'>): SplitSummary[] {
  const splits = input.splits ?? uniq(input.evals.map((e) => e.split));
  const arms = uniq([input.baseline, input.treatment, ...input.evals.map((e) => e.arm)]);
  const comparisons = input.comparisons ?? [{ treatment: input.treatment, baseline: input.baseline }];
  return splits.map((split) => {
    const perArm: SplitSummary['arms'] = {};
    const process: SplitSummary['process'] = {};
    const perSeed = (arm: string) => new Map(input.evals.filter((e) => e.split === split && e.arm === arm).map((e) => [e.seed, e.scores]));
    for (const arm of arms) {
      const runs = perSeed(arm);
      if (runs.size === 0) continue;
      const s = runs.size === 1 ? meanWithSE([...runs.values()][0]!) : meanWithSE([...runs.values()].map((sc) => mean(sc)));
      perArm[arm] = { mean: 100 * s.mean, se: 100 * s.se, n: runs.size === 1 ? s.n : [...runs.values()][0]!.length, seeds: runs.size };
      const checks = input.evals.filter((e) => e.split === split && e.arm === arm && e.process).flatMap((e) => e.process!.filter((v) => v !== null));
      if (checks.length || input.evals.some((e) => e.split === split && e.arm === arm && e.process)) {
        const w = wilsonInterval(checks.filter((v) => v === 1).length, checks.length);
        process[arm] = { share: 100 * w.share, lo: 100 * w.lo, hi: 100 * w.hi, correct: w.n, withCorrectSteps: w.k };
      }
    }
    const differences = comparisons.map((c) => ({ ...c, difference: splitDifference(perSeed(c.treatment), perSeed(c.baseline)) }));
    const main = differences.find((d) => d.treatment === input.treatment && d.baseline === input.baseline);
    return { split, arms: perArm, difference: main ? main.difference : splitDifference(perSeed(input.treatment), perSeed(input.baseline)), differences, process };
  });
}

const fmt = (v: number, digits = 1) => (Number.isFinite(v) ? v.toFixed(digits) : 'n/a');
const signed = (v: number, digits = 1) => (Number.isFinite(v) ? `${v >= 0 ? '+' : '−'}${Math.abs(v).toFixed(digits)}` : 'n/a');

export function markdownTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  return [
    `| ${headers.map(esc).join(' | ')} |`,
    `| ${headers.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

/** "higher" / "lower" when the interval excludes 0, else "no clear difference". */
export function readDifference(d: PairedDifference | null): string {
  if (!d || !Number.isFinite(d.lo)) return 'not enough pairs';
  if (d.lo > 0) return 'higher';
  if (d.hi < 0) return 'lower';
  return 'no clear difference';
}

/** Embedding-map points of one arm: each snapshot laid out on its own (UMAP), as panel `phase`. */
export function mapPoints(snapshots: readonly EmbeddingSnapshot[], seed = 0): MapPoint[] {
  const points: MapPoint[] = [];
  for (const s of snapshots) {
    const n = s.vectors.length / s.dim;
    if (s.correct.length !== n) throw new Error(`embedding snapshot '${s.phase}': ${n} vectors but ${s.correct.length} correctness labels`);
    if (n === 0) continue;
    const xy = embed2d(s.vectors, s.dim, { seed });
    xy.forEach(([x, y], i) => points.push({ x, y, correct: !!s.correct[i], panel: s.phase }));
  }
  return points;
}

/** Writes report.md, summary.json and figures/*.svg under `dir`; returns the summary. */
export async function writeReport(dir: string, input: ReportInput): Promise<ReportSummary> {
  const figures: string[] = [];
  const figure = async (name: string, svg: Promise<string>) => {
    const rel = `figures/${name}.svg`;
    writeFileAtomic(path.join(dir, rel), await svg);
    figures.push(rel);
    return rel;
  };
  const arms = uniq([input.baseline, input.treatment, ...input.metrics.map((m) => m.arm)]);
  const seriesFor = (panels: MetricPanel[]): MetricSeries[] =>
    arms
      .map((arm) => ({ arm, rows: averageRuns(input.metrics.filter((m) => m.arm === arm), panels.map((p) => p.key)) }))
      .filter((s) => s.rows.some((r) => panels.some((p) => typeof r[p.key] === 'number')));

  const md: string[] = [`# ${input.title}`, ''];
  for (const p of input.intro ?? []) md.push(p, '');

  // ---- results table
  const summary = summarizeEvals(input);
  const tableArms = uniq([input.baseline, input.treatment, ...input.evals.map((e) => e.arm)]);
  const seedsMax = maxOf(summary.flatMap((s) => Object.values(s.arms).map((a) => a.seeds)), 0);
  md.push('## Pass@1 (%)', '');
  md.push(
    markdownTable(
      ['split', ...tableArms, `${input.treatment} − ${input.baseline} (95% CI)`, 'reading'],
      summary.map((s) => [
        s.split,
        ...tableArms.map((a) => (s.arms[a] ? `${fmt(s.arms[a]!.mean)} ± ${fmt(s.arms[a]!.se)}` : '—')),
        s.difference ? `${signed(s.difference.mean)} [${signed(s.difference.lo)}, ${signed(s.difference.hi)}]` : '—',
        readDifference(s.difference),
      ]),
    ),
    '',
  );
  md.push(
    seedsMax > 1
      ? `Each cell: mean Pass@1 over ${seedsMax} seeds ± the standard error over seeds. Differences pair the two arms seed by seed ` +
          '(same seed, same start, same data order); the interval is a two-sided 95% Student-t interval over seeds. ' +
          '"higher"/"lower" means the interval excludes zero.'
      : 'Each cell: Pass@1 over the split ± its standard error over problems. With one seed the difference pairs the arms ' +
          'problem by problem, which measures this one pair of runs, not the variation between training runs; run more seeds ' +
          'for that.',
    '',
  );
  if (input.comparisons?.length) {
    const cell = (d: SplitDifference | null) => (d ? `${signed(d.mean)} [${signed(d.lo)}, ${signed(d.hi)}] ${readDifference(d)}` : '—');
    md.push('## Differences (percentage points, 95% CI)', '');
    md.push(markdownTable(['split', ...input.comparisons.map((c) => `${c.treatment} − ${c.baseline}`)], summary.map((s) => [s.split, ...s.differences.map((d) => cell(d.difference))])), '');
    md.push(
      'A difference against a single starting model, when the arm has several seeds, is each seed\'s Pass@1 minus the ' +
        'start\'s, with a Student-t interval over seeds; otherwise as above.',
      '',
    );
  }
  const processArms = tableArms.filter((a) => summary.some((s) => s.process[a]));
  if (processArms.length) {
    md.push('## Process check: correct answers reached through correct steps (%)', '');
    md.push(
      markdownTable(
        ['split', ...processArms],
        summary.map((s) => [s.split, ...processArms.map((a) => {
          const p = s.process[a];
          return p && p.correct > 0 ? `${fmt(p.share)} [${fmt(p.lo)}, ${fmt(p.hi)}] (${p.withCorrectSteps}/${p.correct})` : '—';
        })]),
      ),
      '',
    );
    md.push(
      'Of the responses whose final answer is right (pooled over seeds), the share whose worked steps are the true ones: ' +
        'the same equations as the reference solution, in order, none missing or extra, each with the true operands and ' +
        'result. The interval is a 95% Wilson interval over those responses. A right answer through wrong steps is what ' +
        'an outcome reward cannot tell apart.',
      '',
    );
  }

  // ---- pictures
  const rewardSeries = seriesFor(REWARD_PANELS);
  if (rewardSeries.length) {
    const rel = await figure('reward-accuracy', renderSvg(metricsChartSpec(rewardSeries, REWARD_PANELS, { title: 'Training reward and accuracy', arms })));
    md.push('## Training curves', '', `![reward and accuracy against step](${rel})`, '');
  }
  const contrastiveSeries = seriesFor(CONTRASTIVE_PANELS);
  if (contrastiveSeries.length) {
    const rel = await figure('contrastive', renderSvg(metricsChartSpec(contrastiveSeries, CONTRASTIVE_PANELS, { title: 'Contrastive loss and positive-pair cosine', arms })));
    if (!rewardSeries.length) md.push('## Training curves', '');
    md.push(`![contrastive loss and mean positive-pair cosine similarity against step](${rel})`, '');
  }
  const snaps = (input.embeddings ?? []).filter((e) => e.arm === input.treatment);
  if (snaps.length) {
    const firstSeed = minOf(snaps.map((s) => s.seed));
    const chosen = snaps.filter((s) => s.seed === firstSeed);
    const points = mapPoints(chosen, input.mapSeed ?? 0);
    const rel = await figure('embeddings', renderSvg(embeddingMapSpec(points, { title: `${input.treatment}: head embeddings (UMAP)`, panels: chosen.map((s) => s.phase) })));
    md.push('## Embedding map', '', `![head embeddings, correct vs incorrect, ${chosen.map((s) => s.phase).join(' vs ')}](${rel})`, '');
    md.push(`UMAP of the contrastive head's embeddings of ${chosen.map((s) => `${s.vectors.length / s.dim} responses (${s.phase})`).join(' and ')}, seed ${firstSeed}; colour: verifier outcome.`, '');
  }

  // ---- timings
  const timings = [...(input.timings ?? [])];
  const total = timings.reduce((t, p) => t + p.seconds, 0);
  if (timings.length) {
    md.push('## Time', '');
    md.push(markdownTable(['phase', 'seconds'], [...timings.map((t) => [t.phase, fmt(t.seconds)]), ['total', fmt(total)]]), '');
  }
  if (input.notes?.length) {
    md.push('## Notes', '');
    for (const n of input.notes) md.push(`- ${n}`);
    md.push('');
  }
  writeFileAtomic(path.join(dir, 'report.md'), md.join('\n'));
  const result: ReportSummary = { title: input.title, baseline: input.baseline, treatment: input.treatment, splits: summary, timings, totalSeconds: total, figures };
  writeJsonAtomic(path.join(dir, 'summary.json'), result);
  return result;
}
