// `clipo serve --model DIR`: an OpenAI-compatible server over the native engine (see src/serve/server.ts), bound to
// 127.0.0.1 unless --host says otherwise (there is no authentication).
import chalk from 'chalk';
import type { Command } from 'commander';
import { existsSync, statSync } from 'node:fs';
import { loadLocalModel } from '../../eval/local.js';
import { startServer } from '../../serve/server.js';
import { THREADS_HELP, UsageError, parseNumberOption, threadsOption } from '../errors.js';

interface ServeFlags {
  model?: string;
  port: string;
  host: string;
  servedModelName?: string;
  threads?: string;
  maxBatch: string;
  batchWindow: string;
  quiet?: boolean;
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('OpenAI-compatible server (/v1/chat/completions, /v1/completions, /v1/models) over a local model on the native engine')
    .option('--model <dir>', 'model directory (Hugging Face layout, with tokenizer and chat template)')
    .option('--port <p>', 'TCP port (0 = any free port)', '8000')
    .option('--host <addr>', 'address to bind; anything but loopback exposes the model without authentication', '127.0.0.1')
    .option('--served-model-name <name>', 'the model name clients must send (default: the directory name)')
    .option('--threads <n>', THREADS_HELP)
    .option('--max-batch <n>', 'most sequences in one batched call of queued greedy requests', '32')
    .option('--batch-window <ms>', 'wait this long before each engine call to gather more greedy requests', '0')
    .option('--quiet', 'no per-request log lines')
    .action(async (f: ServeFlags) => {
      if (!f.model) throw new UsageError('--model DIR is required');
      if (!existsSync(f.model) || !statSync(f.model).isDirectory()) throw new UsageError(`--model: not a directory: ${f.model}`);
      const port = parseNumberOption('--port', f.port, { integer: true, min: 0, max: 65535 });
      const threads = threadsOption(f.threads);
      const maxBatchSequences = parseNumberOption('--max-batch', f.maxBatch, { integer: true, min: 1, max: 4096 });
      const batchWindowMs = parseNumberOption('--batch-window', f.batchWindow, { min: 0, max: 60_000 });
      if (f.servedModelName !== undefined && f.servedModelName.trim() === '') throw new UsageError('--served-model-name: must not be empty');
      const log = (m: string) => process.stderr.write(chalk.dim(m) + '\n');
      const model = await loadLocalModel(f.model, { name: f.servedModelName, threads });
      let s;
      try {
        s = await startServer(model, { host: f.host, port, maxBatchSequences, batchWindowMs, log: f.quiet ? undefined : log });
      } catch (e) {
        throw new UsageError(`cannot listen on ${f.host}:${port}: ${(e as Error).message}`, 1);
      }
      if (!['127.0.0.1', '::1', 'localhost'].includes(f.host)) {
        process.stderr.write(chalk.yellow(`clipo serve: warning: listening on ${f.host}; anyone who can reach it can use the model\n`));
      }
      // the first stdout line is machine-readable, so a script (or a test) can find the port
      process.stdout.write(`clipo serve: model '${model.name}' at ${s.url}\n`);
      await new Promise<void>((resolve) => {
        const stop = () => {
          void s.close().then(resolve);
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });
}
