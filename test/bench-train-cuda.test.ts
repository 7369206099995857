// `clipo bench train --backend cuda` (src/bench/train-cuda.ts): the pure parts (the FLOPs of a training step against
// a hand count, the surrogate's gradient against finite differences, the rows and targets made from a made-up
// measurement, option validation), the refusal without a GPU (exit 1, saying why, in --json too), the Python peer's
// syntax, and — on the CPU, where a Python with torch and transformers is found (CLIPO_PYTHON, else python3) — the
// side-by-side step end to end on a tiny model: the value check agrees and both sides are timed. One RL step broken
// down by phase runs on the CPU engine. The measurement itself runs on a GPU machine (scripts/gpu/run-all.sh with
// CLIPO_GPU_TRAIN_BENCH=1).
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { forwardFlops } from '../src/bench/engine.js';
import { unavailableReport } from '../src/bench/harness.js';
import { TorchPeer } from '../src/bench/peer.js';
import { benchShape, parseShapes, parseTrainBatch } from '../src/bench/shapes.js';
import {
  computedTrainPeak, maskedValues, measureRlStep, measureTrainStep, notRunShape, surrogateGradient, trainCudaRows, trainStepFlops, type TrainCudaMeasure,
} from '../src/bench/train-cuda.js';
import { engineBackends } from '../src/engine/engine.js';
import { countParameters, smallConfig } from '../src/engine/params.js';
import type { TensorMap } from '../src/model/types.js';
import { packageRoot } from '../src/native.js';
import { Rng } from '../src/util/rng.js';

const clipo = path.join(packageRoot, 'bin', 'clipo');
const gpu = engineBackends().cuda;

describe('the FLOPs of a training step', () => {
  test('a hand count for a tiny config: 3 x (2 x layer params x T + 2 x head x (T - 1) + causal attention)', () => {
    // hidden 4, 2 heads of 2, 1 kv head, intermediate 6, 1 layer, vocabulary 10, tied, q/k/v biases
    const c = smallConfig('qwen2', { vocab: 10, hidden: 4, layers: 1, heads: 2, kvHeads: 1, intermediate: 6 });
    // layer: q 4x4+4, k 2x4+2, v 2x4+2, o 4x4, gate 6x4, up 6x4, down 4x6, two norms 4+4 = 136
    // head (tied embedding) 10x4 = 40; final norm 4 (not counted)
    expect(countParameters(c)).toBe(136 + 40 + 4);
    // per sequence of 3 tokens: 2*136*3 = 816; head on the 2 predicting positions 2*40*2 = 160;
    // attention: sum over t = 0..2 of 4 * (t + 1) * (heads * headDim = 4) = 96; forward 1072; 2 sequences 2144
    expect(trainStepFlops(c, 2, 3)).toBe(3 * 2144);
    expect(trainStepFlops(c, 2, 3)).toBe(3 * forwardFlops(c, 2, 3));
  });

  test('at 1.5B shape it is about 6 x parameters x tokens, plus attention', () => {
    const c = benchShape('1.5b').config;
    const P = countParameters(c), tokens = 4 * 1024;
    const f = trainStepFlops(c, 4, 1024);
    // the input embedding is not a product; attention at 1k tokens adds a few percent
    const sixNT = 6 * (P - c.hiddenSize) * tokens;
    expect(f / sixNT).toBeGreaterThan(1.0);
    expect(f / sixNT).toBeLessThan(1.1);
  });
});

test('the engine\'s computed peak memory at 1.5B, 4 x 1024: weights, master, moments, gradients and activations, no reserve', () => {
  const c = benchShape('1.5b').config;
  const P = countParameters(c);
  const p = computedTrainPeak(c, 4, 1024, 80 * 2 ** 30);
  // at least bf16 weights + fp32 master + two fp32 moments (14 bytes a parameter) and the activations on top
  expect(p.bytes).toBeGreaterThan(14 * P);
  // at most 22 bytes a parameter (fp32 gradients too) plus 2 GB of activations per 1k tokens
  expect(p.bytes).toBeLessThan(22 * P + 4 * 2e9);
  expect(p.reserve).toBeGreaterThan(2 * 2 ** 30);
  // activations grow with the batch
  expect(computedTrainPeak(c, 8, 1024, 80 * 2 ** 30).bytes).toBeGreaterThan(p.bytes);
});

describe('the surrogate gradient the engine side feeds its backward', () => {
  test('matches central finite differences of the PPO-clip surrogate at ratio 1 (fresh random inputs)', () => {
    const rng = new Rng(17);
    const B = 3, L = 7;
    const mask = Uint8Array.from({ length: B * L }, (_, i) => (i % L === 0 ? 0 : rng.next() < 0.8 ? 1 : 0));
    const adv = Float32Array.from({ length: B }, () => 2 * rng.next() - 1);
    const old = Float64Array.from({ length: B * L }, () => -5 * rng.next());
    let n = 0;
    for (const m of mask) n += m;
    const loss = (lp: Float64Array) => {
      let s = 0;
      for (let i = 0; i < lp.length; i++) {
        if (!mask[i]) continue;
        const a = adv[Math.floor(i / L)]!, r = Math.exp(lp[i]! - old[i]!);
        s += Math.max(-a * r, -a * Math.min(Math.max(r, 0.8), 1.28));
      }
      return s / n;
    };
    const g = surrogateGradient(mask, adv, L);
    const h = 1e-5;
    for (let i = 0; i < B * L; i++) {
      const up = Float64Array.from(old), dn = Float64Array.from(old);
      up[i] += h;
      dn[i] -= h;
      expect(g[i]).toBeCloseTo((loss(up) - loss(dn)) / (2 * h), 6);
    }
    expect(maskedValues(Float32Array.from({ length: B * L }, (_, i) => i), mask)).toEqual(Float32Array.from([...mask.keys()].filter((i) => mask[i])));
  });
});

describe('the report from a measurement', () => {
  const shape = benchShape('qwen2.5-1.5b');
  const flops = trainStepFlops(shape.config, 4, 1024);
  const fake = (clipoMs: number, torchMs: number): TrainCudaMeasure => ({
    device: 'NVIDIA H100 80GB HBM3', peakTflops: 700,
    shapes: [{
      label: shape.label, params: countParameters(shape.config), batch: 4, seqLen: 1024, flops,
      sides: [
        { impl: 'clipo', steps: [clipoMs / 1e3, 2 * clipoMs / 1e3, clipoMs / 1e3], memoryBytes: 40 * 2 ** 30, memoryHow: 'measured (engine)', computedBytes: 42 * 2 ** 30 },
        { impl: 'transformers', steps: [torchMs / 1e3, torchMs / 1e3, 5 * torchMs / 1e3], memoryBytes: 50 * 2 ** 30, memoryHow: 'measured' },
      ],
    }],
    rl: { label: 'tiny', params: 1e6, preset: 'DAPO', sequences: 64, maxResponseTokens: 256, meanResponseTokens: 200, steps: 3, phases: { rollouts: 2, verifier: 0.1, scoring: 0.3, clipo: 0.01, pooling: 0.005, update: 0.8, step: 3.3 } },
  });

  test('MFU against the GEMM peak, time ratios, memory, and the targets as met / NOT met', () => {
    const errors: string[] = [];
    const clipoMs = (flops / (0.5 * 700e12)) * 1e3; // 50% MFU
    const { rows, targets } = trainCudaRows(fake(clipoMs, 2 * clipoMs), errors);
    expect(errors).toEqual([]);
    const c = rows.find((r) => r.impl === 'clipo' && String(r.measure).startsWith('train step'))!;
    const t = rows.find((r) => r.impl === 'transformers')!;
    expect(c.mfu).toBeCloseTo(0.5, 3);
    expect(Math.abs((c.ms as number) / clipoMs - 1)).toBeLessThan(1e-3); // the median of the three steps
    expect(Math.abs((c.tokensPerSecond as number) / (4096 / (clipoMs / 1e3)) - 1)).toBeLessThan(1e-2);
    expect(c.memoryGiB).toBe(40);
    expect(c.memory).toBe('measured (engine)');
    expect(c.computedMemoryGiB).toBe(42);
    expect(c.computed).toBe('computed by the plan');
    expect(t.computedMemoryGiB).toBeUndefined();
    expect(t.mfu).toBeCloseTo(0.25, 3);
    expect(t.vsClipo).toBeCloseTo(2, 3);
    expect(targets[0]).toMatch(/MFU 50% \(target >= 40%: met\), faster than transformers .*: met$/);
    expect(targets[1]).toMatch(/CLIPO's share \(its phase \+ pooling\) 0\.45% \(target <= 2%: met\)/);
    expect(targets[2]).toBe('peak memory of one training step at Qwen2.5-1.5B-shaped (4 x 1024 tokens): 40 GiB measured (42 GiB computed by the plan)');
    const phases = rows.filter((r) => String(r.measure).startsWith('RL step'));
    expect(phases.map((r) => r.measure)).toContain('RL step: verifier');
    expect(phases.find((r) => r.measure === 'RL step: other (advantages, bookkeeping)')!.ms).toBeCloseTo(90, 6);

    const slow = trainCudaRows(fake(clipoMs * 2, clipoMs), []);
    expect(slow.targets[0]).toMatch(/MFU 25% \(target >= 40%: NOT met\), .*: NOT met$/);
  });

  test('a shape the plan says does not fit is not run: the computed peak alone, labelled computed by the plan', () => {
    const big = benchShape('7b');
    expect(countParameters(big.config) / 1e9).toBeCloseTo(7.6, 1);
    expect(big.config.tieWordEmbeddings).toBe(false);
    expect(big.config.numKvHeads).toBe(4);
    const gib80 = 80 * 2 ** 30;
    // 7B: 18 bytes a parameter alone is ~137 GB; 0.5B fits easily
    const skipped = notRunShape(big.label, big.config, 4, 1024, gib80)!;
    expect(skipped.notRun).toMatch(/^the plan computes \d+(\.\d+)? GiB with its reserve, more than the GPU's 80 GiB$/);
    expect(skipped.sides).toEqual([{ impl: 'clipo', steps: [], memoryBytes: null, memoryHow: 'not measured', computedBytes: computedTrainPeak(big.config, 4, 1024, gib80).bytes }]);
    expect(notRunShape('small', benchShape('0.5b').config, 4, 1024, gib80)).toBeNull();
    const m = fake(1, 2);
    m.shapes.push(skipped);
    const { rows, targets } = trainCudaRows(m, []);
    const r = rows.find((x) => x.model === big.label)!;
    expect(r).toMatchObject({ impl: 'clipo', memoryGiB: null, memory: 'not measured', computed: 'computed by the plan' });
    expect(r.computedMemoryGiB).toBeGreaterThan(18 * 7.6e9 / 2 ** 30); // bf16 weights, fp32 master, moments, gradients
    expect(String(r.measure)).toMatch(/^train step peak memory \(4 x 1024; not run: the plan computes/);
    expect(rows.filter((x) => x.model === big.label)).toHaveLength(1); // no timing row
    expect(targets.filter((t) => t.includes(big.label))).toEqual([
      expect.stringMatching(/^peak memory of one training step at Qwen2\.5-7B-shaped \(4 x 1024 tokens\): \d+(\.\d+)? GiB computed by the plan \(not measured: not run, the plan computes/),
    ]);
  });

  test('an MFU above 1 is a bench error, never a figure', () => {
    const errors: string[] = [];
    const { rows } = trainCudaRows(fake((flops / 1000e12) * 1e3, 1000), errors);
    const c = rows.find((r) => r.impl === 'clipo' && String(r.measure).startsWith('train step'))!;
    expect(c.mfu).toBeNull();
    expect(String(c.benchError)).toMatch(/training MFU: .* impossible/);
    expect(errors).toHaveLength(1);
  });

  test('without a GPU the report measures nothing and says why', () => {
    const r = unavailableReport('train', 'no usable GPU', { before: [0, 0, 0], after: [0, 0, 0], cores: 2, note: null });
    expect(r).toMatchObject({ suite: 'train', rows: [], unavailable: 'train --backend cuda cannot run: no usable GPU', errors: ['train --backend cuda cannot run: no usable GPU'] });
  });
});

describe('options', () => {
  test('--shape and --batch parse and refuse bad values', () => {
    expect(parseShapes('1.5b')).toEqual(['qwen2.5-1.5b']);
    expect(parseShapes('qwen2.5-0.5b, 3B')).toEqual(['qwen2.5-0.5b', 'qwen2.5-3b']);
    expect(parseShapes('0.5b,1.5b,3b,7b')).toEqual(['qwen2.5-0.5b', 'qwen2.5-1.5b', 'qwen2.5-3b', 'qwen2.5-7b']);
    expect(() => parseShapes('14b')).toThrow(/unknown model shape '14b' \(known: qwen2.5-0.5b, qwen2.5-1.5b, qwen2.5-3b, qwen2.5-7b/);
    expect(() => parseShapes('1.5b,qwen2.5-1.5b')).toThrow(/given twice/);
    expect(() => parseShapes(',')).toThrow(/expected one or more/);
    expect(parseTrainBatch('8x512')).toEqual({ batch: 8, seqLen: 512 });
    expect(() => parseTrainBatch('8')).toThrow(/SEQUENCESxTOKENS/);
    expect(() => parseTrainBatch('0x512')).toThrow(/sequences must be 1 to 1024/);
    expect(() => parseTrainBatch('4x1')).toThrow(/tokens per sequence must be 2 to 4096/);
    expect(benchShape('1.5b').label).toBe('Qwen2.5-1.5B-shaped');
    expect(countParameters(benchShape('3b').config) / 1e9).toBeCloseTo(3.09, 1);
  });

  test('the CLI refuses --shape and --batch where they would be ignored, and bad values (exit 2)', () => {
    const run = (...a: string[]) => spawnSync(process.execPath, [clipo, 'bench', ...a], { encoding: 'utf8', timeout: 60_000 });
    const a = run('bandwidth', '--shape', '1.5b');
    expect(a.status).toBe(2);
    expect(a.stderr).toMatch(/--shape applies to 'bench train --backend cuda' and 'bench engine --backend cuda' only/);
    const d = run('engine', '--batch', '4x8', '--backend', 'cuda');
    expect(d.status).toBe(2);
    expect(d.stderr).toMatch(/--batch applies to 'bench train --backend cuda' only/);
    const b = run('train', '--backend', 'cuda', '--shape', '14b');
    expect(b.status).toBe(2);
    expect(b.stderr).toMatch(/--shape: unknown model shape '14b'/);
    const c = run('train', '--backend', 'cuda', '--batch', '4by5');
    expect(c.status).toBe(2);
    expect(c.stderr).toMatch(/--batch: expected SEQUENCESxTOKENS/);
  }, 90_000);
});

(gpu ? test.skip : test)('without a usable GPU, `clipo bench train --backend cuda` says why and exits 1, in --json too', () => {
  const why = engineBackends().cudaReason!;
  const j = spawnSync(process.execPath, [clipo, 'bench', 'train', '--backend', 'cuda', '--json'], { encoding: 'utf8', timeout: 60_000 });
  expect(j.status).toBe(1);
  const doc = JSON.parse(j.stdout) as { errors: string[]; reports: Array<{ suite: string; rows: unknown[]; unavailable: string; notes: string[] }> };
  expect(doc.reports[0]).toMatchObject({ suite: 'train', rows: [], unavailable: `train --backend cuda cannot run: ${why}` });
  expect(doc.errors).toEqual([`train: train --backend cuda cannot run: ${why}`]);
  expect(j.stderr).toContain(`clipo: train --backend cuda cannot run: ${why}`);
  const t = spawnSync(process.execPath, [clipo, 'bench', 'train', '--backend', 'cuda'], { encoding: 'utf8', timeout: 60_000 });
  expect(t.status).toBe(1);
  expect(t.stdout).toMatch(/train --backend cuda cannot run: .*Run it on a machine with a GPU/);
  expect(t.stderr).toContain(why);
}, 130_000);

test('the Python peer scripts compile', () => {
  const py = process.env.CLIPO_PYTHON || 'python3';
  const scripts = ['train_peer.py', 'torch_peer.py'].map((f) => path.join(packageRoot, 'scripts', 'bench', f));
  // compile to a throwaway file each: no __pycache__ in the source tree
  const r = spawnSync(py, ['-c', 'import py_compile, sys, tempfile, os\nfor f in sys.argv[1:]:\n    py_compile.compile(f, cfile=os.path.join(tempfile.mkdtemp(), "x.pyc"), doraise=True)', ...scripts], { encoding: 'utf8' });
  if (r.error) {
    console.log(`peer syntax check skipped: ${py} not found`);
    return;
  }
  expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
});

test('one RL step on the CPU engine, broken down by phase: the phases add up to at most the step, each measured', () => {
  const r = measureRlStep({ backend: 'cpu', threads: 1, quick: true, repeats: 3, log: () => undefined });
  const p = r.phases;
  expect(r.steps).toBe(3);
  expect(r.sequences).toBe(8);
  for (const k of ['rollouts', 'verifier', 'scoring', 'clipo', 'update', 'step'] as const) expect(p[k]).toBeGreaterThan(0);
  expect(p.pooling).toBeGreaterThanOrEqual(0);
  // medians of each phase need not add up exactly, but no phase exceeds the whole step
  for (const k of ['rollouts', 'verifier', 'scoring', 'clipo', 'update'] as const) expect(p[k]).toBeLessThan(p.step);
  expect(r.meanResponseTokens).toBeGreaterThan(0);
  expect(r.meanResponseTokens).toBeLessThanOrEqual(32);
}, 240_000);

describe('with torch and transformers (CPU): the side-by-side step end to end on a tiny model', () => {
  let peer: TorchPeer | null = null;
  beforeAll(async () => {
    const p = await TorchPeer.start(() => undefined);
    let why = '';
    if (!(p instanceof TorchPeer)) why = p.unavailable;
    else if (!p.info.transformers) {
      why = 'transformers is not importable';
      await p.close();
    } else peer = p;
    if (!peer) console.log(`train peer test skipped: ${why} (set CLIPO_PYTHON to a Python with torch and transformers)`);
  }, 300_000);
  afterAll(async () => {
    if (peer) await peer.close();
  });

  test('the values agree before timing, and both sides are timed', async () => {
    if (!peer) return;
    const config = smallConfig('qwen2', { vocab: 97, hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 48 });
    const errors: string[] = [], notes: string[] = [];
    const r = await measureTrainStep({ label: 'tiny', config, batch: 3, seqLen: 17, backend: 'cpu', threads: 1, peer, peerDevice: 'cpu', checkRows: 2, repeats: 2, log: () => undefined }, errors, notes);
    expect(errors).toEqual([]);
    expect(notes[0]).toMatch(/tiny: values checked against transformers .*: agree$/);
    expect(r.sides.map((s) => s.impl)).toEqual(['clipo', 'transformers']);
    for (const s of r.sides) {
      expect(s.steps).toHaveLength(2);
      for (const t of s.steps) expect(t).toBeGreaterThan(0);
    }
    expect(r.flops).toBe(trainStepFlops(config, 3, 17));
  }, 300_000);

  test('a peer that cannot load the model (here: an unknown device) costs its rows only', async () => {
    if (!peer) return;
    const config = smallConfig('qwen2', { vocab: 97, hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 48 });
    const errors: string[] = [], notes: string[] = [];
    const r = await measureTrainStep({ label: 'tiny', config, batch: 2, seqLen: 9, backend: 'cpu', threads: 1, peer, peerDevice: 'nosuchdevice' as 'cpu', checkRows: 2, repeats: 1, log: () => undefined }, errors, notes);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/tiny: transformers could not load the model \(torch peer: .*nosuchdevice.*\); no PyTorch rows/);
    expect(r.sides.map((s) => s.impl)).toEqual(['clipo']);
    expect(r.sides[0]!.steps).toHaveLength(1);
  }, 300_000);

  test('a model that differs in one tensor (the tied embedding and head, 3x larger) is refused: no PyTorch timings', async () => {
    if (!peer) return;
    const config = smallConfig('qwen2', { vocab: 97, hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 48 });
    const errors: string[] = [], notes: string[] = [];
    const peerWeights = (w: TensorMap) => {
      const out: TensorMap = new Map(w);
      // the input side is normalized away; the logits triple (at HF's init scale they are near uniform, so a small
      // change of an inner layer stays within the bf16 tolerances)
      const name = 'model.embed_tokens.weight', t = w.get(name)!;
      out.set(name, { ...t, data: t.data.map((x) => 3 * x) });
      return out;
    };
    const r = await measureTrainStep({ label: 'tiny', config, batch: 3, seqLen: 17, backend: 'cpu', threads: 1, peer, peerDevice: 'cpu', checkRows: 2, repeats: 1, log: () => undefined, peerWeights }, errors, notes);
    expect(notes[0]).toMatch(/: DISAGREE$/);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/tiny: transformers disagrees with clipo .*its timings are not reported/);
    expect(r.sides.map((s) => s.impl)).toEqual(['clipo']);
  }, 300_000);
});
