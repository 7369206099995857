// `clipo demo` end to end: built-in task data → cached supervised warm-up of a tiny Qwen2 policy → the arms (GRPO,
// GRPO+CLIPO, GRPO+CLIPO-fixed; or DAPO/GSPO/GMPO) from that same checkpoint with the same seed and budget (`clipo
// train`'s trainer) → greedy Pass@1 and the process check on every evaluation split → report.md with the tables,
// the training curves, the embedding maps and the phase times.
import { existsSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseTrainConfig, type TrainConfig } from '../config/load.js';
import { Engine, TRAIN_BACKEND } from '../engine/engine.js';
import { loadModelDir } from '../model/hfdir.js';
import { parameterCount } from '../model/tensors.js';
import { writeReport, readMetricsJsonl, type EmbeddingSnapshot, type Comparison, type EvalResult, type PhaseTiming, type ReportSummary, type RunMetrics } from '../report/report.js';
import { runTraining } from '../rl/run.js';
import { generateTaskSplits, type TaskSplit } from '../task/generator.js';
import { ensureTaskData, TASK_FILES } from '../task/records.js';
import { encodeProblem, type EncodedProblem } from './encode.js';
import { evaluateGreedyDetailed } from './evaluate.js';
import type { DemoSettings } from './settings.js';
import { ensureWarmup, type WarmupProgress } from './warmup.js';
import { taskDataDir } from './builtin.js';

export const START = 'start (warm-up)';
/** The demo's arms: the RL algorithm alone, with CLIPO, and CLIPO with a head that is never stepped (the paper's
 *  CLIPO-fixed ablation: the contrastive reward from a random projection). */
export const ARM_KINDS = ['base', 'clipo', 'fixed'] as const;
export type ArmKind = (typeof ARM_KINDS)[number];
export const DEMO_ALGOS = ['grpo', 'dapo', 'gspo', 'gmpo'] as const;
export type DemoAlgo = (typeof DEMO_ALGOS)[number];

/** The report's name of an arm: GRPO, GRPO+CLIPO, GRPO+CLIPO-fixed (DAPO..., with --algo dapo). */
export function armName(algo: DemoAlgo, kind: ArmKind): string {
  const a = algo.toUpperCase();
  return kind === 'base' ? a : kind === 'clipo' ? `${a}+CLIPO` : `${a}+CLIPO-fixed`;
}
/** The splits no training step sees. */
export const EVAL_SPLITS: readonly TaskSplit[] = ['test', 'symbolic', 'p1', 'p2', 'noop'];

/** A phase's progress display (the CLI draws bars; tests and --json pass none). */
export interface PhaseProgress {
  start(total: number, fields?: Record<string, string>): void;
  update(value: number, fields?: Record<string, string>): void;
  stop(): void;
}

export interface DemoHooks {
  /** a progress display for a phase */
  phase?: (name: string) => PhaseProgress;
  /** a one-line message (what happens, what was reused) */
  log?: (line: string) => void;
}

export interface DemoOptions {
  settings: DemoSettings;
  /** the run's folder (report.md, figures, per-arm runs) */
  outDir: string;
  cacheDir: string;
  seeds: number;
  /** keep per-arm checkpoints (default: only metrics.jsonl stays) */
  keepCheckpoints?: boolean;
  hooks?: DemoHooks;
  /** a label for the settings in the report (default, quick) */
  label?: string;
  /** which arms to run (default: all three), in this order */
  arms?: readonly ArmKind[];
  /** the RL algorithm of every arm (default: grpo) */
  algo?: DemoAlgo;
}

export interface DemoResult {
  outDir: string;
  report: string;
  summary: ReportSummary;
  timings: PhaseTiming[];
  warmup: { reused: boolean; steps: number; accuracy: number; modelDir: string };
}

/** The differences the demo reports: RL over its start, then each CLIPO arm against the plain algorithm. */
export function demoComparisons(algo: DemoAlgo, kinds: readonly ArmKind[]): Comparison[] {
  const first = kinds.includes('base') ? 'base' : kinds[0]!;
  const out: Comparison[] = [{ treatment: armName(algo, first), baseline: START }];
  if (kinds.includes('base')) for (const k of kinds.filter((x) => x !== 'base')) out.push({ treatment: armName(algo, k), baseline: armName(algo, 'base') });
  else for (const k of kinds.slice(1)) out.push({ treatment: armName(algo, k), baseline: START });
  return out;
}

const noProgress: PhaseProgress = { start() {}, update() {}, stop() {} };
const pct = (v: number) => `${(100 * v).toFixed(1)}%`;

/** The training config of one arm, from the same start, seed, data and budget as the others: only the clipo block
 *  differs (off; on; on with the head never stepped). */
export function armConfig(s: DemoSettings, o: { modelDir: string; trainFile: string; outDir: string; seed: number; arm: ArmKind; algo?: DemoAlgo }): TrainConfig {
  return parseTrainConfig(
    {
      // the demo's figures are the CPU engine's (TRAIN_BACKEND), whatever GPU the machine has
      model: { path: o.modelDir, backend: TRAIN_BACKEND, ...(s.threads ? { threads: s.threads } : {}) },
      data: { train_files: [o.trainFile], max_prompt_tokens: 256, max_response_tokens: s.maxNewTokens, ...(s.rl.prompts ? { limit: s.rl.prompts } : {}) },
      rollout: { n: s.rl.n, temperature: s.rl.temperature, top_p: 1 },
      // no KL term: it would cost a reference scoring pass per step and matters little over a few dozen steps
      algorithm: { preset: o.algo ?? 'grpo', kl_coef: 0 },
      clipo: {
        enabled: o.arm !== 'base', out_size: s.clipo.outSize, lambda: s.clipo.lambda, temperature: s.clipo.temperature, lr: s.clipo.headLr,
        warmup_steps: s.clipo.warmupSteps, fixed_head: o.arm === 'fixed',
      },
      optim: {
        lr: s.rl.lr, prompts_per_step: s.rl.promptsPerStep, ppo_mini_batch: s.rl.miniBatch, micro_batch: s.rl.miniBatch * s.rl.n,
        ppo_epochs: s.rl.ppoEpochs, epochs: 1000, max_steps: s.rl.steps, seed: o.seed,
      },
      output: { dir: o.outDir, save_every: 0, keep_last: 1 },
    },
    'demo config',
  );
}


export async function runDemo(o: DemoOptions): Promise<DemoResult> {
  const s = o.settings;
  const hooks = o.hooks ?? {};
  const phase = (name: string) => hooks.phase?.(name) ?? noProgress;
  const log = (line: string) => hooks.log?.(line);
  const timings: PhaseTiming[] = [];
  const timed = async <T>(name: string, f: () => T | Promise<T>): Promise<T> => {
    const t0 = performance.now();
    const r = await f();
    timings.push({ phase: name, seconds: (performance.now() - t0) / 1000 });
    return r;
  };
  if (!Number.isInteger(o.seeds) || o.seeds < 1) throw new Error(`seeds: expected a positive integer, got ${o.seeds}`);
  const algo = o.algo ?? 'grpo';
  if (!DEMO_ALGOS.includes(algo)) throw new Error(`algo: expected one of ${DEMO_ALGOS.join(', ')}, got '${algo}'`);
  const kinds = [...(o.arms ?? ARM_KINDS)];
  if (kinds.length === 0 || kinds.some((k) => !ARM_KINDS.includes(k)) || new Set(kinds).size !== kinds.length) {
    throw new Error(`arms: expected distinct names among ${ARM_KINDS.join(', ')}, got '${kinds.join(',')}'`);
  }
  const first = (ks: readonly ArmKind[]) => (ks.includes('base') ? 'base' : ks[0]!);
  const BASELINE = armName(algo, 'base');
  const TREATMENT = armName(algo, 'clipo');
  if (existsSync(path.join(o.outDir, 'runs')) || existsSync(path.join(o.outDir, 'report.md'))) {
    throw new Error(`${o.outDir} already holds a demo; choose another output folder`);
  }
  const evalN = Math.min(s.evalProblems, s.task.test);

  // ---- task data (files for the trainer; the same problems in memory for warm-up and evaluation)
  const taskDir = taskDataDir(o.cacheDir, s);
  const task = await timed('task data', () => ensureTaskData(taskDir, { ...s.task, format: 'parquet' }));
  log(`task data: ${task.manifest.sizes.train} train problems, ${evalN} evaluated per split (${task.reused ? 'cached' : 'generated'}) in ${taskDir}`);
  const splits = generateTaskSplits(s.task);

  // ---- supervised warm-up (cached by its settings)
  const warm = await timed('supervised warm-up', () => {
    const bar = phase('warm-up');
    const progress: WarmupProgress = {
      start: (total) => bar.start(total, { loss: '-', acc: '-' }),
      update: (step, f) => bar.update(step, { loss: f.loss.toFixed(3), ...(f.accuracy !== null ? { acc: pct(f.accuracy) } : {}) }),
      stop: () => bar.stop(),
    };
    return ensureWarmup(s, o.cacheDir, progress);
  });
  if (warm.reused) timings[timings.length - 1]!.phase = 'supervised warm-up (cached)';
  log(`warm-up: ${warm.reused ? 'reused' : 'trained'} ${warm.modelDir} (${warm.info.steps} steps, validation accuracy ${pct(warm.info.accuracy)})`);

  const start = loadModelDir(warm.modelDir);
  const tok = start.tokenizer!;
  const evalSets = new Map<TaskSplit, EncodedProblem[]>(EVAL_SPLITS.map((sp) => [sp, splits[sp].slice(0, evalN).map((p) => encodeProblem(tok, p))]));
  const evals: EvalResult[] = [];
  const evaluate = (weights: typeof start.weights, arm: string, seed: number, label: string) => {
    const engine = Engine.create(start.config, weights, { ...(s.threads ? { threads: s.threads } : {}), backend: TRAIN_BACKEND });
    try {
      const bar = phase(`eval ${label}`);
      bar.start(EVAL_SPLITS.length * evalN, { split: EVAL_SPLITS[0]! });
      let done = 0;
      for (const split of EVAL_SPLITS) {
        const r = evaluateGreedyDetailed(engine, tok, evalSets.get(split)!, { maxNewTokens: s.maxNewTokens }, (k) => bar.update(done + k, { split }));
        done += r.scores.length;
        evals.push({ arm, seed, split, scores: r.scores, process: r.process });
      }
      bar.stop();
    } finally {
      engine.dispose();
    }
  };

  // ---- the starting policy's scores (the reference line of the table)
  await timed(`eval ${START}`, () => evaluate(start.weights, START, 1, START));

  // ---- RL: every arm per seed, then its evaluation
  const metrics: RunMetrics[] = [];
  const embeddings: EmbeddingSnapshot[] = [];
  const trainFile = path.join(taskDir, TASK_FILES.train);
  for (let seed = 1; seed <= o.seeds; seed++) {
    for (const kind of kinds) {
      const arm = armName(algo, kind);
      const tag = `${arm}${o.seeds > 1 ? ` seed ${seed}` : ''}`;
      const runDir = path.join(o.outDir, 'runs', `${algo}${kind === 'base' ? '' : kind === 'clipo' ? '-clipo' : '-clipo-fixed'}-seed${seed}`);
      const config = armConfig(s, { modelDir: warm.modelDir, trainFile, outDir: runDir, seed, arm: kind, algo });
      const bar = phase(`RL ${tag}`);
      let first: EmbeddingSnapshot | null = null;
      let last: EmbeddingSnapshot | null = null;
      const result = await timed(`RL ${tag}`, () =>
        runTraining(config, {
          onStart: (info) => bar.start(info.totalSteps, { reward: '-', acc: '-' }),
          onStep: (m, d) => {
            bar.update(m.step, { reward: m.reward_mean.toFixed(3), acc: pct(m.accuracy), ...(m.process_correct_frac !== null ? { 'steps ok': pct(m.process_correct_frac) } : {}) });
            if (d.embeddings) {
              const snap = { arm, seed, phase: '', vectors: d.embeddings, dim: d.outSize, correct: d.correct };
              if (!first) first = { ...snap, phase: `start (step ${m.step})` };
              last = { ...snap, phase: `end (step ${m.step})` };
            }
          },
        }).finally(() => bar.stop()),
      );
      metrics.push({ arm, seed, rows: readMetricsJsonl(path.join(runDir, 'metrics.jsonl')) });
      if (first && last && first !== last) embeddings.push(first, last);
      if (!result.lastCheckpoint) throw new Error(`${tag}: the run wrote no checkpoint`);
      const policy = loadModelDir(path.join(result.lastCheckpoint, 'policy'), { tokenizer: false });
      await timed(`eval ${tag}`, () => evaluate(policy.weights, arm, seed, tag));
      if (!o.keepCheckpoints) rmSync(path.join(runDir, 'checkpoints'), { recursive: true, force: true });
    }
  }

  // ---- report
  const m = s.model;
  const params = parameterCount(start.config);
  const seedsText = o.seeds > 1 ? `${o.seeds} paired seeds (1..${o.seeds})` : 'one seed';
  const intro = [
    `The built-in arithmetic task (GSM-Symbolic style, up to ${s.task.maxOps} operations, values up to ${s.task.maxValue}; ${s.task.train} train problems). ` +
      `Policy: a ${m.layers}-layer Qwen2-architecture model (hidden ${m.hidden}, ${m.heads} heads, ${m.kvHeads} KV heads, MLP ${m.intermediate}, tied embeddings; ` +
      `${params.toLocaleString('en-US')} parameters) with the task tokenizer, randomly initialized and fine-tuned on worked solutions for ${warm.info.steps} steps ` +
      `(batch ${s.warmup.batch}) to ${pct(warm.info.accuracy)} greedy accuracy on ${s.warmup.valProblems} held-out train-distribution problems${warm.reused ? ' (reused from the cache)' : ''}.`,
    `RL: ${kinds.map((k) => armName(algo, k)).join(', ')} (${algo.toUpperCase()} preset, no KL term), each from that same checkpoint with the same seed and budget: ` +
      `${s.rl.steps} steps of ${s.rl.promptsPerStep} prompts × ${s.rl.n} rollouts (temperature ${s.rl.temperature}, at most ${s.maxNewTokens} tokens), ` +
      `${s.rl.prompts ? `the first ${s.rl.prompts} train prompts (each revisited every ${Math.ceil(s.rl.prompts / s.rl.promptsPerStep)} steps)` : `all ${s.task.train} train prompts`}, ` +
      `policy lr ${s.rl.lr}, ${s.rl.ppoEpochs} PPO epoch${s.rl.ppoEpochs > 1 ? 's' : ''} of ${s.rl.promptsPerStep / s.rl.miniBatch} mini-batches per step. ` +
      `CLIPO: linear head, D = ${s.clipo.outSize}, InfoNCE over groups, τ = ${s.clipo.temperature}, λ = ${s.clipo.lambda}, head lr ${s.clipo.headLr}` +
      `${s.clipo.warmupSteps ? `, ${s.clipo.warmupSteps} head warm-up steps` : ', no head warm-up'}; CLIPO-fixed: the same, with the head never stepped (the paper's ablation). ` +
      `${seedsText}, the same seed giving every arm the same prompt order.`,
    `Evaluation: greedy Pass@1 on the first ${evalN} problems of each split (test: fresh draws of the train distribution; symbolic: new names and numbers; ` +
      `p1/p2: one/two extra steps; noop: an irrelevant sentence). "${START}" is the policy every arm starts from. ` +
      `Machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'CPU'}; settings: ${o.label ?? 'custom'}.`,
  ];
  const notes = [
    'A tiny model and a few dozen RL steps: differences of a few points are within the noise of one run; read the confidence intervals, not the cell means.',
    `"${armName(algo, first(kinds))} − ${START}" measures what RL adds over its starting policy on problems it never trained on; the CLIPO columns compare arms that differ only in the contrastive reward.`,
    ...(o.seeds > 1 ? [`"${START}" is one model, so its cells carry the standard error over problems; the RL arms' over seeds.`] : []),
  ];
  const summary = await writeReport(o.outDir, {
    title: `clipo demo: ${kinds.map((k) => armName(algo, k)).join(' vs ')} on the built-in arithmetic task`,
    intro,
    baseline: BASELINE,
    treatment: TREATMENT,
    comparisons: demoComparisons(algo, kinds),
    splits: EVAL_SPLITS,
    evals,
    metrics,
    embeddings,
    timings,
    notes,
  });
  return {
    outDir: o.outDir,
    report: path.join(o.outDir, 'report.md'),
    summary,
    timings,
    warmup: { reused: warm.reused, steps: warm.info.steps, accuracy: warm.info.accuracy, modelDir: warm.modelDir },
  };
}
