// The memory-bandwidth probes, measured in the same run (and, in the kernel suites, in the same rounds) as the
// kernels they are compared against. Read: the fastest of a few passes over a buffer far larger than the last-level
// cache, each thread keeping 8 or 16 sequential streams in flight through windows of a few hundred KiB (one stream
// under-reads a core's memory system by about a third, which would let a multi-stream kernel show more than 100%;
// see native/bench/probes.cpp). Copy: memcpy, read + write bytes.
import { nativeFunction } from '../native.js';
import { median, minOf } from '../util/stats.js';
import { interleave, loadBefore, loadRecord, standardNotes, threadCounts, type Sample } from './harness.js';
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

/** A read probe over its own buffer: `run(threads)` is one timed pass (wall, and the team's CPU time). */
export class ReadProbe {
  readonly data: Float32Array;
  constructor(megabytes: number) {
    this.data = new Float32Array(megabytes * 2 ** 18);
    for (let k = 0; k < this.data.length; k += 1024) this.data[k] = (k & 4095) * 1e-3; // first touch of every page
  }
  get bytes(): number {
    return this.data.byteLength;
  }
  run(threads: number): Sample {
    const r = nativeFunction<(o: object) => PassResult>('readPass')({ data: this.data, threads });
    return { wall: r.seconds, cpu: r.cpuSeconds };
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
    const entries = threads.flatMap((t) => [
      { name: `read ${t}`, run: () => read.run(t) },
      { name: `copy ${t}`, run: () => copy.run(t) },
    ]);
    const res = await interleave(entries, ctx.repeats);
    const rows: BenchRow[] = [];
    for (const t of threads)
      for (const [probe, bytes] of [['read', read.bytes], ['copy', copy.bytes]] as const) {
        const s = res.get(`${probe} ${t}`)!;
        rows.push({
          probe: probe === 'read' ? 'read (sum, multi-stream)' : 'copy (memcpy, read+write)', threads: t, bufferMB: mb,
          GBs: round(rate(bytes, median(s.map((x) => x.wall)))), bestGBs: round(rate(bytes, minOf(s.map((x) => x.wall)))),
          cpuGBs: t === 1 ? round(rate(bytes, median(s.map((x) => x.cpu)))) : null,
        });
      }
    const load = loadRecord(before);
    return {
      suite: 'bandwidth', rows, load,
      notes: [...standardNotes(load, []), 'cpuGBs (one thread): bytes per second of the thread\'s own CPU time, which leaves out the time other processes held the core.'],
    };
  },
};

export function round(x: number, digits = 3): number {
  if (!Number.isFinite(x)) return x;
  const p = 10 ** Math.max(0, digits - Math.ceil(Math.log10(Math.abs(x) || 1)));
  return Math.round(x * p) / p;
}
