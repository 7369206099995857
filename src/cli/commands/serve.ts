// `clipo serve --model DIR`: an OpenAI-compatible server over the native engine (see src/serve/server.ts), bound to
// 127.0.0.1 unless --host says otherwise; --api-key (or CLIPO_API_KEY) makes /v1 routes ask for a bearer key.
// The engine runs on a worker thread with continuous batching (src/serve/backend.ts, src/serve/scheduler.ts).
import chalk from 'chalk';
import type { Command } from 'commander';
import { existsSync, statSync } from 'node:fs';
import { WorkerBackend } from '../../serve/backend.js';
import { startServer } from '../../serve/server.js';
import { BACKEND_HELP, THREADS_HELP, UsageError, backendOption, parseNumberOption, threadsOption } from '../errors.js';

interface ServeFlags {
  model?: string;
  port: string;
  host: string;
  servedModelName?: string;
  threads?: string;
  backend?: string;
  maxBatch: string;
  apiKey?: string;
  quiet?: boolean;
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('OpenAI-compatible server (/v1/chat/completions, /v1/completions, /v1/models) over a local model on the native engine')
    .option('--model <dir>', 'model directory (Hugging Face layout, with tokenizer and chat template)')
    .option('--port <p>', 'TCP port (0 = any free port)', '8000')
    .option('--host <addr>', 'address to bind; anything but loopback exposes the model (to anyone, unless --api-key)', '127.0.0.1')
    .option('--served-model-name <name>', 'the model name clients must send (default: the directory name)')
    .option('--threads <n>', THREADS_HELP)
    .option('--backend <name>', BACKEND_HELP, 'auto')
    .option('--max-batch <n>', 'most sequences decoded together (requests join and leave the running batch between steps)', '32')
    .option('--api-key <key>', 'require "Authorization: Bearer <key>" on /v1 routes (default: $CLIPO_API_KEY, else none)')
    .option('--quiet', 'no per-request log lines')
    .action(async (f: ServeFlags) => {
      if (!f.model) throw new UsageError('--model DIR is required');
      if (!existsSync(f.model) || !statSync(f.model).isDirectory()) throw new UsageError(`--model: not a directory: ${f.model}`);
      const port = parseNumberOption('--port', f.port, { integer: true, min: 0, max: 65535 });
      const threads = threadsOption(f.threads);
      const engineBackend = backendOption(f.backend);
      const maxBatchSequences = parseNumberOption('--max-batch', f.maxBatch, { integer: true, min: 1, max: 4096 });
      const apiKey = f.apiKey ?? process.env.CLIPO_API_KEY;
      if (apiKey !== undefined && apiKey.trim() === '') throw new UsageError('--api-key: must not be empty');
      if (f.servedModelName !== undefined && f.servedModelName.trim() === '') throw new UsageError('--served-model-name: must not be empty');
      const log = (m: string) => process.stderr.write(chalk.dim(m) + '\n');
      const backend = await WorkerBackend.start({ modelDir: f.model, name: f.servedModelName, threads, backend: engineBackend, maxBatchSequences });
      let s;
      try {
        s = await startServer(backend, { host: f.host, port, maxBatchSequences, apiKey, log: f.quiet ? undefined : log });
      } catch (e) {
        await backend.close();
        throw new UsageError(`cannot listen on ${f.host}:${port}: ${(e as Error).message}`, 1);
      }
      if (!['127.0.0.1', '::1', 'localhost'].includes(f.host)) {
        process.stderr.write(chalk.yellow(`clipo serve: warning: listening on ${f.host}; anyone who can reach it can use the model${apiKey ? ' (with the API key)' : ''}\n`));
      }
      // the first stdout line is machine-readable, so a script (or a test) can find the port
      process.stdout.write(`clipo serve: model '${backend.info.name}' at ${s.url}\n`);
      await new Promise<void>((resolve, reject) => {
        const stop = () => {
          void s.close().then(resolve);
        };
        // an engine that died cannot come back: exit non-zero so a supervisor can restart the server
        backend.onDeath = (why) => {
          void s.close().then(() => reject(new Error(`the engine worker stopped (${why}); exiting`)));
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });
}
