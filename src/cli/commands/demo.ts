// `clipo demo [--out DIR] [--seeds N] [--steps N] [--arms LIST] [--algo NAME] [--quick] [--json] [--cache DIR]`: the
// built-in end-to-end demo.
// Progress bars on stderr (one per phase; plain lines when stderr is not a terminal); the report's path, the
// Pass@1, differences and process-check tables and the phase times at the end (or a JSON summary with --json).
import chalk from 'chalk';
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import path from 'node:path';
import { THREADS_HELP, UsageError, parseNumberOption, threadsOption } from '../errors.js';
import { renderTable } from '../table.js';

interface DemoCliOptions {
  out?: string;
  seeds: string;
  steps?: string;
  quick?: boolean;
  json?: boolean;
  cache?: string;
  arms?: string;
  algo?: string;
  threads?: string;
}

/** runs/demo-2026-11-21T20-05-03 (local time would collide less, but UTC sorts the same everywhere) */
export function demoDirName(d = new Date()): string {
  return `demo-${d.toISOString().slice(0, 19).replace(/:/g, '-')}`;
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('the built-in end-to-end demo: warm-up (cached), GRPO, GRPO+CLIPO and GRPO+CLIPO-fixed from the same start, eval on every split, report.md with pictures')
    .option('--out <dir>', 'output folder (default: runs/demo-<timestamp>)')
    .option('--seeds <n>', 'paired seeds per arm (with 2 or more the report gives each difference with a 95% CI over seeds)', '1')
    .option('--steps <n>', 'RL steps per arm (default: 80; --quick: 3)')
    .option('--quick', 'a tiny smoke run (well under a minute)')
    .option('--json', 'print a JSON summary on stdout at the end (no progress bars)')
    .option('--threads <n>', THREADS_HELP)
    .option('--cache <dir>', 'cache for the task data and the warm-up model (default: $CLIPO_CACHE_DIR, else ~/.cache/clipo)')
    .option('--arms <list>', 'arms to run, comma-separated: base (the algorithm alone), clipo (with CLIPO), fixed (CLIPO-fixed: the head never stepped)', 'base,clipo,fixed')
    .option('--algo <name>', 'the RL algorithm of every arm: grpo, dapo, gspo or gmpo', 'grpo')
    .action(async (opts: DemoCliOptions) => {
      const seeds = parseNumberOption('--seeds', opts.seeds, { integer: true, min: 1, max: 100 });
      const threads = threadsOption(opts.threads);
      const steps = opts.steps === undefined ? undefined : parseNumberOption('--steps', opts.steps, { integer: true, min: 1, max: 100000 });
      // OpenMP threads that spin between the many small parallel regions of a tiny model turn a busy 2-core laptop
      // into a crawl (measured here: a warm-up step 5-8x slower under load); sleeping threads cost little when the
      // machine is idle. The runtime reads this when the addon loads, which happens below; a user's setting wins.
      process.env.OMP_WAIT_POLICY ??= 'PASSIVE';
      // loaded on use: the engine and the report's plotting libraries are only needed once a demo runs
      const { DEFAULT_SETTINGS, QUICK_SETTINGS } = await import('../../demo/settings.js');
      const { resolveCacheDir } = await import('../../demo/builtin.js');
      const { runDemo, ARM_KINDS, DEMO_ALGOS } = await import('../../demo/run.js');
      const arms = (opts.arms ?? 'base,clipo,fixed').split(',').map((a) => a.trim()).filter((a) => a !== '');
      const bad = arms.filter((a) => !(ARM_KINDS as readonly string[]).includes(a));
      if (arms.length === 0 || bad.length) throw new UsageError(`--arms: expected a comma-separated list of ${ARM_KINDS.join(', ')}${bad.length ? `, got '${bad.join("', '")}'` : ''}`);
      if (new Set(arms).size !== arms.length) throw new UsageError(`--arms: '${opts.arms}' names an arm twice`);
      const algo = (opts.algo ?? 'grpo').toLowerCase();
      if (!(DEMO_ALGOS as readonly string[]).includes(algo)) throw new UsageError(`--algo: expected one of ${DEMO_ALGOS.join(', ')}, got '${opts.algo}'`);
      const settings = structuredClone(opts.quick ? QUICK_SETTINGS : DEFAULT_SETTINGS);
      if (steps !== undefined) settings.rl.steps = steps;
      if (threads !== undefined) settings.threads = threads;
      const outDir = path.resolve(opts.out ?? path.join('runs', demoDirName()));
      const cacheDir = resolveCacheDir(opts.cache);
      if (opts.out !== undefined && opts.out.trim() === '') throw new UsageError('--out: expected a folder');

      const tty = !!process.stderr.isTTY && !opts.json;
      const log = (s: string) => {
        if (!opts.json) process.stderr.write(chalk.dim(s) + '\n');
      };
      const phase = (name: string) => {
        if (!tty) {
          // no terminal: a line when a phase starts, at every tenth of it, and when it ends
          let t0 = 0;
          let total = 0;
          let nextTenth = 1;
          let last: Record<string, string> = {};
          const fields = () => Object.entries(last).map(([k, v]) => `${k} ${v}`).join(' ');
          return {
            start: (n: number) => {
              t0 = performance.now();
              total = n;
              nextTenth = 1;
              log(`${name}: ${n} ...`);
            },
            update: (v: number, f?: Record<string, string>) => {
              if (f) last = { ...last, ...f };
              if (total > 0 && v * 10 >= nextTenth * total && v < total) {
                while (v * 10 >= nextTenth * total) nextTenth++;
                log(`${name}: ${v}/${total} ${((performance.now() - t0) / 1000).toFixed(0)} s ${fields()}`);
              }
            },
            stop: () => log(`${name}: done in ${((performance.now() - t0) / 1000).toFixed(1)} s ${fields()}`),
          };
        }
        const bar = new cliProgress.SingleBar(
          { format: `${name.padEnd(26)} {bar} {value}/{total} | {info} | {duration_formatted} (eta {eta_formatted})`, stream: process.stderr, hideCursor: true, barsize: 24, fps: 4 },
          cliProgress.Presets.shades_classic,
        );
        let fields: Record<string, string> = {};
        const info = () => Object.entries(fields).map(([k, v]) => `${k} ${v}`).join(' ');
        return {
          start: (total: number, f?: Record<string, string>) => {
            fields = { ...f };
            bar.start(total, 0, { info: info() });
          },
          update: (v: number, f?: Record<string, string>) => {
            fields = { ...fields, ...f };
            bar.update(v, { info: info() });
          },
          stop: () => bar.stop(),
        };
      };

      log(`clipo demo (${opts.quick ? 'quick' : 'default'} settings, ${seeds} seed${seeds > 1 ? 's' : ''}) -> ${outDir}`);
      const r = await runDemo({
        settings, outDir, cacheDir, seeds, hooks: { phase, log }, label: opts.quick ? 'quick' : 'default',
        arms: arms as (typeof ARM_KINDS)[number][], algo: algo as (typeof DEMO_ALGOS)[number],
      });

      const armCols = [...new Set(r.summary.splits.flatMap((sp) => Object.keys(sp.arms)))];
      const num = (v: number) => (Number.isFinite(v) ? `${v >= 0 ? '+' : ''}${v.toFixed(1)}` : 'n/a');
      const diffCols = (r.summary.splits[0]?.differences ?? []).map((d) => `${d.treatment} − ${d.baseline} (95% CI)`);
      const rows = r.summary.splits.map((sp) => {
        const row: Record<string, string> = { split: sp.split };
        for (const a of armCols) row[a] = sp.arms[a] ? `${sp.arms[a]!.mean.toFixed(1)} ± ${sp.arms[a]!.se.toFixed(1)}` : '-';
        sp.differences.forEach((d, i) => {
          row[diffCols[i]!] = d.difference ? `${num(d.difference.mean)} [${num(d.difference.lo)}, ${num(d.difference.hi)}]` : '-';
        });
        return row;
      });
      const processRows = r.summary.splits.map((sp) => {
        const row: Record<string, string> = { split: sp.split };
        for (const a of armCols) {
          const p = sp.process[a];
          row[a] = p && p.correct > 0 ? `${p.share.toFixed(1)} [${p.lo.toFixed(1)}, ${p.hi.toFixed(1)}]` : '-';
        }
        return row;
      });
      if (opts.json) {
        console.log(JSON.stringify({ outDir: r.outDir, report: r.report, warmup: r.warmup, splits: r.summary.splits, timings: r.timings, totalSeconds: r.summary.totalSeconds }, null, 2));
        return;
      }
      process.stderr.write('\n');
      console.log('Pass@1 (%)');
      console.log(renderTable(rows, ['split', ...armCols, ...diffCols]));
      console.log('');
      console.log('Process check: correct answers reached through the correct steps (%, 95% CI)');
      console.log(renderTable(processRows, ['split', ...armCols]));
      console.log('');
      console.log(renderTable([...r.timings.map((t) => ({ phase: t.phase, seconds: t.seconds.toFixed(1) })), { phase: 'total', seconds: r.summary.totalSeconds.toFixed(1) }]));
      console.log(`\n${chalk.green('report')} ${r.report}`);
    });
}
