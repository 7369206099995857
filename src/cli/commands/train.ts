// `clipo train --config FILE [--set block.key=value ...] [--resume] [--json]`: RL training with GRPO, DAPO, GSPO or
// GMPO, each with or without CLIPO. Progress on stderr (a bar on a terminal, one line per step otherwise);
// metrics.jsonl and checkpoints under output.dir; --json prints a summary document on stdout at the end.
import chalk from 'chalk';
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { loadTrainConfig } from '../../config/load.js';
import { THREADS_HELP, threadsOption } from '../errors.js';
import type { StepMetrics } from '../../rl/trainer.js';

interface TrainOptions {
  config: string;
  set: string[];
  resume?: boolean;
  json?: boolean;
  threads?: string;
}

const fmt = (v: number | null, d = 3) => (v === null || !Number.isFinite(v) ? '-' : v.toFixed(d));

/** The headline figures of a step, for the bar and the log line. */
export function headline(m: StepMetrics): Record<string, string> {
  return {
    reward: fmt(m.reward_mean),
    acc: `${(100 * m.accuracy).toFixed(1)}%`,
    closs: fmt(m.contrastive_loss),
    cos: fmt(m.positive_cos_mean, 2),
    kl: fmt(m.approx_kl, 4),
    len: m.response_length_mean.toFixed(0),
    sps: m.time_step_s.toFixed(1),
    phase: m.warmup ? 'head warm-up' : 'train',
    // rollouts whose verification ran out of time (scored 0): shown only when there are some
    ...(m.verify_timeouts ? { 'verify-timeouts': String(m.verify_timeouts) } : {}),
  };
}

export function registerTrain(program: Command): void {
  program
    .command('train')
    .description('RL training: GRPO, DAPO, GSPO or GMPO, each with or without CLIPO (see recipes/ and docs/training.md)')
    .requiredOption('--config <file>', 'YAML training config (blocks: model, data, rollout, algorithm, clipo, optim, output, verifier)')
    .option('--set <block.key=value>', 'override a config value (repeatable), e.g. --set clipo.enabled=true', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--resume', 'continue the run found in output.dir from its newest checkpoint')
    .option('--threads <n>', `${THREADS_HELP}; overrides model.threads`)
    .option('--json', 'print a JSON summary on stdout at the end')
    .action(async (opts: TrainOptions) => {
      const threads = threadsOption(opts.threads);
      const config = loadTrainConfig(opts.config, opts.set);
      if (threads !== undefined) config.model.threads = threads;
      // loaded on use: the engine and data modules are only needed once a run starts
      const { runTraining } = await import('../../rl/run.js');
      const tty = !!process.stderr.isTTY && !opts.json;
      let bar: cliProgress.SingleBar | null = null;
      const log = (s: string) => process.stderr.write(s + '\n');
      const result = await runTraining(config, {
        resume: !!opts.resume,
        onStart: (info) => {
          const clipo = config.clipo.enabled ? ` + CLIPO (head warm-up ${info.warmupSteps} steps)` : '';
          log(chalk.dim(`train ${config.algorithm.preset}${clipo}: ${info.prompts} prompts (${info.filtered} overlong dropped), ${info.stepsPerEpoch} steps/epoch, steps ${info.startStep + 1}..${info.totalSteps} -> ${config.output.dir}`));
          if (info.warmupSteps >= info.totalSteps) log(chalk.yellow(`note: all ${info.totalSteps} steps are head warm-up (policy frozen); lower clipo.warmup_steps to train the policy`));
          if (tty) {
            bar = new cliProgress.SingleBar(
              { format: 'train {bar} {value}/{total} | {phase} | reward {reward} | acc {acc} | closs {closs} | cos {cos} | kl {kl} | len {len} | {sps}s/step | eta {eta_formatted}', stream: process.stderr, hideCursor: true, barsize: 20, fps: 2 },
              cliProgress.Presets.shades_classic,
            );
            bar.start(info.totalSteps, info.startStep, { phase: '-', reward: '-', acc: '-', closs: '-', cos: '-', kl: '-', len: '-', sps: '-' });
          }
        },
        onStep: (m) => {
          const h = headline(m);
          if (bar) (bar as cliProgress.SingleBar).update(m.step, h);
          else if (!opts.json) log(`step ${m.step} [${h.phase}] reward ${h.reward} acc ${h.acc} closs ${h.closs} cos ${h.cos} kl ${h.kl} len ${h.len} ${h.sps}s`);
        },
      }).finally(() => (bar as cliProgress.SingleBar | null)?.stop());
      if (opts.json) console.log(JSON.stringify({ outputDir: result.outputDir, steps: result.steps, totalSteps: result.totalSteps, lastCheckpoint: result.lastCheckpoint, last: result.last }, null, 2));
      else log(`done: ${result.steps} steps this run; metrics in ${result.outputDir}/metrics.jsonl; checkpoint ${result.lastCheckpoint ?? '(none)'}`);
    });
}
