// The memory-bandwidth probes, measured in the same run (and, in the kernel suites, in the same rounds) as the
// kernels they are compared against. Read: the fastest of a few passes over a buffer far larger than the last-level
// cache, each thread keeping 8 or 16 sequential streams in flight through windows of a few hundred KiB (one stream
// under-reads a core's memory system by about a third, which would let a multi-stream kernel show more than 100%;
// see native/bench/probes.cpp). Copy: memcpy, read + write bytes.
import { nativeFunction } from '../native.js';
import { median, minOf } from '../util/stats.js';
import { interleave, loadBefore, loadRecord, rowSeconds, standardNotes, threadCounts, type Entry, type Sample } from './harness.js';
import type { BenchContext, BenchReport, BenchRow, BenchSuite } from './types.js';

export interface BandwidthResult {
  readGBs: number;
  copyGBs: number;
  bytes: number;
  threads: number;
}

/** The older all-in-one probe (single-stream read, memcpy), kept for callers that want one figure quickly. */
export function measureBandwidth(opts: { megabytes?: number; repeats?: number; threads?: number } = {}): BandwidthResult {
  return nativeFunction<(o: object) => BandwidthResult>('measureBandwidth')(opts);
}

interface PassResult {
  seconds: number;
  cpuSeconds: number;
  bytes: number;
}

/** The read limit of one set of interleaved rounds: the pattern whose median is fastest, and its samples. */
export interface ReadLimit {
  pattern: string;
  samples: Sample[];
  seconds: number;
}

/**
 * A read probe over its own buffer, in several patterns (stream counts and window sizes, native/bench/probes.cpp).
 * `entries(threads)` times every pattern once per round inside `interleave`; `limit` then takes the pattern whose
 * median over the rounds is fastest. A median per pattern, like the kernels' medians of single calls: the best of
 * several noisy passes in each round would be an upper order statistic, a few percent above any pattern's typical rate.
 */
export class ReadProbe {
  readonly data: Float32Array;
  readonly patterns: string[];
  constructor(megabytes: number) {
    this.data = new Float32Array(megabytes * 2 ** 18);
    for (let k = 0; k < this.data.length; k += 1024) this.data[k] = (k & 4095) * 1e-3; // first touch of every page
    this.patterns = nativeFunction<() => string[]>('readPatterns')();
  }
  get bytes(): number {
    return this.data.byteLength;
  }
  /** One timed read of the whole buffer in one pattern. */
  run(threads: number, pattern: number): Sample {
    const r = nativeFunction<(o: object) => PassResult>('readPass')({ data: this.data, threads, pattern });
    return { wall: r.seconds, cpu: r.cpuSeconds };
  }
  /** Interleave entries for every pattern at `threads`, named under `prefix` (default `read ${threads}`). */
  entries(threads: number, prefix = `read ${threads}`): Entry[] {
    return this.patterns.map((p, k) => ({ name: `${prefix} [${p}]`, run: () => this.run(threads, k) }));
  }
  /** The fastest pattern by median (rows' clock: thread CPU for one thread, wall for more) among `entries`' results. */
  limit(res: Map<string, Sample[]>, threads: number, prefix = `read ${threads}`): ReadLimit {
    let best: ReadLimit | null = null;
    for (const p of this.patterns) {
      const samples = res.get(`${prefix} [${p}]`);
      if (!samples) throw new Error(`read probe: no samples for pattern ${p} at ${threads} thread(s)`);
      const seconds = rowSeconds(samples, threads);
      if (!best || seconds < best.seconds) best = { pattern: p, samples, seconds };
    }
    return best!;
  }
}

/** A copy probe: `run(threads)` is one timed memcpy of the buffer; bytes = read + write. */
export class CopyProbe {
  private readonly src: Float32Array;
  private readonly dst: Float32Array;
  constructor(megabytes: number) {
    this.src = new Float32Array(megabytes * 2 ** 18).fill(1);
    this.dst = new Float32Array(megabytes * 2 ** 18).fill(0);
  }
  get bytes(): number {
    return 2 * this.src.byteLength;
  }
  run(threads: number): Sample {
    const r = nativeFunction<(o: object) => PassResult>('copyPass')({ src: this.src, dst: this.dst, threads });
    return { wall: r.seconds, cpu: r.cpuSeconds };
  }
}

/** GB/s of `bytes` moved in the sample's time (one thread: the thread's CPU time; more: wall). */
export function rate(bytes: number, seconds: number): number {
  return bytes / seconds / 1e9;
}

export const bandwidthSuite: BenchSuite = {
  name: 'bandwidth',
  groups: ['kernels', 'machine'],
  description: 'host memory bandwidth: streaming read (multi-stream) and memcpy, one thread and all threads',
  async run(ctx: BenchContext): Promise<BenchReport> {
    const before = loadBefore();
    const mb = ctx.quick ? 64 : 256;
    const read = new ReadProbe(mb);
    const copy = new CopyProbe(mb);
    const threads = threadCounts(ctx.threads);
    const entries = threads.flatMap((t) => [...read.entries(t), { name: `copy ${t}`, run: () => copy.run(t) }]);
    const res = await interleave(entries, ctx.repeats);
    const rows: BenchRow[] = [];
    for (const t of threads) {
      const limit = read.limit(res, t);
      for (const [probe, bytes, s] of [['read', read.bytes, limit.samples], ['copy', copy.bytes, res.get(`copy ${t}`)!]] as const) {
        rows.push({
          probe: probe === 'read' ? 'read (sum, multi-stream)' : 'copy (memcpy, read+write)', threads: t, bufferMB: mb,
          ...(probe === 'read' ? { pattern: `${limit.pattern} floats` } : {}),
          GBs: round(rate(bytes, median(s.map((x) => x.wall)))), bestGBs: round(rate(bytes, minOf(s.map((x) => x.wall)))),
          cpuGBs: t === 1 ? round(rate(bytes, median(s.map((x) => x.cpu)))) : null,
        });
      }
    }
    const load = loadRecord(before);
    return {
      suite: 'bandwidth', rows, load,
      notes: [...standardNotes(load, []), 'cpuGBs (one thread): bytes per second of the thread\'s own CPU time, which leaves out the time other processes held the core.', `read: every pattern (streams x floats per stream per window: ${read.patterns.join(', ')}) timed in every round; the row is the pattern fastest on its median.`],
    };
  },
};

export function round(x: number, digits = 3): number {
  if (!Number.isFinite(x)) return x;
  const p = 10 ** Math.max(0, digits - Math.ceil(Math.log10(Math.abs(x) || 1)));
  return Math.round(x * p) / p;
}
