// The optimizer's bf16 master weights with stochastic rounding (Engine.setMasterWeights('bf16-sr')): every weight
// stays a bf16 value, each step lands on one of the two bf16 neighbours of the fp32-master update, rounding up with
// the probability of the distance (unbiased on average), the same bits for any thread count, and a training run
// still lowers the loss. The CUDA twin is checked against this CPU version under emulation (run-engine.sh).
import { Engine, type ScoreBatch } from '../src/engine/engine.js';
import { randomWeights, smallConfig } from '../src/engine/params.js';
import type { TensorMap } from '../src/model/types.js';

const config = smallConfig('qwen2', { vocab: 61, hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 48 });
const batch: ScoreBatch = {
  sequences: [
    { prompt: Int32Array.from([1, 2, 3]), response: Int32Array.from([4, 5, 6, 7, 8]) },
    { prompt: Int32Array.from([9]), response: Int32Array.from([10, 11, 12]) },
  ],
};
const bf16 = (x: number) => new Float32Array(new Uint32Array([new Uint32Array(new Float32Array([x]).buffer)[0]! & 0xffff0000]).buffer)[0]!;
const isBf16 = (x: number) => bf16(x) === x;
/** the bf16 values just below and above x (x itself twice when it is a bf16 value), for finite x > 0 or < 0 */
function neighbours(x: number): [number, number] {
  const lo = bf16(x); // truncation: toward zero
  if (lo === x) return [x, x];
  const bits = new Uint32Array(new Float32Array([lo]).buffer)[0]!;
  const away = new Float32Array(new Uint32Array([bits + 0x10000]).buffer)[0]!;
  return x > 0 ? [lo, away] : [away, lo];
}
/** weights that are bf16 values (so both masters start from the same point) */
function bf16Weights(seed: number): TensorMap {
  const w = randomWeights(config, { seed, normJitter: 0.1 });
  for (const t of w.values()) for (let i = 0; i < t.data.length; i++) t.data[i] = bf16(t.data[i]!);
  return w;
}
const opts = { lr: 2e-3, weightDecay: 0.1, maxGradNorm: 0 };

function step(e: Engine): void {
  e.zeroGrad();
  e.crossEntropyStep(batch);
  e.adamwStep(opts);
}

describe('bf16 master weights (stochastic rounding)', () => {
  test('one step: every weight is one of the two bf16 neighbours of the fp32-master update, rounded up as often as the distance says', () => {
    const w = bf16Weights(3);
    const ref = Engine.create(config, w, { threads: 1, backend: 'cpu' });
    const sr = Engine.create(config, w, { threads: 1, backend: 'cpu' });
    sr.setMasterWeights('bf16-sr', 7);
    step(ref);
    step(sr);
    const a = ref.exportWeights(), b = sr.exportWeights();
    // per half of the probability range [0, 1/2) and [1/2, 1]: how many rounded up, how many expected, the variance
    const bins = [0, 1].map(() => ({ n: 0, up: 0, expected: 0, variance: 0 }));
    let moved = 0;
    for (const [name, t] of a) {
      const got = b.get(name)!.data;
      for (let i = 0; i < t.data.length; i++) {
        const x = t.data[i]!, y = got[i]!;
        expect(isBf16(y)).toBe(true);
        const [lo, hi] = neighbours(x);
        if (y !== lo && y !== hi) throw new Error(`${name}[${i}]: ${y} is not a bf16 neighbour of ${x} (${lo}, ${hi})`);
        if (y !== w.get(name)!.data[i]) moved++;
        if (lo === hi) continue;
        const p = (x - lo) / (hi - lo);
        const bin = bins[p < 0.5 ? 0 : 1]!;
        bin.n++;
        bin.expected += p;
        bin.variance += p * (1 - p);
        if (y === hi) bin.up++;
      }
    }
    // unbiased: in each half, the count rounded up is the sum of the probabilities within 5 standard deviations
    // (round to nearest would round none of the lower half up and all of the upper half)
    for (const bin of bins) {
      expect(bin.n).toBeGreaterThan(500);
      expect(Math.abs(bin.up - bin.expected)).toBeLessThan(5 * Math.sqrt(bin.variance));
      expect(bin.up).toBeGreaterThan(0.05 * bin.n);
      expect(bin.up).toBeLessThan(0.95 * bin.n);
    }
    expect(moved).toBeGreaterThan(0);
    ref.dispose();
    sr.dispose();
  });

  test('the same bits for 1 and 2 threads and the same seed; another seed rounds differently', () => {
    const w = bf16Weights(4);
    const run = (threads: number, seed: number) => {
      const e = Engine.create(config, w, { threads, backend: 'cpu' });
      e.setMasterWeights('bf16-sr', seed);
      for (let k = 0; k < 3; k++) step(e);
      const out = e.exportWeights();
      e.dispose();
      return out;
    };
    const a = run(1, 11), b = run(2, 11), c = run(1, 12);
    let diff = 0;
    for (const [name, t] of a) {
      expect(b.get(name)!.data).toEqual(t.data);
      const o = c.get(name)!.data;
      for (let i = 0; i < t.data.length; i++) if (o[i] !== t.data[i]) diff++;
    }
    expect(diff).toBeGreaterThan(100);
  });

  test('switching rounds the weights to bf16 once; training still lowers the loss; bad input is refused', () => {
    const w = randomWeights(config, { seed: 5, normJitter: 0.1 });
    const e = Engine.create(config, w, { threads: 2, backend: 'cpu' });
    e.setMasterWeights('bf16-sr', 1);
    for (const t of e.exportWeights().values()) expect(t.data.every(isBf16)).toBe(true);
    let first = 0, last = 0;
    for (let i = 0; i < 25; i++) {
      e.zeroGrad();
      const { loss } = e.crossEntropyStep(batch);
      if (i === 0) first = loss;
      last = loss;
      e.adamwStep({ lr: 3e-2 });
    }
    expect(last).toBeLessThan(first * 0.5);
    for (const t of e.exportWeights().values()) expect(t.data.every(isBf16)).toBe(true);
    expect(() => e.setMasterWeights('bf16' as 'bf16-sr')).toThrow(/mode/);
    const frozen = e.cloneFrozen();
    expect(() => frozen.setMasterWeights('bf16-sr')).toThrow(/frozen/);
    frozen.dispose();
    e.dispose();
  });
});
