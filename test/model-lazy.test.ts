// Lazy model directories (openModelDir): headers checked up front, each tensor read only when the engine takes it,
// so inference never holds the whole model on the host beside the engine's copy. Compared with the eager loader;
// broken directories for both loaders are in model-io.test.ts.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Engine } from '../src/engine/engine.js';
import { loadModelDir, openModelDir, saveModelDir } from '../src/model/hfdir.js';
import { initModel, type InitShape } from '../src/model/init.js';
import type { LazyTensorMap, Tensor } from '../src/model/types.js';
import { Rng } from '../src/util/rng.js';

const tmpRoot = mkdtempSync(path.join(os.tmpdir(), 'clipo-model-lazy-'));
afterAll(() => rmSync(tmpRoot, { recursive: true, force: true }));
let counter = 0;
const tmp = (name: string) => path.join(tmpRoot, `${name}-${counter++}`);

const tiny = (arch: 'qwen2' | 'llama', extra: Partial<InitShape> = {}): InitShape => ({
  architecture: arch, numLayers: 2, hiddenSize: 32, numHeads: 4, numKvHeads: 2, intermediateSize: 48, vocabSize: 97, ...extra,
});

/** The same lazy map, counting the reads of each tensor. */
function counted(w: LazyTensorMap): { weights: LazyTensorMap; reads: Map<string, number> } {
  const reads = new Map<string, number>();
  const weights: LazyTensorMap = new Map();
  for (const [n, t] of w) weights.set(n, { shape: t.shape, load: () => (reads.set(n, (reads.get(n) ?? 0) + 1), t.load()) });
  return { weights, reads };
}

function randomWeights(arch: 'qwen2' | 'llama', seed: number) {
  // init's biases are zero and its norms one: perturb everything so a swapped tensor would show in the logits
  const { config, weights } = initModel(tiny(arch), seed);
  const rng = new Rng(seed + 100);
  for (const t of weights.values()) for (let i = 0; i < t.data.length; i++) t.data[i]! += 0.05 * (rng.next() - 0.5);
  return { config, weights };
}

describe('lazy model directories', () => {
  test('sharded bf16: the same tensors as the eager loader, each read once and only by Engine.create; same logits', () => {
    for (const arch of ['qwen2', 'llama'] as const) {
      const { config, weights } = randomWeights(arch, 7);
      const dir = tmp(arch);
      const files = saveModelDir(dir, config, weights, { dtype: 'bf16', maxShardBytes: 6000 });
      expect(files.filter((f) => f.endsWith('.safetensors')).length).toBeGreaterThan(2);
      const eager = loadModelDir(dir);
      const lazy = openModelDir(dir);
      expect([...lazy.weights.keys()].sort()).toEqual([...eager.weights.keys()].sort());
      expect(lazy.dtypes).toEqual(eager.dtypes);
      expect(lazy.stopTokenIds).toEqual(eager.stopTokenIds);
      const { weights: w, reads } = counted(lazy.weights);
      expect(reads.size).toBe(0); // opening reads headers only
      const a = Engine.create(eager.config, eager.weights, { threads: 1, backend: 'cpu' });
      const b = Engine.create(lazy.config, w, { threads: 1, backend: 'cpu' });
      try {
        expect([...reads.keys()].sort()).toEqual([...eager.weights.keys()].sort());
        expect([...reads.values()].every((k) => k === 1)).toBe(true);
        const rng = new Rng(3);
        const tokens = Int32Array.from({ length: 2 * 11 }, () => Math.floor(rng.next() * config.vocabSize));
        const la = a.logits(tokens, 2, 11), lb = b.logits(tokens, 2, 11);
        expect(la.some((x) => x !== 0)).toBe(true);
        expect(lb).toEqual(la);
        for (const [n, t] of eager.weights) expect(lazy.weights.get(n)!.load()).toEqual(t.data);
      } finally {
        a.dispose();
        b.dispose();
      }
    }
  });

  test('Engine.create with lazy entries: a bad load() result or a throwing load() is a clear error; an unexpected name fails before any read', () => {
    const { config, weights } = initModel(tiny('llama'), 5);
    const lazyOf = (w: Map<string, Tensor>): LazyTensorMap => new Map([...w].map(([n, t]) => [n, { shape: t.shape, load: () => t.data }]));
    const wrongType = lazyOf(weights);
    wrongType.set('model.norm.weight', { shape: [32], load: () => new Float64Array(32) as unknown as Float32Array });
    expect(() => Engine.create(config, wrongType, { threads: 1, backend: 'cpu' })).toThrow(/model\.norm\.weight: load\(\) must return a Float32Array/);
    const short = lazyOf(weights);
    short.set('model.norm.weight', { shape: [32], load: () => new Float32Array(31) });
    expect(() => Engine.create(config, short, { threads: 1, backend: 'cpu' })).toThrow(/model\.norm\.weight: data has 31 values, expected 32/);
    const throwing = lazyOf(weights);
    throwing.set('model.norm.weight', { shape: [32], load: () => { throw new Error('disk gone'); } });
    expect(() => Engine.create(config, throwing, { threads: 1, backend: 'cpu' })).toThrow(/disk gone/);
    const { weights: extra, reads } = counted(lazyOf(weights));
    extra.set('model.layers.9.mlp.up_proj.weight', { shape: [1], load: () => new Float32Array(1) });
    expect(() => Engine.create(config, extra, { threads: 1, backend: 'cpu' })).toThrow(/unexpected tensor model\.layers\.9\.mlp\.up_proj\.weight/);
    expect(reads.size).toBe(0);
  });
});
