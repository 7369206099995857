// The task reward of one response, before CLIPO's contrastive term:
//   r_task = verifier_weight · r_verifier + module_weight · r_module + R_length
// r_verifier ∈ {0, 1} is the verifier's outcome, r_module the custom reward module's score (reward-module.ts; 0
// when absent, failed or timed out) and R_length DAPO's soft overlong punishment (overlong.ts) when enabled.
// CLIPO's `correct` label is r_verifier > 0 unless reward.correct_from says `reward` (then r_task > 0).
import type { TrainConfig } from '../config/load.js';
import { overlongBuffer, overlongPenalty } from './overlong.js';
import type { TrainIO, TrainPrompt } from './types.js';

export interface ScoredResponse {
  text: string;
  /** the verifier's reward (0 or 1) */
  verifier: number;
  /** the verifier failed (internal error or timeout) rather than judging the answer wrong */
  verifierError: string | null;
  extracted: string | null;
  /** the custom module's score (null: no module) */
  module: number | null;
  parts: Record<string, number>;
  moduleError: string | null;
  /** R_length (0 unless overlong shaping applies) */
  overlong: number;
  /** no end-of-sequence token within data.max_response_tokens */
  truncated: boolean;
  /** r_task */
  reward: number;
  correct: boolean;
}

export class RewardStage {
  private readonly buffer: number;

  constructor(
    private readonly c: TrainConfig,
    private readonly io: TrainIO,
  ) {
    this.buffer = overlongBuffer(c.algorithm, c.data.max_response_tokens);
  }

  /**
   * The responses of one sampling round. The verifier sees them as one batch when the io offers one (the worker pool
   * with its hard deadline); `timeouts` counts answers that ran out of time there (each scored 0).
   */
  scoreAll(items: ReadonlyArray<{ prompt: TrainPrompt; tokens: Int32Array; finishReason: 'stop' | 'length' }>): { scored: ScoredResponse[]; timeouts: number } {
    const texts = items.map((it) => this.io.decode(it.tokens));
    if (!this.io.rewardBatch) return { scored: items.map((it, k) => this.score(it.prompt, it.tokens, it.finishReason, texts[k]!)), timeouts: 0 };
    const r = this.io.rewardBatch(items.map((it, k) => ({ text: texts[k]!, groundTruth: it.prompt.groundTruth })));
    if (r.rewards.length !== items.length) throw new Error(`rewardBatch returned ${r.rewards.length} rewards for ${items.length} responses`);
    const scored = items.map((it, k) =>
      this.score(it.prompt, it.tokens, it.finishReason, texts[k]!, { reward: r.rewards[k]!, error: r.errors?.[k] ?? null, extracted: r.extracted?.[k] ?? null }),
    );
    return { scored, timeouts: r.timeouts };
  }

  /** One response; `verified` is the verifier's outcome when it was already computed in a batch. */
  score(p: TrainPrompt, tokens: Int32Array, finishReason: 'stop' | 'length', text = this.io.decode(tokens), verified?: { reward: number; error: string | null; extracted: string | null }): ScoredResponse {
    const c = this.c;
    let verifier: number, verifierError: string | null = null, extracted: string | null = null;
    const v = verified ?? this.io.verify?.(text, p.groundTruth);
    if (v) {
      verifier = v.reward;
      verifierError = v.error;
      extracted = v.extracted;
    } else verifier = this.io.reward(text, p.groundTruth);
    let module: number | null = null, moduleError: string | null = null, parts: Record<string, number> = {};
    if (this.io.customReward) {
      const o = this.io.customReward({ prompt: p.text ?? '', response: text, groundTruth: p.groundTruth, row: p.row ?? null, verifierReward: verifier });
      module = o.score;
      parts = o.parts;
      moduleError = o.error ? `${o.error}${o.message ? `: ${o.message}` : ''}` : null;
    }
    const truncated = finishReason === 'length';
    const overlong = c.algorithm.overlong_shaping ? overlongPenalty(tokens.length, c.data.max_response_tokens, this.buffer, c.algorithm.overlong_penalty) : 0;
    const reward = c.reward.verifier_weight * verifier + c.reward.module_weight * (module ?? 0) + overlong;
    const correct = c.reward.correct_from === 'reward' ? reward > 0 : verifier > 0;
    return { text, verifier, verifierError, extracted, module, parts, moduleError, overlong, truncated, reward, correct };
  }
}
