// Merges what scripts/gpu/run-all.sh wrote into one document, $OUT/results/<device>.json, with the side-by-side
// against PyTorch eager and the targets of issue 3 (>= 80% of the device-to-device copy bandwidth; >= 2x PyTorch
// for the surrogate loss, >= 3x for the contrastive path). Copy that file to bench/results/ in the repository.
// It also runs clipo's surrogate kernel (CPU and CUDA) on the small float64 case torch_surrogate.py computed with
// verl's code, and records the largest difference.
// Usage: node scripts/gpu/merge-results.mjs OUT_DIR
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const outDir = path.resolve(process.argv[2] ?? 'gpu-out');
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
const readJson = (f) => {
  const p = path.join(outDir, f);
  if (!existsSync(p)) return null;
  try {
    return JSON.parse(readFileSync(p, 'utf8'));
  } catch (e) {
    return { error: `${f}: ${e.message}` };
  }
};
const readText = (f) => (existsSync(path.join(outDir, f)) ? readFileSync(path.join(outDir, f), 'utf8') : null);

const addon = readJson('addon-info.json');
const torchS = readJson('torch_surrogate.json');
const torchC = readJson('torch_contrastive.json');
const device = addon?.cuda?.devices?.[0]?.name ?? torchS?.device ?? 'unknown-gpu';
const slug = device.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');

const status = Object.fromEntries((readText('status.txt') ?? '').split('\n').filter(Boolean).map((l) => l.split('=')));
const jest = readJson('jest-kernels.json');
const sanitizer = {};
for (const f of readdirSync(outDir).filter((f) => /^sanitizer-.*\.log$/.test(f))) {
  const txt = readText(f);
  sanitizer[f.slice(10, -4)] = (txt.match(/ERROR SUMMARY: .*/) ?? [txt.trim().split('\n').pop()])[0];
}
const bench = {};
for (const f of readdirSync(outDir).filter((f) => /^bench-.*\.json$/.test(f))) {
  const doc = readJson(f);
  bench[f.slice(6, -5)] = doc?.reports ?? doc;
}

const ratio = (a, b) => (a > 0 && b > 0 ? Math.round((a / b) * 1000) / 1000 : null);
const comparisons = [];
// surrogate: rows and timings share config, B and T
for (const row of bench.surrogate?.[0]?.rows ?? []) {
  if (row.backend !== 'cuda') continue;
  const t = torchS?.timings?.find((x) => x.config === row.config && x.B === row.B && x.T === row.T);
  comparisons.push({
    kernel: 'surrogate', config: row.config, B: row.B, T: row.T, clipoMs: row.ms, torchEagerMs: t?.ms ?? null,
    speedupOverTorch: t ? ratio(t.ms, row.ms) : null, targetSpeedup: 2, GBs: row.GBs, fractionOfCopyBandwidth: row.fractionOfLimit,
    targetFraction: 0.8,
  });
}
// contrastive: match a clipo cuda row to a torch timing on every shape field both carry
const shapeKeys = ['config', 'B', 'L', 'T', 'H', 'D', 'dtype', 'batch', 'length', 'hidden', 'out'];
const torchRows = torchC?.timings ?? torchC?.rows ?? [];
for (const row of bench.contrastive?.[0]?.rows ?? []) {
  if (row.backend !== 'cuda') continue;
  const t = torchRows.find((x) => {
    const shared = shapeKeys.filter((k) => k in x && k in row);
    return shared.length > 0 && shared.every((k) => x[k] === row[k]);
  });
  comparisons.push({ kernel: 'contrastive', ...row, torchEagerMs: t?.ms ?? null, speedupOverTorch: t ? ratio(t.ms, row.ms) : null, targetSpeedup: 3, targetFraction: 0.8 });
}

// clipo's kernel on verl-code outputs (float64, PyTorch on the CPU)
let crossCheck = null;
if (torchS?.check) {
  crossCheck = [];
  const dist = path.resolve(root, process.env.CLIPO_DIST_DIR ?? 'dist');
  const lib = await import(pathToFileURL(path.join(dist, 'src', 'index.js')).href);
  const c = torchS.check;
  const backends = lib.availableBackends().cuda ? ['cpu', 'cuda'] : ['cpu'];
  for (const r of c.results) {
    const cfg = r.config;
    for (const backend of backends) {
      const out = lib.surrogateLoss({
        logp: Float32Array.from(c.logp), oldLogp: Float32Array.from(c.oldLogp), refLogp: cfg.ref ? Float32Array.from(c.refLogp) : undefined,
        advantages: Float32Array.from(c.advantages), mask: Uint8Array.from(c.mask), batch: c.batch, length: c.length,
        mode: cfg.mode, clipLow: cfg.clipLow, clipHigh: cfg.clipHigh, dualClip: cfg.dualClip ?? undefined, agg: cfg.agg,
        klCoef: cfg.ref ? cfg.klCoef : undefined, backend,
      });
      let gmax = 0, gdiff = 0;
      r.grad.forEach((g, k) => { gmax = Math.max(gmax, Math.abs(g)); gdiff = Math.max(gdiff, Math.abs(g - out.gradLogp[k])); });
      crossCheck.push({ config: cfg.name, backend, loss: out.loss, torchLoss: r.loss, lossAbsDiff: Math.abs(out.loss - r.loss), gradMaxAbsDiff: gdiff, gradMaxAbs: gmax });
    }
  }
}

const doc = {
  device, date: new Date().toISOString(), addon: addon?.build ?? null, cudaDevices: addon?.cuda ?? null,
  nvidiaSmi: readText('nvidia-smi.csv'), torch: torchS?.torch ?? null, status,
  tests: jest && !jest.error ? { passed: jest.numPassedTests, failed: jest.numFailedTests, skipped: jest.numPendingTests } : jest,
  sanitizer, comparisons, crossCheckAgainstVerlCode: crossCheck, bench,
  torchEager: { surrogate: torchS?.timings ?? null, contrastive: torchRows.length ? torchRows : torchC },
};
mkdirSync(path.join(outDir, 'results'), { recursive: true });
const file = path.join(outDir, 'results', `${slug}.json`);
writeFileSync(file, JSON.stringify(doc, null, 2) + '\n');
console.log(`merge: wrote ${file}`);
for (const c of comparisons) {
  console.log(`  ${c.kernel} ${c.config ?? ''} B=${c.B} T=${c.T ?? c.L ?? ''}: ${c.clipoMs ?? c.ms} ms, ` +
    `${c.fractionOfCopyBandwidth ?? c.fractionOfLimit ?? '?'} of copy bw, ${c.speedupOverTorch ?? '?'}x PyTorch eager`);
}
for (const x of crossCheck ?? []) console.log(`  check vs verl code: ${x.config} (${x.backend}) |dloss| ${x.lossAbsDiff.toExponential(2)} |dgrad| ${x.gradMaxAbsDiff.toExponential(2)}`);
