// Lazy model directories (openModelDir): headers checked up front, each tensor read only when the engine takes it,
// so inference never holds the whole model on the host beside the engine's copy. Compared with the eager loader.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Engine } from '../src/engine/engine.js';
import { modelConfigToJson } from '../src/model/config.js';
import { loadModelDir, openModelDir, saveModelDir } from '../src/model/hfdir.js';
import { initModel, type InitShape } from '../src/model/init.js';
import { writeSafetensors } from '../src/model/safetensors.js';
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

  test('names and shapes are checked when the directory is opened, values as each tensor is read', () => {
    const { config, weights } = initModel(tiny('qwen2'), 4);
    const write = (w: Map<string, Tensor>) => {
      const dir = tmp('broken');
      mkdirSync(dir);
      writeFileSync(path.join(dir, 'config.json'), JSON.stringify(modelConfigToJson(config, 'f32')));
      writeSafetensors(path.join(dir, 'model.safetensors'), [...w]);
      return dir;
    };
    const missing = new Map(weights);
    missing.delete('model.layers.1.mlp.up_proj.weight');
    expect(() => openModelDir(write(missing))).toThrow(/tensor 'model\.layers\.1\.mlp\.up_proj\.weight' is missing/);
    const misshapen = new Map(weights);
    misshapen.set('model.layers.0.self_attn.k_proj.weight', { shape: [32, 32], data: new Float32Array(1024) });
    expect(() => openModelDir(write(misshapen))).toThrow(/has shape \[32, 32\], expected \[16, 32\]/);
    const extra = new Map(weights);
    extra.set('model.layers.2.mlp.up_proj.weight', { shape: [1], data: new Float32Array(1) });
    expect(() => openModelDir(write(extra))).toThrow(/unexpected tensor 'model\.layers\.2\.mlp\.up_proj\.weight'/);
    // a NaN: the directory opens (values are not read yet); the engine refuses it, naming the tensor
    const corrupt = new Map(weights);
    const bad = new Float32Array(weights.get('model.layers.1.self_attn.o_proj.weight')!.data);
    bad[17] = NaN;
    corrupt.set('model.layers.1.self_attn.o_proj.weight', { shape: [32, 32], data: bad });
    const m = openModelDir(write(corrupt));
    expect(() => Engine.create(m.config, m.weights, { threads: 1, backend: 'cpu' })).toThrow(/'model\.layers\.1\.self_attn\.o_proj\.weight' holds a non-finite value \(NaN\) at index 17/);
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
