// `clipo bench train --backend cuda [--compare torch] [--shape NAMES] [--batch BxT]`: training on the CUDA engine,
// beside PyTorch on the same GPU in the same run.
//
// 1. A training step of a random model of a Qwen2.5 shape (default Qwen2.5-1.5B; --shape 0.5b,1.5b,3b), bf16:
//    forwardTrain over a micro-batch of B sequences of T tokens (default 4 x 1024: one prompt token and T-1 response
//    tokens, so every scored position is a response token), backward from the gradient of a PPO-clip surrogate with
//    respect to the token log-probs, AdamW (fp32 master weights and moments, global-norm clipping at 1). Timed on the
//    wall clock (each step ends with the gradient norm on the host, so the device work is done), the median of
//    --repeats steps after one warm-up step. MFU = trainStepFlops / time over the bf16 GEMM peak that cuBLASLt's
//    8192^3 probe measures in the same run (the larger of the probes run before each side's steps).
// 2. With --compare torch: transformers' model of the same config and weights on the same GPU, the way a careful
//    PyTorch user trains it: fp32 master weights with bf16 autocast, sdpa attention, the same surrogate over the
//    same batch, backward, clip_grad_norm_, torch.optim.AdamW(fused=True) (scripts/bench/train_peer.py). Its peak
//    memory is torch.cuda.max_memory_allocated over its steps. The engine's is measured too: the peak of its device
//    buffers over one timed step (Engine.resetPeakDeviceMemory before, deviceMemory after; what stays allocated
//    between steps included, the CUDA context and cuBLASLt's workspace not, as torch's figure), beside what the
//    training memory plan (src/rl/memory-plan.ts) computes for this batch; each labelled measured or computed.
//    A shape whose training the plan says does not fit the GPU (e.g. 7B on an 80 GB card) is not run: it gets the
//    computed figure alone, "computed by the plan", as does a shape whose run fails.
//    The two sides run one after the other, each with the GPU to itself: PyTorch's model and optimizer state wait on
//    the host while the engine's steps run, and come back once the engine's memory is freed (with their optimizer
//    states both do not fit on an 80 GB card from 1.5B on, so they cannot interleave step by step).
// 3. Before any timing, the values: one step of each side on the first sequences of the batch, from the same
//    weights: the response tokens' log-probs must agree within the GPU bf16 tolerances of `bench engine` (max 0.05,
//    mean 0.005 nats) and the gradient norms before clipping within 2% (the issue's bf16 gradient tolerance). A
//    disagreement is a bench error and PyTorch's timings are not reported.
// 4. One full RL step on the CUDA engine (a Qwen2.5-0.5B-shaped random model with the built-in task's vocabulary,
//    the built-in task's prompts, the real verifier, DAPO with CLIPO, dynamic sampling off), broken down by phase:
//    rollouts (generation), verifier, scoring, CLIPO, update, and CLIPO's share of the step (its phase plus what the
//    pooled states add to the scoring pass, measured as paired differences); target <= 2%.
// Without a usable CUDA engine the suite says why in `unavailable` and errors, and `clipo bench` exits 1.
import { parseTrainConfig } from '../config/load.js';
import { Engine, engineBackends, type EngineBackend, type ScoreBatch } from '../engine/engine.js';
import { countParameters, randomWeights } from '../engine/params.js';
import { availableBackends, cudaDeviceInfo } from '../kernels/backend.js';
import { gemmProbe, gpuLibUnusable } from '../kernels/gpulibs.js';
import { ModelTokenizer } from '../model/tokenizer.js';
import type { ModelConfig, TensorMap } from '../model/types.js';
import { planMemory } from '../rl/memory-plan.js';
import { Trainer } from '../rl/trainer.js';
import type { PolicyEngine, TrainPrompt } from '../rl/types.js';
import { drawProblem } from '../task/generator.js';
import { promptContent } from '../task/records.js';
import { taskTokenizerDir } from '../task/tokenizer.js';
import { Rng } from '../util/rng.js';
import { median } from '../util/stats.js';
import { reward } from '../verify/index.js';
import { round } from './bandwidth.js';
import { GPU_LOGPROB_MAX, GPU_LOGPROB_MEAN } from './engine-cuda.js';
import { enginePeer, maxAbsDiff, writePeerModel } from './engine-peer.js';
import { forwardFlops } from './engine.js';
import { checkedFraction, flagRow, loadBefore, loadRecord, standardNotes, unavailableReport } from './harness.js';
import type { TorchPeer } from './peer.js';
import { benchShape, quickShape } from './shapes.js';
import type { BenchContext, BenchReport, BenchRow } from './types.js';

/** Largest relative difference of the two sides' gradient norms (before clipping) on the check step. */
export const TRAIN_GRADNORM_TOLERANCE = 2e-2;
/** CLIPO's share of one RL step the issue allows. */
export const CLIPO_SHARE_TARGET = 0.02;
/** The training MFU the issue asks of the 1.5B-shaped step. */
export const TRAIN_MFU_TARGET = 0.4;
/** AdamW of the timed steps (both sides). */
const ADAMW = { lr: 1e-6, weightDecay: 0.01, maxGradNorm: 1 };

/**
 * Model FLOPs of one training step (forward + backward) over `batch` sequences of `seqLen` tokens of which every
 * position after the first computes a log-prob: three times the forward's (the backward computes the gradients of
 * both the activations and the weights, twice the forward's products), the forward counted as `bench engine` counts
 * it (engine.ts forwardFlops): 2 FLOPs per multiply-add of every layer parameter per token, of the head (vocab x
 * hidden) per predicting position, and of causal attention (QK^T and PV: 4 * (t+1) * heads * headDim at position t,
 * per layer). So 6 * params * tokens + 3 * the attention's; the input embedding (a lookup) and the final norm are not
 * counted, recomputation (if any) is not counted (model FLOPs, not hardware FLOPs).
 */
export function trainStepFlops(c: ModelConfig, batch: number, seqLen: number): number {
  return 3 * forwardFlops(c, batch, seqLen);
}

/** d loss / d logp of the PPO-clip surrogate at ratio 1 (old log-probs = the current ones, as in an RL step's first
 *  epoch): loss = mean over the response tokens of max(-A r, -A clip(r)), so the gradient is -A_b / N on every
 *  response token of sequence b (N: all response tokens of the micro-batch), 0 elsewhere. `length`: the engine's
 *  positions per sequence (forwardTrain's layout [B * length]). */
export function surrogateGradient(mask: Uint8Array, advantages: Float32Array, length: number): Float32Array {
  let n = 0;
  for (let i = 0; i < mask.length; i++) n += mask[i]!;
  const g = new Float32Array(mask.length);
  if (n === 0) return g;
  for (let i = 0; i < mask.length; i++) if (mask[i]) g[i] = -advantages[Math.floor(i / length)]! / n;
  return g;
}

/** The response tokens' values of forwardTrain's [B * length] layout, in order (what the peer writes per sequence). */
export function maskedValues(values: Float32Array, mask: Uint8Array): Float32Array {
  const out: number[] = [];
  for (let i = 0; i < mask.length; i++) if (mask[i]) out.push(values[i]!);
  return Float32Array.from(out);
}

export interface TrainSide {
  impl: 'clipo' | 'transformers';
  /** wall seconds of each timed step */
  steps: number[];
  /** the measured peak device memory of one step (null: not measured) */
  memoryBytes: number | null;
  /** how memoryBytes was obtained */
  memoryHow: string;
  /** clipo: the training memory plan's peak for this step (computedTrainPeak), beside the measured one */
  computedBytes?: number | null;
}

export interface TrainShapeResult {
  label: string;
  params: number;
  batch: number;
  seqLen: number;
  /** trainStepFlops of one step */
  flops: number;
  sides: TrainSide[];
  /** why the shape was not run (its sides then hold no steps; clipo's holds the computed peak) */
  notRun?: string;
}

/** Median seconds of each phase of the timed RL steps (rollouts = generation without the verifier's time). */
export interface RlPhases {
  rollouts: number;
  verifier: number;
  scoring: number;
  clipo: number;
  /** what pooling the states for CLIPO adds to the scoring pass (median of paired differences) */
  pooling: number;
  update: number;
  step: number;
}

export interface RlStepResult {
  label: string;
  params: number;
  preset: string;
  sequences: number;
  maxResponseTokens: number;
  meanResponseTokens: number;
  steps: number;
  phases: RlPhases;
}

export interface TrainCudaMeasure {
  device: string;
  /** the bf16 GEMM peak (TFLOP/s) the MFU is taken against; null when it could not be measured */
  peakTflops: number | null;
  shapes: TrainShapeResult[];
  rl: RlStepResult | null;
}

/** The report's rows and target lines from a measurement (pure: the tests feed it made-up measurements). */
export function trainCudaRows(m: TrainCudaMeasure, errors: string[]): { rows: BenchRow[]; targets: string[] } {
  const rows: BenchRow[] = [];
  const targets: string[] = [];
  const memoryLines: string[] = []; // after the speed targets
  if (m.peakTflops !== null) rows.push({ measure: 'bf16 GEMM peak (cuBLASLt probe, the MFU limit)', model: '', impl: 'cublaslt', TFLOPs: round(m.peakTflops), mfu: 1 });
  for (const s of m.shapes) {
    const flops = s.flops;
    const tokens = s.batch * s.seqLen;
    const clipoSide = s.sides.find((x) => x.impl === 'clipo');
    const clipoSec = clipoSide && clipoSide.steps.length ? median(clipoSide.steps) : null;
    const mfus = new Map<string, number | null>();
    const gib = (b: number | null | undefined) => (b === null || b === undefined ? null : round(b / 2 ** 30));
    if (clipoSide) memoryLines.push(memoryLine(s, clipoSide));
    if (s.notRun !== undefined) {
      rows.push({
        measure: `train step peak memory (${s.batch} x ${s.seqLen}; not run: ${s.notRun})`, model: s.label, impl: 'clipo',
        memoryGiB: null, memory: 'not measured', computedMemoryGiB: gib(clipoSide?.computedBytes), computed: 'computed by the plan',
      });
      continue;
    }
    for (const side of s.sides) {
      if (!side.steps.length) continue;
      const sec = median(side.steps);
      const tf = flops / sec / 1e12;
      const f = m.peakTflops === null ? { fraction: null } : checkedFraction(tf, m.peakTflops, `${s.label} ${side.impl} training MFU`);
      const row: BenchRow = {
        measure: `train step (forward+backward+AdamW, ${s.batch} x ${s.seqLen})`, model: s.label, impl: side.impl,
        ms: round(sec * 1e3, 4), tokensPerSecond: round(tokens / sec), TFLOPs: round(tf), mfu: f.fraction,
        memoryGiB: gib(side.memoryBytes), memory: side.memoryHow,
        ...(side.computedBytes !== undefined ? { computedMemoryGiB: gib(side.computedBytes), computed: 'computed by the plan' } : {}),
        ...(side.impl !== 'clipo' && clipoSec !== null ? { vsClipo: round(sec / clipoSec) } : {}),
      };
      flagRow(row, errors, (f as { error?: string }).error);
      rows.push(row);
      mfus.set(side.impl, f.fraction);
    }
    const torchSide = s.sides.find((x) => x.impl === 'transformers' && x.steps.length);
    const faster = torchSide && clipoSec !== null ? median(torchSide.steps) > clipoSec : null;
    const mfu = mfus.get('clipo') ?? null;
    const line = `train step at ${s.label} (${s.batch} x ${s.seqLen} tokens): MFU ${mfu === null ? 'not measured' : `${round(100 * mfu, 1)}%`}` +
      (s.label.includes('1.5B') ? ` (target >= ${100 * TRAIN_MFU_TARGET}%: ${mfu === null ? 'not measured' : mfu >= TRAIN_MFU_TARGET ? 'met' : 'NOT met'})` : '') +
      `, faster than transformers + torch.optim.AdamW(fused=True) with bf16 autocast: ${faster === null ? 'not compared' : faster ? 'met' : 'NOT met'}`;
    targets.push(line);
  }
  if (m.rl) {
    const p = m.rl.phases;
    const phase = (name: string, sec: number) => rows.push({ measure: `RL step: ${name}`, model: m.rl!.label, impl: 'clipo', ms: round(sec * 1e3), shareOfStep: p.step > 0 ? round(sec / p.step, 4) : null });
    phase('rollouts (generation)', p.rollouts);
    phase('verifier', p.verifier);
    phase('scoring (old log-probs, pooled states)', p.scoring);
    phase('CLIPO (head, contrastive loss and reward, head step)', p.clipo);
    phase('pooling the states (added to scoring)', p.pooling);
    phase('update (forward, backward, AdamW)', p.update);
    phase('other (advantages, bookkeeping)', Math.max(0, p.step - p.rollouts - p.verifier - p.scoring - p.clipo - p.update));
    phase('whole step', p.step);
    const share = p.step > 0 ? (p.clipo + p.pooling) / p.step : null;
    targets.push(`one RL step (${m.rl.preset} with CLIPO, ${m.rl.sequences} responses of up to ${m.rl.maxResponseTokens} tokens, ${m.rl.label}): ${round(p.step, 3)} s; CLIPO's share (its phase + pooling) ${share === null ? 'not measured' : `${round(100 * share, 2)}%`} (target <= ${100 * CLIPO_SHARE_TARGET}%: ${share === null ? 'not measured' : share <= CLIPO_SHARE_TARGET ? 'met' : 'NOT met'})`);
  }
  return { rows, targets: [...targets, ...memoryLines] };
}

/** The issue's figure for one shape: the engine's peak memory of one training step, measured and/or computed. */
function memoryLine(s: TrainShapeResult, side: TrainSide): string {
  const g = (b: number) => `${round(b / 2 ** 30)} GiB`;
  const computed = side.computedBytes === null || side.computedBytes === undefined ? 'not computed' : `${g(side.computedBytes)} computed by the plan`;
  const head = `peak memory of one training step at ${s.label} (${s.batch} x ${s.seqLen} tokens): `;
  if (side.memoryBytes !== null) return head + `${g(side.memoryBytes)} measured (${computed})`;
  return head + `${computed} (not measured${s.notRun !== undefined ? `: not run, ${s.notRun}` : ''})`;
}

function lcg(seed: number): () => number {
  let s = seed;
  return () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
}

/** The CUDA engine's peak memory for one training step of B x T tokens, as the training memory plan computes it
 *  (what runs today: no recomputation, fp32 master weights and moments): everything held while training, without
 *  the plan's reserve (CUDA context, workspaces), so that it compares with torch.cuda.max_memory_allocated. */
export function computedTrainPeak(c: ModelConfig, B: number, T: number, memoryBytes: number): { bytes: number; reserve: number } {
  const p = planMemory(
    { layers: c.numLayers, hidden: c.hiddenSize, intermediate: c.intermediateSize, heads: c.numHeads, kvHeads: c.numKvHeads, headDim: c.headDim, vocab: c.vocabSize, tied: c.tieWordEmbeddings, attentionBias: c.attentionBias, mlpBias: c.mlpBias },
    { backend: 'cuda', microBatch: B, promptTokens: 1, responseTokens: T - 1, groupSize: 1, promptsPerStep: B, checkpointing: 'off', reference: false, current: true, decodeSequences: 1, memoryBytes },
  );
  return {
    bytes: p.items.filter((i) => i.name !== 'reserve' && i.phase !== 'rollout').reduce((a, i) => a + i.bytes, 0),
    reserve: p.items.find((i) => i.name === 'reserve')?.bytes ?? 0,
  };
}

export interface TrainStepOptions {
  label: string;
  config: ModelConfig;
  batch: number;
  seqLen: number;
  backend: EngineBackend;
  /** CPU engine threads (backend cpu) */
  threads?: number;
  peer: TorchPeer | null;
  /** the peer's device: cuda for the bench; cpu for the test suite's small end-to-end check */
  peerDevice: 'cuda' | 'cpu';
  /** sequences of the value check (the first ones of the batch) */
  checkRows: number;
  repeats: number;
  log: (m: string) => void;
  /** run before each side's timed steps (the GEMM peak probe) */
  beforeSide?: () => void;
  /** device memory for the computed plan (cuda) */
  memoryBytes?: number;
  /** the random weights' standard deviation (default 0.02, HF's initializer_range: the model as training starts) */
  weightStd?: number;
  /** what the peer loads instead of the engine's weights (the tests' check that a different model is refused) */
  peerWeights?: (w: TensorMap) => TensorMap;
}

/** One shape: value check, then the engine's steps, then the peer's. Errors go to `errors`; notes to `notes`. */
export async function measureTrainStep(o: TrainStepOptions, errors: string[], notes: string[]): Promise<TrainShapeResult> {
  const c = o.config, B = o.batch, T = o.seqLen;
  const rng = lcg(4242);
  const ids = (n: number) => Int32Array.from({ length: n }, () => Math.floor(rng() * c.vocabSize));
  const batch: ScoreBatch = { sequences: Array.from({ length: B }, () => ({ prompt: ids(1), response: ids(T - 1) })) };
  // one advantage per sequence, in [-1, 1] and away from 0
  const advantages = Float32Array.from({ length: B }, (_, b) => (b % 2 ? 1 : -1) * (0.25 + 0.75 * rng()));
  const result: TrainShapeResult = { label: o.label, params: countParameters(c), batch: B, seqLen: T, flops: trainStepFlops(c, B, T), sides: [] };
  o.log(`train ${o.backend}: ${o.label} (${(result.params / 1e6).toFixed(0)}M parameters): random weights`);
  let weights: ReturnType<typeof randomWeights> | null = randomWeights(c, { seed: 1, uniform: true, std: o.weightStd ?? 0.02 });
  let withPeer = false, peerReady = false;
  if (o.peer) {
    o.log(`train ${o.backend}: ${o.label} in transformers (fp32 weights, bf16 autocast, ${o.peerDevice}): loading`);
    const { dir, remove } = writePeerModel(o.peer, o.label, c, o.peerWeights ? o.peerWeights(weights) : weights, 'fp32');
    try {
      const tokens = new Int32Array(B * T);
      batch.sequences.forEach((s, b) => {
        tokens.set(s.prompt, b * T);
        tokens.set(s.response, b * T + 1);
      });
      await o.peer.call({
        cmd: 'train_setup', model: dir, tokens: o.peer.writeInput('train-tokens.i32', tokens), advantages: o.peer.writeInput('train-adv.f32', advantages),
        B, T, checkRows: o.checkRows, device: o.peerDevice, lr: ADAMW.lr, weightDecay: ADAMW.weightDecay,
      });
      peerReady = true;
    } catch (e) {
      errors.push(`${o.label}: transformers could not load the model (${(e as Error).message}); no PyTorch rows`);
      await o.peer.call({ cmd: 'train_release' }).catch(() => undefined);
    } finally {
      remove();
    }
  }
  const engine = Engine.create(c, weights, o.backend === 'cuda' ? { backend: 'cuda', precision: 'bf16', training: true } : { backend: 'cpu', ...(o.threads ? { threads: o.threads } : {}) });
  weights = null; // the engine (and the peer) hold their own copies
  try {
    const step = (b: ScoreBatch, adv: Float32Array) => {
      engine.zeroGrad();
      const f = engine.forwardTrain(b);
      engine.backward(surrogateGradient(f.mask, adv, f.length));
      const { gradNorm } = engine.adamwStep(ADAMW);
      return { f, gradNorm };
    };
    // 1. the values, before any timing (a failing peer, e.g. out of memory, costs its rows, not clipo's)
    if (peerReady) {
      const rows = Math.min(o.checkRows, B);
      const mine = step({ sequences: batch.sequences.slice(0, rows) }, advantages.subarray(0, rows));
      try {
        const lp = maskedValues(mine.f.logprobs, mine.f.mask);
        const theirs = await o.peer!.values({ cmd: 'train_check' }, rows * (T - 1));
        const max = maxAbsDiff(lp, theirs.values);
        let sum = 0;
        for (let i = 0; i < lp.length && Number.isFinite(max); i++) sum += Math.abs(lp[i]! - theirs.values[i]!);
        const mean = Number.isFinite(max) ? sum / Math.max(1, lp.length) : Infinity;
        const theirNorm = theirs.answer.gradNorm as number;
        const normRel = Math.abs(mine.gradNorm - theirNorm) / Math.max(Math.abs(theirNorm), 1e-30);
        const agree = max <= GPU_LOGPROB_MAX && mean <= GPU_LOGPROB_MEAN && normRel <= TRAIN_GRADNORM_TOLERANCE;
        const e = (x: number) => x.toExponential(1);
        const note = `${o.label}: values checked against transformers (same weights, ${rows} x ${T} tokens, one step each) before timing: response log-probs |difference| max ${e(max)} mean ${e(mean)} nats (tolerance max ${GPU_LOGPROB_MAX}, mean ${GPU_LOGPROB_MEAN}); ` +
          `gradient norm before clipping ${round(mine.gradNorm, 6)} vs ${round(theirNorm, 6)} (relative ${e(normRel)}, tolerance ${TRAIN_GRADNORM_TOLERANCE}): ${agree ? 'agree' : 'DISAGREE'}`;
        notes.push(note);
        if (agree) withPeer = true;
        else errors.push(`${o.label}: transformers disagrees with clipo (${note}); its timings are not reported`);
        // the peer's model and optimizer state wait on the host while the engine's steps are timed (on the GPU both
        // do not fit at once from 1.5B on an 80 GB card, and neither side should be timed under the other's memory)
        await o.peer!.call({ cmd: 'train_park' });
      } catch (e) {
        withPeer = false;
        errors.push(`${o.label}: the transformers side failed (${(e as Error).message}); its timings are not reported`);
        await o.peer!.call({ cmd: 'train_release' }).catch(() => undefined);
      }
    }
    // 2. the engine's steps
    o.beforeSide?.();
    o.log(`train ${o.backend}: ${o.label}: ${o.repeats} steps of ${B} x ${T} tokens (after a warm-up step)`);
    const times: number[] = [];
    let measuredPeak: number | null = null;
    for (let r = 0; r <= o.repeats; r++) {
      // the last step's peak: the buffers grown by the warm-up step stay allocated, as in a run
      const last = r === o.repeats;
      if (last) engine.resetPeakDeviceMemory();
      const t0 = performance.now();
      step(batch, advantages);
      if (r > 0) times.push((performance.now() - t0) / 1000);
      if (last) measuredPeak = engine.deviceMemory()?.peakBytes ?? null;
    }
    let computedBytes: number | null = null, memoryHow = 'not measured (CPU engine)';
    if (measuredPeak !== null) memoryHow = 'measured (the engine\'s device buffers over one step: Engine.deviceMemory peakBytes)';
    if (o.backend === 'cuda') {
      const p = computedTrainPeak(c, B, T, o.memoryBytes ?? 80 * 2 ** 30);
      computedBytes = p.bytes;
      notes.push(`${o.label}: the engine holds ${round(engine.stateBytes() / 2 ** 30)} GiB of parameters, gradients and moments (its own count); one step's peak of its device buffers, measured, is ${measuredPeak === null ? 'not available' : `${round(measuredPeak / 2 ** 30)} GiB`}; the memory plan's training peak for this batch, computed, without its ${round(p.reserve / 2 ** 30)} GiB reserve, is ${round(p.bytes / 2 ** 30)} GiB.`);
    }
    result.sides.push({ impl: 'clipo', steps: times, memoryBytes: measuredPeak, memoryHow, ...(o.backend === 'cuda' ? { computedBytes } : {}) });
  } finally {
    engine.dispose();
  }
  // 3. the peer's steps, once the engine's memory is free
  if (o.peer && withPeer) {
    o.beforeSide?.();
    o.log(`train ${o.backend}: ${o.label}: ${o.repeats} transformers steps (after a warm-up step)`);
    try {
      await o.peer.call({ cmd: 'train_unpark' });
      await o.peer.call({ cmd: 'train_reset_peak' });
      const times: number[] = [];
      for (let r = 0; r <= o.repeats; r++) {
        const s = await o.peer.time({ kernel: 'train', op: 'step', threads: o.threads ?? 1 });
        if (r > 0) times.push(s.wall);
      }
      const mem = await o.peer.call({ cmd: 'train_memory' });
      const bytes = typeof mem.maxAllocated === 'number' ? mem.maxAllocated : null;
      result.sides.push({ impl: 'transformers', steps: times, memoryBytes: bytes, memoryHow: bytes === null ? 'not measured (CPU)' : 'measured (torch.cuda.max_memory_allocated)' });
    } catch (e) {
      errors.push(`${o.label}: the transformers side failed (${(e as Error).message}); its timings are not reported`);
    }
  }
  if (o.peer) await o.peer.call({ cmd: 'train_release' }).catch(() => undefined);
  return result;
}

/** A shape not run: clipo's side holds the plan's computed peak, no steps and no measurement. */
export function notRunResult(label: string, c: ModelConfig, B: number, T: number, deviceBytes: number, why: string): TrainShapeResult {
  const p = computedTrainPeak(c, B, T, deviceBytes);
  return {
    label, params: countParameters(c), batch: B, seqLen: T, flops: trainStepFlops(c, B, T), notRun: why,
    sides: [{ impl: 'clipo', steps: [], memoryBytes: null, memoryHow: 'not measured', computedBytes: p.bytes }],
  };
}

/** Null when the plan's training peak (reserve included) fits `deviceBytes`; else the shape's not-run result.
 *  `assumed`: the device's memory was not known (the 80 GB of an H100 assumed). */
export function notRunShape(label: string, c: ModelConfig, B: number, T: number, deviceBytes: number, assumed = false): TrainShapeResult | null {
  const p = computedTrainPeak(c, B, T, deviceBytes);
  if (p.bytes + p.reserve <= deviceBytes) return null;
  return notRunResult(label, c, B, T, deviceBytes,
    `the plan computes ${round((p.bytes + p.reserve) / 2 ** 30)} GiB with its reserve, more than the GPU's ${round(deviceBytes / 2 ** 30)} GiB${assumed ? ' (assumed)' : ''}`);
}

export interface RlStepOptions {
  backend: EngineBackend;
  threads?: number;
  quick: boolean;
  repeats: number;
  log: (m: string) => void;
}

/** One full RL step on the engine, broken down by phase (median over the timed steps, after a warm-up step). */
export function measureRlStep(o: RlStepOptions): RlStepResult {
  const tok = ModelTokenizer.fromDir(taskTokenizerDir());
  const eos = tok.tokenToId('<|im_end|>');
  const shape = o.quick ? quickShape(tok.vocabSize) : benchShape('qwen2.5-0.5b', tok.vocabSize);
  const label = `${shape.label.replace(/-shaped$| \(quick\)$/, '')}-shaped, the task's ${tok.vocabSize}-token vocabulary`;
  const config: ModelConfig = { ...shape.config, eosTokenIds: eos === undefined ? [] : [eos] };
  const sizes = o.quick ? { prompts: 2, n: 4, response: 32, micro: 8 } : { prompts: 8, n: 8, response: 256, micro: 16 };
  const rng = new Rng(5);
  const prompts: TrainPrompt[] = Array.from({ length: 64 }, (_, i) => {
    const p = drawProblem(rng, 'train');
    const text = tok.chatTemplate !== null ? tok.applyChatTemplate([{ role: 'user', content: promptContent(p) }], { addGenerationPrompt: true }) : promptContent(p);
    return { id: String(i), tokens: Int32Array.from(tok.encode(text)), groundTruth: String(p.answer) };
  });
  const cfg = parseTrainConfig({
    model: { path: '(in memory)' },
    data: { train_files: ['(built-in task)'], max_prompt_tokens: 1024, max_response_tokens: sizes.response },
    rollout: { n: sizes.n, temperature: 1 },
    algorithm: { preset: 'dapo', dynamic_sampling: false },
    clipo: { enabled: true, warmup_steps: 0 },
    optim: { lr: 1e-6, prompts_per_step: sizes.prompts, ppo_mini_batch: sizes.prompts, micro_batch: sizes.micro, epochs: 1000, seed: 1 },
  }, 'bench config');
  o.log(`train ${o.backend}: one RL step (${label}, DAPO + CLIPO, ${sizes.prompts} prompts x ${sizes.n}, up to ${sizes.response} tokens)`);
  const policy = Engine.create(config, randomWeights(config, { seed: 3, uniform: true }), o.backend === 'cuda' ? { backend: 'cuda', precision: 'bf16', training: true } : { backend: 'cpu', ...(o.threads ? { threads: o.threads } : {}) });
  const reference = cfg.algorithm.kl_coef > 0 ? policy.cloneFrozen() : null;
  let verifierSeconds = 0;
  const io = {
    decode: (t: Int32Array) => tok.decode(t, { skipSpecialTokens: true }),
    // the real verifier, in this process (a run's worker pool adds a deadline, not work); its time is taken out of
    // the rollout phase, which the trainer times as a whole
    reward: (text: string, gt: string) => {
      const t0 = performance.now();
      try {
        return reward(text, gt, { boxes: cfg.verifier.boxes });
      } finally {
        verifierSeconds += (performance.now() - t0) / 1000;
      }
    },
  };
  try {
    const trainer = new Trainer({ config: cfg, policy: policy as unknown as PolicyEngine, reference: reference as unknown as PolicyEngine | null, prompts, io });
    trainer.runStep(); // warm-up: allocations, the first cuBLASLt plans
    const steps = Math.max(3, Math.min(o.repeats, 5));
    const ph: Array<Omit<RlPhases, 'pooling'>> = [];
    let lengths: number[] = [];
    for (let r = 0; r < steps; r++) {
      const v0 = verifierSeconds;
      const { metrics: m } = trainer.runStep();
      const verifier = verifierSeconds - v0;
      ph.push({ rollouts: Math.max(0, m.time_rollout_s - verifier), verifier, scoring: m.time_scoring_s, clipo: m.time_clipo_s, update: m.time_update_s, step: m.time_step_s });
      lengths.push(m.response_length_mean);
    }
    // what the pooled states add to the scoring pass: paired, alternating (the only engine work CLIPO adds)
    const sb: ScoreBatch = { sequences: Array.from({ length: sizes.prompts * sizes.n }, (_, i) => ({ prompt: prompts[i % prompts.length]!.tokens, response: Int32Array.from({ length: sizes.response }, () => rng.int(tok.vocabSize)) })) };
    const time = (pooled: boolean) => {
      const t0 = performance.now();
      policy.score(sb, { pooled });
      return (performance.now() - t0) / 1000;
    };
    time(false);
    time(true);
    const diffs: number[] = [];
    for (let r = 0; r < 2 * steps; r++) {
      const a = time(false), b = time(true);
      diffs.push(b - a);
    }
    const med = (k: keyof Omit<RlPhases, 'pooling'>) => median(ph.map((x) => x[k]));
    lengths = lengths.filter(Number.isFinite);
    return {
      label, params: countParameters(config), preset: 'DAPO', sequences: sizes.prompts * sizes.n, maxResponseTokens: sizes.response,
      meanResponseTokens: round(median(lengths), 1), steps,
      phases: { rollouts: med('rollouts'), verifier: med('verifier'), scoring: med('scoring'), clipo: med('clipo'), pooling: Math.max(0, median(diffs)), update: med('update'), step: med('step') },
    };
  } finally {
    reference?.dispose();
    policy.dispose();
  }
}

export async function runTrainCuda(ctx: BenchContext): Promise<BenchReport> {
  const before = loadBefore();
  const backends = engineBackends();
  if (!backends.cuda) return unavailableReport('train', backends.cudaReason ?? 'the CUDA engine cannot run here', loadRecord(before));
  const errors: string[] = [];
  const notes: string[] = [];
  const device = availableBackends().device ?? 'GPU';
  const memoryBytes = cudaDeviceInfo().devices[0]?.memoryBytes;
  notes.push(`cuda engine (${device}), bf16 weights and activations, fp32 master weights and moments, fp32 accumulation.`);

  // the MFU limit: cuBLASLt's bf16 GEMM probe, run before each side's steps; the largest reading is the limit
  const peaks: number[] = [];
  const blas = gpuLibUnusable('cublasLt');
  const probe = blas === null
    ? () => {
      const s = ctx.quick ? 4096 : 8192;
      peaks.push(gemmProbe({ m: s, n: s, k: s, repeats: 10, warmup: 3, checkSamples: 64, seed: 3 }).tflops);
    }
    : undefined;
  if (blas !== null) notes.push(`no bf16 GEMM peak (cuBLASLt unusable: ${blas}): MFU not reported.`);

  const { peer, note: peerNote } = await enginePeer(ctx);
  if (peerNote) notes.push(peerNote);
  const { batch, seqLen } = ctx.trainBatch ?? (ctx.quick ? { batch: 2, seqLen: 256 } : { batch: 4, seqLen: 1024 });
  // --shape wins; else --quick's small model, else the issue's 1.5B shape
  const shapes = ctx.shapes?.length ? ctx.shapes.map((n) => benchShape(n)) : ctx.quick ? [quickShape()] : [benchShape('qwen2.5-1.5b')];
  const measured: TrainShapeResult[] = [];
  // a shape that fails (out of memory, ...) is a bench error; the other shapes and the RL step still run. A shape the
  // plan says does not fit is not run; it and a failed one keep the plan's computed peak.
  for (const s of shapes) {
    const fit = notRunShape(s.label, s.config, batch, seqLen, memoryBytes ?? 80 * 2 ** 30, memoryBytes === undefined);
    if (fit) {
      notes.push(`${s.label}: not run: ${fit.notRun}; its peak memory is the plan's computed figure.`);
      measured.push(fit);
      continue;
    }
    try {
      measured.push(await measureTrainStep({
        label: s.label, config: s.config, batch, seqLen, backend: 'cuda', peer, peerDevice: 'cuda', checkRows: Math.min(2, batch),
        repeats: ctx.repeats, log: ctx.log, beforeSide: probe, ...(memoryBytes ? { memoryBytes } : {}),
      }, errors, notes));
    } catch (e) {
      errors.push(`${s.label}: the training step failed: ${(e as Error).message}`);
      measured.push(notRunResult(s.label, s.config, batch, seqLen, memoryBytes ?? 80 * 2 ** 30, 'the run failed'));
    }
  }
  let rl: RlStepResult | null = null;
  try {
    rl = measureRlStep({ backend: 'cuda', quick: ctx.quick, repeats: ctx.repeats, log: ctx.log });
  } catch (e) {
    errors.push(`the RL step failed: ${(e as Error).message}`);
  }
  const m: TrainCudaMeasure = { device, peakTflops: peaks.length ? Math.max(...peaks) : null, shapes: measured, rl };
  const { rows, targets } = trainCudaRows(m, errors);
  notes.push(...targets);
  if (peaks.length) notes.push(`bf16 GEMM peak probes (cuBLASLt ${ctx.quick ? 4096 : 8192}^3) in this run: ${peaks.map((p) => round(p)).join(', ')} TFLOP/s; MFU is taken against the largest.`);
  notes.push(`train step: ${batch} sequences of ${seqLen} tokens (1 prompt token + ${seqLen - 1} response tokens), a PPO-clip surrogate at ratio 1 with one advantage per sequence, AdamW (lr ${ADAMW.lr}, weight decay ${ADAMW.weightDecay}, clipping at ${ADAMW.maxGradNorm}); the median of ${ctx.repeats} steps after a warm-up step, on the wall clock. ` +
    'FLOPs: 3 x the forward (6 x parameters x tokens + 3 x causal attention; bench train trainStepFlops), MFU over the GEMM peak above.');
  if (peer) notes.push(`transformers ${peer.info.transformers} (torch ${peer.info.torch}): fp32 master weights with bf16 autocast, sdpa attention, torch.optim.AdamW(fused=True), on the same GPU, timed after the engine's steps with the GPU to itself (its model and optimizer state wait on the host meanwhile: both do not fit at once); vsClipo = its time / clipo's (above 1: clipo is faster).`);
  if (rl) notes.push(`RL step: the phases as the trainer times them (rollouts include the verifier, reported apart here; the update runs forward, backward and AdamW over micro-batches), the median of ${rl.steps} steps after a warm-up step; mean response length ${rl.meanResponseTokens} tokens.`);
  const load = loadRecord(before);
  return { suite: 'train', rows, notes: [...standardNotes(load, errors), ...notes], load, errors };
}
