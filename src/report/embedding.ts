// 2-D maps of embedding vectors for the report's Figure-4-style picture: UMAP (umap-js) with a seeded random
// source, so the same vectors and seed give the same map. PCA (power iteration) is the fallback for tiny sets
// and an option of its own.
import { UMAP } from 'umap-js';
import { Rng } from '../util/rng.js';

export interface MapOptions {
  seed?: number;
  method?: 'umap' | 'pca';
  /** UMAP neighbourhood size (clamped to n - 1); default 15 */
  nNeighbors?: number;
  /** UMAP optimisation epochs; default 200 (umap-js uses 500, which is slower and changes little at this size) */
  nEpochs?: number;
  minDist?: number;
}

/** Rows of a row-major [n × dim] matrix as arrays (umap-js's input). */
export function toRows(data: Float32Array | Float64Array | readonly (readonly number[])[], dim?: number): number[][] {
  if (Array.isArray(data)) return data.map((r) => [...r]);
  const flat = data as Float32Array | Float64Array;
  if (!dim || dim <= 0 || flat.length % dim !== 0) throw new Error(`embedding map: ${flat.length} values are not a whole number of rows of ${dim}`);
  const rows: number[][] = [];
  for (let i = 0; i < flat.length; i += dim) rows.push(Array.from(flat.subarray(i, i + dim)));
  return rows;
}

function checkFinite(rows: number[][]): void {
  const dim = rows[0]?.length ?? 0;
  rows.forEach((r, i) => {
    if (r.length !== dim) throw new Error(`embedding map: row ${i} has ${r.length} values, row 0 has ${dim}`);
    if (!r.every(Number.isFinite)) throw new Error(`embedding map: row ${i} has a non-finite value`);
  });
}

/** Projection on the top two principal components (centred; power iteration with deflation). */
export function pca2d(rows: number[][], seed = 0): [number, number][] {
  const n = rows.length;
  const dim = rows[0]?.length ?? 0;
  if (n === 0) return [];
  const mu = new Float64Array(dim);
  for (const r of rows) for (let j = 0; j < dim; j++) mu[j]! += r[j]! / n;
  const X = rows.map((r) => r.map((v, j) => v - mu[j]!));
  const rng = new Rng(seed);
  const comps: Float64Array[] = [];
  for (let c = 0; c < 2; c++) {
    let v = Float64Array.from({ length: dim }, () => rng.normal());
    for (let it = 0; it < 200; it++) {
      // v <- X^T X v, minus the components found already, normalised
      const xv = X.map((r) => r.reduce((s, x, j) => s + x * v[j]!, 0));
      const w = new Float64Array(dim);
      X.forEach((r, i) => r.forEach((x, j) => (w[j]! += x * xv[i]!)));
      for (const u of comps) {
        const d = w.reduce((s, x, j) => s + x * u[j]!, 0);
        for (let j = 0; j < dim; j++) w[j]! -= d * u[j]!;
      }
      const norm = Math.sqrt(w.reduce((s, x) => s + x * x, 0));
      if (norm === 0) break;
      v = w.map((x) => x / norm);
    }
    comps.push(v);
  }
  return X.map((r) => [r.reduce((s, x, j) => s + x * comps[0]![j]!, 0), r.reduce((s, x, j) => s + x * comps[1]![j]!, 0)]);
}

/** 2-D coordinates for each row of `data` ([n × dim] row-major, or an array of rows). */
export function embed2d(data: Float32Array | Float64Array | readonly (readonly number[])[], dim?: number, opts: MapOptions = {}): [number, number][] {
  const rows = toRows(data, dim);
  checkFinite(rows);
  const seed = opts.seed ?? 0;
  if (opts.method === 'pca' || rows.length < 4) return pca2d(rows, seed);
  const rng = new Rng(seed);
  const umap = new UMAP({
    nComponents: 2,
    nNeighbors: Math.max(2, Math.min(opts.nNeighbors ?? 15, rows.length - 1)),
    nEpochs: opts.nEpochs ?? 200,
    minDist: opts.minDist ?? 0.1,
    random: () => rng.next(),
  });
  return umap.fit(rows).map((p) => [p[0]!, p[1]!]);
}
