// `clipo bench [names...]`: runs benchmark suites (by name or group) and prints tables, or JSON with --json.
import chalk from 'chalk';
import type { Command } from 'commander';
import { machineInfo } from '../../bench/machine.js';
import { benchSuites, defaultBenchGroup } from '../../bench/suites.js';
import { TorchPeer } from '../../bench/peer.js';
import { parseShapes, parseTrainBatch } from '../../bench/shapes.js';
import type { BenchReport } from '../../bench/types.js';
import { writeJsonAtomic } from '../../util/atomic.js';
import { UsageError, parseNumberOption, threadsOption } from '../errors.js';
import { renderTable } from '../table.js';

interface BenchOptions {
  json?: boolean;
  quick?: boolean;
  repeats?: string;
  backend: string;
  out?: string;
  list?: boolean;
  compare?: string;
  model?: string;
  endpoint?: string;
  servedModel?: string;
  apiKey?: string;
  concurrency: string;
  requests: string;
  maxTokens: string;
  temperature: string;
  promptWords: string;
  threads?: string;
  maxBatch: string;
  shape?: string;
  batch?: string;
}

/** `clipo bench serve`: its own target (a model directory served here, or --endpoint) and load shape. */
async function runServeBench(opts: BenchOptions, log: (m: string) => void): Promise<BenchReport> {
  const { benchServe, serveReport } = await import('../../bench/serve.js');
  if (!!opts.model === !!opts.endpoint) throw new UsageError('bench serve: give --model DIR (served here) or --endpoint URL --served-model NAME');
  if (opts.endpoint && !opts.servedModel) throw new UsageError('bench serve: --endpoint needs --served-model NAME');
  const concurrency = parseNumberOption('--concurrency', opts.concurrency, { integer: true, min: 1, max: 1024 });
  const requests = parseNumberOption('--requests', opts.requests, { integer: true, min: 1, max: 1_000_000 });
  const maxTokens = parseNumberOption('--max-tokens', opts.maxTokens, { integer: true, min: 1, max: 1 << 20 });
  const temperature = parseNumberOption('--temperature', opts.temperature, { min: 0, max: 2 });
  const promptWords = parseNumberOption('--prompt-words', opts.promptWords, { integer: true, min: 1, max: 100_000 });
  const threads = threadsOption(opts.threads);
  const maxBatchSequences = parseNumberOption('--max-batch', opts.maxBatch, { integer: true, min: 1, max: 4096 });
  const shape = { concurrency, requests, maxTokens, temperature, promptWords, apiKey: opts.apiKey, log };
  if (opts.endpoint) {
    const o = { ...shape, url: opts.endpoint.replace(/\/+$/, ''), model: opts.servedModel! };
    return serveReport(o, await benchServe(o), opts.endpoint);
  }
  const { WorkerBackend } = await import('../../serve/backend.js');
  const { startServer } = await import('../../serve/server.js');
  log(`bench serve: loading ${opts.model}`);
  const backend = await WorkerBackend.start({ modelDir: opts.model!, threads, maxBatchSequences });
  const s = await startServer(backend, { port: 0, maxBatchSequences });
  try {
    const o = { ...shape, url: s.url, model: backend.info.name, apiKey: undefined };
    return serveReport(o, await benchServe(o), `clipo serve ${backend.info.name} (max batch ${maxBatchSequences})`);
  } finally {
    await s.close();
  }
}

export function registerBench(program: Command): void {
  program
    .command('bench')
    .description(`measure the kernels, engine, verifier and training step against the machine's measured limits; default: ${defaultBenchGroup}`)
    .argument('[names...]', 'suites or groups to run (see --list)')
    .option('--json', 'print one JSON document (machine, reports) instead of tables')
    .option('--quick', 'small sizes and few repeats (a smoke test, not a measurement)')
    .option('--repeats <n>', 'timed repetitions per measurement; the median is reported')
    .option('--backend <name>', 'cpu, cuda or auto', 'auto')
    .option('--out <file>', 'also write the JSON document to this file (atomically)')
    .option('--compare <peer>', "also run the same math in the peer, interleaved in the same run: 'torch' (needs python3 with torch; transformers for the engine)")
    .option('--list', 'list suites and groups, then exit')
    .option('--model <dir>', 'serve: the model directory to serve and measure')
    .option('--endpoint <url>', 'serve: measure this OpenAI-compatible server instead (e.g. vLLM), base URL ending in /v1')
    .option('--served-model <name>', 'serve: the model name --endpoint expects')
    .option('--api-key <key>', 'serve: bearer key for --endpoint')
    .option('--concurrency <n>', 'serve: clients sending requests at once', '8')
    .option('--requests <n>', 'serve: requests in all', '64')
    .option('--max-tokens <n>', 'serve: max_tokens of each request', '64')
    .option('--temperature <t>', 'serve: temperature of each request (0 = greedy)', '1')
    .option('--prompt-words <n>', 'serve: words per prompt', '32')
    .option('--threads <n>', 'CPU threads of the all-thread rows (default: all cores; 1: one-thread rows only); serve: CPU threads of the engine for --model (default: all cores)')
    .option('--max-batch <n>', 'serve: the server\'s running-batch limit for --model', '32')
    .option('--shape <names>', 'train and engine with --backend cuda: model shapes, comma-separated: qwen2.5-0.5b, qwen2.5-1.5b, qwen2.5-3b, qwen2.5-7b (or 0.5b, 1.5b, 3b, 7b; default: train 1.5b, engine 0.5b,1.5b); train: a shape whose training the memory plan says does not fit gets the plan\'s computed peak memory only')
    .option('--batch <BxT>', 'train --backend cuda: the training micro-batch, sequences x tokens (default 4x1024)')
    .action(async (names: string[], opts: BenchOptions) => {
      if (opts.list) {
        for (const s of benchSuites) console.log(`${chalk.bold(s.name.padEnd(14))} [${s.groups.join(', ')}]  ${s.description}`);
        console.log(`${chalk.bold('serve'.padEnd(14))} []  requests/s, tokens/s, p50/p99 latency and mean batch size of clipo serve (--model DIR) or any OpenAI-compatible server (--endpoint URL)`);
        return;
      }
      if (names.includes('serve')) {
        if (names.length > 1) throw new UsageError('bench serve runs on its own (no other suites with it)');
        const log = (m: string) => process.stderr.write(chalk.dim(m) + '\n');
        const report = await runServeBench(opts, log);
        const doc = { machine: machineInfo(), options: { concurrency: opts.concurrency, requests: opts.requests, maxTokens: opts.maxTokens, temperature: opts.temperature, promptWords: opts.promptWords }, reports: [report] };
        if (opts.json) console.log(JSON.stringify(doc, null, 2));
        else {
          console.log(chalk.bold.cyan(`\n== ${report.suite} ==`));
          console.log(renderTable(report.rows));
          for (const n of report.notes ?? []) console.log(n);
        }
        if (opts.out) writeJsonAtomic(opts.out, doc);
        return;
      }
      if (!['cpu', 'cuda', 'auto'].includes(opts.backend)) throw new UsageError(`--backend: expected cpu, cuda or auto, got '${opts.backend}'`);
      const wanted = names.length ? names : [defaultBenchGroup];
      const selected = benchSuites.filter((s) => wanted.some((w) => w === s.name || s.groups.includes(w)));
      const unknown = wanted.filter((w) => !benchSuites.some((s) => s.name === w || s.groups.includes(w)));
      if (unknown.length) {
        const known = [...new Set(benchSuites.flatMap((s) => [s.name, ...s.groups]))].join(', ');
        throw new UsageError(`unknown benchmark '${unknown.join("', '")}' (known: ${known})`);
      }
      const repeats = opts.repeats ? parseNumberOption('--repeats', opts.repeats, { integer: true, min: 1, max: 10000 }) : opts.quick ? 3 : 9;
      if (opts.compare !== undefined && opts.compare !== 'torch') throw new UsageError(`--compare: expected torch, got '${opts.compare}'`);
      const threads = threadsOption(opts.threads);
      // the GPU training bench's own options: refused where they would be ignored
      const trainCuda = opts.backend === 'cuda' && selected.some((s) => s.name === 'train');
      const engineCuda = opts.backend === 'cuda' && selected.some((s) => s.name === 'engine');
      if (opts.shape !== undefined && !trainCuda && !engineCuda) throw new UsageError("--shape applies to 'bench train --backend cuda' and 'bench engine --backend cuda' only");
      if (opts.batch !== undefined && !trainCuda) throw new UsageError("--batch applies to 'bench train --backend cuda' only");
      let shapes: string[] | undefined, trainBatch: { batch: number; seqLen: number } | undefined;
      try {
        if (opts.shape !== undefined) shapes = parseShapes(opts.shape);
        if (opts.batch !== undefined) trainBatch = parseTrainBatch(opts.batch);
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
      const log = (m: string) => process.stderr.write(chalk.dim(m) + '\n');
      const peerStart: { p: Promise<TorchPeer | { unavailable: string }> | null } = { p: null };
      const ctx = {
        quick: !!opts.quick, repeats, backend: opts.backend, log, threads,
        ...(shapes ? { shapes } : {}), ...(trainBatch ? { trainBatch } : {}),
        peer: opts.compare ? () => (peerStart.p ??= TorchPeer.start(log)) : null,
      };
      const reports: BenchReport[] = [];
      const machine = machineInfo();
      try {
        for (const suite of selected) {
          ctx.log(`bench ${suite.name}: ${suite.description}`);
          const t0 = performance.now();
          const report = await suite.run(ctx);
          report.seconds = Math.round((performance.now() - t0) / 100) / 10; // how long a re-run takes
          reports.push(report);
          if (!opts.json) {
            console.log(chalk.bold.cyan(`\n== ${report.suite} ==`));
            console.log(renderTable(report.rows));
            for (const n of report.notes ?? []) console.log(n.startsWith('BENCH ERROR') ? chalk.red(n) : n);
          }
        }
      } finally {
        const p = peerStart.p ? await peerStart.p : null;
        if (p instanceof TorchPeer) await p.close();
      }
      const started = peerStart.p ? await peerStart.p : null;
      const doc = {
        machine,
        options: { quick: ctx.quick, repeats, backend: opts.backend, compare: opts.compare ?? null, threads: threads ?? null, ...(trainCuda || engineCuda ? { shape: shapes ?? null } : {}), ...(trainCuda ? { batch: trainBatch ?? null } : {}) },
        peer: started instanceof TorchPeer ? started.info : started ? { unavailable: started.unavailable } : null,
        errors: reports.flatMap((r) => (r.errors ?? []).map((e) => `${r.suite}: ${e}`)),
        reports,
      };
      if (opts.json) console.log(JSON.stringify(doc, null, 2));
      if (opts.out) writeJsonAtomic(opts.out, doc);
      // a suite that could not run at all: its reason is in the document (and the tables' notes); exit 1 saying why
      const unavailable = reports.filter((r) => r.unavailable).map((r) => r.unavailable!);
      if (unavailable.length) throw new UsageError(unavailable.join('; '), 1);
    });
}
