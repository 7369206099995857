// The preset's settings as arguments of the surrogate kernel (CLIPO-SPEC section 3).
import type { AlgorithmSettings } from '../config/presets.js';

export interface SurrogateSettings {
  mode: AlgorithmSettings['mode'];
  clipLow: number;
  clipHigh: number;
  dualClip?: number;
  agg: AlgorithmSettings['agg'];
  klCoef: number;
  klType: 'low_var_kl';
}

/** `withReference`: whether reference log-probs are passed (the KL term applies only then). */
export function surrogateSettings(a: AlgorithmSettings, withReference: boolean): SurrogateSettings {
  return {
    mode: a.mode,
    clipLow: a.clip_low,
    clipHigh: a.clip_high,
    // the dual clip bounds the loss of negative-advantage tokens in token mode; GSPO/GMPO have none
    dualClip: a.mode === 'token' && a.dual_clip !== null ? a.dual_clip : undefined,
    agg: a.agg,
    klCoef: withReference ? a.kl_coef : 0,
    klType: a.kl_type,
  };
}

/**
 * Weight of one micro-batch's mean in its mini-batch's aggregate: tokens_micro / tokens_mini under token-mean,
 * seqs_micro / seqs_mini when the aggregate is a mean over sequences (seq-mean-*, and GMPO's −mean_i A_i R_i).
 */
export function microBatchWeight(s: SurrogateSettings, microTokens: number, miniTokens: number, microSeqs: number, miniSeqs: number): number {
  return s.mode !== 'geo_mean' && s.agg === 'token-mean' ? microTokens / miniTokens : microSeqs / miniSeqs;
}
