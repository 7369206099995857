// The preset's settings as arguments of the surrogate kernel, and the micro-batch weighting, both driven by the
// policy-loss mode's descriptor (policyLossModes in src/kernels/variants.ts; docs/algorithm.md §3).
import type { AlgorithmSettings } from '../config/presets.js';
import { policyLossModes, type KlType, type SurrogateAgg, type SurrogateMode } from '../kernels/variants.js';

export interface SurrogateSettings {
  mode: SurrogateMode;
  clipLow: number;
  clipHigh: number;
  dualClip?: number;
  agg: SurrogateAgg;
  klCoef: number;
  klType: KlType;
}

/** `withReference`: whether reference log-probs are passed (the KL term applies only then). */
export function surrogateSettings(a: AlgorithmSettings, withReference: boolean): SurrogateSettings {
  return {
    mode: a.mode,
    clipLow: a.clip_low,
    clipHigh: a.clip_high,
    // the config check refuses a dual clip in a mode without one (algorithmIssues); the guard keeps a
    // hand-made AlgorithmSettings from reaching the kernel with one
    dualClip: policyLossModes[a.mode].dualClip && a.dual_clip !== null ? a.dual_clip : undefined,
    agg: a.agg,
    klCoef: withReference ? a.kl_coef : 0,
    klType: a.kl_type,
  };
}

/**
 * Weight of one micro-batch's mean in its mini-batch's aggregate: tokens_micro / tokens_mini when the aggregate is a
 * mean over tokens (agg token-mean, in a mode whose weighting follows agg), seqs_micro / seqs_mini when it is a
 * mean over sequences (the seq-mean aggregations, and GMPO's −mean_i A_i R_i whatever agg says).
 */
export function microBatchWeight(s: SurrogateSettings, microTokens: number, miniTokens: number, microSeqs: number, miniSeqs: number): number {
  const byTokens = policyLossModes[s.mode].microBatchWeight === 'agg' && s.agg === 'token-mean';
  return byTokens ? microTokens / miniTokens : microSeqs / miniSeqs;
}
