// A whole training run from a resolved config: model, tokenizer and data in; engine, reference policy and trainer
// built (or restored from the newest checkpoint with `resume`); then the loop.
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { TrainConfig } from '../config/load.js';
import { loadDataset, type DataRow } from '../data/load.js';
import { Engine, resolveEngineBackend, type EngineBackend } from '../engine/engine.js';
import { cudaDeviceInfo } from '../kernels/backend.js';
import { loadModelConfig, loadModelDir, saveModelDir } from '../model/hfdir.js';
import type { ModelConfig } from '../model/types.js';
import { allocatableBytes } from '../util/limits.js';
import { formatPlan, planMemory, planRefusal, type MemoryPlan } from './memory-plan.js';
import type { ModelTokenizer } from '../model/tokenizer.js';
import { resolveBuiltins, resolveCacheDir, type BuiltinHooks } from '../demo/builtin.js';
import { solutionEquations, stepsCorrect } from '../task/process.js';
import { ensureDir, writeJsonAtomic } from '../util/atomic.js';
import { lockDir } from '../util/lock.js';
import { reward } from '../verify/index.js';
import { VerifierPool } from '../verify/pool.js';
import { TrainExtras } from './extras.js';
import type { GuardWarning } from './guards.js';
import { RewardModule } from './reward-module.js';
import type { ValidationResult } from './validation.js';
import { listCheckpoints, loadCheckpoint } from './checkpoint.js';
import { ContrastiveHead } from './head.js';
import { runLoop, truncateMetrics } from './loop.js';
import { Trainer, type StepDetail, type StepMetrics } from './trainer.js';
import type { PolicyEngine, TrainPrompt } from './types.js';
import type { GenerateEngine } from '../eval/localmodel.js';

export interface RunOptions {
  resume?: boolean;
  onStart?: (info: { totalSteps: number; startStep: number; stepsPerEpoch: number; warmupSteps: number; prompts: number; filtered: number }) => void;
  onStep?: (m: StepMetrics, d: StepDetail) => void;
  /** stop after this many steps of this call (tests: a run that is killed) */
  stopAfter?: number;
  /** where `builtin:` data and models are cached (default: $CLIPO_CACHE_DIR, else ~/.cache/clipo) */
  cacheDir?: string;
  /** progress of making a missing `builtin:` warm-up model, and a line on what was reused */
  builtin?: BuiltinHooks;
  /** a guard fired (guards.ts); with guards.stop or `strict` the run then stops */
  onWarning?: (w: GuardWarning, step: number) => void;
  onValidation?: (r: ValidationResult) => void;
  /** stop when a guard fires (the CLI's --strict; same as guards.stop: true) */
  strict?: boolean;
  /** the memory plan, before any weight is loaded (a plan that does not fit then ends the run with an Error) */
  onPlan?: (plan: MemoryPlan, table: string) => void;
}

/** The engine backend a run trains on (model.backend; 'auto': the CUDA engine where it can run). */
export function trainingBackend(c: TrainConfig): EngineBackend {
  try {
    return resolveEngineBackend(c.model.backend);
  } catch (e) {
    throw new Error(`model.backend: ${(e as Error).message}`);
  }
}

/** The run's memory plan on its backend (model.backend), against this host's memory (cpu) or the GPU's (cuda), for
 *  what the engines do today: per-layer recomputation on the CUDA engine only (model.checkpointing: on, or auto when
 *  every layer's activations would not fit), fp32 moments. The plan's `checkpointing` is what the run then uses. */
export function trainingPlan(c: TrainConfig, m: ModelConfig, memoryBytes?: number): MemoryPlan {
  const backend = trainingBackend(c);
  if (c.model.checkpointing === 'on' && backend === 'cpu')
    throw new Error('model.checkpointing: on needs the cuda backend (the CPU engine keeps every layer\'s activations: it has no recomputation); use auto or off');
  const memory = memoryBytes ?? (backend === 'cuda' ? cudaDeviceInfo().devices[0]?.memoryBytes ?? 0 : allocatableBytes());
  return planMemory(
    { layers: m.numLayers, hidden: m.hiddenSize, intermediate: m.intermediateSize, heads: m.numHeads, kvHeads: m.numKvHeads, headDim: m.headDim, vocab: m.vocabSize, tied: m.tieWordEmbeddings, attentionBias: m.attentionBias, mlpBias: m.mlpBias },
    {
      backend,
      current: true,
      microBatch: c.optim.micro_batch,
      promptTokens: c.data.max_prompt_tokens,
      responseTokens: c.data.max_response_tokens,
      groupSize: c.rollout.n,
      promptsPerStep: c.optim.prompts_per_step,
      checkpointing: c.model.checkpointing,
      reference: c.algorithm.kl_coef > 0,
      masterDtype: c.optim.master_weights === 'bf16-sr' ? 'bf16' : 'fp32',
      ...(c.clipo.enabled ? { contrastiveOutSize: c.clipo.out_size } : {}),
      memoryBytes: memory,
    },
  );
}

export interface RunResult {
  outputDir: string;
  steps: number;
  totalSteps: number;
  lastCheckpoint: string | null;
  last: StepMetrics | null;
}

/** Config fields that may change between a run and its resumption (they do not alter the steps already taken). */
function configForCheck(c: TrainConfig): Record<string, unknown> {
  const copy = JSON.parse(JSON.stringify(c)) as Record<string, Record<string, unknown>>;
  delete copy.output;
  delete copy.optim!.max_steps;
  delete copy.optim!.epochs;
  delete copy.model!.threads;
  // recomputation changes memory, not the values; another engine changes them only by rounding (a run saved on one
  // machine may continue on another)
  delete copy.model!.checkpointing;
  delete copy.model!.backend;
  delete copy.verifier;
  // validation and guards watch the run without changing its steps
  delete copy.validation;
  delete copy.guards;
  return copy;
}

function diffKeys(a: unknown, b: unknown, prefix = ''): string[] {
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return JSON.stringify(a) === JSON.stringify(b) ? [] : [prefix || '(root)'];
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].flatMap((k) => diffKeys((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], prefix ? `${prefix}.${k}` : k));
}

/** Renders and tokenizes the training prompts; overlong prompts are dropped (or are an error). */
export function buildPrompts(rows: Array<{ id: string; messages: Array<{ role: string; content: string }>; groundTruth: string; source?: string; index?: number; solution?: string }>, tok: ModelTokenizer, c: TrainConfig): { prompts: TrainPrompt[]; filtered: number } {
  const prompts: TrainPrompt[] = [];
  let filtered = 0;
  const useTemplate = c.model.chat_template && tok.chatTemplate !== null;
  const BATCH = 256; // renderings per round trip to the template renderer
  let rendered: string[] = [];
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    if (useTemplate && i % BATCH === 0) rendered = tok.applyChatTemplateMany(rows.slice(i, i + BATCH).map((x) => x.messages) as never, { addGenerationPrompt: true });
    const ids = useTemplate ? tok.encode(rendered[i % BATCH]!) : tok.encode(r.messages.map((m) => m.content).join('\n'));
    if (ids.length === 0) throw new Error(`training row ${r.id}${r.source ? ` of ${r.source}` : ''}: the prompt is empty`);
    if (ids.length > c.data.max_prompt_tokens) {
      if (c.data.filter_overlong_prompts) {
        filtered++;
        continue;
      }
      throw new Error(`training row ${r.id}${r.source ? ` of ${r.source}` : ''}: the prompt has ${ids.length} tokens, more than data.max_prompt_tokens (${c.data.max_prompt_tokens}); set data.filter_overlong_prompts to drop such rows`);
    }
    // the built-in task's rows carry their worked solution: the process check of correct rollouts needs its steps
    const steps = r.solution !== undefined && r.source?.startsWith('clipo/task_') ? solutionEquations(r.solution) : undefined;
    const text = useTemplate ? rendered[i % BATCH]! : r.messages.map((m) => m.content).join('\n');
    prompts.push({ id: r.id, tokens: Int32Array.from(ids), groundTruth: r.groundTruth, text, row: r, ...(steps?.length ? { steps } : {}) });
  }
  return { prompts, filtered };
}

export async function runTraining(config: TrainConfig, o: RunOptions = {}): Promise<RunResult> {
  // `builtin:` names (the built-in task, the demo's warm-up model) become cache paths, made on first use
  const c = resolveBuiltins(config, resolveCacheDir(o.cacheDir), o.builtin);
  const outputDir = path.resolve(c.output.dir);
  // one run per output.dir: a second process would interleave metrics.jsonl and prune the first one's checkpoints
  ensureDir(outputDir, 'output.dir');
  const lock = lockDir(outputDir, 'clipo train');
  try {
    return await runLocked(c, o, outputDir);
  } finally {
    lock.release();
  }
}

async function runLocked(c: TrainConfig, o: RunOptions, outputDir: string): Promise<RunResult> {
  const checkpoints = listCheckpoints(outputDir);
  if (!o.resume && (checkpoints.length > 0 || existsSync(path.join(outputDir, 'metrics.jsonl')))) {
    throw new Error(`${c.output.dir} already holds a run; pass --resume to continue it or choose another output.dir`);
  }
  const ckpt = o.resume && checkpoints.length ? loadCheckpoint(checkpoints.at(-1)!.dir) : null;
  if (ckpt) {
    const diff = diffKeys(ckpt.state.config, configForCheck(c));
    if (diff.length) throw new Error(`--resume: the config differs from the run's in ${diff.join(', ')} (only optim.max_steps, optim.epochs, output.*, model.threads, model.checkpointing, model.backend, verifier.*, validation.* and guards.* may change)`);
  }

  // the memory plan from config.json alone: a run that cannot fit is refused before the weights are read
  const plan = trainingPlan(c, loadModelConfig(c.model.path));
  o.onPlan?.(plan, formatPlan(plan));
  const refusal = planRefusal(plan);
  if (refusal) throw new Error(refusal);
  writeJsonAtomic(path.join(outputDir, 'memory-plan.json'), plan);

  const base = loadModelDir(c.model.path);
  if (!base.tokenizer) throw new Error(`${c.model.path}: no tokenizer.json (training needs a tokenizer to render prompts and read answers)`);
  const tok = base.tokenizer;
  const rows: DataRow[] = [];
  for (const f of c.data.train_files) {
    const d = await loadDataset(f, c.data.limit ? { limit: c.data.limit - rows.length } : {});
    for (const r of d.rows) rows.push(r); // (a spread would put every row on the stack)
    if (c.data.limit && rows.length >= c.data.limit) break;
  }
  const { prompts, filtered } = buildPrompts(rows, tok, c);

  const threads = c.model.threads;
  const policyWeights = ckpt ? loadModelDir(ckpt.policyDir, { tokenizer: false }).weights : base.weights;
  // the policy: fp32 master weights from the exact values loaded (the bf16 CUDA engine's working copy is their rounding)
  const backend = plan.backend;
  // per-layer recomputation as the plan chose it (CUDA only; the plan refuses `on` on the CPU)
  const policy = Engine.create(base.config, policyWeights, { ...(threads ? { threads } : {}), backend, training: true, checkpointing: plan.checkpointing === 'on' }) as unknown as PolicyEngine & { cloneFrozen(): PolicyEngine };
  let reference: PolicyEngine | null = null;
  const verifier = new VerifierPool({ threads: c.verifier.threads, timeoutMs: c.verifier.timeout_ms, boxes: c.verifier.boxes });
  let rewardModule: RewardModule | null = null;
  let extras: TrainExtras | null = null;
  try {
    if (c.reward.module) rewardModule = RewardModule.open(c.reward.module, c.reward.timeout_s * 1000);
    const custom = rewardModule;
    if (ckpt) policy.importOptimizerState(ckpt.policyOptimizer);
    // before the reference is cloned, so that it starts from the same (bf16-rounded) weights
    if (c.optim.master_weights !== 'fp32') (policy as unknown as Engine).setMasterWeights(c.optim.master_weights, c.optim.seed);
    if (c.algorithm.kl_coef > 0) reference = ckpt ? (Engine.create(base.config, base.weights, { ...(threads ? { threads } : {}), backend }) as unknown as PolicyEngine) : policy.cloneFrozen();
    const head = ckpt?.head && ckpt.state.head ? ContrastiveHead.fromTensors(ckpt.state.head.kind, ckpt.state.head.hiddenSize, ckpt.state.head.outSize, ckpt.head.weights, ckpt.head.optimizer, ckpt.state.head.step) : null;
    const trainer = new Trainer({
      config: c, policy, reference, prompts,
      io: {
        decode: (t) => tok.decode(t, { skipSpecialTokens: true }),
        reward: (text, gt) => reward(text, gt, { boxes: c.verifier.boxes }),
        // a hard deadline per rollout: a degenerate answer costs at most verifier.timeout_ms, never the run
        rewardBatch: (items) => {
          const r = verifier.verifyBatchSync(items.map((it) => ({ completion: it.text, groundTruth: it.groundTruth })));
          return {
            rewards: r.results.map((x) => (x.correct ? 1 : 0)),
            timeouts: r.timeouts,
            // a wrong answer is no failure; a timeout or an internal error of the comparison is
            errors: r.results.map((x) => (x.timedOut || x.reason?.startsWith('verifier error') || x.reason === 'comparison took too long' ? x.reason ?? 'verifier failed' : null)),
            extracted: r.results.map((x) => x.extracted),
          };
        },
        stepsCorrect,
        ...(custom ? { customReward: (item) => custom.score(item) } : {}),
      },
      resume: ckpt ? { step: ckpt.state.step, stream: ckpt.state.stream, head } : undefined,
    });
    // resuming drops metrics rows past the checkpoint; a run killed before its first checkpoint starts over
    truncateMetrics(outputDir, ckpt ? ckpt.state.metricsRows : 0);
    TrainExtras.truncateValidationLog(outputDir, ckpt ? ckpt.state.step : -1);
    const savePolicy = (dir: string) => saveModelDir(dir, base.config, policy.exportWeights(), { dtype: c.model.save_dtype, copyFrom: c.model.path });
    extras = new TrainExtras({
      config: c, outputDir, totalSteps: trainer.schedule.totalSteps, engine: policy as unknown as GenerateEngine, tokenizer: tok, savePolicy,
      onWarning: o.onWarning, onValidation: o.onValidation,
    });
    if (!ckpt) writeJsonAtomic(path.join(outputDir, 'train-config.json'), c);
    o.onStart?.({ totalSteps: trainer.schedule.totalSteps, startStep: trainer.step, stepsPerEpoch: trainer.schedule.stepsPerEpoch, warmupSteps: trainer.schedule.warmupSteps, prompts: prompts.length, filtered });
    const r = await runLoop(trainer, {
      outputDir,
      saveEvery: c.output.save_every,
      keepLast: c.output.keep_last,
      configForCheck: configForCheck(c),
      savePolicy,
      onStep: o.onStep,
      stopAfter: o.stopAfter,
      extras,
      stopOnGuard: c.guards.stop || !!o.strict,
    });
    return { outputDir, steps: r.steps, totalSteps: trainer.schedule.totalSteps, lastCheckpoint: r.lastCheckpoint, last: r.last };
  } finally {
    extras?.close();
    rewardModule?.close();
    reference?.dispose();
    policy.dispose();
    await verifier.close();
  }
}
