// `clipo eval`: Pass@1 of a local model directory (native engine) or an OpenAI-compatible endpoint on the paper's
// benchmark suites or the user's data files. Flags are checked up front, each bad combination with its own message.
import chalk from 'chalk';
import type { Command } from 'commander';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { EndpointGenerator } from '../../eval/endpoint.js';
import { datasetName, defaultDataRoot, isSuiteName, suites, type SuiteName } from '../../eval/deps.js';
import { createLocalGenerator } from '../../eval/local.js';
import { runEval, type BenchmarkPlan } from '../../eval/run.js';
import type { Generator } from '../../eval/types.js';
import { BACKEND_HELP, THREADS_HELP, UsageError, backendOption, parseNumberOption, threadsOption } from '../errors.js';
import { renderTable } from '../table.js';

interface EvalFlags {
  model?: string;
  endpoint?: string;
  servedModel?: string;
  apiKey?: string;
  suite?: string;
  data?: string[];
  dataRoot?: string;
  samples?: string;
  temperature?: string;
  topP?: string;
  maxNewTokens?: string;
  limit?: string;
  concurrency?: string;
  threads?: string;
  backend?: string;
  seed?: string;
  timeout?: string;
  retries?: string;
  verifyThreads?: string;
  verifyTimeout?: string;
  verifyBoxes?: string;
  out?: string;
  force?: boolean;
  json?: boolean;
}

export function registerEval(program: Command): void {
  program
    .command('eval')
    .description('Pass@1 on the paper\'s benchmark suites or your data, on a local model or an OpenAI-compatible server (resumable)')
    .option('--model <dir>', 'local model directory (Hugging Face layout), run on the native engine')
    .option('--endpoint <url>', 'OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1')
    .option('--served-model <name>', 'model name to request from --endpoint')
    .option('--api-key <key>', 'API key for --endpoint (default: $OPENAI_API_KEY, else none)')
    .option('--suite <name>', 'track1 (GSM8K ... MMLU) or track2 (MATH500 ... AIME25)')
    .option('--data <files...>', 'parquet, jsonl or json files to evaluate instead of a suite')
    .option('--data-root <dir>', 'folder with the suites\' test/*.parquet (default: $CLIPO_DATA_ROOT or ../shared/data/clipo-benchmarks)')
    .option('--samples <k>', 'samples per problem (suite default: track1 1, track2 16; --data: 1)')
    .option('--temperature <t>', 'sampling temperature, 0 = greedy (track1 0, track2 0.6; --data: 0)')
    .option('--top-p <p>', 'nucleus sampling (track1 1, track2 0.95; --data: 1)')
    .option('--max-new-tokens <n>', 'response length limit (track1 2048, track2 4096; --data: 2048)')
    .option('--limit <n>', 'only the first N problems of each benchmark')
    .option('--concurrency <c>', 'requests in flight (endpoint, default 16) or sequences per engine batch (local, default 8)')
    .option('--threads <n>', `with --model: ${THREADS_HELP}`)
    .option('--backend <name>', `with --model: ${BACKEND_HELP} (default auto)`)
    .option('--seed <s>', 'base seed; each sample\'s seed is derived from it and the sample\'s identity', '0')
    .option('--timeout <seconds>', 'per-request timeout for --endpoint (default 600)')
    .option('--retries <n>', 'retries per request for --endpoint, with exponential backoff (default 6)')
    .option('--verify-threads <n>', 'verifier worker threads (default: min(4, cores))')
    .option('--verify-timeout <seconds>', 'hard verification limit per sample; a sample over it counts as incorrect (default 5)')
    .option('--verify-boxes <which>', "which boxes answer: 'last' (the paper) or 'all' (a list answer may be one box per element)", 'last')
    .option('--out <dir>', 'output folder: generations.jsonl, results.json, results.md (rerun the same command to resume)')
    .option('--force', 'discard an evaluation with a different configuration found in --out')
    .option('--json', 'print results.json to stdout; no progress bars')
    .action(async (flags: EvalFlags) => {
      const plan = parseEvalFlags(flags);
      const log = (m: string) => process.stderr.write(chalk.dim(m) + '\n');
      const generator: Generator = plan.model
        ? await createLocalGenerator({ dir: plan.model, concurrency: plan.concurrency, threads: plan.threads, backend: plan.backend, log })
        : new EndpointGenerator({
            baseURL: plan.endpoint!,
            model: plan.servedModel!,
            apiKey: flags.apiKey,
            concurrency: plan.concurrency,
            timeoutMs: plan.timeoutMs,
            maxRetries: plan.retries,
            onRetry: (i) => {
              if (!process.stderr.isTTY) log(`retry ${i.attempt} in ${(i.delayMs / 1000).toFixed(1)} s: ${i.error}`);
            },
          });
      try {
        const results = await runEval({
          out: plan.out,
          suite: plan.suite,
          benchmarks: plan.benchmarks,
          samples: plan.samples,
          params: { temperature: plan.temperature, topP: plan.topP, maxNewTokens: plan.maxNewTokens },
          seed: plan.seed,
          limit: plan.limit,
          force: !!flags.force,
          generator,
          progress: !flags.json && !!process.stderr.isTTY,
          log,
          handleSignals: true,
          verifyThreads: plan.verifyThreads,
          verifyTimeoutMs: plan.verifyTimeoutMs,
          verifyBoxes: plan.verifyBoxes,
        });
        if (flags.json) {
          process.stdout.write(JSON.stringify(results, null, 2) + '\n');
        } else {
          const row: Record<string, string> = { model: results.generator.model };
          for (const [k, b] of Object.entries(results.benchmarks)) row[b.display] = b.pass1 === null ? '-' : b.pass1.toFixed(2);
          if (results.summary) for (const a of ['M-Avg', 'G-Avg', 'C-Avg', 'Avg']) if (a in results.summary) row[a] = results.summary[a]?.toFixed(2) ?? '-';
          console.log(renderTable([row]));
          console.log(chalk.dim(`written: ${path.join(plan.out, 'results.json')}, results.md, generations.jsonl`));
        }
        if (!results.complete) {
          const failed = Object.values(results.benchmarks).reduce((a, b) => a + b.errors, 0);
          const common = results.errorReasons[0];
          throw new UsageError(
            `${failed} sample(s) failed after retries (recorded in generations.jsonl${common ? `; most common: ${common.reason} (${common.count}x)` : ''}); run the same command again to retry them`,
            1,
          );
        }
      } finally {
        await generator.close?.();
      }
    });
}

export interface EvalPlan {
  model?: string;
  endpoint?: string;
  servedModel?: string;
  suite: SuiteName | null;
  benchmarks: BenchmarkPlan[];
  samples: number;
  temperature: number;
  topP: number;
  maxNewTokens: number;
  limit?: number;
  concurrency: number;
  /** engine threads (--model only; undefined: picked by the model's size) */
  threads?: number;
  /** the engine backend (--model only), resolved from --backend */
  backend?: 'cpu' | 'cuda';
  seed: number;
  timeoutMs: number;
  retries: number;
  verifyThreads?: number;
  verifyTimeoutMs: number;
  verifyBoxes: 'last' | 'all';
  out: string;
}

/** Validates the flags and resolves suites, files and defaults. Throws UsageError with one clear line. */
export function parseEvalFlags(f: EvalFlags): EvalPlan {
  if (f.model && f.endpoint) throw new UsageError('give either --model DIR (local engine) or --endpoint URL (a server), not both');
  if (!f.model && !f.endpoint) throw new UsageError('what to evaluate: --model DIR (local engine) or --endpoint URL --served-model NAME');
  if (f.endpoint && !f.servedModel) throw new UsageError('--endpoint needs --served-model NAME (the model name the server expects)');
  if (f.model && f.servedModel) throw new UsageError('--served-model goes with --endpoint, not with --model');
  if (f.model && f.apiKey) throw new UsageError('--api-key goes with --endpoint, not with --model');
  if (f.endpoint && f.threads !== undefined) throw new UsageError('--threads goes with --model (the local engine), not with --endpoint');
  const threads = threadsOption(f.threads);
  if (f.endpoint && f.backend !== undefined) throw new UsageError('--backend goes with --model (the local engine), not with --endpoint');
  if (f.suite && f.data) throw new UsageError('give either --suite NAME or --data FILE..., not both');
  if (!f.suite && !f.data) throw new UsageError('what to evaluate on: --suite track1|track2 or --data FILE...');
  if (f.dataRoot && !f.suite) throw new UsageError('--data-root goes with --suite (give --data files by their own path)');
  if (!f.out) throw new UsageError('--out DIR is required (results and the resumable generations.jsonl go there)');
  let backend: 'cpu' | 'cuda' | undefined;
  if (f.model) {
    if (!existsSync(f.model) || !statSync(f.model).isDirectory()) throw new UsageError(`--model: not a directory: ${f.model}`);
    backend = backendOption(f.backend);
  }
  let suite: SuiteName | null = null;
  let benchmarks: BenchmarkPlan[];
  let defaults = { samples: 1, temperature: 0, topP: 1, maxNewTokens: 2048 };
  if (f.suite) {
    if (!isSuiteName(f.suite)) throw new UsageError(`--suite: unknown suite '${f.suite}' (known: ${Object.keys(suites).join(', ')})`);
    const def = suites[f.suite];
    suite = def.name;
    defaults = def.defaults;
    const root = path.resolve(f.dataRoot ?? defaultDataRoot());
    if (!existsSync(root)) throw new UsageError(`benchmark data folder not found: ${root} (give --data-root DIR or set CLIPO_DATA_ROOT)`);
    benchmarks = def.benchmarks.map((b) => ({ key: b.key, display: b.display, file: path.join(root, b.file) }));
    const missing = benchmarks.filter((b) => !existsSync(b.file));
    if (missing.length) throw new UsageError(`--suite ${f.suite}: missing data file(s) under ${root}: ${missing.map((b) => path.relative(root, b.file)).join(', ')}`);
  } else {
    const used = new Set<string>();
    benchmarks = f.data!.map((file) => {
      if (!existsSync(file) || !statSync(file).isFile()) throw new UsageError(`--data: file not found: ${file}`);
      if (!/\.(parquet|jsonl|ndjson|json)$/i.test(file)) throw new UsageError(`--data: expected a .parquet, .jsonl or .json file, got ${file}`);
      const base = datasetName(file);
      let key = base;
      for (let i = 2; used.has(key); i++) key = `${base}_${i}`;
      used.add(key);
      return { key, display: key, file: path.resolve(file) };
    });
  }
  const num = (name: string, raw: string | undefined, fallback: number, o: { integer?: boolean; min?: number; max?: number }) =>
    raw === undefined ? fallback : parseNumberOption(name, raw, o);
  const samples = num('--samples', f.samples, defaults.samples, { integer: true, min: 1, max: 1024 });
  const temperature = num('--temperature', f.temperature, defaults.temperature, { min: 0, max: 5 });
  const topP = num('--top-p', f.topP, defaults.topP, { min: 0, max: 1 });
  if (topP === 0) throw new UsageError('--top-p: must be greater than 0 (1 = no nucleus truncation)');
  const maxNewTokens = num('--max-new-tokens', f.maxNewTokens, defaults.maxNewTokens, { integer: true, min: 1, max: 1_000_000 });
  const limit = f.limit === undefined ? undefined : parseNumberOption('--limit', f.limit, { integer: true, min: 1 });
  const concurrency = num('--concurrency', f.concurrency, f.model ? 8 : 16, { integer: true, min: 1, max: 4096 });
  const seed = num('--seed', f.seed, 0, { integer: true, min: 0, max: 2 ** 31 - 1 });
  const timeoutMs = 1000 * num('--timeout', f.timeout, 600, { min: 1, max: 86400 });
  const retries = num('--retries', f.retries, 6, { integer: true, min: 0, max: 100 });
  const verifyThreads = f.verifyThreads === undefined ? undefined : num('--verify-threads', f.verifyThreads, 1, { integer: true, min: 1, max: 256 });
  const verifyBoxes = f.verifyBoxes ?? 'last';
  if (verifyBoxes !== 'last' && verifyBoxes !== 'all') throw new UsageError(`--verify-boxes: expected 'last' or 'all', got '${verifyBoxes}'`);
  const verifyTimeoutMs = 1000 * num('--verify-timeout', f.verifyTimeout, 5, { min: 0.01, max: 3600 });
  if (f.timeout !== undefined && f.model) throw new UsageError('--timeout goes with --endpoint, not with --model');
  if (f.retries !== undefined && f.model) throw new UsageError('--retries goes with --endpoint, not with --model');
  if (f.endpoint) {
    try {
      const u = new URL(f.endpoint);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error();
    } catch {
      throw new UsageError(`--endpoint: expected an http(s) URL such as http://127.0.0.1:8000/v1, got '${f.endpoint}'`);
    }
  }
  if (temperature === 0 && samples > 1) {
    process.stderr.write(chalk.yellow(`clipo eval: warning: --samples ${samples} with greedy decoding (temperature 0) repeats the same answer\n`));
  }
  return { model: f.model, endpoint: f.endpoint, servedModel: f.servedModel, suite, benchmarks, samples, temperature, topP, maxNewTokens, limit, concurrency, threads, backend, seed, timeoutMs, retries, verifyThreads, verifyTimeoutMs, verifyBoxes, out: f.out };
}
