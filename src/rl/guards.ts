// Guards against the silent failures of RL runs: over the last `window` steps, the share of truncated responses
// (every reward 0 because nothing finishes), the share of groups whose rewards are all equal (every advantage 0), the
// share of verifier / custom-reward errors and timeouts (a reward that fails quietly), and the mean entropy
// (collapse or blow-up). Each crossing is a warning; with guards.stop the run stops (keeping the last checkpoint).
import type { ParsedTrainConfig } from '../config/schema.js';

export type GuardSettings = ParsedTrainConfig['guards'];

/** The per-step figures the guards read (columns of metrics.jsonl). */
export interface GuardInput {
  step: number;
  truncated_frac: number;
  no_spread_group_frac: number;
  reward_error_frac: number;
  entropy: number | null;
}

export interface GuardWarning {
  guard: 'truncation' | 'no_spread' | 'reward_errors' | 'entropy_low' | 'entropy_high';
  message: string;
}

/** Raised when a guard fires and guards.stop is set. */
export class GuardStopError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GuardStopError';
  }
}

export class Guards {
  private readonly recent: GuardInput[] = [];

  constructor(private readonly s: GuardSettings) {}

  /** Adds a step and returns the guards that fire on the window ending at it. */
  observe(m: GuardInput): GuardWarning[] {
    this.recent.push(m);
    if (this.recent.length > this.s.window) this.recent.shift();
    const w = this.recent;
    const span = w.length === 1 ? `step ${m.step}` : `steps ${w[0]!.step}-${m.step}`;
    const avg = (f: (x: GuardInput) => number | null) => {
      const xs = w.map(f).filter((x): x is number => x !== null && Number.isFinite(x));
      return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null;
    };
    const pct = (x: number) => `${(100 * x).toFixed(0)}%`;
    const out: GuardWarning[] = [];
    const trunc = avg((x) => x.truncated_frac)!;
    if (trunc > this.s.max_truncated) out.push({ guard: 'truncation', message: `${pct(trunc)} of responses hit data.max_response_tokens over ${span} (guards.max_truncated ${pct(this.s.max_truncated)}): raise the limit or shape long answers (algorithm.overlong_shaping)` });
    const flat = avg((x) => x.no_spread_group_frac)!;
    if (flat > this.s.max_no_spread) out.push({ guard: 'no_spread', message: `${pct(flat)} of groups have the same reward for every response over ${span} (guards.max_no_spread ${pct(this.s.max_no_spread)}): their advantages are 0 and they teach nothing; check the task's difficulty, rollout.n and the reward` });
    const errs = avg((x) => x.reward_error_frac)!;
    if (errs > this.s.max_reward_errors) out.push({ guard: 'reward_errors', message: `${pct(errs)} of rewards were verifier or reward-module errors or timeouts over ${span} (guards.max_reward_errors ${pct(this.s.max_reward_errors)})` });
    const ent = avg((x) => x.entropy);
    if (ent !== null && this.s.min_entropy !== null && ent < this.s.min_entropy) out.push({ guard: 'entropy_low', message: `mean entropy ${ent.toFixed(4)} over ${span} is below guards.min_entropy ${this.s.min_entropy}: the policy is collapsing` });
    if (ent !== null && this.s.max_entropy !== null && ent > this.s.max_entropy) out.push({ guard: 'entropy_high', message: `mean entropy ${ent.toFixed(4)} over ${span} is above guards.max_entropy ${this.s.max_entropy}` });
    return out;
  }
}
