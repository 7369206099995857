// The memory-bandwidth probe, measured in the same run as the kernels it is compared against.
import { nativeFunction } from '../native.js';
import type { BenchContext, BenchReport, BenchSuite } from './types.js';

export interface BandwidthResult {
  readGBs: number;
  copyGBs: number;
  bytes: number;
  threads: number;
}

export function measureBandwidth(opts: { megabytes?: number; repeats?: number; threads?: number } = {}): BandwidthResult {
  return nativeFunction<(o: object) => BandwidthResult>('measureBandwidth')(opts);
}

export const bandwidthSuite: BenchSuite = {
  name: 'bandwidth',
  groups: ['kernels', 'machine'],
  description: 'host memory bandwidth: streaming read and memcpy (the limit the CPU kernels are measured against)',
  async run(ctx: BenchContext): Promise<BenchReport> {
    const bw = measureBandwidth({ megabytes: ctx.quick ? 64 : 256, repeats: ctx.repeats });
    return {
      suite: 'bandwidth',
      rows: [
        { probe: 'read (sum)', GBs: round(bw.readGBs), bufferMB: bw.bytes / 2 ** 20, threads: bw.threads },
        { probe: 'copy (memcpy, read+write)', GBs: round(bw.copyGBs), bufferMB: bw.bytes / 2 ** 20, threads: bw.threads },
      ],
    };
  },
};

export function round(x: number, digits = 3): number {
  if (!Number.isFinite(x)) return x;
  const p = 10 ** Math.max(0, digits - Math.ceil(Math.log10(Math.abs(x) || 1)));
  return Math.round(x * p) / p;
}
