// A tiny policy for trainer tests, with the engine's interface (src/rl/types.ts PolicyEngine) in plain TypeScript:
// a low-rank bigram model. The "final hidden state" at a position is the embedding of its token, h = E[x], and the
// next-token logits are W h (E, W ∈ R^{V×H}). Exact gradients (float64 accumulation), float32 parameters as in the engine, deterministic sampling.
// It lets the tests exercise the trainer's logic (rewards, advantages, mini-batches, checkpoints, resume) in
// milliseconds; the native engine is tested on its own and end to end through `clipo train`.
import type { ModelConfig, TensorMap } from '../../src/model/types.js';
import { policyLossBackwardOnHost } from '../../src/rl/policy-loss.js';
import type { GeneratedSequence, PolicyEngine, PolicyLossFigures, PolicyLossInput, ScoreBatch } from '../../src/rl/types.js';
import { Rng } from '../../src/util/rng.js';

export class BigramPolicy implements PolicyEngine {
  readonly config: ModelConfig;
  readonly V: number;
  readonly H: number;
  E: Float32Array;
  W: Float32Array;
  private gE: Float64Array;
  private gW: Float64Array;
  private mE: Float32Array;
  private vE: Float32Array;
  private mW: Float32Array;
  private vW: Float32Array;
  private optStep = 0;
  private cache: ScoreBatch | null = null;
  generateCalls = 0;

  constructor(V: number, H: number, eos: number, seed: number) {
    this.V = V;
    this.H = H;
    const rng = new Rng(seed);
    this.E = Float32Array.from({ length: V * H }, () => 0.5 * rng.normal());
    this.W = Float32Array.from({ length: V * H }, () => 0.5 * rng.normal());
    this.gE = new Float64Array(V * H);
    this.gW = new Float64Array(V * H);
    this.mE = new Float32Array(V * H);
    this.vE = new Float32Array(V * H);
    this.mW = new Float32Array(V * H);
    this.vW = new Float32Array(V * H);
    this.config = {
      architecture: 'qwen2', hfArchitecture: 'Qwen2ForCausalLM', vocabSize: V, hiddenSize: H, intermediateSize: H, numLayers: 1, numHeads: 1,
      numKvHeads: 1, headDim: H, rmsNormEps: 1e-6, ropeTheta: 10000, ropeScaling: null, maxPositionEmbeddings: 512, tieWordEmbeddings: false,
      attentionBias: false, mlpBias: false, bosTokenId: null, eosTokenIds: [eos], raw: {},
    };
  }

  /** log-softmax of the logits after token x (temperature-scaled) */
  private logSoftmax(x: number, temperature = 1): Float64Array {
    const { V, H } = this;
    const out = new Float64Array(V);
    let max = -Infinity;
    for (let v = 0; v < V; v++) {
      let s = 0;
      for (let k = 0; k < H; k++) s += this.W[v * H + k]! * this.E[x * H + k]!;
      out[v] = s / temperature;
      if (out[v]! > max) max = out[v]!;
    }
    let z = 0;
    for (let v = 0; v < V; v++) z += Math.exp(out[v]! - max);
    const lz = max + Math.log(z);
    for (let v = 0; v < V; v++) out[v]! -= lz;
    return out;
  }

  generate(req: { prompts: Int32Array[]; n?: number; maxNewTokens: number; temperature: number; seed: number; stopTokens?: number[] }): { sequences: GeneratedSequence[] } {
    this.generateCalls++;
    const n = req.n ?? 1;
    const stop = req.stopTokens ?? this.config.eosTokenIds;
    const sequences: GeneratedSequence[] = [];
    req.prompts.forEach((p, pi) => {
      for (let si = 0; si < n; si++) {
        const rng = new Rng(req.seed * 7919 + pi * 104729 + si * 1299709);
        const toks: number[] = [];
        const lps: number[] = [];
        let x = p[p.length - 1]!;
        let reason: 'stop' | 'length' = 'length';
        while (toks.length < req.maxNewTokens) {
          const lp = this.logSoftmax(x, req.temperature || 1);
          let y = 0;
          if (req.temperature === 0) for (let v = 1; v < this.V; v++) y = lp[v]! > lp[y]! ? v : y;
          else {
            let u = rng.next();
            for (y = 0; y < this.V - 1; y++) if ((u -= Math.exp(lp[y]!)) < 0) break;
          }
          toks.push(y);
          lps.push(lp[y]!);
          x = y;
          if (stop.includes(y)) {
            reason = 'stop';
            break;
          }
        }
        sequences.push({ promptIndex: pi, sampleIndex: si, tokens: Int32Array.from(toks), logprobs: Float32Array.from(lps), finishReason: reason });
      }
    });
    return { sequences };
  }

  private pass(batch: ScoreBatch, pooled: boolean) {
    const B = batch.sequences.length;
    const T = Math.max(1, ...batch.sequences.map((s) => s.response.length));
    const logprobs = new Float32Array(B * T);
    const entropy = new Float32Array(B * T);
    const mask = new Uint8Array(B * T);
    const pool = pooled ? new Float32Array(B * this.H) : undefined;
    batch.sequences.forEach((s, b) => {
      if (s.prompt.length === 0) throw new Error('empty prompt');
      let x = s.prompt[s.prompt.length - 1]!;
      for (let t = 0; t < s.response.length; t++) {
        const lp = this.logSoftmax(x);
        const y = s.response[t]!;
        logprobs[b * T + t] = lp[y]!;
        let ent = 0;
        for (let v = 0; v < this.V; v++) ent -= Math.exp(lp[v]!) * lp[v]!;
        entropy[b * T + t] = ent;
        mask[b * T + t] = 1;
        if (pool) for (let k = 0; k < this.H; k++) pool[b * this.H + k]! += this.E[x * this.H + k]! / s.response.length;
        x = y;
      }
    });
    return { logprobs, entropy, pooled: pool, mask, length: T };
  }

  score(batch: ScoreBatch, opts: { entropy?: boolean; pooled?: boolean } = {}) {
    const r = this.pass(batch, !!opts.pooled);
    return { logprobs: r.logprobs, entropy: opts.entropy ? r.entropy : undefined, pooled: r.pooled, mask: r.mask, length: r.length };
  }

  forwardTrain(batch: ScoreBatch) {
    this.cache = batch;
    const r = this.pass(batch, false);
    return { logprobs: r.logprobs, entropy: r.entropy, mask: r.mask, length: r.length };
  }

  /** d logp(y | x) / d logits = onehot(y) − softmax; chain to W (⊗ h) and to E[x] (Wᵀ ·). */
  backward(gradLogp: Float32Array): void {
    if (!this.cache) throw new Error('backward without forwardTrain');
    const { V, H } = this;
    const T = Math.max(1, ...this.cache.sequences.map((s) => s.response.length));
    this.cache.sequences.forEach((s, b) => {
      let x = s.prompt[s.prompt.length - 1]!;
      for (let t = 0; t < s.response.length; t++) {
        const g = gradLogp[b * T + t]!;
        const y = s.response[t]!;
        if (g !== 0) {
          const lp = this.logSoftmax(x);
          for (let v = 0; v < V; v++) {
            const d = g * ((v === y ? 1 : 0) - Math.exp(lp[v]!));
            for (let k = 0; k < H; k++) {
              this.gW[v * H + k]! += d * this.E[x * H + k]!;
              this.gE[x * H + k]! += d * this.W[v * H + k]!;
            }
          }
        }
        x = y;
      }
    });
    this.cache = null;
  }

  /** the micro-batch step through forwardTrain and backward (no entropy bonus: backward takes no d loss / d H) */
  policyLossBackward(batch: ScoreBatch, input: PolicyLossInput): PolicyLossFigures {
    return policyLossBackwardOnHost(this, batch, input);
  }

  zeroGrad(): void {
    this.gE.fill(0);
    this.gW.fill(0);
  }

  adamwStep(o: { lr: number; beta1?: number; beta2?: number; eps?: number; weightDecay?: number; maxGradNorm?: number }): { gradNorm: number } {
    let sq = 0;
    for (const g of [this.gE, this.gW]) for (const x of g) sq += x * x;
    const norm = Math.sqrt(sq);
    const scale = o.maxGradNorm !== undefined && norm > o.maxGradNorm ? o.maxGradNorm / (norm + 1e-6) : 1;
    const b1 = o.beta1 ?? 0.9, b2 = o.beta2 ?? 0.999, eps = o.eps ?? 1e-8, wd = o.weightDecay ?? 0;
    this.optStep++;
    const c1 = 1 - b1 ** this.optStep, c2 = 1 - b2 ** this.optStep;
    const upd = (p: Float32Array, g: Float64Array, m: Float32Array, v: Float32Array) => {
      for (let i = 0; i < p.length; i++) {
        const gi = g[i]! * scale;
        m[i] = b1 * m[i]! + (1 - b1) * gi;
        v[i] = b2 * v[i]! + (1 - b2) * gi * gi;
        p[i] = p[i]! * (1 - o.lr * wd) - (o.lr * m[i]! / c1) / (Math.sqrt(v[i]! / c2) + eps);
      }
    };
    upd(this.E, this.gE, this.mE, this.vE);
    upd(this.W, this.gW, this.mW, this.vW);
    return { gradNorm: norm };
  }

  private map(e: Float32Array, w: Float32Array): TensorMap {
    return new Map([
      ['E', { shape: [this.V, this.H], data: Float32Array.from(e) }],
      ['W', { shape: [this.V, this.H], data: Float32Array.from(w) }],
    ]);
  }

  exportWeights(): TensorMap {
    return this.map(this.E, this.W);
  }

  exportOptimizerState() {
    return { step: this.optStep, m: this.map(this.mE, this.mW), v: this.map(this.vE, this.vW) };
  }

  /** Restores weights saved by exportWeights . */
  importWeights(w: TensorMap): void {
    this.E = Float32Array.from(w.get('E')!.data);
    this.W = Float32Array.from(w.get('W')!.data);
  }

  importOptimizerState(s: { step: number; m: TensorMap; v: TensorMap }): void {
    this.optStep = s.step;
    this.mE = Float32Array.from(s.m.get('E')!.data);
    this.mW = Float32Array.from(s.m.get('W')!.data);
    this.vE = Float32Array.from(s.v.get('E')!.data);
    this.vW = Float32Array.from(s.v.get('W')!.data);
  }

  cloneFrozen(): BigramPolicy {
    const c = new BigramPolicy(this.V, this.H, this.config.eosTokenIds[0]!, 0);
    c.E = Float32Array.from(this.E);
    c.W = Float32Array.from(this.W);
    return c;
  }

  dispose(): void {}
}
