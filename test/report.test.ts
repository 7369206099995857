// Report pictures and writer: charts render to well-formed SVG with one line per (metric, arm) and one point per
// embedding; UMAP maps are seeded and keep separated clusters apart; report.md and summary.json carry the numbers.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { embeddingMapSpec, metricsChartSpec, renderSvg } from '../src/report/charts.js';
import { embed2d, pca2d } from '../src/report/embedding.js';
import { averageRuns, markdownTable, readMetricsJsonl, summarizeEvals, writeReport } from '../src/report/report.js';
import { wilsonInterval } from '../src/report/stats.js';
import { Rng } from '../src/util/rng.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'clipo-report-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Well-formedness of the SVG: every tag closes in order (a small XML check, no attributes parsed). */
function expectWellFormedSvg(svg: string): void {
  expect(svg.startsWith('<svg')).toBe(true);
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([A-Za-z][\w:-]*)[^>]*?(\/?)>/g)) {
    const [, close, name, selfClose] = m;
    if (selfClose) continue;
    if (close) expect(stack.pop()).toBe(name);
    else stack.push(name!);
  }
  expect(stack).toEqual([]);
  expect(svg).not.toMatch(/NaN|undefined/);
}
const count = (s: string, what: string) => s.split(what).length - 1;

function randomRows(rng: Rng, steps: number, withClipo: boolean) {
  return Array.from({ length: steps }, (_, i) => ({
    step: i + 1,
    reward_mean: 0.3 + 0.01 * i + 0.02 * rng.normal(),
    accuracy: 0.3 + 0.01 * i,
    contrastive_loss: withClipo ? 2 - 0.05 * i : null,
    positive_cos_mean: withClipo ? 0.4 + 0.02 * i : null,
  }));
}

/** Two well-separated Gaussian clusters in `dim` dimensions; label = cluster. */
function clusters(rng: Rng, n: number, dim: number, gap: number) {
  const v = new Float32Array(n * dim);
  const label = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    label[i] = i % 2;
    for (let j = 0; j < dim; j++) v[i * dim + j] = rng.normal() + (label[i] && j < 3 ? gap : 0);
  }
  return { v, label };
}

describe('charts', () => {
  test('metrics chart: one line per metric and arm, well-formed SVG', async () => {
    const rng = new Rng(1);
    const series = [
      { arm: 'GRPO', rows: randomRows(rng, 12, false) },
      { arm: 'GRPO+CLIPO', rows: randomRows(rng, 12, true) },
    ];
    const svg = await renderSvg(metricsChartSpec(series, [{ key: 'reward_mean', title: 'reward' }, { key: 'accuracy', title: 'accuracy' }], { title: 'T' }));
    expectWellFormedSvg(svg);
    expect(count(svg, 'aria-roledescription="line mark"')).toBe(4);
    // the contrastive panels: GRPO has no figures, so only the CLIPO arm draws
    const svg2 = await renderSvg(metricsChartSpec(series, [{ key: 'contrastive_loss', title: 'loss' }, { key: 'positive_cos_mean', title: 'cos' }]));
    expectWellFormedSvg(svg2);
    expect(count(svg2, 'aria-roledescription="line mark"')).toBe(2);
    expect(svg2).toContain('GRPO+CLIPO');
  });

  test('embedding map: one point per vector, in panels', async () => {
    const pts = Array.from({ length: 37 }, (_, i) => ({ x: Math.sin(i), y: Math.cos(3 * i), correct: i % 3 === 0, panel: i < 20 ? 'start' : 'end' }));
    const svg = await renderSvg(embeddingMapSpec(pts, { panels: ['start', 'end'] }));
    expectWellFormedSvg(svg);
    expect(count(svg, 'aria-roledescription="point"')).toBe(37);
    expect(svg.indexOf('>start<')).toBeLessThan(svg.indexOf('>end<'));
  });
});

describe('embedding maps', () => {
  test('UMAP is deterministic by seed and keeps separated clusters apart', () => {
    const { v, label } = clusters(new Rng(2), 60, 16, 8);
    const opts = { seed: 5, nEpochs: 100 };
    const a = embed2d(v, 16, opts);
    expect(embed2d(v, 16, opts)).toEqual(a);
    expect(embed2d(v, 16, { ...opts, seed: 6 })).not.toEqual(a);
    // every point's nearest neighbour in the map comes from its own cluster
    let same = 0;
    a.forEach(([x, y], i) => {
      let best = -1;
      let bd = Infinity;
      a.forEach(([x2, y2], j) => {
        const d = (x - x2) ** 2 + (y - y2) ** 2;
        if (j !== i && d < bd) [bd, best] = [d, j];
      });
      if (label[best] === label[i]) same++;
    });
    expect(same).toBe(60);
  });

  test('PCA recovers the direction of largest variance; tiny sets fall back to it', () => {
    const rows = Array.from({ length: 50 }, (_, i) => [10 * Math.sin(i), 0.1 * Math.cos(i * 7), 0]);
    const xy = pca2d(rows);
    const spreadX = Math.max(...xy.map((p) => Math.abs(p[0])));
    const spreadY = Math.max(...xy.map((p) => Math.abs(p[1])));
    expect(spreadX).toBeGreaterThan(9);
    expect(spreadY).toBeLessThan(0.2);
    expect(embed2d([[0, 1], [1, 0], [2, 2]]).length).toBe(3);
  });

  test('bad input is refused with a message', () => {
    expect(() => embed2d(new Float32Array(10), 3)).toThrow(/not a whole number of rows/);
    expect(() => embed2d(Float32Array.from([1, 2, NaN, 4, 5, 6, 7, 8]), 2)).toThrow(/row 1 has a non-finite/);
  });
});

describe('report writer', () => {
  test('averageRuns and markdownTable', () => {
    const avg = averageRuns(
      [
        { arm: 'a', seed: 0, rows: [{ step: 1, r: 1 }, { step: 2, r: 3, c: null }] },
        { arm: 'a', seed: 1, rows: [{ step: 2, r: 5 }, { step: 1, r: 2 }] },
      ],
      ['r', 'c'],
    );
    expect(avg).toEqual([{ step: 1, r: 1.5 }, { step: 2, r: 4 }]);
    expect(markdownTable(['a', 'b|c'], [['1', '2']])).toBe('| a | b\\|c |\n| --- | --- |\n| 1 | 2 |');
  });

  test('readMetricsJsonl reads rows and names a bad line', () => {
    const f = path.join(tmp, 'metrics.jsonl');
    writeFileSync(f, '{"step":1,"accuracy":0.5}\n\n{"step":2,"accuracy":null}\n');
    expect(readMetricsJsonl(f)).toEqual([{ step: 1, accuracy: 0.5 }, { step: 2, accuracy: null }]);
    writeFileSync(f, '{"step":1}\n{"accuracy":1}\n');
    expect(() => readMetricsJsonl(f)).toThrow(/metrics.jsonl:2: a metrics row needs a numeric 'step'/);
    writeFileSync(f, '{"step":1}\nnope\n');
    expect(() => readMetricsJsonl(f)).toThrow(/metrics.jsonl:2: not a JSON object/);
  });

  test('one seed: Pass@1 ± SE over problems, paired over problems', () => {
    const s = summarizeEvals({
      baseline: 'G',
      treatment: 'C',
      evals: [
        { arm: 'G', seed: 0, split: 'test', scores: [1, 0, 0, 1] },
        { arm: 'C', seed: 0, split: 'test', scores: [1, 1, 0, 1] },
      ],
    });
    expect(s[0]!.arms.G!.mean).toBeCloseTo(50, 12);
    expect(s[0]!.arms.G!.se).toBeCloseTo(100 * Math.sqrt(1 / 3) / 2, 10); // s = sqrt(1/3), n = 4
    expect(s[0]!.difference!.unit).toBe('problems');
    expect(s[0]!.difference!.mean).toBeCloseTo(25, 12);
  });

  test('several seeds: report.md, figures and summary.json with the paired-seed interval', async () => {
    const rng = new Rng(3);
    const evals = [];
    const metrics = [];
    // per-seed Pass@1: G = 40, 50, 45 ; C = 50, 55, 50 -> d = 10, 5, 5: mean 6.667, se = 1.667, t(0.975, 2) = 4.3027
    const passes: Record<string, number[]> = { G: [0.4, 0.5, 0.45], C: [0.5, 0.55, 0.5] };
    for (const arm of ['G', 'C']) {
      for (const seed of [0, 1, 2]) {
        const k = Math.round(passes[arm]![seed]! * 20);
        for (const split of ['test', 'p1']) evals.push({ arm, seed, split, scores: Array.from({ length: 20 }, (_, i) => (i < k ? 1 : 0)) });
        metrics.push({ arm, seed, rows: randomRows(rng, 8, arm === 'C') });
      }
    }
    const { v, label } = clusters(rng, 60, 8, 6);
    const dir = path.join(tmp, 'r1');
    const summary = await writeReport(dir, {
      title: 'Demo report',
      intro: ['A test.'],
      baseline: 'G',
      treatment: 'C',
      evals,
      metrics,
      embeddings: [
        { arm: 'C', seed: 0, phase: 'start', vectors: v.slice(0, 30 * 8), dim: 8, correct: label.slice(0, 30) },
        { arm: 'C', seed: 0, phase: 'end', vectors: v.slice(30 * 8), dim: 8, correct: label.slice(30) },
      ],
      timings: [{ phase: 'warm-up', seconds: 12.5 }, { phase: 'GRPO', seconds: 30 }],
      notes: ['a note'],
    });
    const d = summary.splits[0]!.difference!;
    expect(d.unit).toBe('seeds');
    expect(d.mean).toBeCloseTo(20 / 3, 9);
    expect(d.se).toBeCloseTo(5 / 3, 9);
    expect(d.lo).toBeCloseTo(20 / 3 - 4.30265273 * (5 / 3), 6);
    expect(summary.splits[0]!.arms.C!.mean).toBeCloseTo(51.6667, 3);
    expect(summary.totalSeconds).toBe(42.5);
    expect(summary.figures).toEqual(['figures/reward-accuracy.svg', 'figures/contrastive.svg', 'figures/embeddings.svg']);
    const md = readFileSync(path.join(dir, 'report.md'), 'utf8');
    expect(md).toContain('| test | 45.0 ± 2.9 | 51.7 ± 1.7 | +6.7 [−0.5, +13.8] | no clear difference |');
    expect(md).toContain('| total | 42.5 |');
    for (const f of summary.figures) {
      expect(md).toContain(`](${f})`);
      expectWellFormedSvg(readFileSync(path.join(dir, f), 'utf8'));
    }
    expect(count(readFileSync(path.join(dir, 'figures/embeddings.svg'), 'utf8'), 'aria-roledescription="point"')).toBe(60);
    const json = JSON.parse(readFileSync(path.join(dir, 'summary.json'), 'utf8'));
    expect(json.splits.map((s: { split: string }) => s.split)).toEqual(['test', 'p1']);
  });

  test('comparisons: an arm with several seeds against one starting model, and the process check per arm', async () => {
    // start: 8/20 on test; R: 12, 14, 13 of 20 -> d = 20, 30, 25 points: mean 25, se = 5/sqrt(3), t(0.975, 2) = 4.30265273
    const evals = [];
    const ok = (k: number) => Array.from({ length: 20 }, (_, i) => (i < k ? 1 : 0));
    evals.push({ arm: 'S', seed: 1, split: 'test', scores: ok(8), process: ok(8).map((v, i) => (v ? (i < 2 ? 1 : 0) : null)) as (0 | 1 | null)[] });
    [12, 14, 13].forEach((k, i) => evals.push({ arm: 'R', seed: i + 1, split: 'test', scores: ok(k), process: ok(k).map((v) => (v ? 1 : null)) as (0 | 1 | null)[] }));
    [12, 12, 12].forEach((k, i) => evals.push({ arm: 'C', seed: i + 1, split: 'test', scores: ok(k) }));
    const dir = path.join(tmp, 'r3');
    const summary = await writeReport(dir, {
      title: 'T', baseline: 'R', treatment: 'C', evals, metrics: [],
      comparisons: [{ treatment: 'R', baseline: 'S' }, { treatment: 'C', baseline: 'R' }],
    });
    const [rs, cr] = summary.splits[0]!.differences;
    expect(rs!.treatment).toBe('R');
    expect(rs!.difference!.unit).toBe('seeds');
    expect(rs!.difference!.n).toBe(3);
    expect(rs!.difference!.mean).toBeCloseTo(25, 9);
    expect(rs!.difference!.se).toBeCloseTo(5 / Math.sqrt(3), 9);
    expect(rs!.difference!.lo).toBeCloseTo(25 - 4.30265273 * (5 / Math.sqrt(3)), 6);
    // C − R pairs seeds: d = 0, −10, −5
    expect(cr!.difference!.mean).toBeCloseTo(-5, 9);
    // process: S has 2 of its 8 right answers through the right steps; R all 39; C carries no check
    const p = summary.splits[0]!.process;
    expect(p.S!.correct).toBe(8);
    expect(p.S!.withCorrectSteps).toBe(2);
    expect(p.S!.share).toBeCloseTo(25, 9);
    expect(p.S!.lo).toBeCloseTo(100 * wilsonInterval(2, 8).lo, 9);
    expect(p.R!.correct).toBe(39);
    expect(p.R!.hi).toBe(100);
    expect(p.C).toBeUndefined();
    const md = readFileSync(path.join(dir, 'report.md'), 'utf8');
    expect(md).toContain('## Differences (percentage points, 95% CI)');
    expect(md).toMatch(/\| test \| \+25\.0 \[\+12\.6, \+37\.4\] higher \| −5\.0 \[/);
    expect(md).toContain('## Process check: correct answers reached through correct steps (%)');
    expect(md).toContain('| test | 100.0 [91.0, 100.0] (39/39) | 25.0 [7.1, 59.1] (2/8) |');
    const json = JSON.parse(readFileSync(path.join(dir, 'summary.json'), 'utf8'));
    expect(json.splits[0].process.S.withCorrectSteps).toBe(2);
    expect(json.splits[0].differences[0].difference.mean).toBeCloseTo(25, 9);
  });

  test('without metrics or embeddings it writes the table only', async () => {
    const dir = path.join(tmp, 'r2');
    const s = await writeReport(dir, { title: 'T', baseline: 'G', treatment: 'C', evals: [{ arm: 'G', seed: 0, split: 'x', scores: [1, 0] }], metrics: [] });
    expect(s.figures).toEqual([]);
    expect(existsSync(path.join(dir, 'figures'))).toBe(false);
    expect(readFileSync(path.join(dir, 'report.md'), 'utf8')).toContain('| x | 50.0 ± 50.0 | — | — | not enough pairs |');
  });
});
