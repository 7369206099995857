// The surrogate policy loss kernel (docs/algorithm.md §3) against a float64 reference written after verl's code:
// every mode x aggregation x KL on/off x dual clip, finite differences of d loss / d logp, hand-checked tiny cases,
// edge cases, bad inputs, and (where a GPU is present) CUDA against CPU with NaN-poisoned outputs.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { availableBackends } from '../src/kernels/backend.js';
import {
  surrogateAggs,
  surrogateLoss,
  surrogateLossUnfused,
  surrogateModes,
  type SurrogateInput,
  type SurrogateMode,
} from '../src/kernels/surrogate.js';
import { loadNative, packageRoot } from '../src/native.js';
import { Rng } from '../src/util/rng.js';
import { surrogateRef, type SurrogateRefOutput } from './reference/surrogate_ref.js';

const clipsFor: Record<SurrogateMode, { clipLow: number; clipHigh: number }> = {
  token: { clipLow: 0.2, clipHigh: 0.28 },
  sequence: { clipLow: 3e-4, clipHigh: 4e-4 }, // GSPO's range
  geo_mean: { clipLow: 0.4, clipHigh: 0.4 },
};

interface GenOptions {
  batch: number;
  length: number;
  mode: SurrogateMode;
  seed: number;
  ref?: boolean;
  /** fraction of response tokens */
  density?: number;
  emptyRow?: boolean;
}

/** Fresh random inputs whose ratios spread over both clip sides and past the dual clip. */
function gen(g: GenOptions): SurrogateInput {
  const rng = new Rng(g.seed);
  const n = g.batch * g.length;
  const logp = new Float32Array(n);
  const oldLogp = new Float32Array(n);
  const refLogp = new Float32Array(n);
  const mask = new Uint8Array(n);
  const advantages = new Float32Array(g.batch);
  for (let i = 0; i < g.batch; i++) {
    advantages[i] = i % 7 === 3 ? 0 : rng.normal();
    // per-row scale of the log-ratios: small rows (GSPO's sequence ratio near 1) and wide ones (dual clip at 3)
    const scale = g.mode === 'sequence' ? 0.02 + 0.3 * rng.next() : 0.1 + 0.6 * rng.next();
    const len = 1 + rng.int(g.length);
    for (let t = 0; t < g.length; t++) {
      const k = i * g.length + t;
      logp[k] = -3 * rng.next() - 0.01;
      const wide = rng.next() < 0.1 ? 4 : 1;
      oldLogp[k] = logp[k]! - scale * wide * rng.normal();
      refLogp[k] = logp[k]! + 0.5 * rng.normal();
      mask[k] = t < len && rng.next() < (g.density ?? 0.9) ? 1 : 0;
    }
  }
  if (g.emptyRow && g.batch > 1) mask.fill(0, g.length, 2 * g.length);
  return {
    logp, oldLogp, refLogp: g.ref ? refLogp : undefined, advantages, mask, batch: g.batch, length: g.length, mode: g.mode,
    ...clipsFor[g.mode], agg: 'token-mean', backend: 'cpu',
  };
}

function expectClose(actual: number, expected: number, rel: number, what: string) {
  const err = Math.abs(actual - expected);
  if (!(err <= rel * (1 + Math.abs(expected)))) throw new Error(`${what}: got ${actual}, expected ${expected} (|err| ${err})`);
}

function compare(out: ReturnType<typeof surrogateLoss> | ReturnType<typeof surrogateLossUnfused>, ref: SurrogateRefOutput, what: string) {
  expectClose(out.loss, ref.loss, 2e-5, `${what} loss`);
  expectClose(out.pgLoss, ref.pgLoss, 2e-5, `${what} pgLoss`);
  if (out.klLoss !== undefined && ref.klLoss) expectClose(out.klLoss, ref.klLoss, 2e-5, `${what} klLoss`);
  expectClose(out.approxKl, ref.approxKl, 2e-5, `${what} approxKl`);
  expect(out.tokens).toBe(ref.tokens);
  expect(out.sequences).toBe(ref.sequences);
  // a token exactly at a clip boundary may fall either way in float32: allow one token of difference
  const oneToken = 1.01 / Math.max(1, ref.tokens);
  for (const k of ['clipFracHigh', 'clipFracLow', 'dualClipFrac'] as const) {
    if (Math.abs(out[k] - ref[k]) > oneToken) throw new Error(`${what} ${k}: got ${out[k]}, expected ${ref[k]}`);
  }
  let gmax = 0;
  for (const v of ref.grad) gmax = Math.max(gmax, Math.abs(v));
  let bad = 0;
  for (let k = 0; k < ref.grad.length; k++) {
    const a = out.gradLogp[k]!;
    const e = ref.grad[k]!;
    if (!(Math.abs(a - e) <= 1e-5 * gmax + 1e-4 * Math.abs(e))) bad++;
  }
  if (bad > 1) throw new Error(`${what}: ${bad} gradient elements differ from the reference (max |g| ${gmax})`);
}

describe('surrogate loss: CPU kernel against the float64 reference', () => {
  const dualOptions = [undefined, 3];
  for (const mode of surrogateModes) {
    for (const agg of surrogateAggs) {
      for (const ref of [false, true]) {
        for (const dualClip of mode === 'token' ? dualOptions : [undefined]) {
          const name = `${mode} / ${agg} / ${ref ? 'KL' : 'no KL'}${dualClip ? ' / dual clip' : ''}`;
          test(name, () => {
            const seed = 1000 + surrogateModes.indexOf(mode) * 100 + surrogateAggs.indexOf(agg) * 10 + (ref ? 1 : 0) + (dualClip ? 5 : 0);
            const input = { ...gen({ batch: 24, length: 37, mode, seed, ref, emptyRow: true }), agg, dualClip, klCoef: ref ? 0.05 : undefined };
            const r = surrogateRef(input);
            // the inputs must exercise what they claim to
            expect(r.clipFracHigh + r.clipFracLow).toBeGreaterThan(0);
            if (mode !== 'sequence') expect(r.clipFracHigh * r.clipFracLow).toBeGreaterThan(0);
            if (dualClip) expect(r.dualClipFrac).toBeGreaterThan(0);
            compare(surrogateLoss(input), r, `fused ${name}`);
            compare(surrogateLossUnfused(input), r, `unfused ${name}`);
          });
        }
      }
    }
  }

  test('a row of 4096 tokens with T % 4 != 0 and the all-zero advantages case', () => {
    const input = { ...gen({ batch: 2, length: 4099, mode: 'token', seed: 7, ref: true }), dualClip: 3, klCoef: 0.001 };
    compare(surrogateLoss(input), surrogateRef(input), 'long rows');
    for (const mode of surrogateModes) {
      const z = { ...gen({ batch: 5, length: 9, mode, seed: 8 }), agg: 'seq-mean-token-mean' as const };
      z.advantages.fill(0);
      const out = surrogateLoss(z);
      expect(out.loss).toBe(0);
      expect(out.clipFracHigh + out.clipFracLow + out.dualClipFrac).toBe(0);
      expect(out.gradLogp.every((g) => g === 0)).toBe(true);
    }
  });

  test('B = 1, an all-masked row, and an all-masked batch', () => {
    for (const mode of surrogateModes) {
      const one = gen({ batch: 1, length: 33, mode, seed: 9, ref: true });
      compare(surrogateLoss({ ...one, klCoef: 0.1 }), surrogateRef({ ...one, klCoef: 0.1 }), `${mode} B=1`);
      const some = gen({ batch: 4, length: 16, mode, seed: 10, emptyRow: true });
      const out = surrogateLoss({ ...some, agg: 'seq-mean-token-sum' });
      expect(out.sequences).toBe(3);
      expect(out.gradLogp.subarray(16, 32).every((g) => g === 0)).toBe(true);
      const none = { ...some, mask: new Uint8Array(some.mask.length) };
      const empty = surrogateLoss(none);
      expect(empty).toMatchObject({ loss: 0, pgLoss: 0, tokens: 0, sequences: 0, clipFracHigh: 0, approxKl: 0 });
      expect(empty.gradLogp.every((g) => g === 0)).toBe(true);
    }
  });

  test('masked positions are never read into the arithmetic (NaN there changes nothing)', () => {
    for (const mode of surrogateModes) {
      const input = { ...gen({ batch: 6, length: 21, mode, seed: 11, ref: true }), klCoef: 0.02 };
      const clean = surrogateLoss(input);
      const dirty = { ...input, logp: input.logp.slice(), oldLogp: input.oldLogp.slice(), refLogp: input.refLogp!.slice() };
      for (let k = 0; k < input.mask.length; k++) {
        if (!input.mask[k]) dirty.logp[k] = dirty.oldLogp[k] = dirty.refLogp[k] = NaN;
      }
      const out = surrogateLoss(dirty);
      expect(out.loss).toBe(clean.loss);
      expect(Array.from(out.gradLogp)).toEqual(Array.from(clean.gradLogp));
    }
  });

  test('the gradient buffer can be reused (out) and every element is written', () => {
    const input = gen({ batch: 3, length: 10, mode: 'geo_mean', seed: 12 });
    const out = new Float32Array(30).fill(NaN);
    const r = surrogateLoss({ ...input, out });
    expect(r.gradLogp).toBe(out);
    expect(out.every((g) => Number.isFinite(g))).toBe(true);
  });
});

describe('surrogate loss: d loss / d logp by finite differences of the float64 reference', () => {
  for (const mode of surrogateModes) {
    for (const agg of surrogateAggs) {
      test(`${mode} / ${agg} (KL on${mode === 'token' ? ', dual clip' : ''})`, () => {
        const input = {
          ...gen({ batch: 5, length: 11, mode, seed: 77 + surrogateAggs.indexOf(agg), ref: true }),
          agg, klCoef: 0.3, dualClip: mode === 'token' ? 3 : undefined,
        };
        const kernel = surrogateLoss(input);
        const ref = surrogateRef(input);
        const lp = Float64Array.from(input.logp);
        const h = 1e-6;
        let checked = 0;
        for (let k = 0; k < lp.length; k++) {
          if (!input.mask[k]) continue;
          // GSPO's stop-gradient: perturb only the live logp of s_it = sg(s_i) * exp(live_t - sg(logp_t))
          const lossAt = (v: number) => {
            if (mode === 'sequence') {
              const live = lp.slice();
              live[k] = v;
              return surrogateRef({ ...input, logp: lp }, live).loss;
            }
            const x = lp.slice();
            x[k] = v;
            return surrogateRef({ ...input, logp: x }).loss;
          };
          const fd = (lossAt(lp[k]! + h) - lossAt(lp[k]! - h)) / (2 * h);
          expect(Math.abs(fd - ref.grad[k]!)).toBeLessThan(1e-6 + 1e-5 * Math.abs(fd));
          expect(Math.abs(fd - kernel.gradLogp[k]!)).toBeLessThan(1e-6 + 1e-4 * Math.abs(fd));
          checked++;
        }
        expect(checked).toBeGreaterThan(20);
      });
    }
  }
});

describe('surrogate loss: hand-checked tiny cases', () => {
  const base = { backend: 'cpu' as const, batch: 1, length: 2, mask: new Uint8Array([1, 1]) };
  test('token: asymmetric clip, dual clip, token-mean', () => {
    // row 0: A = 1, ratios 1.5 and 0.5, clip 0.2/0.2 -> token 0 clipped high: l = -1.2, grad 0;
    //        token 1: l = -min(0.5, 0.8) = -0.5, dl/dlogp = -A r = -0.5.
    // row 1: A = -1, c = 3, ratios 0.5 and 4 -> token 2 clipped low: l = max(0.5, 0.8) = 0.8, grad 0;
    //        token 3: inner -A r = 4 > -A c = 3 -> dual clip: l = 3, grad 0.
    // token-mean over N = 4: loss = (-1.2 - 0.5 + 0.8 + 3) / 4 = 0.525; grad = [0, -0.5/4, 0, 0] = [0, -0.125, 0, 0]
    // clipFracHigh = clipFracLow = dualClipFrac = 1/4; approxKl = -(ln1.5 + ln0.5 + ln0.5 + ln4)/4 = -ln(1.5)/4.
    const r = surrogateLoss({
      ...base, batch: 2, mask: new Uint8Array([1, 1, 1, 1]),
      logp: new Float32Array([Math.log(1.5), Math.log(0.5), Math.log(0.5), Math.log(4)]), oldLogp: new Float32Array(4),
      advantages: new Float32Array([1, -1]), mode: 'token', clipLow: 0.2, clipHigh: 0.2, dualClip: 3, agg: 'token-mean',
    });
    expect(r.loss).toBeCloseTo(0.525, 6);
    expect(Array.from(r.gradLogp)).toEqual([0, expect.closeTo(-0.125, 7), 0, 0]);
    expect([r.clipFracHigh, r.clipFracLow, r.dualClipFrac]).toEqual([0.25, 0.25, 0.25]);
    expect(r.approxKl).toBeCloseTo(-Math.log(1.5) / 4, 6);
  });

  test('sequence: s = exp(mean delta), clipped or not', () => {
    // deltas 0.1 and 0.3 -> s = e^0.2 = 1.2214028; A = 1.
    // clipHigh 0.3: unclipped; every token's loss is -s; seq-mean-token-mean -> loss -1.2214028,
    //   d/dlogp_t = w * (-A s) with w = 1/(n Bv) = 1/2 -> -0.6107014 for both tokens.
    // clipHigh 0.2: s > 1.2, clipped: loss -1.2, gradient 0, clipFracHigh 1.
    const io = { ...base, logp: new Float32Array([0.1, 0.3]), oldLogp: new Float32Array([0, 0]), advantages: new Float32Array([1]), mode: 'sequence' as const, clipLow: 0.2, agg: 'seq-mean-token-mean' as const };
    const a = surrogateLoss({ ...io, clipHigh: 0.3 });
    expect(a.loss).toBeCloseTo(-1.2214028, 6);
    expect(a.gradLogp[0]).toBeCloseTo(-0.6107014, 6);
    expect(a.gradLogp[1]).toBeCloseTo(-0.6107014, 6);
    const b = surrogateLoss({ ...io, clipHigh: 0.2 });
    expect(b.loss).toBeCloseTo(-1.2, 6);
    expect(Array.from(b.gradLogp)).toEqual([0, 0]);
    expect(b.clipFracHigh).toBe(1);
  });

  test('geo_mean: log-space clip, R = exp(mean clipped delta)', () => {
    // deltas 0.1 and 0.6, A = 2, eps 0.4: A > 0 clips 0.6 to 0.4 -> R = exp((0.1 + 0.4)/2) = e^0.25 = 1.2840254;
    // loss = -A R = -2.5680508; d/dlogp_0 = -A R / n = -1.2840254; token 1 is clipped: 0. clipFracHigh = 1/2.
    const r = surrogateLoss({ ...base, logp: new Float32Array([0.1, 0.6]), oldLogp: new Float32Array(2), advantages: new Float32Array([2]), mode: 'geo_mean', clipLow: 0.4, clipHigh: 0.4, agg: 'token-mean' });
    expect(r.loss).toBeCloseTo(-2.5680508, 6);
    expect(r.gradLogp[0]).toBeCloseTo(-1.2840254, 6);
    expect(r.gradLogp[1]).toBe(0);
    expect(r.clipFracHigh).toBe(0.5);
  });

  test('low_var_kl: k = e^x - x - 1 with x = ref - logp', () => {
    // one token, logp = 0 = old, ref = ln 2, A = 0: x = 0.6931472, k = 2 - 0.6931472 - 1 = 0.3068528,
    // dk/dlogp = 1 - e^x = -1; klCoef 0.5 -> loss 0.1534264, grad -0.5.
    const r = surrogateLoss({ ...base, length: 1, mask: new Uint8Array([1]), logp: new Float32Array([0]), oldLogp: new Float32Array([0]), refLogp: new Float32Array([Math.log(2)]), advantages: new Float32Array([0]), mode: 'token', clipLow: 0.2, clipHigh: 0.2, agg: 'token-mean', klCoef: 0.5 });
    expect(r.klLoss).toBeCloseTo(0.3068528, 6);
    expect(r.loss).toBeCloseTo(0.1534264, 6);
    expect(r.gradLogp[0]).toBeCloseTo(-0.5, 6);
  });
});

describe('surrogate loss: bad inputs throw clear errors', () => {
  const ok = () => gen({ batch: 2, length: 3, mode: 'token', seed: 5 });
  const cases: Array<[string, (o: SurrogateInput) => object, RegExp]> = [
    ['short logp', (o) => ({ ...o, logp: new Float32Array(5) }), /logp must have length 6, got 5/],
    ['wrong type', (o) => ({ ...o, oldLogp: new Float64Array(6) }), /oldLogp must be a Float32Array, got Float64Array/],
    ['mask type', (o) => ({ ...o, mask: new Int32Array(6) }), /mask must be a Uint8Array/],
    ['advantages length', (o) => ({ ...o, advantages: new Float32Array(3) }), /advantages must have length 2/],
    ['unknown mode', (o) => ({ ...o, mode: 'ppo' }), /mode must be one of token, sequence, geo_mean, got "ppo"/],
    ['unknown agg', (o) => ({ ...o, agg: 'mean' }), /agg must be one of/],
    ['NaN clip', (o) => ({ ...o, clipLow: NaN }), /clipLow must be a number in \[0, 1\)/],
    ['clipLow 1', (o) => ({ ...o, clipLow: 1 }), /clipLow/],
    ['negative clipHigh', (o) => ({ ...o, clipHigh: -0.1 }), /clipHigh must be/],
    ['dualClip 1', (o) => ({ ...o, dualClip: 1 }), /dualClip must be a finite number > 1/],
    ['dualClip in GSPO', (o) => ({ ...o, mode: 'sequence', dualClip: 3 }), /dualClip only applies to mode 'token'/],
    ['KL without ref', (o) => ({ ...o, klCoef: 0.1 }), /klCoef needs refLogp/],
    ['klType', (o) => ({ ...o, refLogp: o.logp, klType: 'kl' }), /klType must be 'low_var_kl'/],
    ['batch 0', (o) => ({ ...o, batch: 0 }), /batch must be an integer >= 1/],
    ['fractional length', (o) => ({ ...o, length: 2.5 }), /length must be an integer/],
    ['backend', (o) => ({ ...o, backend: 'tpu' }), /backend: expected 'cpu', 'cuda' or 'auto'/],
  ];
  for (const [name, mutate, msg] of cases) {
    test(name, () => expect(() => surrogateLoss(mutate(ok()) as SurrogateInput)).toThrow(msg));
  }

  test('the native binding validates on its own (no crash when called directly)', () => {
    const native = loadNative() as Record<string, (o: unknown) => unknown>;
    const o = ok();
    expect(() => native.surrogateLossCpu!({ ...o, logp: new Float32Array(2) })).toThrow(/logp: expected length 6, got 2/);
    expect(() => native.surrogateLossCpu!({ ...o, mode: 'x' })).toThrow(/mode: unknown value 'x'/);
    expect(() => native.surrogateLossCpu!({ ...o, clipHigh: Infinity })).toThrow(/clipHigh: must be finite/);
    expect(() => native.surrogateLossCpu!({ ...o, out: o.logp })).toThrow(/out: must not overlap an input array/);
    expect(() => native.surrogateLossCpu!(undefined)).toThrow(/expected an options object/);
  });

  test("asking for 'cuda' where it is not usable says why", () => {
    const avail = availableBackends();
    if (avail.cuda) return; // covered by the CUDA tests below
    expect(() => surrogateLoss({ ...ok(), backend: 'cuda' })).toThrow(/'cuda' is not available: /);
    expect(surrogateLoss({ ...ok(), backend: 'auto' }).backend).toBe('cpu');
  });
});

const avail = availableBackends();
describe(`surrogate loss: CUDA against CPU${avail.cuda ? ` (${avail.device})` : ` — skipped: ${avail.reason}`}`, () => {
  const cudaTest = avail.cuda ? test : test.skip;
  const native = () => loadNative() as Record<string, (o: object) => ReturnType<typeof surrogateLoss>>;
  for (const mode of surrogateModes) {
    for (const agg of surrogateAggs) {
      for (const length of [37, 512]) {
        cudaTest(`${mode} / ${agg} / T=${length} (KL, NaN-poisoned output)`, () => {
          const input = { ...gen({ batch: 19, length, mode, seed: 31 + length, ref: true, emptyRow: true }), agg, klCoef: 0.01, dualClip: mode === 'token' ? 3 : undefined };
          const cpu = surrogateLoss({ ...input, backend: 'cpu' });
          // N and Bv counted on the host (the default) and by the device's counting launch
          for (const countOnDevice of [false, true]) {
            const gpu = native().surrogateLossCuda!({ ...input, poisonOutput: true, countOnDevice });
            expect(gpu.gradLogp.every((g) => Number.isFinite(g))).toBe(true);
            compare(gpu, surrogateRef(input), `cuda ${mode}/${agg}${countOnDevice ? ' (device counts)' : ''}`);
            expectClose(gpu.loss, cpu.loss, 2e-5, 'cuda vs cpu loss');
            expect(gpu.tokens).toBe(cpu.tokens);
          }
        });
      }
    }
  }
  // Large batches put 2, 4 or 8 responses in one block (128, 64 or 32 threads each) and leave spare groups in the
  // last block; every mode and both counting paths there too.
  for (const batch of [700, 3001]) {
    for (const mode of surrogateModes) {
      cudaTest(`${mode} / seq-mean-token-mean / B=${batch} (responses grouped per block)`, () => {
        for (const length of [40, 64]) {
          const input = { ...gen({ batch, length, mode, seed: batch + length, ref: true, emptyRow: true }), agg: 'seq-mean-token-mean' as const, klCoef: 0.01 };
          const cpu = surrogateLoss({ ...input, backend: 'cpu' });
          for (const countOnDevice of [false, true]) {
            const gpu = native().surrogateLossCuda!({ ...input, poisonOutput: true, countOnDevice });
            compare(gpu, surrogateRef(input), `cuda ${mode} B=${batch} T=${length}${countOnDevice ? ' (device counts)' : ''}`);
            expectClose(gpu.loss, cpu.loss, 2e-5, 'cuda vs cpu loss');
            expect(gpu.tokens).toBe(cpu.tokens);
          }
        }
      });
    }
  }
  cudaTest('the timed benchmark entry cycles through input sets larger than 3x the L2 and returns the same result', () => {
    const input = { ...gen({ batch: 64, length: 256, mode: 'token', seed: 5, ref: true }), agg: 'token-mean' as const, klCoef: 0.01 };
    const timed = (loadNative() as Record<string, (o: object) => { ms: number[]; result: ReturnType<typeof surrogateLoss>; sets: number; l2Bytes: number; bytesPerSet: number }>).surrogateLossCudaTimed!({ ...input, repeats: 3 });
    expect(timed.ms).toHaveLength(3);
    expect(timed.l2Bytes).toBeGreaterThan(0);
    expect(timed.sets * timed.bytesPerSet).toBeGreaterThanOrEqual(3 * timed.l2Bytes);
    const once = surrogateLoss({ ...input, backend: 'cuda' });
    expect(timed.result.loss).toBeCloseTo(once.loss, 6);
    expect(Array.from(timed.result.gradLogp)).toEqual(Array.from(once.gradLogp));
  });
  cudaTest('masked NaN inputs, all-masked batch, and the public API picks cuda under auto', () => {
    const input = gen({ batch: 3, length: 8, mode: 'token', seed: 3 });
    expect(surrogateLoss({ ...input, backend: 'auto' }).backend).toBe('cuda');
    for (const countOnDevice of [false, true]) {
      const empty = native().surrogateLossCuda!({ ...input, mask: new Uint8Array(24), poisonOutput: true, countOnDevice });
      expect(empty.loss).toBe(0);
      expect(empty.gradLogp.every((g) => g === 0)).toBe(true);
    }
  });
});

describe('clipo bench: backends and surrogate suites', () => {
  const clipo = (...args: string[]) =>
    spawnSync(process.execPath, [path.join(packageRoot, 'bin', 'clipo'), ...args], { encoding: 'utf8', env: { ...process.env, FORCE_COLOR: '0' } });

  test('`bench backends --json` lists cpu, cuda and the GPU libraries with what is compiled and usable', () => {
    const r = clipo('bench', 'backends', '--json');
    expect(r.status).toBe(0);
    const rows = JSON.parse(r.stdout).reports[0].rows as Array<{ backend: string; compiled: boolean; usable: boolean }>;
    expect(rows.map((x) => x.backend)).toEqual(['cpu', 'cuda', 'cublaslt', 'nccl', 'engine gemm']);
    expect(rows[1]).toMatchObject({ compiled: availableBackends().cudaCompiled, usable: availableBackends().cuda });
  });

  test('`bench surrogate --quick --backend cpu` reports every config at one and all threads, fractions never above 1', () => {
    const r = clipo('bench', 'surrogate', '--quick', '--backend', 'cpu', '--repeats', '2', '--json');
    expect(r.status).toBe(0);
    const rows = JSON.parse(r.stdout).reports[0].rows as Array<{ config: string; threads: number; ms: number; GBs: number; vsUnfused: number; fractionOfLimit: number | null; benchError?: string }>;
    const names = ['GRPO (token, dual clip, KL)', 'DAPO (token, no KL)', 'GSPO (sequence)', 'GMPO (geo_mean)'];
    expect([...new Set(rows.map((x) => x.config))]).toEqual(names);
    for (const name of names) expect(rows.filter((x) => x.config === name)[0]!.threads).toBe(1);
    for (const row of rows) {
      for (const v of [row.ms, row.GBs, row.vsUnfused]) expect(v).toBeGreaterThan(0);
      if (row.fractionOfLimit === null) expect(row.benchError).toMatch(/impossible/);
      else expect(row.fractionOfLimit).toBeLessThanOrEqual(1);
    }
  });
});
