// The native policy engine against a float64 reference: logits, scoring (log-probs, entropy, pooled states),
// KV-cache sampling, gradients by finite differences, AdamW, and input validation.
import { Engine, engineBackends, type ScoreBatch } from '../src/engine/engine.js';
import { randomWeights, smallConfig, parameterShapes } from '../src/engine/params.js';
import type { ModelConfig, TensorMap } from '../src/model/types.js';
import { Rng } from '../src/util/rng.js';
import { logSoftmax, refForward, refResponseLogprobs, toRefParams, type RefParams } from './reference/transformer_ref.js';

const tiny = (arch: 'qwen2' | 'llama', extra: { mlpBias?: boolean; tie?: boolean } = {}) =>
  smallConfig(arch, { vocab: 13, hidden: 16, layers: 2, heads: 4, kvHeads: 2, intermediate: 24, ...extra });

// larger std than a real init so that every path (attention mixing, norms, biases) matters numerically
const weightsFor = (c: ModelConfig, seed = 1) => randomWeights(c, { seed, std: 0.3, normJitter: 0.2 });

function randomTokens(rng: Rng, n: number, vocab: number): Int32Array {
  const t = new Int32Array(n);
  for (let i = 0; i < n; i++) t[i] = Math.floor(rng.next() * vocab);
  return t;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const variants: Array<[string, ModelConfig]> = [
  ['qwen2 (qkv bias, tied)', tiny('qwen2')],
  ['llama (llama3 rope, untied)', tiny('llama')],
  ['llama (o/mlp bias, tied)', tiny('llama', { mlpBias: true, tie: true })],
];

describe.each(variants)('engine forward: %s', (_name, config) => {
  const w = weightsFor(config);
  const ref = toRefParams(w);
  let engine: Engine;
  beforeAll(() => {
    engine = Engine.create(config, w, { threads: 2 });
  });
  afterAll(() => engine.dispose());

  test('logits equal the float64 reference', () => {
    const rng = new Rng(7);
    const B = 2, T = 9;
    const tokens = randomTokens(rng, B * T, config.vocabSize);
    const got = engine.logits(tokens, B, T);
    expect(got.length).toBe(B * T * config.vocabSize);
    let scale = 0;
    for (let b = 0; b < B; b++) {
      const { logits } = refForward(config, ref, tokens.subarray(b * T, (b + 1) * T));
      for (let t = 0; t < T; t++) {
        const row = got.subarray((b * T + t) * config.vocabSize, (b * T + t + 1) * config.vocabSize);
        expect(maxAbsDiff(row, logits[t])).toBeLessThan(2e-5 * Math.max(1, Math.max(...logits[t].map(Math.abs))));
        scale = Math.max(scale, ...logits[t].map(Math.abs));
      }
    }
    expect(scale).toBeGreaterThan(0.5); // the model is not trivially flat
  });

  test('score: log-probs, entropy and pooled response states in one pass', () => {
    const rng = new Rng(11);
    const batch: ScoreBatch = {
      sequences: [
        { prompt: randomTokens(rng, 3, config.vocabSize), response: randomTokens(rng, 5, config.vocabSize) },
        { prompt: randomTokens(rng, 6, config.vocabSize), response: randomTokens(rng, 2, config.vocabSize) },
        { prompt: randomTokens(rng, 1, config.vocabSize), response: new Int32Array(0) },
      ],
    };
    const r = engine.score(batch, { entropy: true, pooled: true });
    expect(r.length).toBe(5);
    const H = config.hiddenSize;
    batch.sequences.forEach((s, b) => {
      const tokens = [...s.prompt, ...s.response];
      const { logits, hidden } = refForward(config, ref, tokens);
      const pooled = new Float64Array(H);
      for (let t = 0; t < r.length; t++) {
        const i = b * r.length + t;
        if (t >= s.response.length) {
          expect(r.mask[i]).toBe(0);
          expect(r.logprobs[i]).toBe(0);
          continue;
        }
        expect(r.mask[i]).toBe(1);
        const lp = logSoftmax(logits[s.prompt.length - 1 + t]);
        expect(Math.abs(r.logprobs[i] - lp[s.response[t]])).toBeLessThan(2e-5);
        const ent = -lp.reduce((a, v) => a + Math.exp(v) * v, 0);
        expect(Math.abs(r.entropy![i] - ent)).toBeLessThan(2e-5);
        for (let j = 0; j < H; j++) pooled[j] += hidden[s.prompt.length + t][j] / s.response.length;
      }
      expect(maxAbsDiff(r.pooled!.subarray(b * H, (b + 1) * H), pooled)).toBeLessThan(2e-5);
    });
  });

  test('greedy decoding with the KV cache equals argmax of full forwards, with matching log-probs and pooled states', () => {
    const prompts = [Int32Array.from([1, 2, 3]), Int32Array.from([4]), Int32Array.from([5, 6, 7, 8, 9])];
    const g = engine.generate({ prompts, maxNewTokens: 6, temperature: 0, seed: 0, stopTokens: [], returnPooled: true });
    expect(g.sequences.length).toBe(3);
    const scored = engine.score({ sequences: g.sequences.map((s) => ({ prompt: prompts[s.promptIndex], response: s.tokens })) },
      { pooled: true });
    g.sequences.forEach((s, b) => {
      expect(s.tokens.length).toBe(6);
      expect(s.finishReason).toBe('length');
      const tokens = [...prompts[b], ...s.tokens];
      const { logits } = refForward(config, ref, tokens);
      for (let t = 0; t < s.tokens.length; t++) {
        const lp = logSoftmax(logits[prompts[b].length - 1 + t]);
        const best = lp.indexOf(Math.max(...lp));
        expect(s.tokens[t]).toBe(best);
        expect(Math.abs(s.logprobs[t] - lp[best])).toBeLessThan(2e-5);
        expect(Math.abs(s.logprobs[t] - scored.logprobs[b * scored.length + t])).toBeLessThan(2e-5);
      }
      const H = config.hiddenSize;
      expect(maxAbsDiff(s.pooled!, scored.pooled!.subarray(b * H, (b + 1) * H))).toBeLessThan(2e-5);
    });
  });
});

describe('sampling', () => {
  const config = tiny('qwen2');
  const w = weightsFor(config, 3);
  const prompts = [Int32Array.from([1, 2]), Int32Array.from([3, 4, 5]), Int32Array.from([6])];
  const req = { prompts, n: 3, maxNewTokens: 8, temperature: 1.0, topP: 0.9, seed: 42, stopTokens: [0] };

  test('same seed, same tokens, whatever the batching or thread count; log-probs match a scoring pass', () => {
    const e2 = Engine.create(config, w, { threads: 2 });
    const e1 = Engine.create(config, w, { threads: 1 });
    const a = e2.generate(req);
    const b = e2.generate({ ...req, maxBatch: 1 });
    const c = e1.generate({ ...req, maxBatch: 4 });
    expect(a.sequences.length).toBe(9);
    for (let i = 0; i < 9; i++) {
      expect(a.sequences[i].promptIndex).toBe(Math.floor(i / 3));
      expect(a.sequences[i].sampleIndex).toBe(i % 3);
      for (const o of [b, c]) {
        expect(Array.from(o.sequences[i].tokens)).toEqual(Array.from(a.sequences[i].tokens));
        expect(Array.from(o.sequences[i].logprobs)).toEqual(Array.from(a.sequences[i].logprobs));
      }
      const s = a.sequences[i];
      if (s.finishReason === 'stop') expect(s.tokens[s.tokens.length - 1]).toBe(0);
      else expect(s.tokens.length).toBe(8);
    }
    // samples of one prompt differ from each other, and another seed gives other tokens
    const flat = (r: typeof a) => r.sequences.map((s) => Array.from(s.tokens).join(',')).join('|');
    expect(new Set(a.sequences.map((s) => Array.from(s.tokens).join(','))).size).toBeGreaterThan(3);
    expect(flat(e2.generate({ ...req, seed: 43 }))).not.toEqual(flat(a));
    // temperature 1, top-p 1: the sampling log-prob is the model's log-prob
    const t1 = e2.generate({ ...req, topP: 1 });
    const scored = e2.score({ sequences: t1.sequences.map((s) => ({ prompt: prompts[s.promptIndex], response: s.tokens })) });
    t1.sequences.forEach((s, i) => {
      for (let t = 0; t < s.tokens.length; t++) expect(Math.abs(s.logprobs[t] - scored.logprobs[i * scored.length + t])).toBeLessThan(2e-5);
    });
    e1.dispose();
    e2.dispose();
  });

  test('a tiny top-p keeps only the most likely token (= greedy); onProgress reaches the total', () => {
    const e = Engine.create(config, w, { threads: 2 });
    const greedy = e.generate({ ...req, temperature: 0 });
    const events: number[] = [];
    const nucleus = e.generate({ ...req, temperature: 0.7, topP: 1e-6, onProgress: (d, t) => events.push(d / t) });
    for (let i = 0; i < 9; i++) expect(Array.from(nucleus.sequences[i].tokens)).toEqual(Array.from(greedy.sequences[i].tokens));
    expect(events[events.length - 1]).toBe(1);
    e.dispose();
  });

  test('sampling frequencies follow the model distribution', () => {
    const e = Engine.create(config, w, { threads: 2 });
    const prompt = Int32Array.from([1, 2, 3]);
    const lp = logSoftmax(refForward(config, toRefParams(w), prompt).logits[2].map((v) => v / 1.5));
    const n = 3000;
    const r = e.generate({ prompts: [prompt], n, maxNewTokens: 1, temperature: 1.5, seed: 5, stopTokens: [] });
    const counts = new Array(config.vocabSize).fill(0);
    for (const s of r.sequences) counts[s.tokens[0]]++;
    for (let v = 0; v < config.vocabSize; v++) {
      const p = Math.exp(lp[v]);
      expect(Math.abs(counts[v] / n - p)).toBeLessThan(4 * Math.sqrt((p * (1 - p)) / n) + 1e-3);
    }
    e.dispose();
  });
});

// d(sum_t w_t logp_t)/d theta: native backward vs central differences of the float64 reference
function lossRef(config: ModelConfig, p: RefParams, batch: ScoreBatch, weights: number[][]): number {
  let s = 0;
  batch.sequences.forEach((seq, b) => {
    refResponseLogprobs(config, p, seq.prompt, seq.response).forEach((lp, t) => (s += weights[b][t] * lp));
  });
  return s;
}

describe.each(variants)('gradients by finite differences: %s', (_name, config) => {
  test('every tensor kind, a few random entries each', () => {
    const w = weightsFor(config, 9);
    const engine = Engine.create(config, w, { threads: 2 });
    const rng = new Rng(21);
    const batch: ScoreBatch = {
      sequences: [
        { prompt: randomTokens(rng, 3, config.vocabSize), response: randomTokens(rng, 4, config.vocabSize) },
        { prompt: randomTokens(rng, 2, config.vocabSize), response: randomTokens(rng, 2, config.vocabSize) },
      ],
    };
    const fw = engine.forwardTrain(batch);
    const T = fw.length;
    const lw = batch.sequences.map((s) => Array.from({ length: T }, (_, t) => (t < s.response.length ? rng.normal() : 0)));
    const g = new Float32Array(2 * T);
    lw.forEach((row, b) => row.forEach((v, t) => (g[b * T + t] = v)));
    engine.backward(g);
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
        const orig = p[i];
        p[i] = orig + eps;
        const up = lossRef(config, ref, batch, lw);
        p[i] = orig - eps;
        const down = lossRef(config, ref, batch, lw);
        p[i] = orig;
        const fd = (up - down) / (2 * eps);
        const tol = 2e-4 * gscale + 1e-5;
        if (Math.abs(gn[i] - fd) > tol) throw new Error(`${name}[${i}]: native ${gn[i]} vs finite difference ${fd}`);
        checked++;
      }
    }
    expect(checked).toBe(parameterShapes(config).length * 3);
    engine.dispose();
  });
});

describe('training', () => {
  const config = tiny('qwen2');
  const batch: ScoreBatch = {
    sequences: [
      { prompt: Int32Array.from([1, 2, 3]), response: Int32Array.from([4, 5, 6, 7]) },
      { prompt: Int32Array.from([8]), response: Int32Array.from([9, 10]) },
    ],
  };

  test('gradients accumulate over micro-batches until zeroGrad; cross-entropy = -mean logp', () => {
    const w = weightsFor(config, 4);
    const e = Engine.create(config, w, { threads: 2 });
    const ce = e.crossEntropyStep(batch);
    const lps = [...refResponseLogprobs(config, toRefParams(w), batch.sequences[0].prompt, batch.sequences[0].response),
      ...refResponseLogprobs(config, toRefParams(w), batch.sequences[1].prompt, batch.sequences[1].response)];
    expect(ce.tokens).toBe(6);
    expect(Math.abs(ce.loss + lps.reduce((a, b) => a + b, 0) / 6)).toBeLessThan(1e-5);
    const g1 = e.exportGradients()!;
    e.crossEntropyStep(batch);
    const g2 = e.exportGradients()!;
    for (const [name, t] of g1) expect(maxAbsDiff(g2.get(name)!.data, t.data.map((v) => 2 * v))).toBeLessThan(1e-5);
    e.zeroGrad();
    for (const t of e.exportGradients()!.values()) expect(maxAbsDiff(t.data, new Float32Array(t.data.length))).toBe(0);
    e.dispose();
  });

  test('gradients and scores do not depend on the thread count', () => {
    // large enough that the matrix products run on both threads
    const mid = smallConfig('qwen2', { vocab: 1000, hidden: 128, layers: 1, heads: 4, kvHeads: 2, intermediate: 384 });
    const w = randomWeights(mid, { seed: 8, std: 0.1 });
    const rng = new Rng(3);
    const big: ScoreBatch = { sequences: [0, 1].map(() => ({ prompt: randomTokens(rng, 60, 1000), response: randomTokens(rng, 60, 1000) })) };
    const runs = [1, 2].map((threads) => {
      const e = Engine.create(mid, w, { threads });
      const batch = big;
      const f = e.forwardTrain(batch);
      const g = Float32Array.from(f.logprobs, (_, i) => (f.mask[i] ? Math.sin(i + 1) : 0));
      e.backward(g);
      const out = { lp: f.logprobs, grads: e.exportGradients()!, pooled: e.score(batch, { pooled: true }).pooled! };
      e.dispose();
      return out;
    });
    expect(Array.from(runs[1].lp)).toEqual(Array.from(runs[0].lp));
    expect(Array.from(runs[1].pooled)).toEqual(Array.from(runs[0].pooled));
    for (const [name, t] of runs[0].grads) expect(maxAbsDiff(runs[1].grads.get(name)!.data, t.data)).toBe(0);
  });

  test('AdamW with clipping and decoupled decay equals a float64 reference, two steps; state round-trips', () => {
    const w = weightsFor(config, 5);
    const e = Engine.create(config, w, { threads: 2 });
    const opts = { lr: 1e-2, beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0.1, maxGradNorm: 0.5 };
    const refW = new Map([...w].map(([n, t]) => [n, Float64Array.from(t.data)]));
    const refM = new Map([...w].map(([n, t]) => [n, new Float64Array(t.data.length)]));
    const refV = new Map([...w].map(([n, t]) => [n, new Float64Array(t.data.length)]));
    for (let step = 1; step <= 2; step++) {
      e.zeroGrad();
      e.crossEntropyStep(batch);
      const grads = e.exportGradients()!;
      let sq = 0;
      for (const t of grads.values()) for (const v of t.data) sq += v * v;
      const norm = Math.sqrt(sq);
      const clip = Math.min(1, opts.maxGradNorm / (norm + 1e-6));
      const { gradNorm } = e.adamwStep(opts);
      expect(Math.abs(gradNorm - norm)).toBeLessThan(1e-5 * norm);
      expect(clip).toBeLessThan(1); // clipping is exercised
      for (const [name, t] of grads) {
        const W = refW.get(name)!, M = refM.get(name)!, V = refV.get(name)!;
        const decay = t.shape.length >= 2 ? 1 - opts.lr * opts.weightDecay : 1;
        for (let i = 0; i < W.length; i++) {
          const gi = t.data[i] * clip;
          M[i] = opts.beta1 * M[i] + (1 - opts.beta1) * gi;
          V[i] = opts.beta2 * V[i] + (1 - opts.beta2) * gi * gi;
          const mh = M[i] / (1 - opts.beta1 ** step), vh = V[i] / (1 - opts.beta2 ** step);
          W[i] = W[i] * decay - (opts.lr * mh) / (Math.sqrt(vh) + opts.eps);
        }
      }
      const now = e.exportWeights();
      for (const [name, W] of refW) expect(maxAbsDiff(now.get(name)!.data, W)).toBeLessThan(2e-6);
    }
    const st = e.exportOptimizerState();
    expect(st.step).toBe(2);
    const e2 = Engine.create(config, e.exportWeights(), { threads: 2 });
    e2.importOptimizerState(st);
    for (const x of [e, e2]) {
      x.zeroGrad();
      x.crossEntropyStep(batch);
      x.adamwStep(opts);
    }
    const a = e.exportWeights(), b = e2.exportWeights();
    for (const [name, t] of a) expect(maxAbsDiff(t.data, b.get(name)!.data)).toBe(0);
    e.dispose();
    e2.dispose();
  });

  test('training lowers the loss; the frozen clone keeps the old weights and refuses training', () => {
    const w = weightsFor(config, 6);
    const e = Engine.create(config, w, { threads: 2 });
    const frozen = e.cloneFrozen();
    const before = frozen.score(batch).logprobs;
    let first = 0, last = 0;
    for (let i = 0; i < 20; i++) {
      e.zeroGrad();
      const { loss } = e.crossEntropyStep(batch);
      if (i === 0) first = loss;
      last = loss;
      e.adamwStep({ lr: 3e-2 });
    }
    expect(last).toBeLessThan(first * 0.5);
    expect(Array.from(frozen.score(batch).logprobs)).toEqual(Array.from(before));
    expect(() => frozen.forwardTrain(batch)).toThrow(/frozen/);
    expect(() => frozen.adamwStep({ lr: 1 })).toThrow(/frozen/);
    e.dispose();
    expect(() => e.score(batch)).toThrow(/disposed/);
    expect(frozen.score(batch).logprobs.length).toBe(8); // the clone outlives its source
    frozen.dispose();
  });

  test('per-layer recomputation is the CUDA engine\'s: the CPU engine refuses it (setCheckpointing, Engine.create)', () => {
    const w = weightsFor(config, 7);
    const e = Engine.create(config, w, { threads: 1, backend: 'cpu' });
    expect(e.checkpointing).toBe(false);
    expect(() => e.setCheckpointing(true)).toThrow(/cpu engine: per-layer recomputation \(checkpointing\) is not supported/);
    e.setCheckpointing(false);
    expect(e.checkpointing).toBe(false);
    expect(() => (e as unknown as { handle(): { setCheckpointing(x: unknown): void } }).handle().setCheckpointing('yes')).toThrow(/expected a boolean/);
    e.dispose();
    expect(() => Engine.create(config, w, { threads: 1, backend: 'cpu', checkpointing: true })).toThrow(/not supported/);
  });
});

describe('bad input', () => {
  const config = tiny('qwen2');
  const w = weightsFor(config);
  const without = (name: string): TensorMap => new Map([...w].filter(([n]) => n !== name));

  test('weights: missing, misshapen, wrong dtype, unexpected tensors name the tensor', () => {
    expect(() => Engine.create(config, without('model.layers.1.mlp.up_proj.weight'))).toThrow(/missing tensor model\.layers\.1\.mlp\.up_proj\.weight/);
    const bad = new Map(w);
    bad.set('model.norm.weight', { shape: [17], data: new Float32Array(17) });
    expect(() => Engine.create(config, bad)).toThrow(/model\.norm\.weight has shape \[17\], expected \[16\]/);
    const f64 = new Map(w);
    f64.set('model.norm.weight', { shape: [16], data: new Float64Array(16) as unknown as Float32Array });
    expect(() => Engine.create(config, f64)).toThrow(/Float32Array/);
    const extra = new Map(w);
    extra.set('model.layers.0.mlp.up_proj.bias', { shape: [24], data: new Float32Array(24) });
    expect(() => Engine.create(config, extra)).toThrow(/unexpected tensor model\.layers\.0\.mlp\.up_proj\.bias/);
    expect(() => Engine.create({ ...config, numKvHeads: 3 }, w)).toThrow(/kvHeads/);
  });

  test('token ids, empty prompts, shapes and options are checked', () => {
    const e = Engine.create(config, w, { threads: 1 });
    expect(() => e.logits(Int32Array.from([1, 2, 13]), 1, 3)).toThrow(/out of range/);
    expect(() => e.logits(Int32Array.from([1, 2]), 1, 3)).toThrow(/length/);
    expect(() => e.score({ sequences: [{ prompt: new Int32Array(0), response: Int32Array.from([1]) }] })).toThrow(/sequences\[0\]\.prompt is empty/);
    expect(() => e.score({ sequences: [{ prompt: Int32Array.from([1]), response: Int32Array.from([1, -1]) }] })).toThrow(/sequences\[0\]\.response\[1\]: token id -1/);
    expect(() => e.generate({ prompts: [new Int32Array(0)], maxNewTokens: 2, temperature: 1, seed: 1 })).toThrow(/empty/);
    expect(() => e.generate({ prompts: [Int32Array.from([99])], maxNewTokens: 2, temperature: 1, seed: 1 })).toThrow(/out of range/);
    expect(() => e.generate({ prompts: [Int32Array.from([1])], maxNewTokens: 2, temperature: 1, topP: 0, seed: 1 })).toThrow(/topP/);
    expect(() => e.generate({ prompts: [Int32Array.from([1])], maxNewTokens: 2, temperature: -1, seed: 1 })).toThrow(/temperature/);
    expect(() => e.generate({ prompts: [Int32Array.from([1])], maxNewTokens: 1.5, temperature: 1, seed: 1 })).toThrow(/maxNewTokens/);
    expect(() => e.backward(new Float32Array(3))).toThrow(/forwardTrain first/);
    e.forwardTrain({ sequences: [{ prompt: Int32Array.from([1]), response: Int32Array.from([2, 3]) }] });
    expect(() => e.backward(new Float32Array(3))).toThrow(/length 2/);
    expect(() => e.adamwStep({ lr: Number.NaN })).toThrow(/lr/);
    e.dispose();
  });
});

describe('backend choice', () => {
  const config = smallConfig('qwen2', { vocab: 31, hidden: 16, layers: 1, heads: 2, kvHeads: 1, intermediate: 24 });
  const weights = randomWeights(config, { seed: 5 });
  test("'cpu' runs the CPU engine; 'auto' the CUDA engine where it can run, else the CPU's results; 'cuda' elsewhere says why not", () => {
    const b = engineBackends();
    if (b.cuda) expect(b).toEqual({ cpu: true, cuda: true });
    else expect(b).toEqual({ cpu: true, cuda: false, cudaReason: expect.stringMatching(/CUDA|GPU|cuda/) });
    const auto = Engine.create(config, weights, { threads: 1 });
    const cpu = Engine.create(config, weights, { threads: 1, backend: 'cpu' });
    const want = b.cuda ? 'cuda' : 'cpu';
    expect([auto.backend, cpu.backend, auto.cloneFrozen().backend]).toEqual([want, 'cpu', want]);
    const batch: ScoreBatch = { sequences: [{ prompt: Int32Array.of(1, 2, 3), response: Int32Array.of(4, 5) }] };
    if (!b.cuda) expect(auto.score(batch).logprobs).toEqual(cpu.score(batch).logprobs);
    auto.dispose();
    cpu.dispose();
    expect(() => Engine.create(config, weights, { backend: 'cpu', precision: 'bf16' })).toThrow(/the cpu backend runs in fp32 only/);
    if (!b.cuda) expect(() => Engine.create(config, weights, { backend: 'cuda' })).toThrow(new RegExp(`backend 'cuda': ${b.cudaReason!.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    expect(() => Engine.create(config, weights, { backend: 'tpu' as 'cpu' })).toThrow(/backend: expected 'cpu', 'cuda' or 'auto', got "tpu"/);
  });

  test('device memory figures: none on the CPU engine (null), resetting its peak a no-op; a disposed engine refuses', () => {
    const cpu = Engine.create(config, weights, { threads: 1, backend: 'cpu' });
    expect(cpu.deviceMemory()).toBeNull();
    expect(() => cpu.resetPeakDeviceMemory()).not.toThrow();
    expect(cpu.deviceMemory()).toBeNull();
    cpu.dispose();
    expect(() => cpu.deviceMemory()).toThrow(/disposed/);
  });
});
