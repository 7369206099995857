// The CLIPO phase of an RL step (docs/algorithm.md §1, steps 3 to 6): the contrastive loss of the
// batch's pooled states under the head as it is, the contrastive reward from that loss, the diagnostics, and then
// the head's AdamW step. The reward always comes from the head *before* its step, as in the official code.
import type { ClipoSettings } from '../config/load.js';
import type { Backend } from '../kernels/backend.js';
import { contrastiveLoss } from '../kernels/contrastive.js';
import { contrastiveDiagnostics, type ContrastiveDiagnostics } from './diagnostics.js';
import type { ContrastiveHead } from './head.js';
import { NonFiniteError } from './types.js';

export interface ContrastiveRewardOptions {
  /** [B] per-anchor contrastive losses L_i (from the forward pass before the head update) */
  perSample: Float32Array;
  /** [B] 0/1 */
  correct: Uint8Array;
  /** lambda (0.2 in the paper) */
  lambda: number;
  /** c (default 0) */
  constant?: number;
  /** lower clamp (default -0.5) */
  clampMin?: number;
}

/** The contrastive reward r_c,i = max(c − λ · L_i · correct_i, clampMin) (docs/algorithm.md §1 step 5). */
export function contrastiveReward(o: ContrastiveRewardOptions): Float32Array {
  const err = (m: string): never => {
    throw new Error(`contrastiveReward: ${m}`);
  };
  if (typeof o !== 'object' || o === null) err('expected an options object');
  const tag = (v: unknown) => Object.prototype.toString.call(v);
  if (tag(o.perSample) !== '[object Float32Array]') err('perSample: expected a Float32Array');
  if (tag(o.correct) !== '[object Uint8Array]') err('correct: expected a Uint8Array');
  if (o.correct.length !== o.perSample.length) {
    err(`correct: expected length ${o.perSample.length} (as perSample), got ${o.correct.length}`);
  }
  const num = (name: string, v: unknown): number => {
    if (typeof v !== 'number' || !Number.isFinite(v)) err(`${name}: expected a finite number, got ${String(v)}`);
    return v as number;
  };
  const lambda = num('lambda', o.lambda);
  const c = o.constant === undefined ? 0 : num('constant', o.constant);
  const lo = o.clampMin === undefined ? -0.5 : num('clampMin', o.clampMin);
  const out = new Float32Array(o.perSample.length);
  for (let i = 0; i < out.length; i++) {
    const y = o.correct[i]!;
    if (y > 1) err(`correct: values must be 0 or 1, got ${y} at index ${i}`);
    const L = o.perSample[i]!;
    if (!Number.isFinite(L)) err(`perSample: non-finite value at index ${i}`);
    out[i] = Math.max(c - lambda * L * y, lo);
  }
  return out;
}

export interface ClipoBatch {
  /** [B × H] pooled final hidden states of the responses (no gradient into the policy) */
  pooled: Float32Array;
  /** [B] verifier correctness, 0/1 */
  correct: Uint8Array;
  /** [B] group (prompt) of each response */
  group: Int32Array;
}

export interface ClipoPhaseResult {
  /** the batch contrastive loss (head before its step) */
  loss: number;
  /** [B] contrastive reward r_c */
  reward: Float32Array;
  /** [B × D] head embeddings before the step */
  embeddings: Float32Array;
  /** [B] per-anchor contrastive losses L_i (0 for anchors that do not count) */
  perSample: Float32Array;
  /** whether the head took a step (not with fixed_head, nor without a valid anchor) */
  headStepped: boolean;
  diagnostics: ContrastiveDiagnostics;
}

/**
 * Runs the CLIPO phase on one batch: loss and gradient of the head in one kernel call, reward, diagnostics, head
 * step. `seed` draws the InfoNCE positives; `stepNo` only names the step in errors.
 */
export function clipoPhase(head: ContrastiveHead, batch: ClipoBatch, k: ClipoSettings, o: { seed: number; backend: Backend; stepNo: number }): ClipoPhaseResult {
  const B = batch.correct.length;
  const res = contrastiveLoss({
    pooled: batch.pooled, batch: B, hiddenSize: head.hiddenSize, outSize: k.out_size, ...head.kernelWeights(),
    correct: batch.correct, group: batch.group, lossType: k.loss_type, level: k.level, distance: k.distance, temperature: k.temperature,
    maskedLabel: k.masked_label, skipTrivial: k.skip_trivial, seed: o.seed, grad: !k.fixed_head, backend: o.backend,
  });
  if (!Number.isFinite(res.loss)) throw new NonFiniteError(`step ${o.stepNo}: the contrastive loss is non-finite (${res.loss})`);
  const reward = contrastiveReward({ perSample: res.perSample, correct: batch.correct, lambda: k.lambda, constant: k.constant, clampMin: k.clamp });
  const diagnostics = contrastiveDiagnostics(
    { embeddings: res.embeddings, outSize: k.out_size, perSample: res.perSample, correct: batch.correct, group: batch.group },
    { level: k.level, distance: k.distance, lossType: k.loss_type, temperature: k.temperature, maskedLabel: k.masked_label, skipTrivial: k.skip_trivial, backend: o.backend },
  );
  const headStepped = !k.fixed_head && res.validAnchors > 0;
  if (headStepped) head.adamwStep(res.gradients!, { lr: k.lr, weightDecay: k.weight_decay });
  return { loss: res.loss, reward, embeddings: res.embeddings, perSample: res.perSample, headStepped, diagnostics };
}
