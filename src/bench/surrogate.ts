// `clipo bench surrogate`: the fused surrogate loss against the memory limit probed in the same rounds, one thread
// and all threads, against the unfused (eager-style) version of the same math and, with `--compare torch`, verl's
// PyTorch code and a careful PyTorch version, interleaved; with CUDA, against the device-to-device copy bandwidth.
import { readFileSync } from 'node:fs';
import { availableBackends } from '../kernels/backend.js';
import { surrogateLoss, surrogateLossUnfused, type SurrogateInput, type SurrogateMode } from '../kernels/surrogate.js';
import { nativeFunction } from '../native.js';
import { Rng } from '../util/rng.js';
import { median } from '../util/stats.js';
import { CopyProbe, rate, ReadProbe, round } from './bandwidth.js';
import { checkedFraction, flagRow, interleave, loadBefore, loadRecord, rowSeconds, standardNotes, threadCounts, timeCall, timeCallMean, type Entry, type Sample } from './harness.js';
import { compareValues, howToGetTorch, TorchPeer } from './peer.js';
import type { BenchContext, BenchReport, BenchRow, BenchSuite } from './types.js';

/** The algorithms' settings (docs/algorithm.md §3), one benchmark row each. */
const configs: Array<{ name: string; mode: SurrogateMode; ref: boolean; set: Partial<SurrogateInput> }> = [
  { name: 'GRPO (token, dual clip, KL)', mode: 'token', ref: true, set: { clipLow: 0.2, clipHigh: 0.2, dualClip: 3, agg: 'token-mean', klCoef: 0.001 } },
  { name: 'DAPO (token, no KL)', mode: 'token', ref: false, set: { clipLow: 0.2, clipHigh: 0.28, agg: 'token-mean' } },
  { name: 'GSPO (sequence)', mode: 'sequence', ref: false, set: { clipLow: 3e-4, clipHigh: 4e-4, agg: 'seq-mean-token-mean' } },
  { name: 'GMPO (geo_mean)', mode: 'geo_mean', ref: false, set: { clipLow: 0.4, clipHigh: 0.4, agg: 'token-mean' } },
];

/** Realistic inputs: log-probs in (-3, 0), log-ratios ~ N(0, 0.2^2), responses filling 50-100% of the row. */
export function surrogateBenchInput(batch: number, length: number, seed = 1): Required<Pick<SurrogateInput, 'logp' | 'oldLogp' | 'refLogp' | 'advantages' | 'mask'>> {
  const rng = new Rng(seed);
  const n = batch * length;
  const logp = new Float32Array(n);
  const oldLogp = new Float32Array(n);
  const refLogp = new Float32Array(n);
  const mask = new Uint8Array(n);
  const advantages = new Float32Array(batch);
  for (let i = 0; i < batch; i++) {
    advantages[i] = rng.normal();
    const len = Math.floor(length * (0.5 + 0.5 * rng.next()));
    mask.fill(1, i * length, i * length + len);
  }
  for (let k = 0; k < n; k++) {
    const lp = -3 * rng.next();
    logp[k] = lp;
    oldLogp[k] = lp + 0.4 * (rng.next() - 0.5);
    refLogp[k] = lp + 0.4 * (rng.next() - 0.5);
  }
  return { logp, oldLogp, refLogp, advantages, mask };
}

/** Bytes a single pass must move: logp, oldLogp (+ refLogp), mask and advantages in; gradLogp out. */
function trafficBytes(batch: number, length: number, ref: boolean) {
  const tokens = batch * length;
  return { read: tokens * (4 + 4 + (ref ? 4 : 0) + 1) + batch * 4, write: tokens * 4 };
}

/** Last-level cache size in bytes (Linux sysfs), or 64 MiB when unknown. */
function lastLevelCacheBytes(): number {
  for (const idx of [3, 2]) {
    try {
      const txt = readFileSync(`/sys/devices/system/cpu/cpu0/cache/index${idx}/size`, 'utf8').trim();
      const m = /^(\d+)([KMG]?)$/.exec(txt);
      if (m) return Number(m[1]) * ({ '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30 } as Record<string, number>)[m[2]!]!;
    } catch {
      // no sysfs: fall through
    }
  }
  return 64 * 2 ** 20;
}

type BenchData = ReturnType<typeof surrogateBenchInput>;

/** Enough copies of the inputs (and outputs) that cycling through them never finds the previous call's data in
 *  the last-level cache: each timed call then reads from memory, as it does in training. */
function rotatingCopies(data: BenchData, bytesPerCall: number, quick: boolean): Array<BenchData & { out: Float32Array; out2: Float32Array }> {
  // --quick is a smoke test: two copies, no claim about cache residency
  // 3x the reported last-level cache, and at least 512 MiB: a VM may report less cache than the host has
  const k = quick ? 2 : Math.max(2, Math.ceil(Math.max(3 * lastLevelCacheBytes(), 512 * 2 ** 20) / bytesPerCall));
  const copies = [];
  for (let c = 0; c < k; c++) {
    copies.push({
      logp: data.logp.slice(), oldLogp: data.oldLogp.slice(), refLogp: data.refLogp.slice(), advantages: data.advantages.slice(),
      // outputs written once now, so page faults of fresh memory never land in a timed call
      mask: data.mask.slice(), out: new Float32Array(data.logp.length).fill(0), out2: new Float32Array(data.logp.length).fill(0),
    });
  }
  return copies;
}

async function cpuRows(ctx: BenchContext, rows: BenchRow[], notes: string[], errors: string[]) {
  const [B, T] = ctx.quick ? [64, 512] : [512, 2048];
  ctx.log(`surrogate (cpu): generating B=${B} x T=${T} inputs`);
  const data = surrogateBenchInput(B, T);
  const read = new ReadProbe(ctx.quick ? 64 : 256);
  const copy = new CopyProbe(ctx.quick ? 32 : 128);
  const all = trafficBytes(B, T, true);
  const copies = rotatingCopies(data, all.read + all.write, ctx.quick);
  let peer: TorchPeer | null = null;
  if (ctx.peer) {
    const p = await ctx.peer();
    if (p instanceof TorchPeer) {
      peer = p;
      await peer.call({
        cmd: 'surrogate_setup', B, T, logp: peer.writeInput('logp.f32', data.logp), oldLogp: peer.writeInput('old.f32', data.oldLogp),
        refLogp: peer.writeInput('ref.f32', data.refLogp), advantages: peer.writeInput('adv.f32', data.advantages), mask: peer.writeInput('mask.u8', data.mask),
      });
    } else notes.push(`--compare torch: skipped: ${p.unavailable}; ${howToGetTorch}.`);
  }
  const threads = threadCounts(ctx.threads);
  const verdicts: string[] = [];
  for (const c of configs) {
    const inputs: SurrogateInput[] = copies.map((d) => ({
      ...d, refLogp: c.ref ? d.refLogp : undefined, batch: B, length: T, mode: c.mode,
      clipLow: 0.2, clipHigh: 0.2, agg: 'token-mean', ...c.set, backend: 'cpu',
    }));
    const peerCfg = { mode: c.mode, clipLow: 0.2, clipHigh: 0.2, agg: 'token-mean', dualClip: null, klCoef: 0, ...c.set };
    const impls: string[] = [];
    if (peer) {
      const mine = surrogateLoss({ ...inputs[0]!, out: undefined });
      for (const impl of c.mode === 'token' ? ['verl', 'careful'] : ['verl']) {
        const theirs = await peer.check({ kernel: 'surrogate', impl, config: peerCfg, threads: threads.at(-1) }, B * T);
        const v = compareValues({ loss: mine.loss, grad: mine.gradLogp }, theirs);
        if (v.agree) impls.push(impl);
        else errors.push(`${c.name}: torch ${impl} disagrees with clipo (loss ${v.lossRel.toExponential(1)}, gradient ${v.gradRel.toExponential(1)}); its timing is not reported`);
        notes.push(`${c.name}: values checked against torch ${impl}: loss relative difference ${v.lossRel.toExponential(1)}, gradient max difference ${v.gradRel.toExponential(1)} of its largest: ${v.agree ? 'agree' : 'DISAGREE'}`);
      }
    }
    ctx.log(`  ${c.name}`);
    let k = 0;
    const entries: Entry[] = [];
    for (const t of threads) {
      entries.push(...read.entries(t));
      entries.push({ name: `copy ${t}`, run: () => copy.run(t) });
      // several calls per sample (a call is ~1 ms): the sample is their mean, each on a different input copy
      entries.push({
        name: `clipo ${t}`, run: () => timeCallMean(() => surrogateLoss({ ...inputs[k++ % inputs.length]!, threads: t }), 8, t),
      });
      for (const impl of impls) entries.push({ name: `torch ${impl} ${t}`, run: () => peer!.time({ kernel: 'surrogate', impl, config: peerCfg, threads: t }) });
    }
    const res = await interleave(entries, ctx.repeats, 1);
    const unfused = new Map<number, number>();
    for (const t of threads) {
      const s: Sample[] = [];
      for (let r = 0; r < Math.max(3, Math.ceil(ctx.repeats / 3)); r++) {
        const x = inputs[k++ % inputs.length]!;
        s.push(timeCall(() => surrogateLossUnfused({ ...x, threads: t, out: copies[k % copies.length]!.out2 }), t));
      }
      unfused.set(t, rowSeconds(s, t));
    }
    const { read: rb, write: wb } = trafficBytes(B, T, c.ref);
    for (const t of threads) {
      const readGBs = rate(read.bytes, read.limit(res, t).seconds);
      const copyGBs = rate(copy.bytes, rowSeconds(res.get(`copy ${t}`)!, t));
      // The fair limit: the read stream at the measured read rate, and each written byte at the extra cost a
      // memcpy pays for it (copy moves b bytes in and b out in 2b/copyGBs, of which b/readGBs is the read).
      const tMin = rb / (readGBs * 1e9) + wb * (2 / (copyGBs * 1e9) - 1 / (readGBs * 1e9));
      const fused = rowSeconds(res.get(`clipo ${t}`)!, t);
      const f = checkedFraction(tMin, fused, `${c.name} ${t} thread${t > 1 ? 's' : ''}`);
      const row: BenchRow = {
        backend: 'cpu', config: c.name, B, T, threads: t, clock: t === 1 ? 'thread CPU' : 'wall', ms: round(fused * 1e3),
        GBs: round((rb + wb) / fused / 1e9), limitGBs: round((rb + wb) / tMin / 1e9), fractionOfLimit: f.fraction,
        unfusedMs: round(unfused.get(t)! * 1e3), vsUnfused: round(unfused.get(t)! / fused),
      };
      for (const impl of impls) {
        const ts = rowSeconds(res.get(`torch ${impl} ${t}`)!, t);
        row[`torch${impl[0]!.toUpperCase()}${impl.slice(1)}Ms`] = round(ts * 1e3);
        row[`vsTorch${impl[0]!.toUpperCase()}${impl.slice(1)}`] = round(ts / fused);
      }
      flagRow(row, errors, f.error);
      rows.push(row);
      if (t === 1) verdicts.push(`${c.name} ${f.fraction === null ? 'error' : round(f.fraction)}`);
    }
  }
  notes.push(
    ctx.quick ? 'cpu: --quick: small inputs that stay in cache; not a measurement.' : `cpu: clipo's inputs cycled through ${copies.length} copies (${round((copies.length * (all.read + all.write)) / 2 ** 20)} MiB) so no call finds its data in cache (last-level cache reported: ${round(lastLevelCacheBytes() / 2 ** 20)} MiB); PyTorch's inputs are one copy (${round((all.read + all.write) / 2 ** 20)} MiB), which may stay in that cache: an advantage to PyTorch.`,
    `cpu: limit = reads at the read rate + writes at a memcpy's marginal write cost, both probed in the same rounds as the kernel; one thread on the thread's CPU clock, all threads on the wall clock. Fraction of the limit at one thread: ${verdicts.join(', ')}.`,
    'cpu: torchVerl = verl\'s compute_policy_loss / agg_loss / kl_penalty with autograd; torchCareful (token modes) = the loss and gradient in closed form under no_grad; vs* = their time / clipo\'s (above 1: clipo is faster).',
  );
}

interface CudaTimed {
  ms: number[];
  result: { loss: number };
  /** input/output sets cycled through (together > 3x the L2 cache), the L2 size, and one set's bytes */
  sets: number;
  l2Bytes: number;
  bytesPerSet: number;
}

async function cudaRows(ctx: BenchContext, rows: BenchRow[], notes: string[]) {
  const avail = availableBackends();
  if (!avail.cuda) {
    if (ctx.backend === 'cuda') throw new Error(`surrogate: --backend cuda, but CUDA is not available: ${avail.reason}`);
    notes.push(`cuda: not measured (${avail.reason})`);
    return;
  }
  const dev = nativeFunction<(o: object) => { copyGBs: number }>('measureDeviceBandwidth')({ megabytes: 1024, repeats: Math.max(10, ctx.repeats) });
  const timed = nativeFunction<(o: object) => CudaTimed>('surrogateLossCudaTimed');
  // Track II: 2048 responses per step, responses up to 4096 tokens; the whole step's tokens at once, and a
  // 256-response micro-batch.
  const T = ctx.quick ? 1024 : 4096;
  const sizes = ctx.quick ? [256] : [2048, 256];
  ctx.log(`surrogate (cuda): generating ${sizes[0]} x ${T} inputs`);
  const data = surrogateBenchInput(sizes[0]!, T, 2);
  let all = true;
  const rotation: string[] = [];
  for (const B of sizes) {
    const n = B * T;
    const part = {
      logp: data.logp.subarray(0, n), oldLogp: data.oldLogp.subarray(0, n), refLogp: data.refLogp.subarray(0, n),
      advantages: data.advantages.subarray(0, B), mask: data.mask.subarray(0, n),
    };
    for (const c of configs) {
      const r = timed({ ...part, refLogp: c.ref ? part.refLogp : undefined, batch: B, length: T, mode: c.mode, clipLow: 0.2, clipHigh: 0.2, agg: 'token-mean', ...c.set, repeats: Math.max(20, ctx.repeats) });
      const ms = median(r.ms);
      const { read, write } = trafficBytes(B, T, c.ref);
      const GBs = (read + write) / (ms * 1e-3) / 1e9;
      all &&= GBs / dev.copyGBs >= 0.8;
      rows.push({ backend: 'cuda', config: c.name, B, T, ms: round(ms), GBs: round(GBs), limitGBs: round(dev.copyGBs), fractionOfLimit: round(GBs / dev.copyGBs), unfusedMs: null, speedup: null, sets: r.sets });
      if (c === configs[0]) rotation.push(`B=${B}: ${r.sets} x ${round(r.bytesPerSet / 1e6)} MB (L2 ${round(r.l2Bytes / 2 ** 20)} MiB)`);
    }
  }
  notes.push(
    `cuda: ${avail.device}; device-to-device copy ${round(dev.copyGBs)} GB/s (read + write) in this run is the limit.`,
    `cuda: each timed call reads a set of inputs the previous calls did not, cycling through sets that together exceed 3x the L2 cache: ${rotation.join(', ')}.`,
    `cuda: target >= 80% of the copy bandwidth: ${all ? 'met' : 'NOT met'} for every config (PyTorch eager: scripts/gpu/torch_surrogate.py).`,
  );
}

export const surrogateSuite: BenchSuite = {
  name: 'surrogate',
  groups: ['kernels'],
  description: 'fused clipped surrogate loss + gradient (GRPO/DAPO/GSPO/GMPO) vs memory bandwidth and vs unfused passes',
  async run(ctx: BenchContext): Promise<BenchReport> {
    const rows: BenchRow[] = [];
    const notes: string[] = [];
    const before = loadBefore();
    const errors: string[] = [];
    if (ctx.backend !== 'cuda') await cpuRows(ctx, rows, notes, errors);
    if (ctx.backend !== 'cpu') await cudaRows(ctx, rows, notes);
    const load = loadRecord(before);
    return { suite: 'surrogate', rows, notes: [...standardNotes(load, errors), ...notes], load, errors };
  },
};
