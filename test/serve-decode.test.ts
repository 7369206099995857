// The engine's step-wise decoder (continuous batching) and its sampler:
//  - with default settings a sequence gets exactly generate()'s tokens and log-probs (same seed, prompt index,
//    sample index), whether it runs alone or joins/leaves a batch with other requests at other steps;
//  - the sampler (repetition penalty, logit bias, temperature, top-k, top-p, min-p, top log-probs) against an
//    independent float64 reference on fresh random logits.
import { Engine, sampleLogits, type DecodeAddRequest, type SamplerOptions } from '../src/engine/engine.js';
import { initModel } from '../src/model/init.js';
import { loadNative } from '../src/native.js';

function engineBuilt(): boolean {
  try {
    return loadNative().buildInfo().modules.includes('engine');
  } catch {
    return false;
  }
}
const maybe = engineBuilt() ? describe : describe.skip;

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const EOS = 257;

function tiny(seed: number, threads = 1): Engine {
  // a larger init range than the default so the random model's distributions are not flat
  const { config, weights } = initModel({ architecture: 'qwen2', numLayers: 2, hiddenSize: 32, numHeads: 4, numKvHeads: 2, intermediateSize: 64, vocabSize: 259, eosTokenIds: [EOS], initializerRange: 0.3 }, seed);
  return Engine.create(config, weights, { threads });
}

/** Runs the step loop; `schedule[step]` requests join before that step. Returns tokens/logprobs per request tag. */
function runSession(engine: Engine, schedule: Map<number, Array<{ tag: string; req: DecodeAddRequest }>>) {
  const out = new Map<string, { tokens: number[][]; logprobs: number[][]; stopped: boolean[] }>();
  const owner = new Map<number, [string, number]>();
  const batchSizes: number[] = [];
  for (let step = 0; step < 10_000; step++) {
    for (const { tag, req } of schedule.get(step) ?? []) {
      const ids = engine.decodeAdd(req);
      out.set(tag, { tokens: ids.map(() => []), logprobs: ids.map(() => []), stopped: ids.map(() => false) });
      ids.forEach((id, k) => owner.set(id, [tag, k]));
    }
    const pendingJoins = [...schedule.keys()].some((s) => s > step);
    if (engine.decodeActive() === 0 && !pendingJoins) break;
    const toks = engine.decodeStep();
    batchSizes.push(toks.length);
    for (const t of toks) {
      const [tag, k] = owner.get(t.id)!;
      const o = out.get(tag)!;
      o.tokens[k].push(t.token);
      o.logprobs[k].push(t.logprob);
      if (t.finished) o.stopped[k] = t.stopped;
    }
  }
  return { out, batchSizes };
}

maybe('step-wise decoding', () => {
  const prompt = (r: () => number, len: number) => Int32Array.from({ length: len }, () => Math.floor(r() * 256));

  test('alone or in a changing batch, a sequence gets generate()\'s tokens for its seed', () => {
    const engine = tiny(11);
    try {
      const r = rng(5);
      const A = prompt(r, 7), B = prompt(r, 12), C = prompt(r, 3);
      const settings = [
        { temperature: 0.9, topP: 0.8 },
        { temperature: 0, topP: 1 },
        { temperature: 1.3, topP: 1 },
      ];
      for (const st of settings) {
        const ref = engine.generate({ prompts: [A, B], n: 2, maxNewTokens: 20, seed: 77, ...st });
        const refOf = (p: number, k: number) => ref.sequences.find((s) => s.promptIndex === p && s.sampleIndex === k)!;
        const reqA: DecodeAddRequest = { prompt: A, n: 2, maxNewTokens: 20, seed: 77, promptIndex: 0, ...st };
        const reqB: DecodeAddRequest = { prompt: B, n: 2, maxNewTokens: 20, seed: 77, promptIndex: 1, ...st };
        // other traffic: a different seed and settings, joining late
        const reqC: DecodeAddRequest = { prompt: C, n: 3, maxNewTokens: 9, seed: 5, temperature: 0.7, topK: 5, repetitionPenalty: 1.3 };
        const alone = runSession(engine, new Map([[0, [{ tag: 'A', req: reqA }]]]));
        const mixed = runSession(engine, new Map([[0, [{ tag: 'C', req: reqC }]], [2, [{ tag: 'B', req: reqB }]], [4, [{ tag: 'A', req: reqA }]]]));
        expect(Math.max(...mixed.batchSizes)).toBeGreaterThan(2);
        for (const run of [alone.out, mixed.out]) {
          for (let k = 0; k < 2; k++) {
            const want = refOf(0, k);
            expect(run.get('A')!.tokens[k]).toEqual(Array.from(want.tokens));
            expect(Array.from(Float32Array.from(run.get('A')!.logprobs[k]))).toEqual(Array.from(want.logprobs));
            expect(run.get('A')!.stopped[k]).toBe(want.finishReason === 'stop');
          }
        }
        for (let k = 0; k < 2; k++) expect(mixed.out.get('B')!.tokens[k]).toEqual(Array.from(refOf(1, k).tokens));
      }
      expect(engine.decodeActive()).toBe(0);
    } finally {
      engine.dispose();
    }
  });

  test('removing a sequence frees it at once and does not disturb the others', () => {
    const engine = tiny(12);
    try {
      const r = rng(9);
      const A = prompt(r, 5), B = prompt(r, 6);
      const req = (p: Int32Array, seed: number): DecodeAddRequest => ({ prompt: p, maxNewTokens: 30, seed, temperature: 1, stopTokens: [] });
      const alone = runSession(engine, new Map([[0, [{ tag: 'A', req: req(A, 3) }]]])).out.get('A')!.tokens[0];
      const [a] = engine.decodeAdd(req(A, 3));
      const [b] = engine.decodeAdd(req(B, 4));
      const got: number[] = [];
      for (let s = 0; s < 30; s++) {
        if (s === 5) {
          expect(engine.decodeRemove(b)).toBe(true);
          expect(engine.decodeActive()).toBe(1);
        }
        for (const t of engine.decodeStep()) if (t.id === a) got.push(t.token);
      }
      expect(got).toEqual(alone);
      expect(engine.decodeActive()).toBe(0);
      expect(engine.decodeRemove(b)).toBe(false);
    } finally {
      engine.dispose();
    }
  });

  test('greedy with a logit bias picks the favoured token; bad sampler settings are refused', () => {
    const engine = tiny(13);
    try {
      const ids = engine.decodeAdd({ prompt: Int32Array.from([1, 2, 3]), maxNewTokens: 6, seed: 0, temperature: 0, logitBias: new Map([[42, 100]]), topLogprobs: 3 });
      const toks: number[] = [];
      for (let s = 0; s < 6; s++) for (const t of engine.decodeStep()) {
        expect(t.id).toBe(ids[0]);
        expect(t.top!.length).toBe(3);
        expect(t.top![0].token).toBe(42);
        expect(t.top![0].logprob).toBeCloseTo(t.logprob, 5);
        toks.push(t.token);
      }
      expect(toks).toEqual([42, 42, 42, 42, 42, 42]);
      const base = { prompt: Int32Array.from([1]), maxNewTokens: 2, seed: 0, temperature: 1 };
      expect(() => engine.decodeAdd({ ...base, topP: 0 })).toThrow(/topP/);
      expect(() => engine.decodeAdd({ ...base, minP: 1.5 })).toThrow(/minP/);
      expect(() => engine.decodeAdd({ ...base, repetitionPenalty: 0 })).toThrow(/repetitionPenalty/);
      expect(() => engine.decodeAdd({ ...base, logitBias: new Map([[400, 1]]) })).toThrow(/out of range/);
      expect(() => engine.decodeAdd({ ...base, prompt: Int32Array.from([300]) })).toThrow(/out of range/);
      expect(() => engine.decodeAdd({ ...base, maxNewTokens: 0 })).toThrow(/maxNewTokens/);
      expect(engine.decodeActive()).toBe(0);
    } finally {
      engine.dispose();
    }
  });
});

/** float64 reference of the sampler; null when u or the nucleus boundary is too close to call. */
function refSample(z: Float32Array, u: number, o: SamplerOptions, history: number[]): { token: number; logprob: number; logp: (i: number) => number } | null {
  const V = z.length;
  const x = Array.from(z);
  const rp = o.repetitionPenalty ?? 1;
  if (rp !== 1) for (const t of new Set(history)) x[t] = x[t] > 0 ? x[t] / rp : x[t] * rp;
  for (const [t, b] of o.logitBias ?? []) x[t] += b;
  const T = o.temperature;
  const s = x.map((v) => (T > 0 ? v / T : v));
  const mx = Math.max(...s);
  const e = s.map((v) => Math.exp(v - mx));
  const sum = e.reduce((a, b) => a + b, 0);
  const logp = (i: number) => s[i] - mx - Math.log(sum);
  if (T === 0) {
    let best = 0;
    for (let i = 1; i < V; i++) if (x[i] > x[best]) best = i;
    return { token: best, logprob: logp(best), logp };
  }
  let w = e.slice();
  const k = o.topK ?? 0;
  if (k > 0 && k < V) {
    const kth = [...w].sort((a, b) => b - a)[k - 1];
    w = w.map((v) => (v < kth ? 0 : v));
  }
  const keptMass = w.reduce((a, b) => a + b, 0);
  let theta = 0;
  const topP = o.topP ?? 1;
  if (topP < 1) {
    const need = topP * keptMass;
    const sorted = [...w].sort((a, b) => b - a);
    let cum = 0;
    for (const v of sorted) {
      cum += v;
      if (Math.abs(cum - need) < 1e-5 * keptMass) return null;
      if (cum >= need) {
        theta = v;
        break;
      }
    }
  }
  const minP = o.minP ?? 0;
  if (minP > 0) theta = Math.max(theta, minP * Math.max(...w));
  let kept = 0;
  for (const v of w) {
    if (v > 0 && v !== theta && Math.abs(v - theta) < 1e-6 * theta) return null;
    if (v >= theta && v > 0) kept += v;
  }
  const target = u * kept;
  let c = 0;
  let pick = -1;
  for (let i = 0; i < V; i++) {
    if (!(w[i] >= theta && w[i] > 0)) continue;
    c += w[i];
    if (Math.abs(c - target) < 1e-5 * kept) return null;
    pick = i;
    if (c > target) break;
  }
  return { token: pick, logprob: logp(pick), logp };
}

maybe('the step-wise sampler against a float64 reference', () => {
  test('random logits and settings', () => {
    const r = rng(2024);
    let compared = 0;
    const counts = { topK: 0, topP: 0, minP: 0, rep: 0, bias: 0, greedy: 0 };
    for (let trial = 0; trial < 600; trial++) {
      const V = r() < 0.5 ? 50 : 300;
      const z = Float32Array.from({ length: V }, () => (r() - 0.5) * (r() < 0.5 ? 4 : 16));
      const o: SamplerOptions = { temperature: r() < 0.15 ? 0 : 0.3 + 1.5 * r() };
      if (r() < 0.5) o.topK = 1 + Math.floor(r() * V * 0.5);
      if (r() < 0.5) o.topP = 0.2 + 0.75 * r();
      if (r() < 0.4) o.minP = r() * 0.3;
      if (r() < 0.4) o.repetitionPenalty = 0.5 + 1.5 * r();
      if (r() < 0.4) o.logitBias = new Map(Array.from({ length: 3 }, () => [Math.floor(r() * V), (r() - 0.5) * 10] as [number, number]));
      o.topLogprobs = Math.floor(r() * 5);
      const history = Array.from({ length: Math.floor(r() * 20) }, () => Math.floor(r() * V));
      const u = r();
      const want = refSample(z, u, o, history);
      if (!want) continue;
      const got = sampleLogits(z, u, { ...o, history: Int32Array.from(history) });
      expect({ trial, token: got.token }).toEqual({ trial, token: want.token });
      expect(Math.abs(got.logprob - want.logprob)).toBeLessThan(1e-4);
      expect(got.top.length).toBe(o.topLogprobs);
      for (const t of got.top) expect(Math.abs(t.logprob - want.logp(t.token))).toBeLessThan(1e-4);
      for (let i = 1; i < got.top.length; i++) expect(got.top[i].logprob).toBeLessThanOrEqual(got.top[i - 1].logprob);
      if (got.top.length) {
        // the first is the most likely token of the whole distribution
        let best = 0;
        for (let i = 1; i < V; i++) if (want.logp(i) > want.logp(best)) best = i;
        expect(got.top[0].token).toBe(best);
      }
      compared++;
      if (o.topK) counts.topK++;
      if (o.topP) counts.topP++;
      if (o.minP) counts.minP++;
      if (o.repetitionPenalty) counts.rep++;
      if (o.logitBias) counts.bias++;
      if (o.temperature === 0) counts.greedy++;
    }
    expect(compared).toBeGreaterThan(500);
    for (const v of Object.values(counts)) expect(v).toBeGreaterThan(30);
  });

  test('the filters really restrict the choice (empirical check on one row)', () => {
    const z = Float32Array.from([2, 1.9, 1.8, 0.5, 0.4, 0.3, -1, -2]);
    const seen = (o: SamplerOptions) => {
      const s = new Set<number>();
      for (let i = 0; i < 400; i++) s.add(sampleLogits(z, (i + 0.5) / 400, o).token);
      return [...s].sort((a, b) => a - b);
    };
    expect(seen({ temperature: 1 })).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(seen({ temperature: 1, topK: 3 })).toEqual([0, 1, 2]);
    expect(seen({ temperature: 1, minP: 0.5 })).toEqual([0, 1, 2]);
    expect(seen({ temperature: 1, logitBias: new Map([[7, -100]]) })).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(seen({ temperature: 1, topK: 2, repetitionPenalty: 100 }).length).toBe(2);
  });
});
