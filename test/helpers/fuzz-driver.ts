// The native-boundary fuzzer's child process: starts from valid calls of every native entry, mutates them at random
// (a field removed, replaced by a value of another type or out of range, an array of the wrong kind or length, the
// options object replaced) and makes the call. A thrown Error is the expected answer to a bad call; what must never
// happen is a signal (segfault, abort) or a hang. Before each call it writes one line naming the call and the
// mutation to stdout (synchronously), so the parent can name the call that killed it.
//
//   node fuzz-driver.js <family: kernels|engine|misc> <seed> <seconds>
import { writeSync } from 'node:fs';
import { loadNative } from '../../src/native.js';
import { randomWeights, smallConfig } from '../../src/engine/params.js';

type Obj = Record<string, unknown>;
type Fn = (...args: unknown[]) => unknown;

const [family = 'kernels', seedArg = '1', secondsArg = '3'] = process.argv.slice(2);
let state = Number(seedArg) >>> 0 || 1;
function rand(): number {
  // mulberry32
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = <T>(a: readonly T[]): T => a[Math.floor(rand() * a.length)]!;

const native = loadNative() as unknown as Record<string, Fn>;

// --- valid calls -------------------------------------------------------------------------------------------------
const f32 = (n: number, scale = 1) => Float32Array.from({ length: n }, () => (rand() * 2 - 1) * scale);

function contrastiveCall(): Obj {
  const B = 4, H = 8, D = 4, L = 3, tokens = rand() < 0.5;
  const o: Obj = {
    batch: B, hiddenSize: H, outSize: D, lossType: pick(['infonce', 'supcon_in', 'supcon_out', 'soft_nn']), level: pick(['group', 'cross', 'batch']),
    distance: pick(['cosine', 'l2']), temperature: 0.1, maskedLabel: pick([-1, 0, 1]), skipTrivial: rand() < 0.5, grad: rand() < 0.8,
    correct: Uint8Array.of(1, 0, 1, 0), group: Int32Array.of(0, 0, 1, 1), weight: f32(D * H), threads: 1,
  };
  if (tokens) Object.assign(o, { tokens: f32(B * L * H), mask: Uint8Array.from({ length: B * L }, (_, i) => (i % L === 0 ? 1 : rand() < 0.5 ? 1 : 0)), length: L });
  else o.pooled = f32(B * H);
  if (rand() < 0.3) Object.assign(o, { head: 'mlp', weight1: f32(H * H), weight2: f32(D * H), weight: undefined });
  return o;
}

function surrogateCall(): Obj {
  const B = 3, T = 5, n = B * T;
  const o: Obj = {
    batch: B, length: T, mode: pick(['token', 'sequence', 'geo_mean']), agg: pick(['token-mean', 'seq-mean-token-mean', 'seq-mean-token-sum']),
    clipLow: 0.2, clipHigh: 0.28, logp: f32(n, 0.5).map((x) => x - 1), oldLogp: f32(n, 0.5).map((x) => x - 1), advantages: f32(B),
    mask: Uint8Array.from({ length: n }, () => (rand() < 0.8 ? 1 : 0)),
  };
  if (rand() < 0.5) Object.assign(o, { refLogp: f32(n, 0.5).map((x) => x - 1), klCoef: 0.01, klType: 'low_var_kl' });
  if (rand() < 0.3) o.out = new Float32Array(n);
  if (o.mode === 'token' && rand() < 0.3) o.dualClip = 3;
  return o;
}

// --- mutations ---------------------------------------------------------------------------------------------------
const WEIRD: unknown[] = [
  undefined, null, NaN, Infinity, -Infinity, -1, 0, 1, 0.5, 2 ** 31, 2 ** 31 - 1, 2 ** 32, 2 ** 53, -(2 ** 53), 1e300, -1e-300,
  '', 'x', '1', 'infonce', true, false, {}, [], [1, 2], () => 1, Symbol('s'), 10n,
  new Float32Array(0), new Float32Array(1), new Float64Array(4), new Int32Array(3), new Uint8Array(7), new Uint16Array(5), new Float32Array(1 << 12),
];

function mutateArray(v: ArrayBufferView & { length: number }): unknown {
  const Ctor = v.constructor as new (n: number | ArrayBuffer, o?: number, l?: number) => ArrayBufferView & { length: number; [i: number]: number };
  switch (Math.floor(rand() * 5)) {
    case 0: return new Ctor(Math.max(0, v.length - 1));
    case 1: return new Ctor(v.length + 1 + Math.floor(rand() * 8));
    case 2: { // a value out of range / not finite inside a right-sized array
      const c = new Ctor(v.length);
      for (let i = 0; i < v.length; i++) c[i] = (v as unknown as number[])[i]!;
      if (c.length) c[Math.floor(rand() * c.length)] = pick([NaN, Infinity, -1, 2, 255, 2 ** 31 - 1, -(2 ** 31), 1e30]);
      return c;
    }
    case 3: { // a view into a bigger buffer, at an offset
      const BYTES = (v as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT;
      const buf = new ArrayBuffer((v.length + 4) * BYTES);
      return new Ctor(buf, 2 * BYTES, v.length);
    }
    default: return pick(WEIRD);
  }
}

function mutate(o: Obj): { call: unknown; what: string } {
  const r = rand();
  if (r < 0.04) {
    const v = pick(WEIRD);
    return { call: v, what: `options replaced by ${describe(v)}` };
  }
  const c: Obj = { ...o };
  const keys = Object.keys(c);
  const count = 1 + Math.floor(rand() * 2);
  const whats: string[] = [];
  for (let k = 0; k < count; k++) {
    const key = rand() < 0.05 ? pick(['extra', '__proto__', 'constructor']) : pick(keys);
    const old = c[key];
    let v: unknown;
    if (rand() < 0.15) {
      delete c[key];
      whats.push(`${key} removed`);
      continue;
    }
    if (ArrayBuffer.isView(old) && rand() < 0.7) v = mutateArray(old as ArrayBufferView & { length: number });
    else v = pick(WEIRD);
    c[key] = v;
    whats.push(`${key} = ${describe(v)}`);
  }
  return { call: c, what: whats.join(', ') };
}

function describe(v: unknown): string {
  if (ArrayBuffer.isView(v)) return `${v.constructor.name}(${(v as unknown as { length: number }).length}${v.byteOffset ? ` @${v.byteOffset}` : ''})`;
  if (typeof v === 'function') return 'function';
  if (typeof v === 'symbol' || typeof v === 'bigint') return String(v);
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

function log(line: string): void {
  writeSync(1, line + '\n');
}

function attempt(name: string, what: string, fn: () => unknown): void {
  log(`${name}: ${what}`);
  try {
    fn();
  } catch {
    // an Error for a bad call is the right answer
  }
}

// --- families ----------------------------------------------------------------------------------------------------
function kernelsRound(): void {
  const c = contrastiveCall();
  const m = mutate(c);
  attempt('contrastiveLoss', m.what, () => native.contrastiveLoss!(m.call));
  if (rand() < 0.3) attempt('contrastiveLossUnfused', m.what, () => native.contrastiveLossUnfused!(m.call));
  const s = surrogateCall();
  const ms = mutate(s);
  attempt('surrogateLossCpu', ms.what, () => native.surrogateLossCpu!(ms.call));
  if (rand() < 0.3) attempt('surrogateLossUnfused', ms.what, () => native.surrogateLossUnfused!(ms.call));
}

interface NativeModel {
  [k: string]: Fn;
}
const Ctor = native.EngineModel as unknown as new (o: unknown) => NativeModel;
const cfg = smallConfig(rand() < 0.5 ? 'qwen2' : 'llama', { vocab: 32, hidden: 16, layers: 1, heads: 2, kvHeads: 1, intermediate: 24 });
const weights = () => [...randomWeights(cfg, { seed: Math.floor(rand() * 1000) })].map(([name, t]) => ({ name, shape: t.shape, data: t.data }));
let model: NativeModel | null = null;
const tok = (n: number) => Int32Array.from({ length: n }, () => Math.floor(rand() * cfg.vocabSize));

function disposed(e: NativeModel | null): boolean {
  try {
    e?.paramInfo!();
    return !e;
  } catch {
    return true; // disposed (by a call of the last round, or by one of its callbacks)
  }
}

function engineRound(): void {
  if (disposed(model) || rand() < 0.05) {
    const create: Obj = { config: { ...cfg }, weights: weights(), threads: 1 };
    const m = rand() < 0.3 ? mutate(create) : { call: create, what: 'valid' };
    if (rand() < 0.2 && m.call && typeof m.call === 'object') {
      const conf = { ...cfg } as Obj;
      const key = pick(Object.keys(conf));
      conf[key] = pick(WEIRD);
      (m.call as Obj).config = conf;
      m.what += `, config.${key} = ${describe(conf[key])}`;
    }
    log(`new EngineModel: ${m.what}`);
    try {
      model = new Ctor(m.call);
    } catch {
      model = new Ctor({ config: { ...cfg }, weights: weights(), threads: 1 });
    }
  }
  const e = model!;
  const P = Int32Array.of(2, 3), R = Int32Array.of(3, 1);
  const stream = { tokens: tok(2 + 3 + 3 + 1), promptLengths: P, responseLengths: R };
  const calls: Array<[string, Obj]> = [
    ['logits', { tokens: tok(6), batch: 2, length: 3 }],
    ['score', { ...stream, entropy: rand() < 0.5, pooled: rand() < 0.5 }],
    ['forwardTrain', { ...stream }],
    ['backward', { gradLogp: f32(2 * 3) }],
    ['generate', { tokens: tok(5), promptLengths: P, n: 2, maxNewTokens: 4, temperature: pick([0, 0.7, 1]), topP: 0.9, seed: 3, stopTokens: Int32Array.of(1), returnPooled: rand() < 0.5, maxBatch: 2 }],
    ['decodeAdd', { tokens: tok(3), n: 2, maxNewTokens: 3, seed: 1, promptIndex: 1, temperature: pick([0, 0.8]), topP: 0.9, topK: 2, minP: 0.1, repetitionPenalty: 1.2, logitBiasTokens: Int32Array.of(1), logitBiasValues: Float32Array.of(2), topLogprobs: 2, stopTokens: Int32Array.of(1) }],
    ['adamwStep', { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1 }],
    ['setOptimizerState', { step: 1, m: new Float32Array(0), v: new Float32Array(0) }],
  ];
  const [name, valid] = pick(calls);
  if (name === 'generate' && rand() < 0.3) {
    // callbacks that misbehave: dispose, re-enter, throw
    const act = pick(['dispose', 'reenter', 'throw', 'nothing']);
    valid.onProgress = () => {
      if (act === 'dispose') e.dispose!();
      else if (act === 'reenter') e.logits!({ tokens: tok(1), batch: 1, length: 1 });
      else if (act === 'throw') throw new Error('callback failed');
    };
    log(`generate: onProgress ${act}`);
  }
  if (name === 'setOptimizerState') {
    const n = (e.paramInfo!() as Array<{ size: number }>).reduce((a, p) => a + p.size, 0);
    valid.m = new Float32Array(n);
    valid.v = new Float32Array(n);
  }
  const m = rand() < 0.8 ? mutate(valid) : { call: valid, what: 'valid' };
  attempt(`EngineModel.${name}`, m.what, () => e[name]!(m.call));
  if (name === 'decodeAdd' || rand() < 0.05) {
    // the step-wise decoder: steps, removals of real and weird ids, the running count
    for (let k = 0; k < 4; k++) attempt('EngineModel.decodeStep', '', () => e.decodeStep!());
    const id = pick(WEIRD);
    attempt('EngineModel.decodeRemove', describe(id), () => e.decodeRemove!(id));
    attempt('EngineModel.decodeActive', '', () => e.decodeActive!());
  }
  if (rand() < 0.05) attempt('EngineModel.dispose', '', () => e.dispose!());
  if (rand() < 0.05) attempt('EngineModel.zeroGrad', '', () => e.zeroGrad!());
  if (rand() < 0.05) attempt('EngineModel.getWeights', '', () => e.getWeights!());
  if (rand() < 0.05) {
    const frozen = { source: rand() < 0.8 ? e : pick(WEIRD), frozen: pick([true, false, 1, 'x']) };
    attempt('new EngineModel (clone)', describe(frozen.frozen), () => new Ctor(frozen));
  }
}

function miscRound(): void {
  const gemm: Obj = { M: 8, N: 8, K: 8, mode: pick(['nt', 'nn', 'tn', 'rows']), repeats: 1, threads: 1 };
  const g = mutate(gemm);
  attempt('engineGemm', g.what, () => native.engineGemm!(g.call));
  const peak = mutate({ threads: 1, seconds: 0.001 });
  attempt('engineFmaPeak', peak.what, () => native.engineFmaPeak!(peak.call));
  const sample = mutate({ logits: f32(8), u: 0.5, temperature: 0.7, topP: 0.9, topK: 3, minP: 0.05, repetitionPenalty: 1.1, history: Int32Array.of(1, 2), logitBiasTokens: Int32Array.of(0), logitBiasValues: Float32Array.of(1), topLogprobs: 2 });
  attempt('engineSample', sample.what, () => native.engineSample!(sample.call));
  const bw = mutate({ megabytes: 1, repeats: 1, threads: 1 });
  attempt('measureBandwidth', bw.what, () => native.measureBandwidth?.(bw.call));
  const data = f32(1000);
  const rp = mutate({ data, threads: 1 });
  attempt('readPass', rp.what, () => native.readPass!(rp.call));
  const cp = mutate({ src: data, dst: new Float32Array(1000), threads: 1 });
  attempt('copyPass', cp.what, () => native.copyPass!(cp.call));
  const pc = mutate({ threads: 1 });
  attempt('poolCpuSeconds', pc.what, () => native.poolCpuSeconds!(pc.call));
  attempt('threadCpuSeconds', 'extra args', () => native.threadCpuSeconds!(pick(WEIRD)));
  const pool = mutate({ tokens: f32(2 * 3 * 8), mask: Uint8Array.of(1, 0, 1, 1, 1, 0), batch: 2, length: 3, hiddenSize: 8, out: new Float32Array(16), threads: 1 });
  attempt('contrastivePoolCpu', pool.what, () => native.contrastivePoolCpu!(pool.call));
  // relative path: the fuzz child runs in a temporary folder
  const map = mutate({ path: `shared-${rounds}-${Math.floor(rand() * 1e9)}.f32`, length: 16 });
  attempt('mapSharedFloat32', map.what, () => native.mapSharedFloat32!(map.call));
  const args = [pick(WEIRD), pick(WEIRD)];
  attempt('lockFile', args.map(describe).join(', '), () => native.lockFile!(...args));
  attempt('unlockFile', 'bad fd', () => native.unlockFile!(pick([-1, 2 ** 31 - 1, NaN, 'x']), pick(['/nonexistent/x', 1, null])));
  attempt('buildInfo', 'extra args', () => native.buildInfo!(pick(WEIRD)));
  // the GPU libraries (clipo_gpulibs.so): without a GPU or the library these are clear Errors too
  attempt('gpuLibsInfo', 'extra args', () => native.gpuLibsInfo?.(pick(WEIRD)));
  const gl = mutate({ m: 8, n: 8, k: 8, repeats: 1, warmup: 0, checkSamples: 4, seed: 1 });
  attempt('gpuLibsGemmBf16', gl.what, () => native.gpuLibsGemmBf16?.(gl.call));
  if (rand() < 0.1) {
    const ar = mutate({ megabytes: 1, repeats: 1, warmup: 0 });
    attempt('gpuLibsAllReduce', ar.what, () => native.gpuLibsAllReduce?.(ar.call));
  }
}

const round = family === 'engine' ? engineRound : family === 'misc' ? miscRound : kernelsRound;
const end = Date.now() + Number(secondsArg) * 1000;
let rounds = 0;
while (Date.now() < end) {
  round();
  rounds++;
}
log(`done ${rounds} rounds`);
