// scripts/gpu/run-all.sh, the one-call GPU check: its dry run (what CI and any machine without a GPU get) must leave
// the same four files a GPU run leaves (the GPU machine returns at most 8), with every GPU step marked skipped; and
// merge-results.mjs must turn the bench and PyTorch outputs into the summary's side-by-side rows.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { packageRoot } from '../src/native.js';

const script = path.join(packageRoot, 'scripts', 'gpu', 'run-all.sh');
const merge = path.join(packageRoot, 'scripts', 'gpu', 'merge-results.mjs');
const FILES = ['gpu-run.tar.gz', 'log-tail.txt', 'status.txt', 'summary.json'];
const GPU_STEPS = ['build', 'jest_kernels', 'sanitizer_memcheck', 'sanitizer_racecheck', 'bench_surrogate', 'bench_contrastive', 'bench_gpulibs',
  'torch_surrogate', 'torch_contrastive', 'torch_gemm', 'sanitizer_initcheck', 'jest_engine', 'bench_engine', 'bench_train'];

describe('scripts/gpu/run-all.sh --dry-run', () => {
  let out = '';
  let run: ReturnType<typeof spawnSync>;
  beforeAll(() => {
    out = mkdtempSync(path.join(os.tmpdir(), 'clipo-gpu-dry-'));
    writeFileSync(path.join(out, 'summary.json'), 'stale');  // a previous run's file is replaced, not kept
    run = spawnSync('bash', [script, '--dry-run'], { encoding: 'utf8', env: { ...process.env, OUT: out }, timeout: 170_000 });
  }, 180_000);
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  test('exits 0 and leaves exactly the four files (at most 8 come back from the GPU machine)', () => {
    expect({ status: run.status, stderr: String(run.stderr).slice(-2000) }).toEqual({ status: 0, stderr: expect.any(String) });
    const files = readdirSync(out).sort();
    expect(files).toEqual(FILES);
    expect(files.length).toBeLessThanOrEqual(8);
  });

  test('summary.json: a dry run, the probe first, every GPU step skipped, every step listed in status.txt', () => {
    const s = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'));
    expect(s).toMatchObject({ schema: 1, dryRun: true, overall: 'dry run' });
    const steps = s.steps as Array<{ name: string; status: string; note?: string }>;
    expect(steps[0]).toMatchObject({ name: 'env', status: 'ok' });
    for (const name of GPU_STEPS) expect(steps.find((x) => x.name === name)).toMatchObject({ status: 'skipped', note: 'dry run' });
    expect(Object.values(s.targets).every((v) => v === null)).toBe(true);
    const status = readFileSync(path.join(out, 'status.txt'), 'utf8').trim().split('\n');
    expect(status[0]).toBe('overall=dry run');
    expect(status.slice(1).map((l) => l.split('=')[0])).toEqual(steps.map((x) => x.name));
  });

  test('the archive holds the step logs and the probe; the log tail shows the probe', () => {
    const list = spawnSync('tar', ['-tzf', path.join(out, 'gpu-run.tar.gz')], { encoding: 'utf8' });
    expect(list.status).toBe(0);
    for (const f of ['./env.log', './env.json', './run-all.log', './steps.tsv', './summary.json']) expect(list.stdout.split('\n')).toContain(f);
    const tail = readFileSync(path.join(out, 'log-tail.txt'), 'utf8');
    expect(tail).toMatch(/--- nvidia-smi/);
    expect(tail).toMatch(/done in \d+s: dry run/);
  });

  test('a bad argument is a usage error', () => {
    const r = spawnSync('bash', [script, '--bogus'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/unknown argument '--bogus'/);
  });
});

describe('scripts/gpu/merge-results.mjs', () => {
  test('pairs clipo rows with the PyTorch rows and reads each bench row\'s bandwidth fraction under its own name', () => {
    const work = mkdtempSync(path.join(os.tmpdir(), 'clipo-merge-'));
    try {
      mkdirSync(work, { recursive: true });
      writeFileSync(path.join(work, 'steps.tsv'), 'env\tok\t0\t3\t\nbench_contrastive\tok\t0\t20\t\n');
      const contrastive = { reports: [{ suite: 'contrastive', rows: [
        { backend: 'cuda', dtype: 'bf16', mask: 'full', B: 64, L: 4096, H: 3584, D: 2048, ms: 2.5, poolMs: 2.2, MB: 1879, GBs: 751.6, ofBandwidth: 0.87 },
      ] }] };
      const surrogate = { reports: [{ suite: 'surrogate', rows: [
        { backend: 'cuda', config: 'DAPO (token, no KL)', B: 2048, T: 4096, ms: 0.2, GBs: 2600, limitGBs: 3000, fractionOfLimit: 0.86, sets: 2 },
      ] }] };
      writeFileSync(path.join(work, 'bench-contrastive.json'), JSON.stringify(contrastive));
      writeFileSync(path.join(work, 'bench-surrogate.json'), JSON.stringify(surrogate));
      writeFileSync(path.join(work, 'torch_contrastive.json'), JSON.stringify({ rows: [
        { B: 64, L: 4096, H: 3584, D: 2048, dtype: 'bf16', ms: 10, officialMs: 10, carefulMs: 4, compiledMs: 3 },
      ] }));
      writeFileSync(path.join(work, 'torch_surrogate.json'), JSON.stringify({ timings: [
        { config: 'DAPO (token, no KL)', B: 2048, T: 4096, ms: 1.2, compiledMs: 0.3 },
      ] }));
      const dest = path.join(work, 'summary.json');
      const r = spawnSync(process.execPath, [merge, work, dest, '--dry-run=0', '--overall=ok', '--elapsed=99'], { encoding: 'utf8' });
      expect(r.status).toBe(0);
      const s = JSON.parse(readFileSync(dest, 'utf8'));
      expect(s.contrastive).toEqual([expect.objectContaining({ fractionOfCopyBandwidth: 0.87, torchOfficialMs: 10, speedupOverOfficial: 4, speedupOverCareful: 1.2, stepMs: 80 })]);
      expect(s.surrogate).toEqual([expect.objectContaining({ fractionOfCopyBandwidth: 0.86, speedupOverOfficial: 6, speedupOverCareful: 1.5, sets: 2 })]);
      expect(s.targets).toMatchObject({ contrastiveBandwidth80AtLargeSizes: true, surrogateBandwidth80AtLargeSizes: true, contrastive3xOfficial: true, surrogateAheadOfCareful: true, testsAllPassedNoneSkipped: null });
      expect(s.steps.map((x: { name: string }) => x.name)).toEqual(['env', 'bench_contrastive']);
      expect(s.elapsedSeconds).toBe(99);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });

  test('reads bench train\'s rows into the training targets (MFU at 1.5B, ahead of PyTorch, CLIPO\'s share of an RL step)', () => {
    const work = mkdtempSync(path.join(os.tmpdir(), 'clipo-merge-'));
    try {
      writeFileSync(path.join(work, 'steps.tsv'), 'env\tok\t0\t3\t\nbench_train\tok\t0\t150\t\n');
      const rows = (mfu: number, vs: number, clipo: number) => [
        { measure: 'train step (forward+backward+AdamW, 4 x 1024)', model: 'Qwen2.5-1.5B-shaped', impl: 'clipo', ms: 100, mfu },
        { measure: 'train step (forward+backward+AdamW, 4 x 1024)', model: 'Qwen2.5-1.5B-shaped', impl: 'transformers', ms: 100 * vs, mfu: mfu / vs, vsClipo: vs },
        { measure: 'RL step: CLIPO (head, contrastive loss and reward, head step)', model: 'm', impl: 'clipo', ms: 1, shareOfStep: clipo },
        { measure: 'RL step: pooling the states (added to scoring)', model: 'm', impl: 'clipo', ms: 1, shareOfStep: 0.001 },
      ];
      const dest = path.join(work, 'summary.json');
      const merged = (r: object[]) => {
        writeFileSync(path.join(work, 'bench-train.json'), JSON.stringify({ reports: [{ suite: 'train', rows: r, notes: ['n'] }] }));
        expect(spawnSync(process.execPath, [merge, work, dest, '--dry-run=0'], { encoding: 'utf8' }).status).toBe(0);
        return JSON.parse(readFileSync(dest, 'utf8'));
      };
      const good = merged(rows(0.45, 1.3, 0.01));
      expect(good.targets).toMatchObject({ trainMfu40At1p5B: true, trainAheadOfTorch: true, clipoShareOfRlStepAtMost2pct: true });
      expect(good.train).toHaveLength(4);
      expect(good.notes.bench.train).toEqual(['n']);
      const bad = merged(rows(0.35, 0.9, 0.02));
      expect(bad.targets).toMatchObject({ trainMfu40At1p5B: false, trainAheadOfTorch: false, clipoShareOfRlStepAtMost2pct: false });
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});
