// `clipo demo` end to end: built-in task data → cached supervised warm-up of a tiny Qwen2 policy → GRPO and
// GRPO+CLIPO from that same checkpoint with the same seed and budget (`clipo train`'s trainer) → greedy Pass@1 on
// every evaluation split → report.md with the table, the training curves, the embedding maps and the phase times.
import { existsSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseTrainConfig, type TrainConfig } from '../config/load.js';
import { Engine } from '../engine/engine.js';
import { loadModelDir } from '../model/hfdir.js';
import { parameterCount } from '../model/tensors.js';
import { writeReport, readMetricsJsonl, type EmbeddingSnapshot, type EvalResult, type PhaseTiming, type ReportSummary, type RunMetrics } from '../report/report.js';
import { runTraining } from '../rl/run.js';
import { generateTaskSplits, type TaskSplit } from '../task/generator.js';
import { ensureTaskData, TASK_FILES } from '../task/records.js';
import { encodeProblem, type EncodedProblem } from './encode.js';
import { evaluateGreedy } from './evaluate.js';
import type { DemoSettings } from './settings.js';
import { ensureWarmup, type WarmupProgress } from './warmup.js';
import { createHash } from 'node:crypto';

export const BASELINE = 'GRPO';
export const TREATMENT = 'GRPO+CLIPO';
export const START = 'start (warm-up)';
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
}

export interface DemoResult {
  outDir: string;
  report: string;
  summary: ReportSummary;
  timings: PhaseTiming[];
  warmup: { reused: boolean; steps: number; accuracy: number; modelDir: string };
}

const noProgress: PhaseProgress = { start() {}, update() {}, stop() {} };
const pct = (v: number) => `${(100 * v).toFixed(1)}%`;

/** The training config of one arm (GRPO, or GRPO with CLIPO), from the same start, seed and budget. */
export function armConfig(s: DemoSettings, o: { modelDir: string; trainFile: string; outDir: string; seed: number; clipo: boolean }): TrainConfig {
  return parseTrainConfig(
    {
      model: { path: o.modelDir, ...(s.threads ? { threads: s.threads } : {}) },
      data: { train_files: [o.trainFile], max_prompt_tokens: 256, max_response_tokens: s.maxNewTokens },
      rollout: { n: s.rl.n, temperature: s.rl.temperature, top_p: 1 },
      // no KL term: it would cost a reference scoring pass per step and matters little over a few dozen steps
      algorithm: { preset: 'grpo', kl_coef: 0 },
      clipo: {
        enabled: o.clipo, out_size: s.clipo.outSize, lambda: s.clipo.lambda, temperature: s.clipo.temperature, lr: s.clipo.headLr,
        warmup_steps: s.clipo.warmupSteps,
      },
      optim: {
        lr: s.rl.lr, prompts_per_step: s.rl.promptsPerStep, ppo_mini_batch: s.rl.miniBatch, micro_batch: s.rl.miniBatch * s.rl.n,
        epochs: 1000, max_steps: s.rl.steps, seed: o.seed,
      },
      output: { dir: o.outDir, save_every: 0, keep_last: 1 },
    },
    'demo config',
  );
}

function taskHash(s: DemoSettings): string {
  return createHash('sha256').update(JSON.stringify(s.task)).digest('hex').slice(0, 12);
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
  if (existsSync(path.join(o.outDir, 'runs')) || existsSync(path.join(o.outDir, 'report.md'))) {
    throw new Error(`${o.outDir} already holds a demo; choose another output folder`);
  }
  const evalN = Math.min(s.evalProblems, s.task.test);

  // ---- task data (files for the trainer; the same problems in memory for warm-up and evaluation)
  const taskDir = path.join(o.cacheDir, `task-${taskHash(s)}`);
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
    const engine = Engine.create(start.config, weights, s.threads ? { threads: s.threads } : {});
    try {
      const bar = phase(`eval ${label}`);
      bar.start(EVAL_SPLITS.length * evalN, { split: EVAL_SPLITS[0]! });
      let done = 0;
      for (const split of EVAL_SPLITS) {
        const scores = evaluateGreedy(engine, tok, evalSets.get(split)!, { maxNewTokens: s.maxNewTokens }, (k) => bar.update(done + k, { split }));
        done += scores.length;
        evals.push({ arm, seed, split, scores });
      }
      bar.stop();
    } finally {
      engine.dispose();
    }
  };

  // ---- the starting policy's scores (the reference line of the table)
  await timed(`eval ${START}`, () => evaluate(start.weights, START, 1, START));

  // ---- RL: both arms per seed, then their evaluation
  const metrics: RunMetrics[] = [];
  const embeddings: EmbeddingSnapshot[] = [];
  const trainFile = path.join(taskDir, TASK_FILES.train);
  for (let seed = 1; seed <= o.seeds; seed++) {
    for (const [arm, clipo] of [[BASELINE, false], [TREATMENT, true]] as const) {
      const tag = `${arm}${o.seeds > 1 ? ` seed ${seed}` : ''}`;
      const runDir = path.join(o.outDir, 'runs', `${clipo ? 'grpo-clipo' : 'grpo'}-seed${seed}`);
      const config = armConfig(s, { modelDir: warm.modelDir, trainFile, outDir: runDir, seed, clipo });
      const bar = phase(`RL ${tag}`);
      let first: EmbeddingSnapshot | null = null;
      let last: EmbeddingSnapshot | null = null;
      const result = await timed(`RL ${tag}`, () =>
        runTraining(config, {
          onStart: (info) => bar.start(info.totalSteps, { reward: '-', acc: '-' }),
          onStep: (m, d) => {
            bar.update(m.step, { reward: m.reward_mean.toFixed(3), acc: pct(m.accuracy) });
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
    `RL: GRPO (no KL term) and GRPO+CLIPO (linear head, D = ${s.clipo.outSize}, InfoNCE over groups, τ = ${s.clipo.temperature}, λ = ${s.clipo.lambda}, ` +
      `head lr ${s.clipo.headLr}${s.clipo.warmupSteps ? `, ${s.clipo.warmupSteps} head warm-up steps` : ', no head warm-up'}) from that same checkpoint, ` +
      `${s.rl.steps} steps of ${s.rl.promptsPerStep} prompts × ${s.rl.n} rollouts (temperature ${s.rl.temperature}, at most ${s.maxNewTokens} tokens), policy lr ${s.rl.lr}, ` +
      `${s.rl.promptsPerStep / s.rl.miniBatch} PPO mini-batches per step; ${seedsText}, the same seed giving both arms the same prompt order.`,
    `Evaluation: greedy Pass@1 on the first ${evalN} problems of each split (test: fresh draws of the train distribution; symbolic: new names and numbers; ` +
      `p1/p2: one/two extra steps; noop: an irrelevant sentence). "${START}" is the policy both arms start from. ` +
      `Machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'CPU'}; settings: ${o.label ?? 'custom'}.`,
  ];
  const notes = [
    'A tiny model and a few dozen RL steps: differences of a few points are within the noise of one run; read the confidence intervals, not the cell means.',
    ...(o.seeds > 1 ? [`"${START}" is one model, so its cells carry the standard error over problems; the RL arms' over seeds.`] : []),
  ];
  const summary = await writeReport(o.outDir, {
    title: 'clipo demo: GRPO vs GRPO+CLIPO on the built-in arithmetic task',
    intro,
    baseline: BASELINE,
    treatment: TREATMENT,
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
