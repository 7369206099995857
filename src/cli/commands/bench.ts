// `clipo bench [names...]`: runs benchmark suites (by name or group) and prints tables, or JSON with --json.
import chalk from 'chalk';
import type { Command } from 'commander';
import { machineInfo } from '../../bench/machine.js';
import { benchSuites, defaultBenchGroup } from '../../bench/suites.js';
import { TorchPeer } from '../../bench/peer.js';
import type { BenchReport } from '../../bench/types.js';
import { writeJsonAtomic } from '../../util/atomic.js';
import { UsageError, parseNumberOption } from '../errors.js';
import { renderTable } from '../table.js';

interface BenchOptions {
  json?: boolean;
  quick?: boolean;
  repeats?: string;
  backend: string;
  out?: string;
  list?: boolean;
  compare?: string;
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
    .action(async (names: string[], opts: BenchOptions) => {
      if (opts.list) {
        for (const s of benchSuites) console.log(`${chalk.bold(s.name.padEnd(14))} [${s.groups.join(', ')}]  ${s.description}`);
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
      const log = (m: string) => process.stderr.write(chalk.dim(m) + '\n');
      const peerStart: { p: Promise<TorchPeer | { unavailable: string }> | null } = { p: null };
      const ctx = {
        quick: !!opts.quick, repeats, backend: opts.backend, log,
        peer: opts.compare ? () => (peerStart.p ??= TorchPeer.start(log)) : null,
      };
      const reports: BenchReport[] = [];
      const machine = machineInfo();
      try {
        for (const suite of selected) {
          ctx.log(`bench ${suite.name}: ${suite.description}`);
          const report = await suite.run(ctx);
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
        options: { quick: ctx.quick, repeats, backend: opts.backend, compare: opts.compare ?? null },
        peer: started instanceof TorchPeer ? started.info : started ? { unavailable: started.unavailable } : null,
        errors: reports.flatMap((r) => (r.errors ?? []).map((e) => `${r.suite}: ${e}`)),
        reports,
      };
      if (opts.json) console.log(JSON.stringify(doc, null, 2));
      if (opts.out) writeJsonAtomic(opts.out, doc);
    });
}
