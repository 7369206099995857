#!/usr/bin/env node
// Renders the measured-figures tables of README.md and docs/kernels.md from one `clipo bench --json` document, so
// every published figure comes from one run whose machine and load are recorded with it.
//
//   node bin/clipo bench kernels verify train engine --compare torch --json --out docs/bench-results.json
//   node scripts/bench-tables.mjs docs/bench-results.json            # print the tables
//   node scripts/bench-tables.mjs docs/bench-results.json --write    # replace them between the markers
//
// A row that carries a bench error (a fraction of a limit above 1, a failed value check) is never published: its
// cell says "withheld (bench error)".
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const [file, ...flags] = process.argv.slice(2);
if (!file) {
  console.error('usage: node scripts/bench-tables.mjs BENCH.json [--write]');
  process.exit(2);
}
const doc = JSON.parse(readFileSync(file, 'utf8'));
const report = (name) => doc.reports.find((r) => r.suite === name);
const fmt = (x, d = 3) => (x === null || x === undefined ? '–' : Number(x.toPrecision(d)).toString());
const pct = (x) => (x === null || x === undefined ? 'withheld (bench error)' : `${(100 * x).toFixed(0)}%`);
const times = (x) => (x === null || x === undefined ? '–' : `${fmt(x, 3)}×`);
const threadsLabel = (t) => (t === 1 ? '1 thread' : `${t} threads`);
const loadOf = (r) => (r?.load ? `${r.load.before[0]} → ${r.load.after[0]}` : '?');

function machineLine() {
  const m = doc.machine;
  // a suite re-run alone later (`rerun`: when and why) says so beside its load
  const suites = doc.reports.map((r) => `${r.suite} ${loadOf(r)}${r.rerun ? ` (re-run alone at ${r.rerun.date.slice(11, 16)} UTC: ${r.rerun.reason})` : ''}`).join(', ');
  const peer = doc.peer && !doc.peer.unavailable ? `; PyTorch ${doc.peer.torch} (MKL ${doc.peer.mkl ? 'on' : 'off'})` : '';
  return `Measured ${m.date.slice(0, 16).replace('T', ' ')} UTC on ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.node}${peer}; ` +
    `1-minute load average during each suite (before → after): ${suites}.`;
}

// ---- contrastive: one row per (case, threads)
function contrastiveRows() {
  const r = report('contrastive');
  if (!r) return [];
  const out = [];
  const keys = [...new Set(r.rows.filter((x) => x.impl).map((x) => `${x.case}|${x.threads}`))];
  for (const k of keys) {
    const [c, t] = k.split('|');
    const rows = r.rows.filter((x) => x.case === c && String(x.threads) === t);
    const by = (impl) => rows.find((x) => x.impl === impl);
    const fused = by('clipo (fused)'), pool = by('clipo pooling pass');
    out.push({
      case: c, threads: Number(t), ms: fused.ms, clock: fused.clock, ofRead: fused.benchError ? null : fused.ofRead,
      poolOfRead: pool?.benchError ? null : pool?.ofRead, readGBs: fused.readGBs,
      careful: by('torch careful')?.vsClipo, official: by('torch official')?.vsClipo, unfused: by('clipo unfused')?.vsClipo,
    });
  }
  return out;
}

function contrastiveTable() {
  const rows = contrastiveRows();
  if (!rows.length) return '';
  const lines = [
    '| case (fp32, ragged mask, fwd + head gradient) | threads (clock) | clipo ms | of read bandwidth | pooling pass of read bandwidth | torch careful ÷ clipo | torch paper code ÷ clipo | unfused ÷ clipo |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const x of rows)
    lines.push(`| ${x.case} | ${x.threads} (${x.clock}) | ${fmt(x.ms)} | ${pct(x.ofRead)} of ${fmt(x.readGBs)} GB/s | ${pct(x.poolOfRead)} | ${times(x.careful)} | ${times(x.official)} | ${times(x.unfused)} |`);
  return lines.join('\n');
}

function surrogateTable() {
  const r = report('surrogate');
  if (!r) return '';
  const rows = r.rows.filter((x) => x.backend === 'cpu');
  const lines = [
    '| config | threads (clock) | clipo ms | fraction of the limit | verl PyTorch ÷ clipo | careful PyTorch ÷ clipo | unfused ÷ clipo |',
    '| --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const x of rows)
    lines.push(`| ${x.config} | ${x.threads} (${x.clock}) | ${fmt(x.ms)} | ${x.benchError ? 'withheld (bench error)' : fmt(x.fractionOfLimit, 2)} of ${fmt(x.limitGBs)} GB/s | ${times(x.vsTorchVerl)} | ${times(x.vsTorchCareful)} | ${times(x.vsUnfused)} |`);
  return lines.join('\n');
}

function engineTable() {
  const r = report('engine');
  if (!r) return '';
  const peer = r.rows.some((x) => x.impl === 'transformers');
  const head = ['measure', 'model', 'threads', 'clipo', 'fraction of the FMA peak', ...(peer ? ['transformers', 'transformers ÷ clipo'] : [])];
  const lines = [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`];
  const frac = (x) => (x.peakFraction === null && x.benchError ? 'withheld (bench error)' : fmt(x.peakFraction, 2));
  for (const x of r.rows.filter((y) => y.threads !== null && y.impl !== 'transformers')) {
    const cells = [x.measure, x.model, x.threads, `${fmt(x.value)} ${x.unit}`, frac(x)];
    if (peer) {
      const t = r.rows.find((y) => y.impl === 'transformers' && y.measure === x.measure && y.model === x.model && y.threads === x.threads);
      cells.push(t ? `${fmt(t.value)} ${t.unit}` : '–', t ? (t.benchError ? 'withheld (bench error)' : times(t.vsClipo)) : '–');
    }
    lines.push(`| ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

/** clipo against transformers on the largest engine model of the run, one line per thread count. */
function enginePeerLines() {
  const e = report('engine');
  const peer = e ? e.rows.filter((x) => x.impl === 'transformers') : [];
  if (!peer.length) return [];
  const model = peer.at(-1).model;
  const out = [];
  for (const t of [...new Set(peer.map((x) => x.threads))]) {
    const of = (prefix) => peer.find((x) => x.model === model && x.threads === t && x.measure.startsWith(prefix));
    const say = (x) => (!x ? '–' : x.benchError ? 'withheld (bench error)' : times(x.vsClipo));
    out.push(`| engine vs PyTorch + transformers ${doc.peer?.transformers ?? ''}, ${model}-parameter Qwen2, fp32, ${threadsLabel(t)} (values checked first) | transformers takes ${say(of('score'))} clipo's time scoring, ${say(of('forward+backward'))} forward+backward+AdamW, ${say(of('sampling'))} sampling | – (above 1×: clipo faster) |`);
  }
  return out;
}

function readmeTable() {
  const lines = ['| what | figure (one thread, on the thread\'s CPU clock) | target |', '| --- | --- | --- |'];
  for (const x of contrastiveRows().filter((y) => y.threads === 1)) {
    const peers = [x.careful !== undefined ? `careful PyTorch (pooling by one bmm) takes ${times(x.careful)} clipo's time` : null,
      x.official !== undefined ? `the paper's PyTorch code ${times(x.official)}` : null].filter(Boolean).join(', ');
    lines.push(`| contrastive kernel, ${x.case}, fp32 ragged, fwd + head gradient | ${fmt(x.ms)} ms; pooling pass at ${pct(x.poolOfRead)} of the read bandwidth probed in the same rounds${peers ? `; ${peers}` : ''} | pooling ≥ 90%; ahead of careful PyTorch |`);
  }
  const s = report('surrogate');
  if (s) {
    const one = s.rows.filter((x) => x.backend === 'cpu' && x.threads === 1);
    const grpo = one.find((x) => x.config.startsWith('GRPO'));
    if (grpo) {
      const others = one.filter((x) => x !== grpo).map((x) => `${x.config.split(' ')[0]} ${times(x.vsTorchVerl)}`).join(', ');
      lines.push(`| surrogate kernel, B=${grpo.B} T=${grpo.T}, GRPO (token, dual clip, KL) | ${fmt(grpo.ms)} ms: ${grpo.benchError ? 'withheld (bench error)' : fmt(grpo.fractionOfLimit, 2)} of the memory limit probed in the same rounds; verl's PyTorch code takes ${times(grpo.vsTorchVerl)} clipo's time, careful PyTorch ${times(grpo.vsTorchCareful)} (verl: ${others}) | ≥ 50% of the limit |`);
    }
  }
  const e = report('engine');
  if (e) {
    const fb = e.rows.filter((x) => x.measure === 'forward+backward+AdamW' && x.model === '~100M' && x.impl !== 'transformers');
    for (const x of fb) lines.push(`| engine, ~100M-parameter Qwen2, forward+backward, ${threadsLabel(x.threads)} | ${x.peakFraction === null ? 'withheld (bench error)' : pct(x.peakFraction)} of the fp32 FMA peak probed in the same rounds | ≥ 30% |`);
    lines.push(...enginePeerLines());
  }
  const v = report('verify');
  if (v) {
    const rate = (prefix) => v.rows.find((x) => x.set.startsWith(prefix) && x.set.endsWith('all of the above'))?.['verify/s'];
    lines.push(`| verifier, one core (wall clock; load ${loadOf(v)}) | ${fmt(rate('GSM8K'))}/s GSM8K-style, ${fmt(rate('MATH'))}/s MATH-style | ≥ 5,000/s, ≥ 200/s |`);
  }
  const t = report('train');
  const one = t ? t.rows.filter((x) => x.threads === 1 || x.threads === undefined) : [];
  if (one.length) {
    const worst = Math.max(...one.map((x) => x.clipo_added_pct));
    lines.push(`| CLIPO's cost in an RL step (wall clock, one-thread engine; load ${loadOf(t)}) | at most ${fmt(worst, 2)}% of a base step (its own phase + pooling in the scoring pass), over ${[...new Set(one.map((x) => x.preset))].join('/')}; wall-clock medians under the load shown, so the machine's noise is in it | ≤ 3% |`);
  }
  return lines.join('\n');
}

const sections = {
  readme: () => `${readmeTable()}\n\n${machineLine()}`,
  contrastive: () => `${contrastiveTable()}\n\n${machineLine()}`,
  surrogate: () => `${surrogateTable()}\n\n${machineLine()}`,
  engine: () => `${engineTable()}\n\n${machineLine()}`,
};

function replaceBetween(text, name, body) {
  const begin = `<!-- bench-table:${name} -->`, end = `<!-- /bench-table:${name} -->`;
  const i = text.indexOf(begin), j = text.indexOf(end);
  if (i < 0 || j < i) return null;
  return `${text.slice(0, i + begin.length)}\n${body}\n${text.slice(j)}`;
}

if (flags.includes('--write') && doc.options?.quick) {
  console.error(`${file} comes from a --quick run (a smoke test, not a measurement): not writing it into the docs; printing the tables`);
  process.exitCode = 1;
}
if (flags.includes('--write') && !doc.options?.quick) {
  for (const rel of ['README.md', 'docs/kernels.md', 'docs/engine.md']) {
    const p = path.join(root, rel);
    let text = readFileSync(p, 'utf8');
    let changed = false;
    for (const [name, render] of Object.entries(sections)) {
      if (!text.includes(`<!-- bench-table:${name} -->`)) continue;
      const body = render();
      if (!body.trim().startsWith('|')) continue; // that suite is not in this run: leave the published table
      text = replaceBetween(text, name, body) ?? text;
      changed = true;
    }
    if (changed) {
      writeFileSync(`${p}.tmp`, text);
      renameSync(`${p}.tmp`, p);
      console.log(`updated ${rel}`);
    }
  }
} else {
  for (const [name, render] of Object.entries(sections)) console.log(`== ${name} ==\n${render()}\n`);
}
if (doc.errors?.length) {
  console.error(`the run reported ${doc.errors.length} bench error(s); those figures are withheld:\n  ${doc.errors.join('\n  ')}`);
}
