// DAPO's overlong handling (DAPO paper, section 3.4).
//
// Soft overlong punishment, with L_max = data.max_response_tokens and L_cache = the buffer:
//   R_length(|y|) = 0                                    when |y| ≤ L_max − L_cache
//                 = ((L_max − L_cache) − |y|) / L_cache   when L_max − L_cache < |y| ≤ L_max
//                 = −1                                    when |y| > L_max
// times the penalty factor, added to the reward. Overlong filtering masks truncated responses (no end-of-sequence
// token within the limit) out of the policy loss, so the model is not pushed by answers it was not allowed to finish.
import type { AlgorithmSettings } from '../config/presets.js';

/** The buffer L_cache in tokens: the configured one, or a fifth of the limit (DAPO: 4096 of 20480), at least 1. */
export function overlongBuffer(a: Pick<AlgorithmSettings, 'overlong_buffer'>, maxResponseTokens: number): number {
  const b = a.overlong_buffer ?? Math.floor(maxResponseTokens / 5);
  return Math.max(1, Math.min(b, maxResponseTokens));
}

/** R_length × penalty for a response of `length` tokens (≤ 0). */
export function overlongPenalty(length: number, maxResponseTokens: number, buffer: number, penalty: number): number {
  const start = maxResponseTokens - buffer;
  if (length <= start) return 0;
  if (length > maxResponseTokens) return -penalty;
  return (penalty * (start - length)) / buffer;
}
