// Turns what scripts/gpu/run-all.sh collected in its work folder into summary.json: the device, each step's status
// and time, and the headline figures side by side with the targets of the GPU check (docs/gpu.md):
//   - each kernel >= 80% of the device-to-device copy bandwidth measured in the same run (large sizes);
//   - >= 3x PyTorch the official way, and ahead of the careful way (bmm pooling / torch.compile);
//   - CUDA-vs-CPU tests with 0 failed and 0 skipped; compute-sanitizer with 0 errors;
//   - cuBLASLt bf16 GEMM against torch.matmul at the same shapes; a one-rank NCCL all-reduce.
// It also runs clipo's kernels (CPU, and CUDA where usable) on the small float64 cases the PyTorch scripts wrote
// (verl's surrogate code; the contrastive loss the official way) and records the largest differences.
// Missing inputs (a skipped or failed step) give nulls, never an exception: a dry run produces the same file.
// Usage: node scripts/gpu/merge-results.mjs WORK_DIR SUMMARY_JSON [--dry-run=0|1] [--overall=TEXT] [--elapsed=S]
import { existsSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [workArg, outArg, ...rest] = process.argv.slice(2);
if (!workArg || !outArg) {
  console.error('usage: node scripts/gpu/merge-results.mjs WORK_DIR SUMMARY_JSON [--dry-run=0|1] [--overall=TEXT] [--elapsed=S]');
  process.exit(2);
}
const flags = Object.fromEntries(rest.map((a) => /^--([^=]+)=(.*)$/.exec(a)).filter(Boolean).map((m) => [m[1], m[2]]));
const work = path.resolve(workArg);
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
const readText = (f) => (existsSync(path.join(work, f)) ? readFileSync(path.join(work, f), 'utf8') : null);
const readJson = (f) => {
  const t = readText(f);
  if (t === null) return null;
  try {
    return JSON.parse(t);
  } catch (e) {
    return { error: `${f}: ${e.message}` };
  }
};
const round = (x, d = 3) => (typeof x === 'number' && Number.isFinite(x) ? Math.round(x * 10 ** d) / 10 ** d : null);
const ratio = (a, b) => (a > 0 && b > 0 ? round(a / b) : null);

const steps = (readText('steps.tsv') ?? '').split('\n').filter(Boolean).map((l) => {
  const [name, status, rc, seconds, note] = l.split('\t');
  return { name, status, rc: rc === '' ? null : Number(rc), seconds: Number(seconds) || 0, note: note || undefined };
});
const env = readJson('env.json');
const addon = readJson('addon-info.json');
const device = addon?.cuda?.devices?.[0]?.name ?? env?.device?.name ?? null;

// ---- tests and sanitizer ----
const jest = readJson('jest-kernels.json');
let tests = null;
if (jest && !jest.error) {
  const titles = (status) => (jest.testResults ?? []).flatMap((f) => (f.assertionResults ?? []).filter((a) => a.status === status).map((a) => a.fullName));
  tests = { passed: jest.numPassedTests, failed: jest.numFailedTests, skipped: jest.numPendingTests, failedTitles: titles('failed'), skippedTitles: titles('pending') };
} else if (jest) tests = jest;
else {
  // no JSON (the step was killed before jest wrote it): the counts of the files that finished, from the log
  const log = readText('jest_kernels.log');
  const m = log?.match(/^Tests:\s+(.*)$/m);
  if (m) {
    const count = (w) => Number((m[1].match(new RegExp(`(\\d+) ${w}`)) ?? [0, 0])[1]);
    tests = { passed: count('passed'), failed: count('failed'), skipped: count('skipped'), fromLog: true };
  } else if (log) tests = { error: 'jest did not finish', passedFiles: (log.match(/^PASS .*/gm) ?? []), failedFiles: (log.match(/^FAIL .*/gm) ?? []) };
}
const sanitizer = {};
for (const tool of ['memcheck', 'racecheck', 'initcheck']) {
  const txt = readText(`sanitizer_${tool}.log`);
  if (txt !== null) sanitizer[tool] = (txt.match(/ERROR SUMMARY: .*/g) ?? [txt.trim().split('\n').pop() ?? '']).pop();
}

// ---- clipo bench documents ----
const bench = {};
for (const f of readdirSync(work).filter((f) => /^bench-.*\.json$/.test(f))) {
  const doc = readJson(f);
  bench[f.slice(6, -5)] = doc?.reports?.[0] ?? doc;
}
const torchS = readJson('torch_surrogate.json');
const torchC = readJson('torch_contrastive.json');
const torchG = readJson('torch_gemm.json');

// The bandwidth fraction under whichever name a bench row carries it (the contrastive rows say ofBandwidth, the
// surrogate rows fractionOfLimit).
const fractionOf = (row) => row.fractionOfCopyBandwidth ?? row.ofBandwidth ?? row.fractionOfLimit ?? null;

const surrogate = [];
for (const row of bench.surrogate?.rows ?? []) {
  if (row.backend !== 'cuda') continue;
  const t = torchS?.timings?.find((x) => x.config === row.config && x.B === row.B && x.T === row.T);
  const careful = t ? Math.min(...[t.ms, t.compiledMs].filter((v) => v > 0)) : null;
  surrogate.push({
    config: row.config, B: row.B, T: row.T, ms: row.ms, GBs: row.GBs, fractionOfCopyBandwidth: fractionOf(row), sets: row.sets ?? null,
    torchOfficialMs: t?.ms ?? null, torchCompiledMs: t?.compiledMs ?? null,
    speedupOverOfficial: t ? ratio(t.ms, row.ms) : null, speedupOverCareful: careful ? ratio(careful, row.ms) : null,
  });
}

const contrastive = [];
const torchRows = torchC?.rows ?? [];
for (const row of bench.contrastive?.rows ?? []) {
  if (row.backend !== 'cuda') continue;
  const t = torchRows.find((x) => ['B', 'L', 'H', 'D', 'dtype'].every((k) => x[k] === row[k]));
  const careful = t ? Math.min(...[t.carefulMs, t.compiledMs].filter((v) => v > 0)) : null;
  contrastive.push({
    dtype: row.dtype, B: row.B, L: row.L, H: row.H, D: row.D, ms: row.ms, poolMs: row.poolMs ?? null, MB: row.MB, GBs: row.GBs,
    fractionOfCopyBandwidth: fractionOf(row), stepMs: row.B > 0 ? round((row.ms * 2048) / row.B, 2) : null,
    torchOfficialMs: t?.officialMs ?? null, torchCarefulMs: t?.carefulMs ?? null, torchCompiledMs: t?.compiledMs ?? null,
    speedupOverOfficial: t ? ratio(t.officialMs, row.ms) : null, speedupOverCareful: careful ? ratio(careful, row.ms) : null,
  });
}

const gemm = [];
for (const row of (bench.gpulibs?.rows ?? []).filter((r) => r.kind === 'gemm')) {
  const t = torchG?.rows?.find((x) => x.model === row.model && x.proj === row.proj && x.M === row.M && x.N === row.N && x.K === row.K);
  gemm.push({
    model: row.model, proj: row.proj, M: row.M, N: row.N, K: row.K, cublasLtMs: row.ms, cublasLtTFLOPs: row.TFLOPs, ok: row.ok,
    torchMs: t?.ms ?? null, torchTFLOPs: t?.TFLOPs ?? null, ofTorch: t ? ratio(t.ms, row.ms) : null,
  });
}
const allreduce = (bench.gpulibs?.rows ?? []).filter((r) => r.kind === 'allreduce');

// ---- clipo's kernels on the PyTorch scripts' float64 cases ----
const crossChecks = { surrogateVsVerl: null, contrastiveVsTorch: null };
let lib = null;
if (torchS?.check || torchC?.check) {
  try {
    const dist = path.resolve(root, process.env.CLIPO_DIST_DIR ?? 'dist');
    lib = await import(pathToFileURL(path.join(dist, 'src', 'index.js')).href);
  } catch (e) {
    crossChecks.error = `cannot load clipo: ${e.message}`;
  }
}
if (lib) {
  const backends = lib.availableBackends().cuda ? ['cpu', 'cuda'] : ['cpu'];
  const maxDiff = (a, b) => a.reduce((m, v, k) => Math.max(m, Math.abs(v - b[k])), 0);
  const maxAbs = (a) => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  if (torchS?.check) {
    const c = torchS.check;
    crossChecks.surrogateVsVerl = [];
    for (const r of c.results) {
      const cfg = r.config;
      for (const backend of backends) {
        try {
          const out = lib.surrogateLoss({
            logp: Float32Array.from(c.logp), oldLogp: Float32Array.from(c.oldLogp), refLogp: cfg.ref ? Float32Array.from(c.refLogp) : undefined,
            advantages: Float32Array.from(c.advantages), mask: Uint8Array.from(c.mask), batch: c.batch, length: c.length,
            mode: cfg.mode, clipLow: cfg.clipLow, clipHigh: cfg.clipHigh, dualClip: cfg.dualClip ?? undefined, agg: cfg.agg,
            klCoef: cfg.ref ? cfg.klCoef : undefined, backend,
          });
          crossChecks.surrogateVsVerl.push({ config: cfg.name, backend, lossAbsDiff: Math.abs(out.loss - r.loss), gradMaxAbsDiff: maxDiff(r.grad, out.gradLogp), gradMaxAbs: maxAbs(r.grad) });
        } catch (e) {
          crossChecks.surrogateVsVerl.push({ config: cfg.name, backend, error: e.message });
        }
      }
    }
  }
  if (torchC?.check) {
    const c = torchC.check;
    crossChecks.contrastiveVsTorch = [];
    for (const r of c.results) {
      for (const backend of backends) {
        try {
          const out = lib.contrastiveLoss({
            pooled: Float32Array.from(c.pooled), weight: Float32Array.from(c.weight), batch: c.batch, hiddenSize: c.hiddenSize, outSize: c.outSize,
            correct: Uint8Array.from(c.correct), group: Int32Array.from(c.group), lossType: r.lossType, level: 'group', distance: 'cosine',
            temperature: c.temperature, maskedLabel: 0, skipTrivial: true, seed: 1, backend,
          });
          crossChecks.contrastiveVsTorch.push({
            lossType: r.lossType, backend, lossAbsDiff: Math.abs(out.loss - r.loss), perSampleMaxAbsDiff: maxDiff(r.perSample, out.perSample),
            gradMaxAbsDiff: maxDiff(r.gradWeight, out.gradWeight), gradMaxAbs: maxAbs(r.gradWeight),
          });
        } catch (e) {
          crossChecks.contrastiveVsTorch.push({ lossType: r.lossType, backend, error: e.message });
        }
      }
    }
  }
}

// ---- targets ----
const large = (rows, big) => rows.filter(big);
const all = (rows, f) => (rows.length ? rows.every(f) : null);
const sLarge = large(surrogate, (r) => r.B * r.T >= 2048 * 4096);
const cLarge = large(contrastive, (r) => r.B * r.L >= 64 * 4096);
const trainRows = Array.isArray(bench.train?.rows) ? bench.train.rows : [];
// CLIPO's share of one RL step: its phase plus what pooling adds to the scoring pass (bench train's rows)
const shareOf = (prefix) => trainRows.find((r) => String(r.measure).startsWith(prefix))?.shareOfStep;
const clipoShare = typeof shareOf('RL step: CLIPO') === 'number' ? shareOf('RL step: CLIPO') + (shareOf('RL step: pooling') ?? 0) : null;
const targets = {
  testsAllPassedNoneSkipped: tests && !tests.error ? tests.failed === 0 && tests.skipped === 0 && tests.passed > 0 : null,
  // memcheck/initcheck end with "ERROR SUMMARY: 0 errors"; racecheck with "RACECHECK SUMMARY: 0 hazards displayed
  // (0 errors, 0 warnings)"
  sanitizerClean: Object.keys(sanitizer).length
    ? Object.values(sanitizer).every((s) => /ERROR SUMMARY: 0 errors|\(0 errors, \d+ warnings\)/.test(s))
    : null,
  surrogateBandwidth80AtLargeSizes: all(sLarge, (r) => r.fractionOfCopyBandwidth >= 0.8),
  contrastiveBandwidth80AtLargeSizes: all(cLarge, (r) => r.fractionOfCopyBandwidth >= 0.8),
  surrogate3xOfficial: all(surrogate.filter((r) => r.speedupOverOfficial !== null), (r) => r.speedupOverOfficial >= 3),
  contrastive3xOfficial: all(contrastive.filter((r) => r.speedupOverOfficial !== null), (r) => r.speedupOverOfficial >= 3),
  surrogateAheadOfCareful: all(surrogate.filter((r) => r.speedupOverCareful !== null), (r) => r.speedupOverCareful > 1),
  contrastiveAheadOfCareful: all(contrastive.filter((r) => r.speedupOverCareful !== null), (r) => r.speedupOverCareful > 1),
  gemmChecked: all(gemm, (r) => r.ok === true),
  // `clipo bench train --backend cuda --compare torch` (step bench_train, off by default)
  trainMfu40At1p5B: all(trainRows.filter((r) => r.impl === 'clipo' && String(r.measure).startsWith('train step') && String(r.model).includes('1.5B')), (r) => typeof r.mfu === 'number' && r.mfu >= 0.4),
  trainAheadOfTorch: all(trainRows.filter((r) => r.impl === 'transformers' && String(r.measure).startsWith('train step')), (r) => typeof r.vsClipo === 'number' && r.vsClipo > 1),
  clipoShareOfRlStepAtMost2pct: clipoShare === null ? null : clipoShare <= 0.02,
  allreduceExact: all(allreduce, (r) => r.ok === true),
};

const summary = {
  schema: 1,
  device,
  date: new Date().toISOString(),
  dryRun: flags['dry-run'] === '1',
  overall: flags.overall ?? null,
  elapsedSeconds: flags.elapsed ? Number(flags.elapsed) : null,
  steps,
  env: env ? { ...env, nvidiaSmi: (readText('env.log') ?? '').split('--- nvidia-smi\n')[1]?.split('\n---')[0]?.trim() ?? null } : null,
  addon: addon ? { build: addon.build, cuda: addon.cuda, gpulibs: addon.gpulibs } : null,
  copyGBs: { surrogate: bench.surrogate?.rows?.find((r) => r.backend === 'cuda')?.limitGBs ?? null },
  tests,
  sanitizer,
  targets,
  surrogate,
  contrastive,
  gemm,
  allreduce,
  // `clipo bench engine --backend cuda --compare torch` (step bench_engine, off by default): its rows as measured
  engine: bench.engine?.rows ?? null,
  // `clipo bench train --backend cuda --compare torch` (step bench_train, off by default): its rows as measured
  train: bench.train?.rows ?? null,
  crossChecks,
  notes: {
    bench: Object.fromEntries(Object.entries(bench).map(([k, v]) => [k, v?.notes ?? v?.error ?? null])),
    torch: { surrogate: torchS?.compileNotes ?? null, contrastive: torchC?.compileNotes ?? null, checksOk: { surrogate: torchS?.allChecksOk ?? null, contrastive: torchC?.allChecksOk ?? null, gemm: torchG?.allChecksOk ?? null } },
  },
};
const out = path.resolve(outArg);
writeFileSync(out + '.tmp', JSON.stringify(summary, null, 2) + '\n');
renameSync(out + '.tmp', out);
console.log(`merge: wrote ${out} (device ${device ?? 'none'})`);
for (const r of surrogate) console.log(`  surrogate ${r.config} B=${r.B}: ${r.ms} ms, ${r.fractionOfCopyBandwidth} of copy bw, ${r.speedupOverOfficial ?? '?'}x official, ${r.speedupOverCareful ?? '?'}x careful`);
for (const r of contrastive) console.log(`  contrastive ${r.dtype} B=${r.B} L=${r.L}: ${r.ms} ms, ${r.fractionOfCopyBandwidth} of copy bw, ${r.speedupOverOfficial ?? '?'}x official, ${r.speedupOverCareful ?? '?'}x careful`);
for (const r of gemm) console.log(`  gemm ${r.model} ${r.proj}: ${r.cublasLtTFLOPs} TFLOP/s (torch ${r.torchTFLOPs ?? '?'})`);
console.log(`  targets: ${JSON.stringify(targets)}`);
