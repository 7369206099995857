// The entropy term of the engine's backward (an entropy bonus): d(sum_t a_t logp_t + b_t H_t)/d theta from
// backward(gradLogp, gradEntropy) against central differences of the float64 reference transformer, where H_t is
// the entropy of the softmax at the row that predicts response token t. Also: the entropy-only gradient is not the
// log-prob one, and bad gradEntropy arrays are rejected with a message.
import { Engine, type ScoreBatch } from '../src/engine/engine.js';
import { parameterShapes, randomWeights, smallConfig } from '../src/engine/params.js';
import type { ModelConfig } from '../src/model/types.js';
import { Rng } from '../src/util/rng.js';
import { logSoftmax, refForward, toRefParams, type RefParams } from './reference/transformer_ref.js';

const config = smallConfig('qwen2', { vocab: 13, hidden: 16, layers: 2, heads: 4, kvHeads: 2, intermediate: 24 });

/** sum over sequences and response positions of a_t logp_t + b_t H_t, in float64 */
function objectiveRef(c: ModelConfig, p: RefParams, batch: ScoreBatch, a: number[][], b: number[][]): number {
  let s = 0;
  batch.sequences.forEach((seq, k) => {
    const tokens = [...seq.prompt, ...seq.response];
    const { logits } = refForward(c, p, tokens);
    for (let t = 0; t < seq.response.length; t++) {
      const lp = logSoftmax(logits[seq.prompt.length - 1 + t]!);
      let h = 0;
      for (let v = 0; v < lp.length; v++) h -= Math.exp(lp[v]!) * lp[v]!;
      s += a[k]![t]! * lp[seq.response[t]!]! + b[k]![t]! * h;
    }
  });
  return s;
}

const randTokens = (rng: Rng, n: number) => Int32Array.from({ length: n }, () => Math.floor(rng.next() * config.vocabSize));

describe('engine backward with d loss / d entropy', () => {
  test.each([
    ['entropy only', 0],
    ['entropy and log-probs', 1],
  ])('%s: matches finite differences of the float64 reference', (_name, withLogp) => {
    const w = randomWeights(config, { seed: 4, std: 0.3, normJitter: 0.2 });
    const engine = Engine.create(config, w, { threads: 2 });
    const rng = new Rng(withLogp ? 77 : 78);
    const batch: ScoreBatch = { sequences: [{ prompt: randTokens(rng, 3), response: randTokens(rng, 4) }, { prompt: randTokens(rng, 2), response: randTokens(rng, 3) }] };
    const fw = engine.forwardTrain(batch);
    const T = fw.length;
    const a = batch.sequences.map((s) => Array.from({ length: T }, (_, t) => (t < s.response.length && withLogp ? rng.normal() : 0)));
    const b = batch.sequences.map((s) => Array.from({ length: T }, (_, t) => (t < s.response.length ? rng.normal() : 0)));
    const ga = Float32Array.from(a.flat()), gb = Float32Array.from(b.flat());
    engine.backward(ga, gb);
    const grads = engine.exportGradients()!;
    const ref = toRefParams(w);
    const eps = 1e-4;
    let checked = 0;
    for (const { name } of parameterShapes(config)) {
      const p = ref.get(name)!;
      const gn = grads.get(name)!.data;
      const gscale = Math.max(1e-3, ...Array.from(gn, Math.abs));
      for (let k = 0; k < 3; k++) {
        const i = Math.floor(rng.next() * p.length);
        const orig = p[i]!;
        p[i] = orig + eps;
        const up = objectiveRef(config, ref, batch, a, b);
        p[i] = orig - eps;
        const down = objectiveRef(config, ref, batch, a, b);
        p[i] = orig;
        const fd = (up - down) / (2 * eps);
        if (Math.abs(gn[i]! - fd) > 2e-4 * gscale + 1e-5) throw new Error(`${name}[${i}]: native ${gn[i]} vs finite difference ${fd}`);
        checked++;
      }
    }
    expect(checked).toBe(parameterShapes(config).length * 3);
    engine.dispose();
  });

  test('a wrong gradEntropy is an error, not a crash', () => {
    const w = randomWeights(config, { seed: 4, std: 0.3 });
    const engine = Engine.create(config, w, { threads: 1 });
    const batch: ScoreBatch = { sequences: [{ prompt: Int32Array.from([1, 2]), response: Int32Array.from([3, 4]) }] };
    engine.forwardTrain(batch);
    expect(() => engine.backward(new Float32Array(2), new Float32Array(3))).toThrow(/gradEntropy must be a Float32Array of length 2/);
    engine.forwardTrain(batch);
    expect(() => engine.backward(new Float32Array(2), Float32Array.from([0, NaN]))).toThrow(/gradEntropy\[1\] is not finite/);
    engine.dispose();
  });
});
