// The names of every kernel variant, defined once: the config schema (src/config/schema.ts), the presets, the
// kernels' TypeScript wrappers and the diagnostics take their lists and types from here. The native side holds the
// same lists once too (native/common/variants.h, in the order of its enums, used by every N-API entry that reads a
// variant); `kernelVariants()` of the addon returns them, and test/variants.test.ts checks that the two agree.

/** Surrogate policy-loss modes: token (GRPO, DAPO), sequence (GSPO), geo_mean (GMPO). */
export const surrogateModes = ['token', 'sequence', 'geo_mean'] as const;
export type SurrogateMode = (typeof surrogateModes)[number];

/** How the per-token policy loss is aggregated (verl's loss_agg_mode names). */
export const surrogateAggs = ['token-mean', 'seq-mean-token-mean', 'seq-mean-token-sum'] as const;
export type SurrogateAgg = (typeof surrogateAggs)[number];

/** KL estimators of the KL-to-reference loss term. */
export const klTypes = ['low_var_kl'] as const;
export type KlType = (typeof klTypes)[number];

/** Contrastive loss types (docs/algorithm.md §2). */
export const contrastiveLossTypes = ['infonce', 'supcon_in', 'supcon_out', 'soft_nn'] as const;
export type ContrastiveLossType = (typeof contrastiveLossTypes)[number];

/** Where positives and the softmax set come from: the group, group positives with batch negatives, the batch. */
export const contrastiveLevels = ['group', 'cross', 'batch'] as const;
export type ContrastiveLevel = (typeof contrastiveLevels)[number];

export const contrastiveDistances = ['cosine', 'l2'] as const;
export type ContrastiveDistance = (typeof contrastiveDistances)[number];

/** The contrastive head: normalize(W h) or normalize(W2 relu(W1 h)). */
export const contrastiveHeadKinds = ['linear', 'mlp'] as const;
export type ContrastiveHeadKind = (typeof contrastiveHeadKinds)[number];

/** Element types of token hidden states handed to the contrastive kernel. */
export const tokenDtypes = ['f32', 'bf16'] as const;
export type TokenDtype = (typeof tokenDtypes)[number];

/** Which anchors count: 0 correct only, 1 incorrect only, -1 all. */
export const maskedLabels = [-1, 0, 1] as const;
export type MaskedLabel = (typeof maskedLabels)[number];

/**
 * What each policy-loss mode means to the code around the one fused surrogate kernel, in the spirit of verl's
 * registered policy-loss functions: the kernel computes every mode, and this table says how to drive it. Config
 * validation (src/config/presets.ts), the kernel's arguments and the micro-batch weighting (src/rl/policy-loss.ts)
 * and the wrapper's input checks (src/kernels/surrogate.ts) all read it.
 */
export interface PolicyLossMode {
  /** ratio: clip ρ to [1 − clip_low, 1 + clip_high]; log_ratio: clip δ = log ρ to [−clip_low, clip_high] */
  clipSpace: 'ratio' | 'log_ratio';
  /** clip_low must be below this (ratio space: the lower bound 1 − clip_low must stay positive) */
  clipLowBelow: number;
  /** clip_high may be at most this */
  clipHighMax: number;
  /** whether the dual clip (the cap −c·A on negative-advantage tokens) applies */
  dualClip: boolean;
  /**
   * How one micro-batch's mean is weighted in its mini-batch's aggregate: `agg` follows algorithm.agg (token-mean:
   * by tokens, the sequence means: by sequences); `sequences` always by sequences (the loss is a mean over sequences,
   * whatever agg says; agg then only weighs the KL term).
   */
  microBatchWeight: 'agg' | 'sequences';
}

/** token: GRPO and DAPO; sequence: GSPO; geo_mean: GMPO. */
export const policyLossModes: Readonly<Record<SurrogateMode, PolicyLossMode>> = {
  token: { clipSpace: 'ratio', clipLowBelow: 1, clipHighMax: 20, dualClip: true, microBatchWeight: 'agg' },
  sequence: { clipSpace: 'ratio', clipLowBelow: 1, clipHighMax: 20, dualClip: false, microBatchWeight: 'agg' },
  geo_mean: { clipSpace: 'log_ratio', clipLowBelow: 20, clipHighMax: 20, dualClip: false, microBatchWeight: 'sequences' },
};

/** Type guard for a name of one vocabulary (for values read from JSON, YAML or the command line). */
export function isVariant<T extends string | number>(names: readonly T[], v: unknown): v is T {
  return (names as readonly unknown[]).includes(v);
}
