// Commands whose implementation has not landed yet. They say so and exit non-zero rather than pretend.
import type { Command } from 'commander';
import { UsageError } from '../errors.js';

const pending: Record<string, string> = {
  train: 'RL training (GRPO, DAPO, GSPO, GMPO, each with or without CLIPO)',
  eval: 'Pass@1 evaluation on benchmark suites or data files',
  demo: 'the built-in end-to-end demo (warm-up, GRPO vs GRPO+CLIPO, report)',
};

export function registerPending(program: Command, names: string[] = Object.keys(pending)): void {
  for (const name of names) {
    program
      .command(name)
      .description(`${pending[name]} [not built yet]`)
      .allowUnknownOption(true)
      .allowExcessArguments(true)
      .action(() => {
        throw new UsageError(`clipo ${name}: not built yet in this version (${pending[name]})`, 3);
      });
  }
}
