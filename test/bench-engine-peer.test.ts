// The engine suite's PyTorch + transformers peer (`clipo bench engine --compare torch`): the value comparisons, the
// skip without transformers, and — where a Python with torch and transformers is found (CLIPO_PYTHON, else python3)
// — that the peer's checks pass on the same model and fail on a model that differs in one tensor. Also
// `clipo bench --threads N`.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { Engine } from '../src/engine/engine.js';
import { randomWeights, smallConfig } from '../src/engine/params.js';
import { checkEnginePeer, enginePeer, maxAbsDiff, setupEnginePeer, worstTensorDiff, type EnginePeerCase } from '../src/bench/engine-peer.js';
import { TorchPeer } from '../src/bench/peer.js';
import type { BenchContext } from '../src/bench/types.js';
import { packageRoot } from '../src/native.js';
import { Rng } from '../src/util/rng.js';

const clipo = path.join(packageRoot, 'bin', 'clipo');

function randomArray(rng: Rng, n: number): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal());
}

test('maxAbsDiff and worstTensorDiff find the largest difference; NaN and length mismatches count as infinite', () => {
  const rng = new Rng(5);
  const a = randomArray(rng, 1000);
  const b = Float32Array.from(a);
  const k = 1 + Math.floor(rng.next() * 998);
  b[k]! += 0.25;
  b[k + 1]! -= 0.125;
  expect(maxAbsDiff(a, b)).toBeCloseTo(0.25, 6);
  expect(maxAbsDiff(a, a)).toBe(0);
  expect(maxAbsDiff(a, a.subarray(1))).toBe(Infinity);
  const c = Float32Array.from(a);
  c[k] = NaN;
  expect(maxAbsDiff(a, c)).toBe(Infinity);

  const x = randomArray(rng, 50), y = randomArray(rng, 70);
  const y2 = Float32Array.from(y);
  let ref = 0;
  for (const v of y) ref = Math.max(ref, Math.abs(v));
  y2[3]! += 0.01 * ref;
  const w = worstTensorDiff([x, y], [x, y2], ['x', 'y']);
  expect(w.name).toBe('y');
  expect(w.rel).toBeCloseTo(0.01 * ref / Math.max(ref, Math.abs(y2[3]!)), 4);
  expect(worstTensorDiff([x, y], [x, y], ['x', 'y']).rel).toBe(0);
});

test('without a usable peer the engine comparison is skipped with a note saying how to get torch and transformers', async () => {
  const ctx: BenchContext = { quick: true, repeats: 1, backend: 'cpu', log: () => undefined, peer: async () => ({ unavailable: 'no python here' }) };
  const r = await enginePeer(ctx);
  expect(r.peer).toBeNull();
  expect(r.note).toMatch(/--compare torch: skipped: no python here; .*pip install torch transformers/);
  expect(await enginePeer({ ...ctx, peer: null })).toEqual({ peer: null, note: null });
});

describe('with torch and transformers', () => {
  let peer: TorchPeer | null = null;
  let why = '';
  beforeAll(async () => {
    const p = await TorchPeer.start(() => undefined);
    if (!(p instanceof TorchPeer)) why = p.unavailable;
    else if (!p.info.transformers) {
      why = 'transformers is not importable';
      await p.close();
    } else peer = p;
    if (!peer) console.log(`engine peer tests skipped: ${why} (set CLIPO_PYTHON to a Python with torch and transformers)`);
  }, 300_000);
  afterAll(async () => {
    if (peer) await peer.close();
  });

  const config = smallConfig('qwen2', { vocab: 97, hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 48 });
  const rng = new Rng(99);
  const ids = (n: number) => Int32Array.from({ length: n }, () => Math.floor(rng.next() * config.vocabSize));
  // std 0.2 and jittered norms: logits far from uniform, so a wrong tensor shows in the log-probs
  const weights = randomWeights(config, { seed: 3, std: 0.2, normJitter: 0.1 });
  const c: EnginePeerCase = {
    label: 'tiny', config, weights,
    batch: { sequences: [0, 1, 2].map(() => ({ prompt: ids(1), response: ids(23) })) },
    prompts: [ids(5), ids(5)], samples: 2, newTokens: 6,
  };

  test('the same model agrees (log-probs, gradients, sampled tokens) and a timed call returns a sample', async () => {
    if (!peer) return;
    await setupEnginePeer(peer, c, 1);
    const engine = Engine.create(config, weights, { threads: 1 });
    try {
      const v = await checkEnginePeer(peer, engine, c, 1);
      expect(v.note).toMatch(/tiny: values checked against transformers/);
      expect(v.agree).toBe(true);
      for (const op of ['score', 'train', 'generate']) {
        const s = await peer.time({ kernel: 'engine', op, threads: 1 });
        expect(s.wall).toBeGreaterThan(0);
        expect(s.cpu).toBeGreaterThan(0);
      }
    } finally {
      engine.dispose();
      await peer.call({ cmd: 'release' });
    }
  }, 300_000);

  test('a model that differs in one tensor (the last MLP down-projection, 5% larger) fails the check', async () => {
    if (!peer) return;
    const changed = new Map(weights);
    const name = `model.layers.${config.numLayers - 1}.mlp.down_proj.weight`;
    const t = weights.get(name)!;
    changed.set(name, { shape: t.shape, data: t.data.map((x) => 1.05 * x) });
    await setupEnginePeer(peer, { ...c, weights: changed }, 1);
    const engine = Engine.create(config, weights, { threads: 1 });
    try {
      const v = await checkEnginePeer(peer, engine, c, 1);
      expect(v.agree).toBe(false);
      expect(v.note).toMatch(/DISAGREE/);
    } finally {
      engine.dispose();
      await peer.call({ cmd: 'release' });
    }
  }, 300_000);
});

test('bench --threads 1 measures one-thread rows only; --threads rejects what is not a positive integer', () => {
  const r = spawnSync(process.execPath, [clipo, 'bench', 'bandwidth', '--quick', '--json', '--repeats', '1', '--threads', '1'], { encoding: 'utf8', env: { ...process.env, FORCE_COLOR: '0' } });
  expect(r.status).toBe(0);
  const doc = JSON.parse(r.stdout);
  expect(doc.options.threads).toBe(1);
  const threads = doc.reports[0].rows.map((x: { threads: number }) => x.threads);
  expect(threads.length).toBeGreaterThan(0);
  expect(new Set(threads)).toEqual(new Set([1]));
  for (const bad of ['0', '1.5', 'two']) {
    const e = spawnSync(process.execPath, [clipo, 'bench', 'bandwidth', '--threads', bad], { encoding: 'utf8' });
    expect(e.status).toBe(2);
    expect(e.stderr).toMatch(/--threads: /);
  }
}, 120_000);
