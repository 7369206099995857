// What the trainer needs from its collaborators, as structural types: the policy engine (src/engine/engine.ts
// implements it), the text codec (tokenizer + chat template) and the verifier. Tests can supply small stand-ins.
import type { ModelConfig, TensorMap } from '../model/types.js';
import type { Equation } from '../task/templates.js';
import type { GenerateRequest, GeneratedSequence, PolicyLossFigures, PolicyLossInput, ScoreBatch } from '../engine/engine.js';
import type { RewardItem, RewardOutcome } from './reward-module.js';

export type { GeneratedSequence, PolicyLossFigures, PolicyLossInput, ScoreBatch };

export interface PolicyEngine {
  readonly config: ModelConfig;
  generate(req: GenerateRequest): { sequences: GeneratedSequence[] };
  score(batch: ScoreBatch, opts?: { entropy?: boolean; pooled?: boolean }): { logprobs: Float32Array; entropy?: Float32Array; pooled?: Float32Array; mask: Uint8Array; length: number };
  /**
   * One micro-batch of the policy update: training forward, surrogate loss, weighted gradient and entropy bonus,
   * backward, gradients accumulated (src/engine/engine.ts Engine.policyLossBackward; a stand-in without a native
   * one can compose it from its forwardTrain and backward with src/rl/policy-loss.ts policyLossBackwardOnHost).
   */
  policyLossBackward(batch: ScoreBatch, input: PolicyLossInput): PolicyLossFigures;
  zeroGrad(): void;
  adamwStep(opts: { lr: number; beta1?: number; beta2?: number; eps?: number; weightDecay?: number; maxGradNorm?: number }): { gradNorm: number };
  exportWeights(): TensorMap;
  exportOptimizerState(): { step: number; m: TensorMap; v: TensorMap };
  importOptimizerState(s: { step: number; m: TensorMap; v: TensorMap }): void;
  dispose(): void;
  /** device memory (Engine.deviceMemory): each step's peak goes to the metrics row; absent or null: none (CPU) */
  deviceMemory?(): { peakBytes: number } | null;
  resetPeakDeviceMemory?(): void;
}

/** A training prompt, already rendered and tokenized. */
export interface TrainPrompt {
  id: string;
  tokens: Int32Array;
  groundTruth: string;
  /** the true worked steps, when known (the built-in task): enables the process check of correct responses */
  steps?: Equation[];
  /** the rendered prompt text and the data row (for custom rewards and rollout logs) */
  text?: string;
  row?: unknown;
}

export interface TrainIO {
  /** response tokens -> text for the verifier (special tokens dropped) */
  decode(tokens: Int32Array): string;
  /** 1 when the response is correct, else 0 */
  reward(text: string, groundTruth: string): number;
  /**
   * The rewards of a batch at once (the verifier's worker pool, with its hard deadline): used instead of `reward`
   * when present; `timeouts` counts answers that ran out of time (each scored 0).
   */
  rewardBatch?(items: Array<{ text: string; groundTruth: string }>): {
    rewards: ArrayLike<number>;
    timeouts: number;
    /** per response: why the verifier failed (timeout or internal error; null for a plain verdict), when known */
    errors?: ReadonlyArray<string | null>;
    extracted?: ReadonlyArray<string | null>;
  };
  /** whether a correct response's stated steps are the true ones (src/task/process.ts) */
  stepsCorrect?(text: string, steps: readonly Equation[]): boolean;
  /** the verifier's reward with its failure, if any (internal error or timeout; a wrong answer is no failure) */
  verify?(text: string, groundTruth: string): { reward: number; error: string | null; extracted: string | null };
  /** the custom reward module (reward.module) */
  customReward?(item: RewardItem): RewardOutcome;
}

/** Raised when a loss or gradient is NaN/Inf: the run stops and keeps its last good checkpoint. */
export class NonFiniteError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NonFiniteError';
  }
}
