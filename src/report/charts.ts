// Pictures for reports, rendered in Node without a browser: a Vega-Lite spec is compiled to Vega and drawn to SVG
// by a headless view (renderer 'none'). Charts: metrics against step with one line per run ("arm"), one panel per
// metric (reward and accuracy; the paper's Figure 5: contrastive loss and mean positive-pair cosine), and a 2-D map
// of head embeddings coloured correct / incorrect, at the start and the end of training (the paper's Figure 4).
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

/** One metrics row: a step and figures (metrics.jsonl rows; null or missing figures are skipped). */
export type MetricRow = { step: number } & Record<string, unknown>;

export interface MetricSeries {
  /** the line's label, e.g. "GRPO" or "GRPO+CLIPO" */
  arm: string;
  rows: readonly MetricRow[];
}

export interface MetricPanel {
  key: string;
  title: string;
}

const SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';

/** Long-form points {metric, arm, step, value} for the finite figures of each panel's key. */
export function metricPoints(series: readonly MetricSeries[], panels: readonly MetricPanel[]): { metric: string; arm: string; step: number; value: number }[] {
  const out: { metric: string; arm: string; step: number; value: number }[] = [];
  for (const p of panels) {
    for (const s of series) {
      for (const row of s.rows) {
        const v = row[p.key];
        if (typeof v === 'number' && Number.isFinite(v) && Number.isFinite(row.step)) out.push({ metric: p.title, arm: s.arm, step: row.step, value: v });
      }
    }
  }
  return out;
}

/** Line chart: one panel per metric (side by side, independent y scales), one coloured line per arm. */
export function metricsChartSpec(
  series: readonly MetricSeries[],
  panels: readonly MetricPanel[],
  opts: { title?: string; width?: number; height?: number; /** every arm of the report, so colours agree across charts */ arms?: readonly string[] } = {},
): TopLevelSpec {
  const arms = opts.arms ?? series.map((s) => s.arm);
  const values = metricPoints(series, panels);
  return {
    $schema: SCHEMA,
    ...(opts.title ? { title: opts.title } : {}),
    data: { values },
    facet: { column: { field: 'metric', type: 'nominal', title: null, sort: panels.map((p) => p.title) } },
    spec: {
      width: opts.width ?? 280,
      height: opts.height ?? 180,
      mark: { type: 'line', interpolate: 'linear' },
      encoding: {
        x: { field: 'step', type: 'quantitative', title: 'step' },
        y: { field: 'value', type: 'quantitative', title: null, scale: { zero: false } },
        color: { field: 'arm', type: 'nominal', title: null, scale: { domain: [...arms] } },
      },
    },
    resolve: { scale: { y: 'independent' } },
    config: { font: 'sans-serif' },
  } as TopLevelSpec;
}

export interface MapPoint {
  x: number;
  y: number;
  correct: boolean;
  /** panel label, e.g. "start" or "end" */
  panel: string;
}

/** Scatter of 2-D embedding coordinates, one panel per label, coloured correct / incorrect. */
export function embeddingMapSpec(points: readonly MapPoint[], opts: { title?: string; size?: number; panels?: readonly string[] } = {}): TopLevelSpec {
  const values = points.map((p) => ({ x: p.x, y: p.y, panel: p.panel, outcome: p.correct ? 'correct' : 'incorrect' }));
  const panels = opts.panels ?? [...new Set(points.map((p) => p.panel))];
  return {
    $schema: SCHEMA,
    ...(opts.title ? { title: opts.title } : {}),
    data: { values },
    facet: { column: { field: 'panel', type: 'nominal', title: null, sort: [...panels] } },
    spec: {
      width: opts.size ?? 240,
      height: opts.size ?? 240,
      mark: { type: 'point', filled: true, size: 22, opacity: 0.75 },
      encoding: {
        x: { field: 'x', type: 'quantitative', axis: null, scale: { zero: false } },
        y: { field: 'y', type: 'quantitative', axis: null, scale: { zero: false } },
        color: {
          field: 'outcome',
          type: 'nominal',
          title: null,
          scale: { domain: ['correct', 'incorrect'], range: ['#1b9e77', '#d95f02'] },
        },
      },
    },
    resolve: { scale: { x: 'independent', y: 'independent' } },
    config: { font: 'sans-serif' },
  } as TopLevelSpec;
}

/** Renders a Vega-Lite spec to an SVG document. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
