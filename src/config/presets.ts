// The four base algorithms as surrogate-loss settings (docs/algorithm.md §3). A config names a
// preset and may override any field; resolveAlgorithm fills the rest from the preset, and algorithmIssues refuses
// a combination the surrogate kernel would not honour (checked when the config is read, not steps later).
import { policyLossModes, type KlType, type SurrogateAgg, type SurrogateMode } from '../kernels/variants.js';
import type { ParsedTrainConfig, PresetName } from './schema.js';

export interface AlgorithmSettings {
  preset: PresetName;
  mode: SurrogateMode;
  clip_low: number;
  clip_high: number;
  /** dual clip c for negative advantages (token mode only); null = off */
  dual_clip: number | null;
  agg: SurrogateAgg;
  kl_coef: number;
  kl_type: KlType;
  adv_estimator: 'grpo' | 'drgrpo';
  adv_eps: number;
  dynamic_sampling: boolean;
  max_sampling_tries: number;
  overlong_shaping: boolean;
  overlong_buffer: number | null;
  overlong_penalty: number;
  overlong_filter: boolean;
  entropy_coef: number;
}

// shared by every preset unless it says otherwise
const common = { overlong_shaping: false, overlong_buffer: null, overlong_penalty: 1, overlong_filter: false, entropy_coef: 0 } as const;

export const presets: Record<PresetName, AlgorithmSettings> = {
  // PPO clip, symmetric 0.2, dual clip 3, token-mean, low_var_kl loss 0.001 to the reference policy.
  grpo: { preset: 'grpo', mode: 'token', clip_low: 0.2, clip_high: 0.2, dual_clip: 3, agg: 'token-mean', kl_coef: 0.001, kl_type: 'low_var_kl', adv_estimator: 'grpo', adv_eps: 1e-6, dynamic_sampling: false, max_sampling_tries: 10, ...common },
  // GRPO with clip-higher (0.2 / 0.28), no KL at all, dynamic sampling, soft overlong punishment and overlong
  // filtering (DAPO paper, section 3.4: buffer 4096 of 20480 tokens, penalty factor 1).
  dapo: { preset: 'dapo', mode: 'token', clip_low: 0.2, clip_high: 0.28, dual_clip: 3, agg: 'token-mean', kl_coef: 0, kl_type: 'low_var_kl', adv_estimator: 'grpo', adv_eps: 1e-6, dynamic_sampling: true, max_sampling_tries: 10, ...common, overlong_shaping: true, overlong_filter: true },
  // Sequence-level ratio exp(mean_t δ_t), clip (1 - 3e-4, 1 + 4e-4), seq-mean-token-mean; no KL term.
  gspo: { preset: 'gspo', mode: 'sequence', clip_low: 3e-4, clip_high: 4e-4, dual_clip: null, agg: 'seq-mean-token-mean', kl_coef: 0, kl_type: 'low_var_kl', adv_estimator: 'grpo', adv_eps: 1e-6, dynamic_sampling: false, max_sampling_tries: 10, ...common },
  // Geometric mean of token ratios, log-space clip 0.4 both sides, loss -mean_i(A_i R_i); no KL term.
  gmpo: { preset: 'gmpo', mode: 'geo_mean', clip_low: 0.4, clip_high: 0.4, dual_clip: null, agg: 'seq-mean-token-mean', kl_coef: 0, kl_type: 'low_var_kl', adv_estimator: 'grpo', adv_eps: 1e-6, dynamic_sampling: false, max_sampling_tries: 10, ...common },
};

export function resolveAlgorithm(a: ParsedTrainConfig['algorithm']): AlgorithmSettings {
  const base = presets[a.preset];
  const out = { ...base } as AlgorithmSettings;
  for (const [k, v] of Object.entries(a)) if (v !== undefined) (out as unknown as Record<string, unknown>)[k] = v;
  return out;
}

/**
 * What the surrogate kernel would refuse or ignore in resolved settings, as [dotted key, message] pairs: the clip
 * bounds outside the mode's range, and a dual clip in a mode that has none (e.g. mode sequence keeping the grpo
 * preset's dual_clip: refused rather than silently dropped). Ranges come from policyLossModes.
 */
export function algorithmIssues(a: AlgorithmSettings, explicit: ReadonlySet<string> = new Set()): [string, string][] {
  const m = policyLossModes[a.mode];
  const from = (k: string) => (explicit.has(k) ? '' : ` (from preset ${a.preset})`);
  const issues: [string, string][] = [];
  if (!(a.clip_low < m.clipLowBelow)) {
    const why = m.clipSpace === 'ratio' ? `: the ratio bound 1 − clip_low must stay positive` : '';
    issues.push(['algorithm.clip_low', `must be below ${m.clipLowBelow} in mode '${a.mode}'${why}, got ${a.clip_low}${from('clip_low')}`]);
  }
  if (!(a.clip_high <= m.clipHighMax)) {
    issues.push(['algorithm.clip_high', `must be at most ${m.clipHighMax} in mode '${a.mode}', got ${a.clip_high}${from('clip_high')}`]);
  }
  if (a.dual_clip !== null && !m.dualClip) {
    issues.push(['algorithm.dual_clip', `mode '${a.mode}' has no dual clip, but dual_clip is ${a.dual_clip}${from('dual_clip')}; set algorithm.dual_clip: null`]);
  }
  return issues;
}
