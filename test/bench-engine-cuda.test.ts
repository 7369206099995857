// `clipo bench engine --backend cuda`: the CUDA engine beside transformers on a GPU (src/bench/engine-cuda.ts). Here
// (no GPU, or a GPU) the suite's arithmetic: the decoding roofline's bytes and the step time from two generate
// calls; without a usable GPU the suite must say so and report nothing, exit 0. The measurement itself runs on a
// GPU machine (scripts/gpu/run-all.sh with CLIPO_GPU_ENGINE_BENCH=1).
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { decodeStepBytes, gpuBenchModels, stepSeconds } from '../src/bench/engine-cuda.js';
import { engineBackends } from '../src/engine/engine.js';
import { countParameters } from '../src/engine/params.js';
import { packageRoot } from '../src/native.js';

const clipo = path.join(packageRoot, 'bin', 'clipo');
const gpu = engineBackends().cuda;

test('the models are Qwen2.5-0.5B and 1.5B shaped (tied embeddings): about 494M and 1.54B parameters', () => {
  const [a, b] = gpuBenchModels(false);
  expect(countParameters(a!.config) / 1e6).toBeCloseTo(494.0, 0);
  expect(countParameters(b!.config) / 1e9).toBeCloseTo(1.544, 2);
  expect(gpuBenchModels(true)).toHaveLength(1);
});

test('a decoding step reads every bf16 parameter once and the K/V cache of every sequence', () => {
  const c = gpuBenchModels(false)[0]!.config;
  const params = countParameters(c);
  expect(decodeStepBytes(c, 1, 0)).toBe(2 * params);
  // Qwen2.5-0.5B: 24 layers, 2 kv heads of 64: 24 * 2 * 2 * 64 * 2 bytes = 12288 bytes per position and sequence
  expect(decodeStepBytes(c, 16, 160) - 2 * params).toBe(16 * 160 * 12288);
});

test('the step time cancels the prefill: (t(S) - t(1)) / (S - 1)', () => {
  const prefill = 0.3, step = 0.004, S = 64;
  // generate(S) = prefill + first token + (S - 1) steps; generate(1) = prefill + first token
  expect(stepSeconds(prefill + 0.001 + (S - 1) * step, prefill + 0.001, S)).toBeCloseTo(step, 12);
});

(gpu ? test.skip : test)('without a usable GPU, `clipo bench engine --backend cuda` says why, measures nothing and exits 1', () => {
  const r = spawnSync(process.execPath, [clipo, 'bench', 'engine', '--backend', 'cuda', '--json'], { encoding: 'utf8', timeout: 60_000 });
  expect(r.status).toBe(1);
  const out = JSON.parse(r.stdout) as { reports: Array<{ suite: string; rows: unknown[]; notes: string[]; unavailable?: string; errors: string[] }> };
  const rep = out.reports[0]!;
  expect(rep.suite).toBe('engine');
  expect(rep.rows).toEqual([]);
  expect(rep.unavailable).toMatch(/^engine --backend cuda cannot run: /);
  expect(rep.unavailable).toContain(engineBackends().cudaReason!);
  expect(rep.errors).toEqual([rep.unavailable]);
  expect(rep.notes[0]).toMatch(/Run it on a machine with a GPU and a CUDA build \(scripts\/gpu\/run-all\.sh with CLIPO_GPU_ENGINE_BENCH=1\)/);
}, 70_000);
