// The training configuration: one zod schema per block of a `clipo train` YAML file. Keys are snake_case as in
// the YAML (and in verl, whose names most of them follow); defaults are the paper's (docs/algorithm.md §1-4,
// Track I where the tracks differ). Every object is strict, so a misspelt key is an error, not a silent default.
import { z } from 'zod';
import { isSamplingTemperature, MIN_CONTRASTIVE_TEMPERATURE, SAMPLING_TEMPERATURE_RULE } from '../util/limits.js';
import {
  contrastiveDistances,
  contrastiveHeadKinds,
  contrastiveLevels,
  contrastiveLossTypes,
  klTypes,
  surrogateAggs,
  surrogateModes,
} from '../kernels/variants.js';

const posInt = z.number().int().positive();
const nonNegInt = z.number().int().nonnegative();
const posNum = z.number().positive();

export const presetNames = ['grpo', 'dapo', 'gspo', 'gmpo'] as const;
export type PresetName = (typeof presetNames)[number];

export const modelSchema = z.strictObject({
  /** Hugging Face model directory (config.json, safetensors, tokenizer.json) */
  path: z.string().min(1),
  /** apply the tokenizer's chat template to the prompt messages (false: join the message contents) */
  chat_template: z.boolean().default(true),
  /** engine threads (default: picked by the model's size; `clipo train --threads` overrides) */
  threads: posInt.optional(),
  /** dtype of the saved policy in checkpoints; f32 keeps resume exact */
  save_dtype: z.enum(['f32', 'bf16']).default('f32'),
  /** per-layer activation recomputation in the backward pass: auto (on only when the run would not fit without it),
   *  on, off. Both engines keep every layer's activations today: auto means off and on is refused. */
  checkpointing: z.enum(['auto', 'on', 'off']).default('auto'),
  /** the engine that trains: auto (the CUDA engine, bf16, when this build has one and a GPU is usable; else the CPU
   *  engine), cpu, or cuda (an error saying why where it cannot run) */
  backend: z.enum(['auto', 'cpu', 'cuda']).default('auto'),
});

export const dataSchema = z.strictObject({
  /** parquet (verl layout) or jsonl files; a single string is accepted */
  train_files: z.preprocess((v) => (typeof v === 'string' ? [v] : v), z.array(z.string().min(1)).min(1)),
  max_prompt_tokens: posInt.default(512),
  max_response_tokens: posInt.default(2048),
  /** drop prompts longer than max_prompt_tokens (false: such a prompt is an error) */
  filter_overlong_prompts: z.boolean().default(true),
  /** reshuffle the prompts every epoch (seeded by optim.seed and the epoch) */
  shuffle: z.boolean().default(true),
  /** use only the first N rows of the training files */
  limit: posInt.nullable().default(null),
});

export const rolloutSchema = z.strictObject({
  /** responses per prompt: the group size */
  n: posInt.default(16),
  temperature: z.number().refine(isSamplingTemperature, `must be ${SAMPLING_TEMPERATURE_RULE}`).default(1.0),
  top_p: z.number().gt(0).lte(1).default(1.0),
});

/** Every field but `preset` is optional: an unset field takes the preset's value (presets.ts). */
export const algorithmSchema = z.strictObject({
  preset: z.enum(presetNames).default('grpo'),
  /** surrogate mode: token (GRPO/DAPO), sequence (GSPO), geo_mean (GMPO) */
  mode: z.enum(surrogateModes).optional(),
  clip_low: z.number().nonnegative().optional(),
  clip_high: z.number().nonnegative().optional(),
  /** dual clip c > 1 for negative advantages (token mode); null turns it off */
  dual_clip: z.number().gt(1).nullable().optional(),
  agg: z.enum(surrogateAggs).optional(),
  /** coefficient of the KL loss to the reference (initial) policy; 0 = no reference pass */
  kl_coef: z.number().nonnegative().optional(),
  kl_type: z.enum(klTypes).optional(),
  /** grpo: (r - mean) / (std + eps); drgrpo: r - mean (Dr. GRPO) */
  adv_estimator: z.enum(['grpo', 'drgrpo']).optional(),
  adv_eps: z.number().nonnegative().optional(),
  /** DAPO dynamic sampling: drop groups whose verifier rewards are all equal, sample more until the batch is full */
  dynamic_sampling: z.boolean().optional(),
  /** generation rounds per step before dynamic sampling gives up and trains on the groups it has */
  max_sampling_tries: posInt.optional(),
  /** DAPO's soft overlong punishment: a length penalty over the last overlong_buffer tokens before the limit */
  overlong_shaping: z.boolean().optional(),
  /** tokens before data.max_response_tokens where the penalty ramps from 0 to -overlong_penalty; null: a fifth of the limit (DAPO: 4096 of 20480) */
  overlong_buffer: posInt.nullable().optional(),
  overlong_penalty: z.number().nonnegative().optional(),
  /** DAPO's overlong filtering: truncated responses (no EOS within the limit) are masked out of the policy loss */
  overlong_filter: z.boolean().optional(),
  /** entropy bonus: the loss gets -entropy_coef × (token-mean entropy of the mini-batch) */
  entropy_coef: z.number().nonnegative().optional(),
});

export const clipoSchema = z.strictObject({
  enabled: z.boolean().default(false),
  head: z.enum(contrastiveHeadKinds).default('linear'),
  /** D, the head's output size (512 on Track I, 2048 on Track II) */
  out_size: posInt.default(512),
  loss_type: z.enum(contrastiveLossTypes).default('infonce'),
  level: z.enum(contrastiveLevels).default('group'),
  distance: z.enum(contrastiveDistances).default('cosine'),
  temperature: z.number().min(MIN_CONTRASTIVE_TEMPERATURE).default(0.05),
  lambda: z.number().nonnegative().default(0.2),
  constant: z.number().default(0),
  clamp: z.number().default(-0.5),
  /** 0: correct anchors only, 1: incorrect only, -1: all */
  masked_label: z.union([z.literal(-1), z.literal(0), z.literal(1)]).default(0),
  skip_trivial: z.boolean().default(true),
  lr: posNum.default(1e-3),
  weight_decay: z.number().nonnegative().default(0.01),
  /** steps in which only the head trains (policy frozen); 'epoch' = one epoch of steps (the paper) */
  warmup_steps: z.union([nonNegInt, z.literal('epoch')]).default('epoch'),
  /** CLIPO-fixed ablation: the head is never stepped */
  fixed_head: z.boolean().default(false),
});

export const optimSchema = z.strictObject({
  lr: posNum.default(1e-6),
  weight_decay: z.number().nonnegative().default(0.01),
  beta1: z.number().gte(0).lt(1).default(0.9),
  beta2: z.number().gte(0).lt(1).default(0.999),
  eps: posNum.default(1e-8),
  /** prompts per RL step (each gives rollout.n responses) */
  prompts_per_step: posInt.default(512),
  /** prompts per PPO mini-batch (one optimizer step each) */
  ppo_mini_batch: posInt.default(256),
  /** responses per forward/backward micro-batch (gradients accumulate across them) */
  micro_batch: posInt.default(32),
  ppo_epochs: posInt.default(1),
  /** global-norm gradient clip; 0 = none */
  grad_clip: z.number().nonnegative().default(1.0),
  /** the policy optimizer's master weights: fp32, or bf16 rounded stochastically at every step (saves 4 bytes a
   *  parameter on the GPU; the CPU engine keeps fp32 storage holding bf16 values, the same arithmetic) */
  master_weights: z.enum(['fp32', 'bf16-sr']).default('fp32'),
  /** epochs over the training prompts, including the head warm-up epoch */
  epochs: posInt.default(6),
  /** stop after this many steps (null: epochs decide) */
  max_steps: posInt.nullable().default(null),
  seed: nonNegInt.default(1),
  /** learning-rate schedule over the policy-training steps (after the head warm-up): constant or cosine decay */
  lr_schedule: z.enum(['constant', 'cosine']).default('constant'),
  /** linear warm-up of the learning rate from lr/lr_warmup_steps to lr over this many policy-training steps */
  lr_warmup_steps: nonNegInt.default(0),
  /** cosine: the learning rate decays to lr × min_lr_ratio at the last step */
  min_lr_ratio: z.number().gte(0).lte(1).default(0),
});

export const verifierSchema = z.strictObject({
  /** worker threads verifying rollouts (default: min(4, cores)) */
  threads: posInt.max(256).optional(),
  /** hard limit per answer in milliseconds: a rollout still being verified then scores 0 (metrics: verify_timeouts) */
  timeout_ms: posInt.default(5000),
  /** which boxes answer: 'last' (the paper), or 'all' (a list ground truth may be answered one box per element) */
  boxes: z.enum(['last', 'all']).default('last'),
});

export const outputSchema = z.strictObject({
  dir: z.string().min(1).default('runs/train'),
  /** checkpoint every N steps (0: only at the end) */
  save_every: nonNegInt.default(50),
  /** checkpoints to keep (the newest) */
  keep_last: posInt.default(2),
  /** TensorBoard event files under <dir>/tensorboard (every metric and validation figure) */
  tensorboard: z.boolean().default(true),
  /** write rollouts/step-NNNNNNNN.jsonl every N steps (0: never) */
  rollouts_every: nonNegInt.default(10),
  /** of those, this many responses also go to TensorBoard as text */
  rollouts_text: nonNegInt.default(4),
});

export const validationSchema = z.strictObject({
  /** track1, track2 (the paper's suites under data_root) or null */
  suite: z.enum(['track1', 'track2']).nullable().default(null),
  /** parquet, jsonl or json files (instead of, or besides, a suite) */
  files: z.preprocess((v) => (typeof v === 'string' ? [v] : v), z.array(z.string().min(1))).default([]),
  /** folder of the suites' test/*.parquet (null: $CLIPO_DATA_ROOT or ../shared/data/clipo-benchmarks) */
  data_root: z.string().min(1).nullable().default(null),
  /** the first N problems of each benchmark (null: all) */
  limit: posInt.nullable().default(null),
  /** validate every N steps (and always at step 0 and at the end); 0: only at step 0 and the end */
  every: nonNegInt.default(0),
  /** validate before the first step */
  at_start: z.boolean().default(true),
  /** samples per problem: pass@k for k up to n, maj@n */
  n: posInt.default(1),
  temperature: z.number().refine(isSamplingTemperature, `must be ${SAMPLING_TEMPERATURE_RULE}`).default(0),
  top_p: z.number().gt(0).lte(1).default(1),
  /** response limit (null: data.max_response_tokens) */
  max_response_tokens: posInt.nullable().default(null),
  seed: nonNegInt.default(0),
  /** sequences per engine batch (as clipo eval --concurrency) */
  concurrency: posInt.default(8),
  /** keep the policy with the best value of this figure in <output.dir>/best (e.g. mean_acc, pass@4, maj@4, or bench/mean_acc); null: off */
  keep_best: z.string().min(1).nullable().default(null),
});

export const rewardSchema = z.strictObject({
  /** an ES module whose default export (or `reward`) maps {prompt, response, groundTruth, row, verifierReward} to a number or {score, parts} */
  module: z.string().min(1).nullable().default(null),
  /** r = verifier_weight × r_verifier + module_weight × r_module (+ CLIPO's r_c) */
  verifier_weight: z.number().default(1),
  module_weight: z.number().default(1),
  /** per-response time limit of the custom reward; a throw or a timeout scores 0 and is counted */
  timeout_s: posNum.default(5),
  /** CLIPO's correct label: the verifier's outcome, or total reward > 0 */
  correct_from: z.enum(['verifier', 'reward']).default('verifier'),
});

export const guardsSchema = z.strictObject({
  /** stop the run (keeping the last checkpoint) when a guard fires; --strict sets it */
  stop: z.boolean().default(false),
  /** recent steps the shares are averaged over */
  window: posInt.default(5),
  /** warn when the share of truncated responses exceeds this */
  max_truncated: z.number().gte(0).lte(1).default(0.5),
  /** warn when the share of groups whose rewards are all equal exceeds this */
  max_no_spread: z.number().gte(0).lte(1).default(0.9),
  /** warn when the share of verifier or custom-reward errors and timeouts exceeds this */
  max_reward_errors: z.number().gte(0).lte(1).default(0.05),
  /** warn when the mean entropy falls below this (collapse); null: off */
  min_entropy: z.number().nonnegative().nullable().default(0.01),
  /** warn when the mean entropy rises above this (blow-up); null: off */
  max_entropy: z.number().nonnegative().nullable().default(null),
});

export const trainConfigSchema = z
  .strictObject({
    model: modelSchema,
    data: dataSchema,
    rollout: rolloutSchema.prefault({}),
    algorithm: algorithmSchema.prefault({}),
    clipo: clipoSchema.prefault({}),
    optim: optimSchema.prefault({}),
    output: outputSchema.prefault({}),
    verifier: verifierSchema.prefault({}),
    validation: validationSchema.nullable().default(null),
    reward: rewardSchema.prefault({}),
    guards: guardsSchema.prefault({}),
  })
  .superRefine((c, ctx) => {
    if (c.optim.ppo_mini_batch > c.optim.prompts_per_step) {
      ctx.addIssue({ code: 'custom', path: ['optim', 'ppo_mini_batch'], message: `must be at most optim.prompts_per_step (${c.optim.prompts_per_step}), got ${c.optim.ppo_mini_batch}` });
    }
    if (c.optim.prompts_per_step % c.optim.ppo_mini_batch !== 0) {
      ctx.addIssue({ code: 'custom', path: ['optim', 'ppo_mini_batch'], message: `must divide optim.prompts_per_step (${c.optim.prompts_per_step}), got ${c.optim.ppo_mini_batch}` });
    }
  });

/** The config as written (before presets are resolved). */
export type TrainConfigInput = z.input<typeof trainConfigSchema>;
export type ParsedTrainConfig = z.output<typeof trainConfigSchema>;
