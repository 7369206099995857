// The RL step loop (docs/algorithm.md §1) on the policy engine:
//
//   prompts → n rollouts each (engine sampling) → verifier rewards r_v
//   → scoring pass: old log-probs and, from the same pass, the pooled final hidden states
//   → contrastive loss and reward r_c (head before its step) → head AdamW step
//   → total reward r = r_v + r_c → group advantages
//   → PPO mini-batches: per micro-batch one engine call (forward → surrogate kernel → backward, on the engine's
//     device) → AdamW (reference log-probs when the preset has KL)
//
// During the head warm-up (the first epoch by default) the policy is frozen: rollouts, scoring and the head step
// run, the PPO update does not.
import { resolveBackend, type Backend } from '../kernels/backend.js';
import type { TrainConfig } from '../config/load.js';
import { computeAdvantages } from './advantages.js';
import type { CheckpointPayload, CheckpointState } from './checkpoint.js';
import { CHECKPOINT_FORMAT } from './checkpoint.js';
import { clipoPhase } from './clipo.js';
import { ContrastiveHead } from './head.js';
import { makeSchedule, PromptStream, type Schedule } from './schedule.js';
import { counterSeed, SeedStream } from '../util/seeds.js';
import { microBatchWeight, surrogateSettings } from './policy-loss.js';
import { learningRate } from './lr-schedule.js';
import { RewardStage, type ScoredResponse } from './rewards.js';
import { sampleGroups, type Rollout } from './sampling.js';
import { NonFiniteError, type PolicyEngine, type TrainIO, type TrainPrompt } from './types.js';
import { maxOf } from '../util/stats.js';

/** One row of metrics.jsonl. Figures that do not apply to a step are null. */
export interface StepMetrics {
  step: number;
  epoch: number;
  /** head warm-up step: the policy was not updated */
  warmup: boolean;
  reward_mean: number;
  /** verifier accuracy over every rollout sampled in the step (before dynamic-sampling filtering) */
  accuracy: number;
  /** verifier accuracy over the trained batch */
  batch_accuracy: number;
  /** process check (built-in task): share of the step's correct rollouts whose stated steps are the true ones;
   *  null when no correct rollout had known steps */
  process_correct_frac: number | null;
  advantage_abs_mean: number;
  contrastive_loss: number | null;
  contrastive_valid_anchors: number | null;
  contrastive_correct_loss_mean: number | null;
  contrastive_correct_loss_min: number | null;
  contrastive_correct_loss_max: number | null;
  contrastive_incorrect_loss_mean: number | null;
  contrastive_reward_mean: number | null;
  contrastive_signal_group_frac: number | null;
  positive_cos_mean: number | null;
  head_stepped: boolean | null;
  policy_loss: number | null;
  clip_frac_high: number | null;
  clip_frac_low: number | null;
  approx_kl: number | null;
  kl_loss: number | null;
  entropy: number | null;
  grad_norm: number | null;
  response_length_mean: number;
  response_length_max: number;
  kept_groups: number;
  sampling_rounds: number;
  /** rollouts whose verification ran out of time (each scored 0) */
  verify_timeouts: number;
  tokens_per_s: number;
  time_rollout_s: number;
  time_scoring_s: number;
  time_clipo_s: number;
  time_update_s: number;
  time_step_s: number;
  /** the step's peak device memory in GiB (the CUDA engine's buffers, Engine.deviceMemory); null on the CPU backend */
  device_mem_peak_gib: number | null;
  /** verifier reward mean over the trained batch (r_verifier) */
  verifier_reward_mean: number;
  /** custom reward module's mean score over every sampled response (null: no module) */
  module_reward_mean: number | null;
  /** mean of each named part the module returned, over the responses that returned it */
  reward_parts: Record<string, number> | null;
  /** mean DAPO overlong penalty R_length over the trained batch (null: shaping off) */
  overlong_penalty_mean: number | null;
  /** share of sampled responses that hit data.max_response_tokens without an end-of-sequence token */
  truncated_frac: number;
  /** share of sampled groups whose task rewards are all equal */
  no_spread_group_frac: number;
  /** verifier failures (internal error or timeout) and custom-reward throws/timeouts/invalid values, sampled responses */
  verifier_errors: number;
  reward_module_errors: number;
  reward_module_timeouts: number;
  /** (verifier_errors + reward_module_errors + reward_module_timeouts) / sampled responses */
  reward_error_frac: number;
  /** truncated responses masked out of the policy loss (algorithm.overlong_filter) */
  overlong_filtered: number;
  /** the policy's learning rate this step (null during the head warm-up) */
  lr: number | null;
}

/** Per-step detail beyond metrics, for reports (embedding maps) and tests. */
export interface StepDetail {
  step: number;
  correct: Uint8Array;
  group: Int32Array;
  rewards: Float32Array;
  advantages: Float32Array;
  /** head embeddings [B × D] before the head's step (CLIPO only) */
  embeddings: Float32Array | null;
  outSize: number;
  /** per response of the trained batch: prompt index, reward breakdown, length (rollout logs) */
  responses: Array<{ promptId: string; promptText: string; groundTruth: string; scored: ScoredResponse; length: number }>;
  /** CLIPO's per-anchor contrastive loss and reward r_c (null without CLIPO) */
  contrastivePerSample: Float32Array | null;
  contrastiveReward: Float32Array | null;
}

export interface TrainerState {
  step: number;
  stream: { epoch: number; offset: number };
  head: ContrastiveHead | null;
}

export interface TrainerOptions {
  config: TrainConfig;
  policy: PolicyEngine;
  /** the frozen reference policy (needed when algorithm.kl_coef > 0) */
  reference: PolicyEngine | null;
  prompts: TrainPrompt[];
  io: TrainIO;
  /** resume from this state (step count, data position, head with its optimizer) */
  resume?: TrainerState;
}

const now = () => performance.now() / 1000;
const mean = (a: ArrayLike<number>): number => {
  let t = 0;
  for (let i = 0; i < a.length; i++) t += a[i]!;
  return a.length ? t / a.length : 0;
};

function checkFinite(a: Float32Array, mask: Uint8Array | null, what: string, step: number): void {
  for (let i = 0; i < a.length; i++) if ((!mask || mask[i]) && !Number.isFinite(a[i]!)) throw new NonFiniteError(`step ${step}: ${what} (${a[i]})`);
}

export class Trainer {
  readonly cfg: TrainConfig;
  readonly schedule: Schedule;
  readonly policy: PolicyEngine;
  readonly reference: PolicyEngine | null;
  readonly prompts: TrainPrompt[];
  readonly io: TrainIO;
  readonly stream: PromptStream;
  head: ContrastiveHead | null;
  /** steps completed */
  step: number;
  /** kernel backend, resolved once (probing for a GPU on every call would cost more than the call) */
  readonly backend: Backend;
  private readonly rewardStage: RewardStage;

  constructor(o: TrainerOptions) {
    this.cfg = o.config;
    this.policy = o.policy;
    this.reference = o.reference;
    this.prompts = o.prompts;
    this.io = o.io;
    const c = this.cfg;
    this.schedule = makeSchedule({ numPrompts: o.prompts.length, promptsPerStep: c.optim.prompts_per_step, epochs: c.optim.epochs, maxSteps: c.optim.max_steps, warmup: c.clipo.warmup_steps, clipoEnabled: c.clipo.enabled });
    if (c.algorithm.kl_coef > 0 && !this.reference) throw new Error('algorithm.kl_coef > 0 needs a reference policy');
    if (c.algorithm.dynamic_sampling && c.rollout.n < 2) throw new Error('algorithm.dynamic_sampling needs rollout.n ≥ 2 (a group of one never has reward spread)');
    this.step = o.resume?.step ?? 0;
    this.backend = resolveBackend('auto');
    this.rewardStage = new RewardStage(c, o.io);
    this.stream = new PromptStream(o.prompts.length, c.optim.seed, c.data.shuffle, o.resume?.stream);
    const H = this.policy.config.hiddenSize;
    this.head = c.clipo.enabled ? (o.resume?.head ?? ContrastiveHead.init(c.clipo.head, H, c.clipo.out_size, counterSeed(c.optim.seed, SeedStream.headInit))) : null;
    if (this.head && (this.head.hiddenSize !== H || this.head.outSize !== c.clipo.out_size || this.head.kind !== c.clipo.head)) {
      throw new Error(`contrastive head (${this.head.kind}, H ${this.head.hiddenSize}, D ${this.head.outSize}) does not fit the config (${c.clipo.head}, H ${H}, D ${c.clipo.out_size})`);
    }
  }

  get done(): boolean {
    return this.step >= this.schedule.totalSteps;
  }

  /** Runs one RL step (docs/algorithm.md §1); returns its metrics row and detail. */
  runStep(): { metrics: StepMetrics; detail: StepDetail } {
    const c = this.cfg;
    const stepNo = this.step + 1;
    const warmup = this.step < this.schedule.warmupSteps;
    const tStep = now();
    this.policy.resetPeakDeviceMemory?.();

    // 1. rollouts and task rewards r_v (verifier, custom module, overlong shaping; DAPO: dynamic sampling)
    const sampling = sampleGroups({ cfg: c, policy: this.policy, prompts: this.prompts, stream: this.stream, io: this.io, rewards: this.rewardStage, stepNo });
    const batch = sampling.groups.flat();
    const B = batch.length;
    const correct = Uint8Array.from(batch, (r) => (r.scored.correct ? 1 : 0));
    const group = Int32Array.from(batch, (r) => r.group);
    const tRollout = now() - tStep;

    // 2. scoring pass: old log-probs and, from the same pass, the pooled states (reference log-probs with KL)
    const t1 = now();
    const update = !warmup && B > 0;
    const old = B > 0 ? this.scoreAll(this.policy, batch, !!this.head) : { logp: [], pooled: null };
    const ref = update && c.algorithm.kl_coef > 0 ? this.scoreAll(this.reference!, batch, false).logp : null;
    const tScoring = now() - t1;

    // 3-6. CLIPO: contrastive loss and reward r_c from the head before its step, then the head step
    const t2 = now();
    const clipo = this.head && B > 0
      ? clipoPhase(this.head, { pooled: old.pooled!, correct, group }, c.clipo, { seed: counterSeed(c.optim.seed, SeedStream.infoNcePositive, stepNo), backend: this.backend, stepNo })
      : null;
    const tClipo = now() - t2;

    // 7. total reward r = r_v + r_c and group advantages
    const rewards = Float32Array.from(batch, (r, i) => r.rv + (clipo ? clipo.reward[i]! : 0));
    const adv = computeAdvantages(rewards, group, { estimator: c.algorithm.adv_estimator, eps: c.algorithm.adv_eps });

    // 8. policy update (not during the head warm-up)
    const t3 = now();
    const lr = update ? learningRate(c.optim, this.step - this.schedule.warmupSteps, this.schedule.totalSteps - this.schedule.warmupSteps) : null;
    const upd = update ? this.updatePolicy(batch, old.logp, ref, adv, stepNo, lr!) : null;
    const tUpdate = now() - t3;
    this.step++;

    const stepTime = now() - tStep;
    const deviceMem = this.policy.deviceMemory?.() ?? null;
    const lengths = batch.map((r) => r.response.length);
    const diag = clipo?.diagnostics ?? null;
    const metrics: StepMetrics = {
      step: stepNo,
      epoch: sampling.epoch + 1,
      warmup,
      reward_mean: mean(rewards),
      accuracy: sampling.sampled ? sampling.sampledCorrect / sampling.sampled : 0,
      batch_accuracy: mean(correct),
      process_correct_frac: sampling.processChecked ? sampling.processOk / sampling.processChecked : null,
      advantage_abs_mean: mean(Array.from(adv, Math.abs)),
      contrastive_loss: clipo?.loss ?? null,
      contrastive_valid_anchors: diag?.validAnchors ?? null,
      contrastive_correct_loss_mean: diag?.correctLossMean ?? null,
      contrastive_correct_loss_min: diag?.correctLossMin ?? null,
      contrastive_correct_loss_max: diag?.correctLossMax ?? null,
      contrastive_incorrect_loss_mean: diag?.incorrectLossMean ?? null,
      contrastive_reward_mean: clipo ? mean(clipo.reward) : null,
      contrastive_signal_group_frac: diag?.signalGroupFraction ?? null,
      positive_cos_mean: diag?.positiveCosineMean ?? null,
      head_stepped: clipo?.headStepped ?? null,
      policy_loss: upd?.loss ?? null,
      clip_frac_high: upd?.clipFracHigh ?? null,
      clip_frac_low: upd?.clipFracLow ?? null,
      approx_kl: upd?.approxKl ?? null,
      kl_loss: upd?.klLoss ?? null,
      entropy: upd?.entropy ?? null,
      grad_norm: upd?.gradNorm ?? null,
      response_length_mean: mean(lengths),
      response_length_max: maxOf(lengths, 0),
      kept_groups: sampling.groups.length,
      sampling_rounds: sampling.rounds,
      verify_timeouts: sampling.verifyTimeouts,
      tokens_per_s: stepTime > 0 ? sampling.generatedTokens / stepTime : 0,
      time_rollout_s: tRollout,
      time_scoring_s: tScoring,
      time_clipo_s: tClipo,
      time_update_s: tUpdate,
      time_step_s: stepTime,
      device_mem_peak_gib: deviceMem ? deviceMem.peakBytes / 2 ** 30 : null,
      verifier_reward_mean: mean(batch.map((r) => r.scored.verifier)),
      module_reward_mean: this.io.customReward ? (sampling.sampled ? sampling.moduleSum / sampling.sampled : 0) : null,
      reward_parts: sampling.partSum.size ? Object.fromEntries([...sampling.partSum].map(([k, e]) => [k, e.sum / e.count])) : null,
      overlong_penalty_mean: c.algorithm.overlong_shaping ? mean(batch.map((r) => r.scored.overlong)) : null,
      truncated_frac: sampling.sampled ? sampling.truncated / sampling.sampled : 0,
      no_spread_group_frac: sampling.groupsSampled ? sampling.noSpread / sampling.groupsSampled : 0,
      verifier_errors: sampling.verifierErrors,
      reward_module_errors: sampling.moduleErrors,
      reward_module_timeouts: sampling.moduleTimeouts,
      reward_error_frac: sampling.sampled ? (sampling.verifierErrors + sampling.moduleErrors + sampling.moduleTimeouts) / sampling.sampled : 0,
      overlong_filtered: update && c.algorithm.overlong_filter ? batch.filter((r) => r.scored.truncated).length : 0,
      lr,
    };
    const responses = batch.map((r) => ({ promptId: r.source.id, promptText: r.source.text ?? '', groundTruth: r.source.groundTruth, scored: r.scored, length: r.response.length }));
    return { metrics, detail: { step: stepNo, correct, group, rewards, advantages: adv, embeddings: clipo?.embeddings ?? null, outSize: c.clipo.out_size, responses, contrastivePerSample: clipo?.perSample ?? null, contrastiveReward: clipo?.reward ?? null } };
  }

  /** Scores the batch in micro-batches: per-sequence log-probs of the response tokens and pooled states [B × H]. */
  private scoreAll(engine: PolicyEngine, batch: Rollout[], pooled: boolean): { logp: Float32Array[]; pooled: Float32Array | null } {
    const H = engine.config.hiddenSize;
    const mb = this.cfg.optim.micro_batch;
    const logp: Float32Array[] = [];
    const pooledAll = pooled ? new Float32Array(batch.length * H) : null;
    for (let s = 0; s < batch.length; s += mb) {
      const part = batch.slice(s, s + mb);
      const r = engine.score({ sequences: part.map((x) => ({ prompt: x.prompt, response: x.response })) }, { pooled });
      part.forEach((x, b) => logp.push(r.logprobs.slice(b * r.length, b * r.length + x.response.length)));
      checkFinite(r.logprobs, r.mask, `the scoring pass gave non-finite log-probabilities`, this.step + 1);
      if (r.pooled) checkFinite(r.pooled, null, `the scoring pass gave non-finite pooled states`, this.step + 1);
      if (pooledAll) {
        if (!r.pooled || r.pooled.length !== part.length * H) throw new Error('engine.score did not return pooled states of the expected size');
        pooledAll.set(r.pooled, s * H);
      }
    }
    return { logp, pooled: pooledAll };
  }

  /**
   * PPO epochs over mini-batches of ppo_mini_batch groups. Each mini-batch's gradient is accumulated over
   * micro-batches; the kernel's per-micro-batch mean is reweighted so the sum equals the mini-batch's aggregate
   * (token-mean: tokens_micro / tokens_mini; sequence means: seqs_micro / seqs_mini), whatever the micro-batch size.
   */
  private updatePolicy(batch: Rollout[], oldLogp: Float32Array[], refLogp: Float32Array[] | null, adv: Float32Array, stepNo: number, lr: number) {
    const c = this.cfg;
    const alg = c.algorithm;
    const n = c.rollout.n;
    const miniSeqs = c.optim.ppo_mini_batch * n;
    const micro = c.optim.micro_batch;
    const settings = surrogateSettings(alg, refLogp !== null);
    const acc = { loss: 0, clipFracHigh: 0, clipFracLow: 0, approxKl: 0, klLoss: 0, entropy: 0, gradNorm: 0 };
    let minis = 0;
    // DAPO's overlong filtering: a truncated response takes no part in the loss (its tokens are masked out and it
    // counts in neither the token nor the sequence denominators)
    const inLoss = (r: Rollout) => !(alg.overlong_filter && r.scored.truncated);
    const entCoef = alg.entropy_coef;
    for (let e = 0; e < c.optim.ppo_epochs; e++) {
      for (let m0 = 0; m0 < batch.length; m0 += miniSeqs) {
        const mEnd = Math.min(batch.length, m0 + miniSeqs);
        let miniTokens = 0, miniKept = 0;
        for (let i = m0; i < mEnd; i++) {
          if (!inLoss(batch[i]!)) continue;
          miniTokens += batch[i]!.response.length;
          if (batch[i]!.response.length) miniKept++;
        }
        if (miniTokens === 0) continue; // every response of the mini-batch is filtered out: no update
        const fig = { loss: 0, clipFracHigh: 0, clipFracLow: 0, approxKl: 0, klLoss: 0, entropy: 0 };
        this.policy.zeroGrad();
        for (let s = m0; s < mEnd; s += micro) {
          const end = Math.min(mEnd, s + micro);
          const part = batch.slice(s, end);
          const b = part.length;
          const inLossFlags = Uint8Array.from(part, (r) => (inLoss(r) ? 1 : 0));
          let tokens = 0, kept = 0;
          for (const r of part) {
            if (!inLoss(r)) continue;
            tokens += r.response.length;
            if (r.response.length) kept++;
          }
          if (tokens === 0) continue; // nothing of this micro-batch is in the loss
          const T = maxOf(part.map((x) => x.response.length), 0);
          const oldPacked = new Float32Array(b * T);
          const refPacked = refLogp ? new Float32Array(b * T) : undefined;
          for (let k = 0; k < b; k++) {
            oldPacked.set(oldLogp[s + k]!, k * T);
            if (refPacked) refPacked.set(refLogp![s + k]!, k * T);
          }
          const w = microBatchWeight(settings, tokens, miniTokens, kept, miniKept);
          // forward, surrogate loss, d loss / d logp × w and the entropy bonus's d loss / d H_t = −coef / tokens of the
          // mini-batch (loss −= entropy_coef × its token-mean entropy), backward: one engine call; on the CUDA engine
          // the token-level tensors stay on the device
          const sl = this.policy.policyLossBackward(
            { sequences: part.map((x) => ({ prompt: x.prompt, response: x.response })) },
            { ...settings, oldLogp: oldPacked, refLogp: refPacked, advantages: adv.slice(s, end), inLoss: inLossFlags, weight: w, entropyCoef: entCoef, entropyDenominator: miniTokens },
          );
          if (sl.nonFiniteLogp > 0) throw new NonFiniteError(`step ${stepNo}: the training forward gave non-finite log-probabilities (${sl.nonFiniteLogp} tokens)`);
          if (!Number.isFinite(sl.loss)) throw new NonFiniteError(`step ${stepNo}: the policy loss is non-finite (${sl.loss})`);
          if (sl.nonFiniteGrad > 0) throw new NonFiniteError(`step ${stepNo}: the policy gradient is non-finite (${sl.nonFiniteGrad} tokens)`);
          fig.loss += w * sl.pgLoss;
          fig.clipFracHigh += w * sl.clipFracHigh;
          fig.clipFracLow += w * sl.clipFracLow;
          fig.approxKl += w * sl.approxKl;
          fig.klLoss += w * sl.klLoss;
          fig.entropy += (sl.entropySum / tokens) * (tokens / miniTokens);
        }
        const { gradNorm } = this.policy.adamwStep({
          lr, beta1: c.optim.beta1, beta2: c.optim.beta2, eps: c.optim.eps, weightDecay: c.optim.weight_decay,
          maxGradNorm: c.optim.grad_clip > 0 ? c.optim.grad_clip : undefined,
        });
        if (!Number.isFinite(gradNorm)) throw new NonFiniteError(`step ${stepNo}: the policy gradient norm is non-finite (${gradNorm})`);
        for (const k of Object.keys(fig) as Array<keyof typeof fig>) acc[k] += fig[k];
        acc.gradNorm += gradNorm;
        minis++;
      }
    }
    const out = { ...acc };
    for (const k of Object.keys(out) as Array<keyof typeof out>) out[k] /= Math.max(1, minis);
    return { ...out, klLoss: refLogp ? out.klLoss : null };
  }

  /** The state a checkpoint stores (besides the policy, which the caller saves). */
  checkpointPayload(savePolicy: (dir: string) => void, metricsRows: number, configForCheck: unknown): CheckpointPayload {
    const opt = this.policy.exportOptimizerState();
    const state: CheckpointState = {
      format: CHECKPOINT_FORMAT,
      step: this.step,
      stream: { ...this.stream.pos },
      seed: this.cfg.optim.seed,
      policyOptimizerStep: opt.step,
      head: this.head ? { kind: this.head.kind, hiddenSize: this.head.hiddenSize, outSize: this.head.outSize, step: this.head.step } : null,
      metricsRows,
      config: configForCheck,
      createdAt: new Date().toISOString(),
    };
    return { state, savePolicy, policyOptimizer: { m: opt.m, v: opt.v }, head: this.head ? this.head.toTensors() : null };
  }
}
