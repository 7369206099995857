// `clipo data ...`: data utilities. `make-task` writes the built-in task's splits in the benchmark files' layout.
import chalk from 'chalk';
import type { Command } from 'commander';
import path from 'node:path';
import { type TaskFormat, makeTaskData } from '../../task/records.js';
import { UsageError, parseNumberOption } from '../errors.js';

interface MakeTaskFlags {
  out?: string;
  seed: string;
  train: string;
  test: string;
  format: string;
  maxOps: string;
  maxValue: string;
}

export function registerData(program: Command): void {
  // main() makes top-level commands throw instead of exiting; sub-commands need it set themselves
  const data = program.command('data').description('data utilities (the built-in task generator)').exitOverride();
  data
    .command('make-task')
    .exitOverride()
    .description('write the built-in arithmetic task (train, test, symbolic, p1, p2, noop) as parquet or jsonl')
    .requiredOption('--out <dir>', 'output folder (gets train/ and test/ like the benchmark data)')
    .option('--seed <n>', 'generator seed', '0')
    .option('--train <n>', 'number of training problems', '2000')
    .option('--test <n>', 'number of problems in each evaluation split', '200')
    .option('--format <fmt>', 'parquet or jsonl', 'parquet')
    .option('--max-ops <n>', 'difficulty: most operations in a base problem (2-6; p1/p2 add one/two)', '4')
    .option('--max-value <n>', 'difficulty: largest intermediate value (20-10000)', '100')
    .action((opts: MakeTaskFlags) => {
      const seed = parseNumberOption('--seed', opts.seed, { integer: true, min: 0, max: 2 ** 40 - 1 });
      const train = parseNumberOption('--train', opts.train, { integer: true, min: 0, max: 1_000_000 });
      const test = parseNumberOption('--test', opts.test, { integer: true, min: 0, max: 100_000 });
      const maxOps = parseNumberOption('--max-ops', opts.maxOps, { integer: true, min: 2, max: 6 });
      const maxValue = parseNumberOption('--max-value', opts.maxValue, { integer: true, min: 20, max: 10000 });
      if (opts.format !== 'parquet' && opts.format !== 'jsonl') throw new UsageError(`--format: expected parquet or jsonl, got '${opts.format}'`);
      const format = opts.format as TaskFormat;
      const dir = path.resolve(opts.out!);
      const manifest = makeTaskData(dir, { seed, train, test, maxOps, maxValue, format });
      const files = Object.values(manifest.files).map((f) => path.join(dir, f));
      for (const f of files) console.log(`${chalk.green('wrote')} ${path.relative(process.cwd(), f) || f}`);
    });
}
