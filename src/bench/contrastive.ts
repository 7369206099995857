// `clipo bench contrastive`: the fused contrastive kernel (pool -> project -> normalize -> similarity -> loss, forward
// and backward) against the machine's measured bandwidth and against the unfused version of the same math.
//
// Dominant bytes: the token-level hidden states that are actually read (response tokens; padding is skipped), the
// mask, and the head weights (read once, gradient written once). Everything else is O(B*H + B*B).
import { contrastiveLoss, contrastiveLossUnfused, type ContrastiveLossOptions } from '../kernels/contrastive.js';
import { availableBackends } from '../kernels/backend.js';
import { nativeFunction } from '../native.js';
import { Rng } from '../util/rng.js';
import { appendAll, maxOf, median, timeRepeats } from '../util/stats.js';
import { measureBandwidth, round } from './bandwidth.js';
import type { BenchContext, BenchReport, BenchRow, BenchSuite } from './types.js';

interface CpuCase {
  B: number;
  L: number;
  H: number;
  D: number;
}

/** Random labels in groups of 16 (the paper's group size), about half correct. */
function labels(rng: Rng, B: number): { correct: Uint8Array; group: Int32Array } {
  return {
    correct: Uint8Array.from({ length: B }, () => rng.int(2)),
    group: Int32Array.from({ length: B }, (_, i) => Math.floor(i / 16)),
  };
}

/** Fills a big array with random values fast: one random block, tiled. */
function randomFill(rng: Rng, a: Float32Array | Uint16Array, bf16: boolean): void {
  const block = Math.min(a.length, 1 << 20);
  for (let k = 0; k < block; k++) {
    const v = rng.normal();
    if (bf16) a[k] = (new Uint32Array(new Float32Array([v]).buffer)[0]! >>> 16) & 0xffff;
    else a[k] = v;
  }
  for (let k = block; k < a.length; k += block) a.copyWithin(k, 0, Math.min(block, a.length - k));
}

function cpuRows(ctx: BenchContext, c: CpuCase, readGBs: number, read1GBs: number): BenchRow[] {
  const rng = new Rng(1234);
  const { B, L, H, D } = c;
  const rows: BenchRow[] = [];
  const weight = new Float32Array(D * H);
  randomFill(rng, weight, false);
  for (let k = 0; k < weight.length; k++) weight[k]! *= 1 / Math.sqrt(H);
  for (const [dtype, ragged] of [['f32', false], ['f32', true], ['bf16', false]] as const) {
    const tokens = dtype === 'bf16' ? new Uint16Array(B * L * H) : new Float32Array(B * L * H);
    randomFill(rng, tokens, dtype === 'bf16');
    const mask = new Uint8Array(B * L);
    let responseTokens = 0;
    for (let i = 0; i < B; i++) {
      const n = ragged ? L / 2 + rng.int(L / 2 + 1) : L;  // ragged: lengths uniform in [L/2, L]
      mask.fill(1, i * L, i * L + n);
      responseTokens += n;
    }
    const opts: ContrastiveLossOptions = {
      tokens, dtype, mask, batch: B, length: L, hiddenSize: H, outSize: D, weight, ...labels(rng, B),
      lossType: 'infonce', level: 'group', distance: 'cosine', temperature: 0.05, maskedLabel: 0, skipTrivial: true,
      backend: 'cpu',
    };
    ctx.log(`  contrastive cpu ${dtype}${ragged ? ' ragged' : ''}: B=${B} L=${L} H=${H} D=${D}`);
    const fused = median(timeRepeats(() => contrastiveLoss(opts), ctx.repeats));
    // one thread against the one-thread probe: the figure that does not depend on how busy the other cores are
    const fused1 = median(timeRepeats(() => contrastiveLoss({ ...opts, threads: 1 }), ctx.repeats));
    const unfused = median(timeRepeats(() => contrastiveLossUnfused(opts), Math.max(1, Math.ceil(ctx.repeats / 3))));
    const bytes = responseTokens * H * (dtype === 'bf16' ? 2 : 4) + B * L + 2 * D * H * 4;
    const gbs = bytes / fused / 1e9;
    rows.push({
      backend: 'cpu', dtype, mask: ragged ? 'ragged [L/2,L]' : 'full', B, L, H, D,
      fusedMs: round(fused * 1e3), unfusedMs: round(unfused * 1e3), MB: round(bytes / 1e6),
      GBs: round(gbs), ofBandwidth: round(gbs / readGBs), speedup: round(unfused / fused),
      fused1Ms: round(fused1 * 1e3), ofBandwidth1: round(bytes / fused1 / 1e9 / read1GBs),
    });
  }
  return rows;
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
  description: 'fused contrastive kernel (pool/project/normalize/similarity/loss, fwd+bwd) vs bandwidth and vs unfused',
  async run(ctx: BenchContext): Promise<BenchReport> {
    const notes: string[] = [];
    const rows: BenchRow[] = [];
    const avail = availableBackends();
    const wantCuda = ctx.backend === 'cuda' || (ctx.backend === 'auto' && avail.cuda);
    if (ctx.backend === 'cuda' && !avail.cuda) throw new Error(`contrastive: --backend cuda: ${avail.reason}`);
    if (ctx.backend !== 'cuda') {
      const bw = measureBandwidth({ megabytes: ctx.quick ? 64 : 512, repeats: ctx.repeats });
      const bw1 = measureBandwidth({ megabytes: ctx.quick ? 64 : 512, repeats: ctx.repeats, threads: 1 });
      const c: CpuCase = ctx.quick ? { B: 32, L: 128, H: 256, D: 128 } : { B: 256, L: 512, H: 1024, D: 512 };
      const cpu = cpuRows(ctx, c, bw.readGBs, bw1.readGBs);
      appendAll(rows, cpu);
      const f32 = cpu[0]!;
      notes.push(
        `cpu: measured read bandwidth ${round(bw.readGBs)} GB/s (${bw.threads} threads), ${round(bw1.readGBs)} GB/s (1 thread); ` +
          `fused f32 reaches ${round(100 * (f32.ofBandwidth as number))}% of it (1 thread: ${round(100 * (f32.ofBandwidth1 as number))}%; ` +
          `target >= 50%) and is ${f32.speedup}x the unfused version (target >= 3x)`,
      );
    }
    if (wantCuda) {
      const dev = nativeFunction<(o: object) => { copyGBs: number }>('measureDeviceBandwidth')({ megabytes: 1024, repeats: 20 });
      const cuda = cudaRows(ctx, dev.copyGBs);
      appendAll(rows, cuda);
      notes.push(
        `cuda (${avail.device}): device-to-device copy ${round(dev.copyGBs)} GB/s (read+write); best fused row ` +
          `${round(100 * maxOf(cuda.map((r) => r.ofBandwidth as number)))}% of it (target >= 80%)`,
      );
    }
    return { suite: 'contrastive', rows, notes };
  },
};
