// The gradient check's PyTorch reference (scripts/bench/grad_peer.py through the torch peer; src/bench/grad-check.ts)
// on the CPU: on a tiny random model, the fp32 gradient transformers' autograd gives for the weighted log-prob loss,
// at the sampled indices, equals the CPU engine's within 1e-4 (relative, per tensor), and the response log-probs
// agree: this ties down the loss, the response layout and the index mapping that the GPU check
// (test/engine-cuda-torch-grad.test.ts) relies on. It also shows the check fails on a gradient of another loss.
// Needs a Python with torch and transformers (CLIPO_PYTHON, else python3); without one the peer part is skipped,
// saying so.
import { Engine, type ScoreBatch } from '../src/engine/engine.js';
import { randomWeights, smallConfig } from '../src/engine/params.js';
import { writePeerModel } from '../src/bench/engine-peer.js';
import { describeWorst, engineGradients, lossWeights, peerGradients, sampleGradientIndices, tensorErrors } from '../src/bench/grad-check.js';
import { TorchPeer } from '../src/bench/peer.js';
import { parameterShapes } from '../src/engine/params.js';
import { Rng } from '../src/util/rng.js';

const config = smallConfig('qwen2', { vocab: 97, hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 48 });

test('sampleGradientIndices: every entry of small tensors, distinct ascending in-range entries of large ones, reproducible', () => {
  const s = sampleGradientIndices(config, 100, 4);
  const shapes = parameterShapes(config);
  expect(s.names).toEqual(shapes.map((p) => p.name));
  shapes.forEach((p, k) => {
    const n = p.shape.reduce((a, b) => a * b, 1);
    const idx = Array.from(s.indices[k]!, Number);
    if (n <= 100) expect(idx).toEqual(Array.from({ length: n }, (_, i) => i));
    else {
      expect(idx.length).toBe(100);
      for (let i = 1; i < idx.length; i++) expect(idx[i]!).toBeGreaterThan(idx[i - 1]!);
      expect(idx[0]!).toBeGreaterThanOrEqual(0);
      expect(idx[idx.length - 1]!).toBeLessThan(n);
    }
  });
  expect(sampleGradientIndices(config, 100, 4)).toEqual(s);
  expect(() => sampleGradientIndices(config, 0, 4)).toThrow(/positive integer/);
});

test('tensorErrors: ||a - b|| / ||b|| per tensor, worst first; NaN and length mismatches are infinite', () => {
  const b = Float32Array.from([3, 4]);
  const e = tensorErrors([Float32Array.from([3, 4.5]), Float32Array.from([3, 4]), Float32Array.from([NaN, 4]), Float32Array.from([1])], [b, b, b, b], ['x', 'y', 'z', 'w']);
  expect(e.map((x) => x.name).slice(2)).toEqual(['x', 'y']);
  expect(e[2]!.rel).toBeCloseTo(0.1, 6);
  expect(e[3]!.rel).toBe(0);
  expect(e.slice(0, 2).map((x) => x.rel)).toEqual([Infinity, Infinity]);
  expect(describeWorst(e, 3)).toMatch(/x: 1\.00e-1/);
});

describe('against transformers autograd on the CPU', () => {
  let peer: TorchPeer | null = null;
  beforeAll(async () => {
    const p = await TorchPeer.start(() => undefined);
    let why = '';
    if (!(p instanceof TorchPeer)) why = p.unavailable;
    else if (!p.info.transformers) {
      why = `torch ${p.info.torch} is there but transformers is not importable`;
      await p.close();
    } else peer = p;
    if (!peer) console.log(`gradient peer tests skipped: ${why}; set CLIPO_PYTHON to a Python with torch and transformers`);
  }, 300_000);
  afterAll(async () => {
    if (peer) await peer.close();
  });

  test('the sampled fp32 gradient of the weighted log-prob loss equals the CPU engine\'s within 1e-4 per tensor', async () => {
    if (!peer) return;
    // std 0.2 and jittered norms: log-probs far from uniform, so a wrong layout or loss shows
    const weights = randomWeights(config, { seed: 21, std: 0.2, normJitter: 0.1 });
    const rng = new Rng(5);
    const ids = (n: number) => Int32Array.from({ length: n }, () => Math.floor(rng.next() * config.vocabSize));
    // different prompt and response lengths (one response empty): the padding and the per-row offsets count
    const batch: ScoreBatch = { sequences: [[3, 17], [1, 9], [6, 0], [2, 21]].map(([p, r]) => ({ prompt: ids(p!), response: ids(r!) })) };
    const w = lossWeights(batch, 8);
    const sample = sampleGradientIndices(config, 300, 9);
    const { dir, remove } = writePeerModel(peer, 'gradtiny', config, weights, 'fp32');
    try {
      await peer.call({ cmd: 'grad_setup', model: dir, device: 'cpu', threads: 1 });
    } finally {
      remove();
    }
    const engine = Engine.create(config, weights, { threads: 1, backend: 'cpu' });
    try {
      const mine = engineGradients(engine, batch, w, sample);
      const theirs = await peerGradients(peer, batch, w, sample);
      let dlp = 0;
      for (let i = 0; i < mine.logprobs.length; i++) if (mine.mask[i]) dlp = Math.max(dlp, Math.abs(mine.logprobs[i]! - theirs.logprobs[i]!));
      expect(dlp).toBeLessThan(1e-4);
      let loss = 0;
      for (let i = 0; i < w.length; i++) if (mine.mask[i]) loss += w[i]! * mine.logprobs[i]!;
      expect(Math.abs(loss - theirs.loss)).toBeLessThan(1e-4 * Math.max(1, Math.abs(loss)));
      const errors = tensorErrors(mine.values, theirs.values, sample.names);
      console.log(`gradient peer (CPU, tiny): worst tensors\n${describeWorst(errors, 4)}`);
      expect(errors.every((e) => e.norm > 0)).toBe(true);
      expect(errors[0]!.rel).toBeLessThan(1e-4);

      // the check can fail: the gradient of another loss (other weights w) is far off in every tensor
      const other = engineGradients(engine, batch, lossWeights(batch, 10), sample);
      const off = tensorErrors(other.values, theirs.values, sample.names);
      expect(off[off.length - 1]!.rel).toBeGreaterThan(0.1);
    } finally {
      engine.dispose();
      await peer.call({ cmd: 'grad_release' });
    }
  }, 300_000);
});
