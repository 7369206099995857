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

  score(p: TrainPrompt, tokens: Int32Array, finishReason: 'stop' | 'length'): ScoredResponse {
    const c = this.c;
    const text = this.io.decode(tokens);
    let verifier: number, verifierError: string | null = null, extracted: string | null = null;
    if (this.io.verify) {
      const v = this.io.verify(text, p.groundTruth);
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
