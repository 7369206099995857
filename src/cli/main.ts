// The `clipo` command line. Each command lives in its own module under commands/ and registers itself here.
import chalk from 'chalk';
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../native.js';
import { registerBench } from './commands/bench.js';
import { registerData } from './commands/data.js';
import { registerEval } from './commands/eval.js';
import { registerServe } from './commands/serve.js';
import { registerGenerate } from './commands/generate.js';
import { registerModel } from './commands/model.js';
import { registerScore } from './commands/score.js';
import { registerTrain } from './commands/train.js';
import { registerDemo } from './commands/demo.js';
import { UsageError } from './errors.js';

export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('clipo')
    .description('RLVR for language models with CLIPO (contrastive learning in policy optimization)')
    .version(packageVersion(), '-V, --version')
    .showHelpAfterError('(run with --help for usage)');
  registerTrain(program);
  registerEval(program);
  registerServe(program);
  registerBench(program);
  registerModel(program);
  registerGenerate(program);
  registerScore(program);
  registerData(program);
  registerDemo(program);
  return program;
}

/** Runs the CLI; resolves to the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  program.exitOverride();
  for (const c of program.commands) c.exitOverride();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // help and version are "errors" to commander; their text is already printed
      // every other commander error is a usage error (missing option, unknown flag, bad argument): exit 2
      return e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help' ? 0 : 2;
    }
    if (e instanceof UsageError) {
      process.stderr.write(chalk.red(`clipo: ${e.message}`) + '\n');
      return e.exitCode;
    }
    const err = e as Error;
    process.stderr.write(chalk.red(`clipo: ${err.message ?? String(e)}`) + '\n');
    if (process.env.CLIPO_DEBUG) process.stderr.write(`${err.stack}\n`);
    return 1;
  }
}
