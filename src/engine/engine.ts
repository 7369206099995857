// The policy engine: a Qwen2/Llama transformer in the native addon, driven from TypeScript. The backend is chosen at
// creation ('cpu' | 'cuda' | 'auto'): the CPU engine (fp32) and the CUDA engine (bf16, or fp32 as a test mode) both run
// inference and training (docs/engine.md, Backends).
// Scoring with pooled hidden states, KV-cache sampling, training forward/backward, AdamW, a frozen reference copy.
// See docs/engine.md for the API contract and the numerics.
import { threadsForModel } from './threads.js';
import { loadNative } from '../native.js';
import type { LazyTensor, LazyTensorMap, ModelConfig, Tensor, TensorMap } from '../model/types.js';
import { flattenBatch, isTyped, type ScoreBatch } from './batch.js';
import { checkAllocatable, isSamplingTemperature, SAMPLING_TEMPERATURE_RULE } from '../util/limits.js';
import { availableBackends } from '../kernels/backend.js';
import type { KlType, SurrogateAgg, SurrogateMode } from '../kernels/variants.js';

export type { ScoreBatch } from './batch.js';

export type EngineBackend = 'cpu' | 'cuda';
export type EngineBackendRequest = EngineBackend | 'auto';
export const ENGINE_BACKENDS: readonly EngineBackendRequest[] = ['cpu', 'cuda', 'auto'];
/** The backend of the demo's runs and of `clipo bench train`: the CPU engine, whose figures they report. (`clipo
 *  train` takes `model.backend`; training on the CUDA engine is checked under emulation, not yet on a GPU.) */
export const TRAIN_BACKEND: EngineBackend = 'cpu';

/** The optimizer's master weights (Engine.setMasterWeights). */
export type MasterWeights = 'fp32' | 'bf16-sr';
export type EnginePrecision = 'bf16' | 'fp32';

export interface EngineOptions {
  /** OpenMP threads for this engine (default: picked by the model's size, threadsForModel) */
  threads?: number;
  /** 'cpu', 'cuda' or 'auto' (default): 'auto' takes the CUDA engine when this build has one and a GPU is usable,
   *  else the CPU engine; 'cuda' where that is not so is an Error saying why. */
  backend?: EngineBackendRequest;
  /** the CUDA engine's storage: 'bf16' (default) or 'fp32' (a test mode matching the CPU engine within 1e-4); the
   *  CPU engine is fp32 only */
  precision?: EnginePrecision;
  /** the engine will be trained: the bf16 CUDA engine then keeps its fp32 master weights from the start, taking the
   *  exact values given (without it, the master is made at the first training call from the bf16 weights) */
  training?: boolean;
  /** per-layer activation recomputation in training (Engine.setCheckpointing): the CUDA engine only; true on the CPU
   *  engine is an Error */
  checkpointing?: boolean;
}

/** Which engine backends this build can run: the CPU engine always; the CUDA engine, with the reason it cannot
 *  run when it cannot (not part of this version, built without CUDA, no usable GPU). */
export function engineBackends(): { cpu: true; cuda: boolean; cudaReason?: string } {
  const fn = loadNative().engineBackends as (() => { cpu: boolean; cuda: boolean; cudaReason?: string }) | undefined;
  const native = typeof fn === 'function' ? fn() : { cpu: true, cuda: false, cudaReason: 'this build of the addon has no CUDA engine' };
  if (!native.cuda) return { cpu: true, cuda: false, cudaReason: native.cudaReason ?? 'the CUDA engine is not in this build' };
  const gpu = availableBackends();
  return gpu.cuda ? { cpu: true, cuda: true } : { cpu: true, cuda: false, cudaReason: gpu.reason ?? 'no usable GPU' };
}

/** Resolves a backend request to the engine that will run; 'cuda' that cannot run throws saying why. */
export function resolveEngineBackend(requested: EngineBackendRequest | undefined): EngineBackend {
  const r = requested ?? 'auto';
  if (!ENGINE_BACKENDS.includes(r)) throw new Error(`backend: expected 'cpu', 'cuda' or 'auto', got ${JSON.stringify(requested)}`);
  if (r === 'cpu') return 'cpu';
  const b = engineBackends();
  if (r === 'cuda' && !b.cuda) throw new Error(`backend 'cuda': ${b.cudaReason}`);
  return b.cuda ? 'cuda' : 'cpu';
}

export interface GenerateRequest {
  /** token ids per prompt (non-empty) */
  prompts: Int32Array[];
  /** samples per prompt (default 1); output order is prompt-major */
  n?: number;
  maxNewTokens: number;
  /** 0 = greedy */
  temperature: number;
  /** nucleus mass, (0, 1], default 1 */
  topP?: number;
  seed: number;
  /** default: config.eosTokenIds */
  stopTokens?: number[];
  /** mean final hidden state (after the final norm) over the generated tokens' positions */
  returnPooled?: boolean;
  /** most sequences decoded at once (prompts are grouped; results do not depend on it), default 64 */
  maxBatch?: number;
  /** called from inside the running native call: it may dispose() the engine (deferred to the call's end) but any
   *  other use of this engine from it throws */
  onProgress?: (doneSequences: number, total: number) => void;
}

export interface GeneratedSequence {
  promptIndex: number;
  sampleIndex: number;
  /** generated tokens only (including the stop token when one was hit) */
  tokens: Int32Array;
  /** log-prob of each generated token under the temperature-scaled distribution (greedy: under temperature 1) */
  logprobs: Float32Array;
  finishReason: 'stop' | 'length';
  pooled?: Float32Array;
}

/** Per-request sampling settings of the step-wise decoder (neutral values change nothing). Applied in the order
 *  repetition penalty and logit bias (raw logits), temperature, top-k, top-p (over the top-k set), min-p. */
export interface SamplerOptions {
  /** 0 = greedy (argmax of the processed logits) */
  temperature: number;
  /** nucleus mass, (0, 1], default 1 */
  topP?: number;
  /** keep the k most likely tokens (0 = off) */
  topK?: number;
  /** drop tokens with p < minP * p_max, [0, 1], default 0 */
  minP?: number;
  /** > 0, default 1: a seen token's positive logit is divided by it, a negative one multiplied */
  repetitionPenalty?: number;
  /** token id -> value added to its logit */
  logitBias?: ReadonlyMap<number, number>;
  /** also report the most likely tokens at each step (with their log-probs) */
  topLogprobs?: number;
}

export interface DecodeAddRequest extends SamplerOptions {
  prompt: Int32Array;
  /** samples of this prompt (sample indices 0..n-1), default 1 */
  n?: number;
  maxNewTokens: number;
  seed: number;
  /** which of generate()'s per-prompt random streams to use (default 0) */
  promptIndex?: number;
  /** default: config.eosTokenIds */
  stopTokens?: number[];
}

export interface DecodeStepToken {
  /** the id decodeAdd returned for this sequence */
  id: number;
  token: number;
  /** log-prob under the processed, temperature-scaled distribution (greedy: temperature 1) */
  logprob: number;
  /** the sequence ended at this token (stop token or maxNewTokens) and has left the batch */
  finished: boolean;
  /** ended by a stop token */
  stopped: boolean;
  /** most likely tokens at this step, when topLogprobs was asked */
  top?: Array<{ token: number; logprob: number }>;
}

export interface ScoreResult {
  /** [B*T], T = max response length; 0 where masked */
  logprobs: Float32Array;
  entropy?: Float32Array;
  /** [B*hiddenSize] */
  pooled?: Float32Array;
  /** [B*T] response mask */
  mask: Uint8Array;
  length: number;
}

/**
 * One micro-batch of the policy update (Engine.policyLossBackward): the surrogate loss's settings (as
 * src/kernels/surrogate.ts takes them) and the micro-batch's loss inputs. Per token of an in-loss response:
 * d loss / d logp = weight × the surrogate's gradient, d loss / d H = −entropyCoef / entropyDenominator.
 */
export interface PolicyLossInput {
  mode: SurrogateMode;
  clipLow: number;
  clipHigh: number;
  dualClip?: number;
  agg: SurrogateAgg;
  /** coefficient of the KL term (needs refLogp); default 0 */
  klCoef?: number;
  klType?: KlType;
  /** log pi_old, [B*T] with T the longest response of the batch (values past a response's end are ignored) */
  oldLogp: Float32Array;
  /** log pi_ref, [B*T]; enables the KL term */
  refLogp?: Float32Array;
  /** sequence advantages A_i, [B] */
  advantages: Float32Array;
  /** [B], 0: the response takes no part in the loss (masked out, in no denominator); default: every one does */
  inLoss?: Uint8Array;
  /** the micro-batch's weight in its mini-batch's aggregate (src/rl/policy-loss.ts microBatchWeight) */
  weight: number;
  /** > 0: the entropy bonus, loss −= entropyCoef × (sum of in-loss entropies) / entropyDenominator */
  entropyCoef?: number;
  /** the mini-batch's in-loss tokens (default 1) */
  entropyDenominator?: number;
}

/** What Engine.policyLossBackward returns: the surrogate kernel's scalars over the micro-batch (before `weight`). */
export interface PolicyLossFigures {
  /** pgLoss + klCoef × klLoss */
  loss: number;
  pgLoss: number;
  /** 0 without refLogp */
  klLoss: number;
  clipFracHigh: number;
  clipFracLow: number;
  dualClipFrac: number;
  approxKl: number;
  /** sum of the entropies of the in-loss tokens */
  entropySum: number;
  /** in-loss response tokens N and in-loss non-empty responses */
  tokens: number;
  sequences: number;
  /** response tokens whose log-prob is NaN or infinite (then nothing was accumulated) */
  nonFiniteLogp: number;
  /** tokens whose weighted d loss / d logp is NaN or infinite (then nothing was accumulated) */
  nonFiniteGrad: number;
  /** the backward ran (false: nothing in the loss, or a log-prob, the loss or a gradient was not finite) */
  accumulated: boolean;
}

export interface AdamWOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** decoupled weight decay, applied to matrices (not to norm weights or biases) */
  weightDecay?: number;
  /** global-norm clipping threshold; 0 or absent: no clipping */
  maxGradNorm?: number;
}

export interface OptimizerState {
  step: number;
  m: TensorMap;
  v: TensorMap;
}

interface ParamInfo {
  name: string;
  shape: number[];
  offset: number;
  size: number;
}

/**
 * Device memory (Engine.deviceMemory), in bytes: what the CUDA engine's device buffers hold now and their peak since
 * the last resetPeakDeviceMemory — counted over every CUDA engine of the process together (a policy and its reference
 * copy share the GPU), not counting the CUDA context or cuBLASLt's workspace — and the device's free and total memory
 * (cudaMemGetInfo).
 */
export interface DeviceMemory {
  currentBytes: number;
  peakBytes: number;
  freeBytes: number;
  totalBytes: number;
}

interface NativeEngineModel {
  paramInfo(): ParamInfo[];
  getWeights(): Float32Array;
  getGradients(): Float32Array | null;
  memoryBytes(): number;
  deviceMemory(): DeviceMemory | null;
  resetPeakDeviceMemory(): void;
  logits(o: { tokens: Int32Array; batch: number; length: number }): Float32Array;
  score(o: object): ScoreResult;
  forwardTrain(o: object): Required<Omit<ScoreResult, 'pooled'>>;
  backward(o: { gradLogp: Float32Array; gradEntropy?: Float32Array; release?: boolean }): void;
  policyLossBackward(o: object): PolicyLossFigures;
  zeroGrad(): void;
  adamwStep(o: AdamWOptions): number;
  setMasterWeights(o: { mode: MasterWeights; seed?: number }): void;
  setCheckpointing(on: boolean): void;
  getCheckpointing(): boolean;
  getOptimizerState(): { step: number; m: Float32Array | null; v: Float32Array | null };
  setOptimizerState(o: { step: number; m: Float32Array; v: Float32Array }): void;
  generate(o: object): {
    promptIndex: Int32Array;
    sampleIndex: Int32Array;
    lengths: Int32Array;
    tokens: Int32Array;
    logprobs: Float32Array;
    stopped: Uint8Array;
    pooled?: Float32Array;
  };
  decodeAdd(o: object): Float64Array;
  decodeStep(): {
    ids: Float64Array;
    tokens: Int32Array;
    logprobs: Float32Array;
    finished: Uint8Array;
    stopped: Uint8Array;
    topTokens: Int32Array;
    topLogprobs: Float32Array;
    topCount: number;
  };
  decodeRemove(id: number): boolean;
  decodeActive(): number;
  dispose(): void;
}

function samplerFields(o: SamplerOptions): object {
  const bias = o.logitBias ? [...o.logitBias] : [];
  return {
    temperature: o.temperature,
    topP: o.topP ?? 1,
    topK: o.topK ?? 0,
    minP: o.minP ?? 0,
    repetitionPenalty: o.repetitionPenalty ?? 1,
    topLogprobs: o.topLogprobs ?? 0,
    logitBiasTokens: Int32Array.from(bias.map((b) => b[0])),
    logitBiasValues: Float32Array.from(bias.map((b) => b[1])),
  };
}

/** The step-wise decoder's sampler on one row of logits (u uniform in [0, 1)); for tests and diagnostics. */
export function sampleLogits(logits: Float32Array, u: number, opts: SamplerOptions & { history?: Int32Array }): { token: number; logprob: number; top: Array<{ token: number; logprob: number }> } {
  const fn = loadNative().engineSample as ((o: object) => { token: number; logprob: number; topTokens: Int32Array; topLogprobs: Float32Array }) | undefined;
  if (typeof fn !== 'function') throw new Error('the engine is not in this build of the addon');
  const r = fn({ logits, u, history: opts.history, ...samplerFields(opts) });
  return { token: r.token, logprob: r.logprob, top: Array.from(r.topTokens, (t, i) => ({ token: t, logprob: r.topLogprobs[i] })) };
}

type EngineModelCtor = new (o: object) => NativeEngineModel;

function nativeCtor(): EngineModelCtor {
  const addon = loadNative();
  const ctor = addon.EngineModel;
  if (typeof ctor !== 'function') {
    throw new Error(`the engine is not in this build of the addon (modules: ${addon.buildInfo().modules.join(', ')})`);
  }
  return ctor as EngineModelCtor;
}

export class Engine {
  readonly config: ModelConfig;
  readonly frozen: boolean;
  /** the engine that runs this model */
  readonly backend: EngineBackend;
  private native: NativeEngineModel | null;
  private readonly info: ParamInfo[];
  private pending: { batchSize: number; length: number } | null = null;

  private constructor(config: ModelConfig, native: NativeEngineModel, frozen: boolean, backend: EngineBackend) {
    this.config = config;
    this.native = native;
    this.frozen = frozen;
    this.backend = backend;
    this.info = native.paramInfo();
  }

  /** Builds the native model from a config and fp32 weights with HF names; a missing, extra or misshapen tensor
   *  throws naming it. Tied embeddings: lm_head.weight may be absent. The backend is resolved first (an
   *  unavailable 'cuda' throws before any weight is copied). Lazy weights (openModelDir) are read one tensor at a
   *  time as the engine copies them in, so the host never holds them all. */
  static create(config: ModelConfig, weights: TensorMap | LazyTensorMap, opts: EngineOptions = {}): Engine {
    const backend = resolveEngineBackend(opts.backend);
    const threads = opts.threads ?? threadsForModel(config);
    const list = [...weights as Map<string, Tensor | LazyTensor>].map(([name, t]) => ('data' in t ? { name, shape: t.shape, data: t.data } : { name, shape: t.shape, load: t.load }));
    const Ctor = nativeCtor();
    return new Engine(config, new Ctor({ config, weights: list, threads, backend, ...(opts.precision ? { precision: opts.precision } : {}), ...(opts.training ? { training: true } : {}), ...(opts.checkpointing ? { checkpointing: true } : {}) }), false, backend);
  }

  /** Names and shapes of the parameters this config needs (HF names, in the engine's order). */
  parameterShapes(): Array<{ name: string; shape: number[] }> {
    return this.info.map((p) => ({ name: p.name, shape: [...p.shape] }));
  }

  /** Number of scalar parameters. */
  numParameters(): number {
    return this.info.reduce((s, p) => s + p.size, 0);
  }

  /** Bytes held by parameters, gradients and Adam moments (activations excluded). */
  stateBytes(): number {
    return this.handle().memoryBytes();
  }

  /** Device memory figures (DeviceMemory); null on the CPU backend, which has no device. */
  deviceMemory(): DeviceMemory | null {
    return this.handle().deviceMemory();
  }

  /** Restarts deviceMemory's peak from the bytes held now (so the next reading is one step's peak); a no-op on the CPU. */
  resetPeakDeviceMemory(): void {
    this.handle().resetPeakDeviceMemory();
  }

  /** Current parameters (fp32, HF names and shapes), copies. */
  exportWeights(): TensorMap {
    return this.split(this.handle().getWeights());
  }

  /** Accumulated gradients (null before the first backward), for tests and diagnostics. */
  exportGradients(): TensorMap | null {
    const g = this.handle().getGradients();
    return g ? this.split(g) : null;
  }

  /** A frozen copy (reference policy for KL): same weights, no gradients, no optimizer state. */
  cloneFrozen(): Engine {
    const Ctor = nativeCtor();
    return new Engine(this.config, new Ctor({ source: this.handle(), frozen: true }), true, this.backend);
  }

  /** Frees the native model; any later call throws. Called while a generate call is running (from its onProgress
   *  callback), the model is freed when that call returns: the running call finishes normally. */
  dispose(): void {
    this.native?.dispose();
    this.native = null;
  }

  /** Full-sequence logits: tokens [batch*length] -> [batch*length*vocab]. */
  logits(tokens: Int32Array, batch: number, length: number): Float32Array {
    checkAllocatable(4 * batch * length * this.config.vocabSize, 'logits');
    return this.handle().logits({ tokens, batch, length });
  }

  /** Batched sampling with a KV cache; deterministic for a seed whatever the batching or thread count. */
  generate(req: GenerateRequest): { sequences: GeneratedSequence[] } {
    if (!Array.isArray(req.prompts) || req.prompts.length === 0) throw new Error('generate: prompts must be a non-empty array');
    const lengths = new Int32Array(req.prompts.length);
    let total = 0;
    req.prompts.forEach((p, i) => {
      if (!isTyped(p, 'Int32Array')) throw new Error(`generate: prompts[${i}] must be an Int32Array`);
      if (p.length === 0) throw new Error(`generate: prompts[${i}] is empty`);
      lengths[i] = p.length;
      total += p.length;
    });
    const tokens = new Int32Array(total);
    let at = 0;
    for (const p of req.prompts) {
      tokens.set(p, at);
      at += p.length;
    }
    if (typeof req.temperature !== 'number' || !isSamplingTemperature(req.temperature)) {
      throw new Error(`generate: temperature must be ${SAMPLING_TEMPERATURE_RULE}, got ${String(req.temperature)}`);
    }
    const stops = req.stopTokens ?? this.config.eosTokenIds;
    if (!Array.isArray(stops) && !isTyped(stops, 'Int32Array')) throw new Error('generate: stopTokens must be an array of token ids');
    for (let i = 0; i < stops.length; i++) {
      const t = stops[i];
      // (Int32Array.from would turn a string such as 'a' into token 0 without a word)
      if (typeof t !== 'number' || !Number.isInteger(t) || t < 0 || t >= this.config.vocabSize) {
        throw new Error(`generate: stopTokens[${i}] must be a token id in [0, ${this.config.vocabSize}), got ${JSON.stringify(t)}${typeof t === 'string' ? ' (stop strings must be tokenized first)' : ''}`);
      }
    }
    const r = this.handle().generate({
      tokens,
      promptLengths: lengths,
      n: req.n ?? 1,
      maxNewTokens: req.maxNewTokens,
      temperature: req.temperature,
      topP: req.topP ?? 1,
      seed: req.seed,
      stopTokens: Int32Array.from(stops),
      returnPooled: req.returnPooled ?? false,
      maxBatch: req.maxBatch ?? 64,
      onProgress: req.onProgress,
    });
    // NaN log-probs mean the forward pass overflowed: the sampled tokens are meaningless, so this is an error
    for (let i = 0; i < r.logprobs.length; i++) {
      if (Number.isNaN(r.logprobs[i])) throw new Error('generate: the model produced NaN log-probs (its computation overflowed; are the weights corrupt?)');
    }
    const H = this.config.hiddenSize;
    const sequences: GeneratedSequence[] = [];
    let k = 0;
    for (let i = 0; i < r.lengths.length; i++) {
      const len = r.lengths[i];
      const s: GeneratedSequence = {
        promptIndex: r.promptIndex[i],
        sampleIndex: r.sampleIndex[i],
        tokens: r.tokens.slice(k, k + len),
        logprobs: r.logprobs.slice(k, k + len),
        finishReason: r.stopped[i] ? 'stop' : 'length',
      };
      if (r.pooled) s.pooled = r.pooled.slice(i * H, (i + 1) * H);
      sequences.push(s);
      k += len;
    }
    return { sequences };
  }

  /**
   * Step-wise decoding (continuous batching). decodeAdd prefills a prompt and puts its n samples into the running
   * batch; each decodeStep gives every live sequence one token; finished sequences leave by themselves,
   * decodeRemove drops one early (cancelled, or stopped by a stop string). A sequence's tokens depend only on its own
   * prompt, settings, seed, promptIndex and sample index: with default settings they equal generate()'s for the
   * same prompt index, sample index and seed, whatever else is in the batch.
   */
  decodeAdd(req: DecodeAddRequest): number[] {
    if (!isTyped(req.prompt, 'Int32Array')) throw new Error('decodeAdd: prompt must be an Int32Array');
    const ids = this.handle().decodeAdd({
      tokens: req.prompt,
      n: req.n ?? 1,
      maxNewTokens: req.maxNewTokens,
      seed: req.seed,
      promptIndex: req.promptIndex ?? 0,
      stopTokens: Int32Array.from(req.stopTokens ?? this.config.eosTokenIds),
      ...samplerFields(req),
    });
    return Array.from(ids);
  }

  decodeStep(): DecodeStepToken[] {
    const r = this.handle().decodeStep();
    const K = r.topCount;
    const out: DecodeStepToken[] = [];
    for (let i = 0; i < r.ids.length; i++) {
      const t: DecodeStepToken = { id: r.ids[i], token: r.tokens[i], logprob: r.logprobs[i], finished: r.finished[i] === 1, stopped: r.stopped[i] === 1 };
      if (K > 0) {
        t.top = [];
        for (let j = 0; j < K; j++) if (r.topTokens[i * K + j] >= 0) t.top.push({ token: r.topTokens[i * K + j], logprob: r.topLogprobs[i * K + j] });
      }
      out.push(t);
    }
    return out;
  }

  decodeRemove(id: number): boolean {
    return this.handle().decodeRemove(id);
  }

  /** Sequences in the running batch. */
  decodeActive(): number {
    return this.handle().decodeActive();
  }

  /** Scoring pass (no grad): response log-probs, entropy, and the pooled final hidden state, in one pass. */
  score(batch: ScoreBatch, opts: { entropy?: boolean; pooled?: boolean } = {}): ScoreResult {
    const flat = flattenBatch(batch, this.config.vocabSize);
    return this.handle().score({ ...flat, entropy: opts.entropy ?? false, pooled: opts.pooled ?? false });
  }

  /** Training forward keeping this micro-batch's activations (a later forwardTrain replaces them). */
  forwardTrain(batch: ScoreBatch): { logprobs: Float32Array; entropy: Float32Array; mask: Uint8Array; length: number } {
    this.trainable('forwardTrain');
    const flat = flattenBatch(batch, this.config.vocabSize);
    const r = this.handle().forwardTrain(flat);
    this.pending = { batchSize: batch.sequences.length, length: r.length };
    return r;
  }

  /**
   * Backward from d loss / d logp ([B*T], the layout of forwardTrain) and, optionally, d loss / d entropy of the same
   * positions (an entropy bonus); gradients accumulate until zeroGrad().
   */
  backward(gradLogp: Float32Array, gradEntropy?: Float32Array): void {
    this.trainable('backward');
    if (!this.pending) throw new Error('backward: no activations; call forwardTrain first');
    const want = this.pending.batchSize * this.pending.length;
    if (!isTyped(gradLogp, 'Float32Array') || gradLogp.length !== want) {
      throw new Error(`backward: gradLogp must be a Float32Array of length ${want} (batch ${this.pending.batchSize} x length ${this.pending.length})`);
    }
    if (gradEntropy !== undefined && (!isTyped(gradEntropy, 'Float32Array') || gradEntropy.length !== want)) {
      throw new Error(`backward: gradEntropy must be a Float32Array of length ${want} (batch ${this.pending.batchSize} x length ${this.pending.length})`);
    }
    this.handle().backward(gradEntropy ? { gradLogp, gradEntropy } : { gradLogp });
    this.pending = null;
  }

  /**
   * One micro-batch of the policy update in one call: the training forward, the clipped surrogate loss on its
   * log-probs, the weighted gradient plus the entropy bonus's, and the backward (gradients accumulate until
   * zeroGrad()). On the CUDA engine log-probs, entropies and gradients stay on the device; only the figures come
   * back. A non-finite log-prob, loss or gradient accumulates nothing and is reported in the figures.
   */
  policyLossBackward(batch: ScoreBatch, input: PolicyLossInput): PolicyLossFigures {
    this.trainable('policyLossBackward');
    const flat = flattenBatch(batch, this.config.vocabSize);
    const B = flat.responseLengths.length;
    const T = flat.responseLengths.reduce((m, x) => Math.max(m, x), 0);
    const want = (name: string, v: unknown, n: number, optional = false) => {
      if (v === undefined && optional) return;
      if (!isTyped(v, name === 'inLoss' ? 'Uint8Array' : 'Float32Array') || (v as ArrayLike<number>).length !== n) {
        throw new Error(`policyLossBackward: ${name} must be a ${name === 'inLoss' ? 'Uint8Array' : 'Float32Array'} of length ${n}` + (n === B ? ' (one per sequence)' : ` (batch ${B} x longest response ${T})`));
      }
    };
    want('oldLogp', input.oldLogp, B * T);
    want('refLogp', input.refLogp, B * T, true);
    want('advantages', input.advantages, B);
    want('inLoss', input.inLoss, B, true);
    this.pending = null;  // the call releases the activations, whatever it did
    return this.handle().policyLossBackward({ ...input, ...flat });
  }

  /** Supervised warm-up: mean token cross-entropy over response tokens (forward + backward, accumulating);
   *  the gradient is scaled by opts.scale (default 1), e.g. 1/microBatches. */
  crossEntropyStep(batch: ScoreBatch, opts: { scale?: number } = {}): { loss: number; tokens: number } {
    const r = this.forwardTrain(batch);
    let tokens = 0;
    let sum = 0;
    for (let i = 0; i < r.mask.length; i++) {
      if (r.mask[i]) {
        tokens++;
        sum -= r.logprobs[i];
      }
    }
    const g = new Float32Array(r.mask.length);
    if (tokens > 0) {
      const scale = opts.scale ?? 1;
      // loss = -(1/n) sum logp  =>  d loss / d logp = -scale / n on response tokens
      for (let i = 0; i < g.length; i++) if (r.mask[i]) g[i] = -scale / tokens;
    }
    this.backward(g);
    return { loss: tokens > 0 ? sum / tokens : 0, tokens };
  }

  zeroGrad(): void {
    this.trainable('zeroGrad');
    this.handle().zeroGrad();
  }

  /** AdamW (decoupled weight decay) with global-norm clipping; returns the pre-clip gradient norm. */
  adamwStep(opts: AdamWOptions): { gradNorm: number } {
    this.trainable('adamwStep');
    return { gradNorm: this.handle().adamwStep(opts) };
  }

  /**
   * The optimizer's master weights: 'fp32' (default) or 'bf16-sr', bf16 rounded stochastically at every AdamW step
   * (E[round(w)] = w, so updates below half a bf16 ulp still move the weights on average; the rounding bits come from
   * `seed`, the step and the element, so runs repeat). Switching to bf16 rounds the weights to bf16 once.
   */
  setMasterWeights(mode: MasterWeights, seed = 0): void {
    this.trainable('setMasterWeights');
    this.handle().setMasterWeights({ mode, seed });
  }

  /**
   * Per-layer activation recomputation ("activation checkpointing") in forwardTrain/backward: the CUDA engine then
   * keeps only each layer's input and re-runs one layer's forward at a time in the backward pass. The gradients are
   * the same bits; the activations take one layer's memory instead of every layer's. Takes effect at the next
   * forwardTrain. The CPU engine has no recomputation: `true` there throws.
   */
  setCheckpointing(on: boolean): void {
    this.trainable('setCheckpointing');
    this.handle().setCheckpointing(on);
  }

  /** Whether the training passes recompute each layer (setCheckpointing). */
  get checkpointing(): boolean {
    return this.handle().getCheckpointing();
  }

  exportOptimizerState(): OptimizerState {
    this.trainable('exportOptimizerState');
    const s = this.handle().getOptimizerState();
    const zeros = () => new Float32Array(this.numParameters());
    return { step: s.step, m: this.split(s.m ?? zeros()), v: this.split(s.v ?? zeros()) };
  }

  importOptimizerState(s: OptimizerState): void {
    this.trainable('importOptimizerState');
    this.handle().setOptimizerState({ step: s.step, m: this.join(s.m, 'm'), v: this.join(s.v, 'v') });
  }

  private handle(): NativeEngineModel {
    if (!this.native) throw new Error('this engine has been disposed');
    return this.native;
  }

  private trainable(what: string): void {
    if (this.frozen) throw new Error(`${what}: this engine is a frozen copy (no gradients or optimizer)`);
  }

  private split(flat: Float32Array): TensorMap {
    const out: TensorMap = new Map();
    for (const p of this.info) out.set(p.name, { shape: [...p.shape], data: flat.slice(p.offset, p.offset + p.size) });
    return out;
  }

  private join(map: TensorMap, what: string): Float32Array {
    const flat = new Float32Array(this.numParameters());
    for (const p of this.info) {
      const t: Tensor | undefined = map.get(p.name);
      if (!t) throw new Error(`importOptimizerState: ${what} is missing tensor ${p.name}`);
      if (t.data.length !== p.size) throw new Error(`importOptimizerState: ${what}.${p.name} has ${t.data.length} values, expected ${p.size}`);
      flat.set(t.data, p.offset);
    }
    return flat;
  }
}
