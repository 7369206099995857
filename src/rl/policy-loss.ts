// The preset's settings as arguments of the surrogate kernel, and the micro-batch weighting, both driven by the
// policy-loss mode's descriptor (policyLossModes in src/kernels/variants.ts; docs/algorithm.md §3); and the
// micro-batch step composed from an engine's forwardTrain and backward (for stand-in policies, and the reference the
// engines' own policyLossBackward is tested against).
import type { AlgorithmSettings } from '../config/presets.js';
import type { PolicyLossFigures, PolicyLossInput, ScoreBatch } from '../engine/engine.js';
import { surrogateLoss } from '../kernels/surrogate.js';
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

/** What policyLossBackwardOnHost needs of an engine. */
export interface HostTrainable {
  forwardTrain(batch: ScoreBatch): { logprobs: Float32Array; entropy: Float32Array; mask: Uint8Array; length: number };
  /** d loss / d logp, and optionally d loss / d entropy of the same positions (the entropy bonus) */
  backward(gradLogp: Float32Array, gradEntropy?: Float32Array): void;
}

/**
 * Engine.policyLossBackward's steps through an engine's host methods: forwardTrain, the CPU surrogate kernel on its
 * log-probs, d loss / d logp scaled by the micro-batch weight (in double, stored as float32), d loss / d H =
 * −entropyCoef / entropyDenominator on the in-loss tokens, backward. The same figures, checks and results as the
 * native CPU engine's (native/engine/policy_loss.cpp).
 */
export function policyLossBackwardOnHost(engine: HostTrainable, batch: ScoreBatch, o: PolicyLossInput): PolicyLossFigures {
  const entCoef = o.entropyCoef ?? 0;
  if (entCoef > 0 && engine.backward.length < 2) throw new Error('an entropy bonus needs an engine whose backward takes d loss / d entropy');
  const ft = engine.forwardTrain(batch);
  const B = batch.sequences.length, T = ft.length;
  const f: PolicyLossFigures = { loss: 0, pgLoss: 0, klLoss: 0, clipFracHigh: 0, clipFracLow: 0, dualClipFrac: 0, approxKl: 0, entropySum: 0, tokens: 0, sequences: 0, nonFiniteLogp: 0, nonFiniteGrad: 0, accumulated: false };
  const mask = new Uint8Array(B * T);
  for (let b = 0; b < B; b++) {
    const len = batch.sequences[b]!.response.length;
    const inLoss = !o.inLoss || o.inLoss[b] !== 0;
    for (let t = 0; t < len; t++) {
      const i = b * T + t;
      if (!Number.isFinite(ft.logprobs[i]!)) f.nonFiniteLogp++;
      if (!inLoss) continue;
      mask[i] = 1;
      f.entropySum += ft.entropy[i]!;
    }
    if (inLoss) {
      f.tokens += len;
      if (len > 0) f.sequences++;
    }
  }
  if (f.nonFiniteLogp > 0 || f.tokens === 0) return f;
  const sl = surrogateLoss({
    logp: ft.logprobs, oldLogp: o.oldLogp, refLogp: o.refLogp, advantages: o.advantages, mask, batch: B, length: T,
    mode: o.mode, clipLow: o.clipLow, clipHigh: o.clipHigh, dualClip: o.dualClip, agg: o.agg, klCoef: o.klCoef, klType: o.klType,
    backend: 'cpu',
  });
  Object.assign(f, { loss: sl.loss, pgLoss: sl.pgLoss, klLoss: sl.klLoss ?? 0, clipFracHigh: sl.clipFracHigh, clipFracLow: sl.clipFracLow, dualClipFrac: sl.dualClipFrac, approxKl: sl.approxKl });
  if (!Number.isFinite(sl.loss)) return f;
  const grad = new Float32Array(sl.gradLogp.length);
  for (let i = 0; i < grad.length; i++) {
    grad[i] = sl.gradLogp[i]! * o.weight;
    if (!Number.isFinite(grad[i]!)) f.nonFiniteGrad++;
  }
  if (f.nonFiniteGrad > 0) return f;
  if (entCoef > 0) {
    const gradEnt = new Float32Array(mask.length);
    const g = -entCoef / (o.entropyDenominator ?? 1);
    for (let i = 0; i < mask.length; i++) if (mask[i]) gradEnt[i] = g;
    engine.backward(grad, gradEnt);
  } else engine.backward(grad);
  f.accumulated = true;
  return f;
}
