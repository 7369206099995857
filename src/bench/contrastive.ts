// `clipo bench contrastive`: the fused contrastive kernel (pool -> project -> normalize -> similarity -> loss, forward
// and backward to the head weight) against the read bandwidth probed in the same rounds, one thread and all threads;
// its pooling pass alone against the same probe; and with `--compare torch` the same math in PyTorch, interleaved:
// the paper's code (masked mean through a B x L x H temporary) and a careful version (pooling as one bmm).
//
// Dominant bytes: the token-level hidden states that are actually read (response tokens; padding is skipped), the
// mask, and the head weights (read once, gradient written once). Everything else is O(B*H + B*B).
import { contrastiveLoss, contrastiveLossUnfused, type ContrastiveLossOptions } from '../kernels/contrastive.js';
import { availableBackends } from '../kernels/backend.js';
import { nativeFunction } from '../native.js';
import { Rng } from '../util/rng.js';
import { appendAll, maxOf } from '../util/stats.js';
import { ReadProbe, rate, round } from './bandwidth.js';
import {
  checkedFraction, flagRow, interleave, limitSpread, loadBefore, loadRecord, pairedFraction, rowSeconds, standardNotes, threadCounts, timeCall,
  timeCallMean, type Entry, type Sample,
} from './harness.js';
import { compareValues, howToGetTorch, TorchPeer } from './peer.js';
import type { BenchContext, BenchReport, BenchRow, BenchSuite } from './types.js';

interface CpuCase {
  B: number;
  L: number;
  H: number;
  D: number;
  /** also time the unfused version and the paper's PyTorch code (both materialize a B x L x H temporary) */
  heavyPeers: boolean;
}

/** Random labels in groups of 16 (the paper's group size), about half correct. */
function labels(rng: Rng, B: number): { correct: Uint8Array; group: Int32Array } {
  return {
    correct: Uint8Array.from({ length: B }, () => rng.int(2)),
    group: Int32Array.from({ length: B }, (_, i) => Math.floor(i / 16)),
  };
}

/** Fills a big array fast: one random block, tiled. The block length is prime, so no two token rows (and no two
 *  responses) repeat each other. */
function randomFill(rng: Rng, a: Float32Array | Uint16Array, bf16: boolean): void {
  const block = Math.min(a.length, 1048573);
  for (let k = 0; k < block; k++) {
    const v = rng.normal();
    if (bf16) a[k] = (new Uint32Array(new Float32Array([v]).buffer)[0]! >>> 16) & 0xffff;
    else a[k] = v;
  }
  for (let k = block; k < a.length; k += block) a.copyWithin(k, 0, Math.min(block, a.length - k));
}

/** Ragged mask: response lengths uniform in [L/2, L], as a prefix (what a padded batch of responses looks like). */
function raggedMask(rng: Rng, B: number, L: number): { mask: Uint8Array; responseTokens: number } {
  const mask = new Uint8Array(B * L);
  let responseTokens = 0;
  for (let i = 0; i < B; i++) {
    const n = L / 2 + rng.int(L / 2 + 1);
    mask.fill(1, i * L, i * L + n);
    responseTokens += n;
  }
  return { mask, responseTokens };
}

const poolCpu = (o: object) => nativeFunction<(o: object) => Float32Array>('contrastivePoolCpu')(o);

async function cpuCase(ctx: BenchContext, c: CpuCase, probe: ReadProbe, peer: TorchPeer | null, rows: BenchRow[], notes: string[], errors: string[]) {
  const rng = new Rng(1234);
  const { B, L, H, D } = c;
  const weight = new Float32Array(D * H);
  randomFill(rng, weight, false);
  for (let k = 0; k < weight.length; k++) weight[k]! *= 1 / Math.sqrt(H);
  // with a peer, the token states live in a file both processes map: one copy in memory, the same bytes on both sides
  const shared = peer ? peer.sharedFloat32(`tokens-${B}x${L}x${H}.f32`, B * L * H) : null;
  const tokens = shared ? shared.array : new Float32Array(B * L * H);
  randomFill(rng, tokens, false);
  const { mask, responseTokens } = raggedMask(rng, B, L);
  const lab = labels(rng, B);
  const opts: ContrastiveLossOptions = {
    tokens, dtype: 'f32', mask, batch: B, length: L, hiddenSize: H, outSize: D, weight, ...lab,
    lossType: 'infonce', level: 'group', distance: 'cosine', temperature: 0.05, maskedLabel: 0, skipTrivial: true,
    backend: 'cpu',
  };
  const label = `B=${B} L=${L} H=${H} D=${D}`;
  ctx.log(`  contrastive cpu f32 ragged: ${label}`);
  const ref = contrastiveLoss(opts);
  const pooledOut = new Float32Array(B * H);
  const tokenBytes = responseTokens * H * 4;
  const bytes = tokenBytes + B * L + 2 * D * H * 4;

  // the peer: same inputs, clipo's InfoNCE draw, values checked before anything is timed
  const peerImpls: string[] = [];
  if (peer) {
    const files = {
      tokens: shared!.path, mask: peer.writeInput('mask.u8', mask), weight: peer.writeInput('weight.f32', weight),
      correct: peer.writeInput('correct.u8', lab.correct), group: peer.writeInput('group.i32', lab.group),
      positives: peer.writeInput('positives.i32', ref.positives),
    };
    await peer.call({ cmd: 'contrastive_setup', ...files, B, L, H, D, temperature: 0.05 });
    peer.removeFile(shared!.path); // both processes have it mapped; the pages live until both mappings go
    for (const impl of c.heavyPeers ? ['careful', 'official'] : ['careful']) {
      const theirs = await peer.check({ kernel: 'contrastive', impl, threads: threadCounts(ctx.threads).at(-1) }, D * H);
      const v = compareValues({ loss: ref.loss, grad: ref.gradWeight! }, theirs);
      notes.push(`${label}: values checked against torch ${impl} before timing: loss ${round(ref.loss, 6)} vs ${round(theirs.loss, 6)} (relative difference ${v.lossRel.toExponential(1)}), head gradient max difference ${v.gradRel.toExponential(1)} of its largest entry: ${v.agree ? 'agree' : 'DISAGREE'}`);
      if (v.agree) peerImpls.push(impl);
      else errors.push(`${label}: torch ${impl} disagrees with clipo (loss ${v.lossRel.toExponential(1)}, gradient ${v.gradRel.toExponential(1)}); its timing is not reported`);
    }
  }

  const threads = threadCounts(ctx.threads);
  const entries: Entry[] = [];
  for (const t of threads) {
    entries.push(...probe.entries(t));
    entries.push({ name: `clipo ${t}`, run: () => timeCall(() => contrastiveLoss({ ...opts, threads: t }), t) });
    // the pooling pass's sample is the mean of three back-to-back calls (one call is 15-150 ms): its target (>= 90% of
    // the probe) sits a few percent below where it runs, so its per-round noise is what decides the verdict
    entries.push({
      name: `pool ${t}`, run: () => timeCallMean(() => poolCpu({ tokens, mask, batch: B, length: L, hiddenSize: H, out: pooledOut, threads: t }), 3, t),
    });
    for (const impl of peerImpls) entries.push({ name: `torch ${impl} ${t}`, run: () => peer!.time({ kernel: 'contrastive', impl, threads: t }) });
  }
  const rounds = ctx.repeats;
  const res = await interleave(entries, rounds, 1, ctx.log);
  // the unfused version (a masked copy of the tokens, then one pass per op) after the interleaved rounds: it is
  // a second implementation of the same math, not the peer, so it does not need the same rounds
  const unfused = new Map<number, Sample[]>();
  if (c.heavyPeers) {
    for (const t of threads) {
      const s: Sample[] = [];
      for (let r = 0; r < Math.max(1, Math.ceil(ctx.repeats / 3)); r++) s.push(timeCall(() => contrastiveLossUnfused({ ...opts, threads: t }), t));
      unfused.set(t, s);
    }
  }
  if (peer) await peer.call({ cmd: 'release' });

  for (const t of threads) {
    const read = probe.limit(res, t);
    const limit = rate(probe.bytes, read.seconds);
    const spread = limitSpread(read.samples, t);
    const clipoS = rowSeconds(res.get(`clipo ${t}`)!, t);
    const base = { kernel: 'contrastive', case: label, mask: 'ragged [L/2,L]', threads: t, clock: t === 1 ? 'thread CPU' : 'wall', readGBs: round(limit), readPattern: read.pattern };
    // a row in the interleaved rounds is compared with the probe round by round (pairedFraction); the unfused
    // version, timed after the rounds, with the ratio of medians
    const add = (impl: string, seconds: number, b: number, what: string, samples?: Sample[]) => {
      const gbs = rate(b, seconds);
      const measured = samples ? pairedFraction(b, samples, probe.bytes, read.samples, t) * limit : gbs;
      const f = checkedFraction(measured, limit, `${label} ${impl} ${t} thread${t > 1 ? 's' : ''}`, spread);
      const row: BenchRow = { ...base, impl, ms: round(seconds * 1e3), GBs: round(gbs), ofRead: f.fraction, vsClipo: round(seconds / clipoS), bytes: what };
      if (f.atLimit) notes.push(`${label} ${impl}, ${t} thread${t > 1 ? 's' : ''}: ${f.fraction} of the read probe, within the probe's own spread in these rounds (±${round(100 * spread, 2)}%): at the limit`);
      flagRow(row, errors, f.error);
      rows.push(row);
      return row;
    };
    add('clipo (fused)', clipoS, bytes, 'tokens+mask+W+dW', res.get(`clipo ${t}`)!);
    const pool = add('clipo pooling pass', rowSeconds(res.get(`pool ${t}`)!, t), tokenBytes + B * L, 'tokens+mask', res.get(`pool ${t}`)!);
    for (const impl of peerImpls) add(`torch ${impl}`, rowSeconds(res.get(`torch ${impl} ${t}`)!, t), bytes, 'tokens+mask+W+dW', res.get(`torch ${impl} ${t}`)!);
    if (unfused.has(t)) add('clipo unfused', rowSeconds(unfused.get(t)!, t), bytes, 'tokens+mask+W+dW');
    if (t === 1)
      notes.push(`${label}, 1 thread: pooling pass at ${pool.ofRead === null ? 'an impossible fraction (see the error)' : `${round(100 * (pool.ofRead as number))}%`} of the read bandwidth probed in the same rounds (target >= 90%): ${(pool.ofRead as number) >= 0.9 ? 'met' : 'NOT met'}`);
    if (peerImpls.includes('careful')) {
      const ratio = rowSeconds(res.get(`torch careful ${t}`)!, t) / clipoS;
      notes.push(`${label}, ${t} thread${t > 1 ? 's' : ''}: torch careful takes ${round(ratio)}x clipo's time (target: clipo ahead, > 1): ${ratio > 1 ? 'met' : 'NOT met'}`);
    }
  }
}

interface CudaBenchResult {
  ms: number;
  bytes: number;
  poolMs: number;
}

function cudaRows(ctx: BenchContext, copyGBs: number): BenchRow[] {
  // Track II of the paper: hidden 3584 (Qwen2.5-7B), head output 2048, responses up to 4096 tokens, micro-batches
  const bench = nativeFunction<(o: object) => CudaBenchResult>('contrastiveCudaBench');
  const sizes = ctx.quick ? [{ B: 16, L: 1024 }] : [{ B: 16, L: 4096 }, { B: 32, L: 2048 }, { B: 64, L: 4096 }];
  const rows: BenchRow[] = [];
  for (const { B, L } of sizes)
    for (const dtype of ['bf16', 'f32'] as const) {
      const H = 3584, D = 2048;
      ctx.log(`  contrastive cuda ${dtype}: B=${B} L=${L} H=${H} D=${D}`);
      const r = bench({ batch: B, length: L, hiddenSize: H, outSize: D, dtype, repeats: ctx.repeats * 3, lossType: 'infonce', level: 'group', distance: 'cosine', temperature: 0.05, maskedLabel: 0, skipTrivial: true });
      const gbs = r.bytes / (r.ms / 1e3) / 1e9;
      rows.push({
        // `ms` and `dtype` are the keys scripts/gpu/merge-results.mjs matches against the PyTorch eager timings
        backend: 'cuda', dtype, mask: 'full', B, L, H, D, ms: round(r.ms), poolMs: round(r.poolMs),
        MB: round(r.bytes / 1e6), GBs: round(gbs), ofBandwidth: round(gbs / copyGBs),
      });
    }
  return rows;
}

export const contrastiveSuite: BenchSuite = {
  name: 'contrastive',
  groups: ['kernels'],
  description: 'fused contrastive kernel (fwd+bwd) and its pooling pass vs the read bandwidth probed in the same rounds, 1 and all threads; --compare torch',
  async run(ctx: BenchContext): Promise<BenchReport> {
    const before = loadBefore();
    const notes: string[] = [];
    const errors: string[] = [];
    const rows: BenchRow[] = [];
    const avail = availableBackends();
    const wantCuda = ctx.backend === 'cuda' || (ctx.backend === 'auto' && avail.cuda);
    if (ctx.backend === 'cuda' && !avail.cuda) throw new Error(`contrastive: --backend cuda: ${avail.reason}`);
    if (ctx.backend !== 'cuda') {
      let peer: TorchPeer | null = null;
      if (ctx.peer) {
        const p = await ctx.peer();
        if (p instanceof TorchPeer) peer = p;
        else notes.push(`--compare torch: skipped: ${p.unavailable}; ${howToGetTorch}.`);
      }
      const probe = new ReadProbe(ctx.quick ? 64 : 256);
      const cases: CpuCase[] = ctx.quick
        ? [{ B: 32, L: 128, H: 256, D: 128, heavyPeers: true }]
        : [{ B: 256, L: 512, H: 1024, D: 512, heavyPeers: true }, { B: 128, L: 2048, H: 3584, D: 512, heavyPeers: false }];
      for (const c of cases) await cpuCase(ctx, c, probe, peer, rows, notes, errors);
      notes.push(
        'cpu: one-thread rows are timed on the calling thread\'s own CPU clock (kernel, probe and PyTorch alike), which leaves out the time other processes held the core; all-thread rows on the wall clock. ' +
          'Every row\'s limit is the read probe of the same interleaved rounds, in the pattern fastest on its median (readPattern); ofRead is the median over the rounds of the row\'s rate over that pattern\'s rate in the same round (paired, so load drifting between rounds cancels). vsClipo = the row\'s time / clipo\'s fused time (above 1: clipo is faster). ' +
          'At the large size the paper\'s PyTorch code and the unfused version are not run: both build a B x L x H temporary (3.8 GB more).',
      );
      if (ctx.quick) notes.push('cpu: --quick: small inputs that stay in cache; not a measurement.');
    }
    if (wantCuda) {
      const dev = nativeFunction<(o: object) => { copyGBs: number }>('measureDeviceBandwidth')({ megabytes: 1024, repeats: 20 });
      const cuda = cudaRows(ctx, dev.copyGBs);
      for (const r of cuda) {
        const f = checkedFraction(r.GBs as number, dev.copyGBs, `cuda ${r.dtype} B=${r.B} L=${r.L}`);
        r.ofBandwidth = f.fraction;
        flagRow(r, errors, f.error);
      }
      appendAll(rows, cuda);
      notes.push(
        `cuda (${avail.device}): device-to-device copy ${round(dev.copyGBs)} GB/s (read+write); best fused row ` +
          `${round(100 * maxOf(cuda.map((r) => (r.ofBandwidth as number | null) ?? 0)))}% of it (target >= 80%)`,
      );
    }
    const load = loadRecord(before);
    return { suite: 'contrastive', rows, notes: [...standardNotes(load, errors), ...notes], load, errors };
  },
};
