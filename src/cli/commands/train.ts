// `clipo train --config FILE [--set block.key=value ...] [--resume] [--json]`: RL training with GRPO, DAPO, GSPO or
// GMPO, each with or without CLIPO. Progress on stderr (a bar on a terminal, one line per step otherwise);
// metrics.jsonl and checkpoints under output.dir; --json prints a summary document on stdout at the end.
import chalk from 'chalk';
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { loadTrainConfig } from '../../config/load.js';
import { THREADS_HELP, threadsOption, UsageError } from '../errors.js';
import type { StepMetrics } from '../../rl/trainer.js';

interface TrainOptions {
  config: string;
  set: string[];
  resume?: boolean;
  json?: boolean;
  cache?: string;
  strict?: boolean;
  threads?: string;
}

const fmt = (v: number | null, d = 3) => (v === null || !Number.isFinite(v) ? '-' : v.toFixed(d));

/** The headline figures of a step, for the bar and the log line. */
export function headline(m: StepMetrics): Record<string, string> {
  return {
    reward: fmt(m.reward_mean),
    acc: `${(100 * m.accuracy).toFixed(1)}%`,
    steps: m.process_correct_frac === null ? '-' : `${(100 * m.process_correct_frac).toFixed(0)}%`,
    closs: fmt(m.contrastive_loss),
    cos: fmt(m.positive_cos_mean, 2),
    kl: fmt(m.approx_kl, 4),
    len: m.response_length_mean.toFixed(0),
    trunc: `${(100 * m.truncated_frac).toFixed(0)}%`,
    sps: m.time_step_s.toFixed(1),
    phase: m.warmup ? 'head warm-up' : 'train',
    // rollouts whose verification ran out of time (scored 0): shown only when there are some
    ...(m.verify_timeouts ? { 'verify-timeouts': String(m.verify_timeouts) } : {}),
  };
}

/** The validation figures of the progress line: mean accuracy, the largest pass@k and maj@n (benchmark averages). */
export function validationHeadline(f: Record<string, number>): string {
  const pass = Object.keys(f).filter((k) => /^pass@\d+$/.test(k)).sort((a, b) => Number(a.slice(5)) - Number(b.slice(5))).at(-1);
  const maj = Object.keys(f).find((k) => /^maj@\d+$/.test(k));
  const pct = (v: number | undefined) => (v === undefined ? '-' : `${(100 * v).toFixed(1)}%`);
  return [`acc ${pct(f.mean_acc)}`, pass && pass !== 'pass@1' ? `${pass} ${pct(f[pass])}` : '', maj && maj !== 'maj@1' ? `${maj} ${pct(f[maj])}` : ''].filter(Boolean).join(' ');
}

export function registerTrain(program: Command): void {
  program
    .command('train')
    .description('RL training: GRPO, DAPO, GSPO or GMPO, each with or without CLIPO (see recipes/ and docs/training.md)')
    .requiredOption('--config <file>', 'YAML training config (blocks: model, data, rollout, algorithm, clipo, optim, output, verifier, validation, reward, guards)')
    .option('--set <block.key=value>', 'override a config value (repeatable), e.g. --set clipo.enabled=true', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--resume', 'continue the run found in output.dir from its newest checkpoint')
    .option('--threads <n>', `${THREADS_HELP}; overrides model.threads`)
    .option('--json', 'print a JSON summary on stdout at the end')
    .option('--cache <dir>', 'cache for builtin:task/<split> data and the builtin:demo-warmup model (default: $CLIPO_CACHE_DIR, else ~/.cache/clipo)')
    .option('--strict', 'stop when a guard fires (truncation, groups without reward spread, reward errors, entropy), as guards.stop: true')
    .action(async (opts: TrainOptions) => {
      if (opts.cache !== undefined && opts.cache.trim() === '') throw new UsageError('--cache: expected a folder');
      const threads = threadsOption(opts.threads);
      const config = loadTrainConfig(opts.config, opts.set);
      if (threads !== undefined) config.model.threads = threads;
      // loaded on use: the engine and data modules are only needed once a run starts
      const { runTraining } = await import('../../rl/run.js');
      const { resolveCacheDir } = await import('../../demo/builtin.js');
      const tty = !!process.stderr.isTTY && !opts.json;
      let bar: cliProgress.SingleBar | null = null;
      let warnings = '';
      let lastVal = '-';
      let memoryPlan: unknown = null;
      const log = (s: string) => process.stderr.write(s + '\n');
      // a config naming builtin:demo-warmup trains that model on first use (minutes): show its progress
      let warmBar: cliProgress.SingleBar | null = null;
      let warmStart = 0;
      const warmup = {
        start: (total: number) => {
          warmStart = performance.now();
          log(chalk.dim(`training the built-in warm-up model (once; cached for later runs): up to ${total} supervised steps`));
          if (tty) {
            warmBar = new cliProgress.SingleBar({ format: 'warm-up {bar} {value}/{total} | loss {loss} | acc {acc} | eta {eta_formatted}', stream: process.stderr, hideCursor: true, barsize: 20, fps: 2 }, cliProgress.Presets.shades_classic);
            warmBar.start(total, 0, { loss: '-', acc: '-' });
          }
        },
        update: (step: number, f: { loss: number; accuracy: number | null }) => {
          if (warmBar) warmBar.update(step, { loss: f.loss.toFixed(3), ...(f.accuracy !== null ? { acc: `${(100 * f.accuracy).toFixed(1)}%` } : {}) });
          else if (f.accuracy !== null && !opts.json) log(`warm-up step ${step}: loss ${f.loss.toFixed(3)} accuracy ${(100 * f.accuracy).toFixed(1)}% (${((performance.now() - warmStart) / 1000).toFixed(0)} s)`);
        },
        stop: () => (warmBar as cliProgress.SingleBar | null)?.stop(),
      };
      const result = await runTraining(config, {
        cacheDir: resolveCacheDir(opts.cache),
        builtin: { warmup, log: (s) => (opts.json ? undefined : log(chalk.dim(s))) },
        resume: !!opts.resume,
        strict: !!opts.strict,
        onWarning: (w, step) => {
          warnings = warnings ? `${warnings} ${w.guard}!` : `${w.guard}!`;
          const line = chalk.yellow(`warning: step ${step}: ${w.message}`);
          if (bar) (bar as cliProgress.SingleBar).update({ warn: warnings });
          log(line);
        },
        onValidation: (r) => {
          lastVal = validationHeadline(r.figures);
          if (bar) (bar as cliProgress.SingleBar).update({ val: lastVal });
          else if (!opts.json) log(`validation at step ${r.step}: ${lastVal} (${r.seconds.toFixed(1)} s, ${r.dir})`);
        },
        onPlan: (plan, table) => {
          memoryPlan = plan;
          if (!opts.json) log(chalk.dim(table));
        },
        onStart: (info) => {
          const clipo = config.clipo.enabled ? ` + CLIPO (head warm-up ${info.warmupSteps} steps)` : '';
          log(chalk.dim(`train ${config.algorithm.preset}${clipo}: ${info.prompts} prompts (${info.filtered} overlong dropped), ${info.stepsPerEpoch} steps/epoch, steps ${info.startStep + 1}..${info.totalSteps} -> ${config.output.dir}`));
          if (info.warmupSteps >= info.totalSteps) log(chalk.yellow(`note: all ${info.totalSteps} steps are head warm-up (policy frozen); lower clipo.warmup_steps to train the policy`));
          if (tty) {
            bar = new cliProgress.SingleBar(
              { format: 'train {bar} {value}/{total} | {phase} | reward {reward} | acc {acc} | steps ok {steps} | closs {closs} | cos {cos} | kl {kl} | len {len} | trunc {trunc} | val {val} | {sps}s/step | eta {eta_formatted} {warn}', stream: process.stderr, hideCursor: true, barsize: 20, fps: 2 },
              cliProgress.Presets.shades_classic,
            );
            bar.start(info.totalSteps, info.startStep, { phase: '-', reward: '-', acc: '-', steps: '-', closs: '-', cos: '-', kl: '-', len: '-', trunc: '-', val: lastVal, sps: '-', warn: '' });
          }
        },
        onStep: (m) => {
          const h = headline(m);
          if (bar) (bar as cliProgress.SingleBar).update(m.step, { ...h, val: lastVal, warn: warnings });
          else if (!opts.json) log(`step ${m.step} [${h.phase}] reward ${h.reward} acc ${h.acc} steps-ok ${h.steps} closs ${h.closs} cos ${h.cos} kl ${h.kl} len ${h.len} trunc ${h.trunc} ${h.sps}s${warnings ? ` ${warnings}` : ''}`);
          warnings = '';
        },
      }).finally(() => (bar as cliProgress.SingleBar | null)?.stop());
      if (opts.json) console.log(JSON.stringify({ outputDir: result.outputDir, steps: result.steps, totalSteps: result.totalSteps, lastCheckpoint: result.lastCheckpoint, last: result.last, memoryPlan }, null, 2));
      else log(`done: ${result.steps} steps this run; metrics in ${result.outputDir}/metrics.jsonl; checkpoint ${result.lastCheckpoint ?? '(none)'}`);
    });
}
