// `clipo bench backends`: what this build of the addon has compiled in, what it found at build time and what is
// usable now: the CPU kernels, the CUDA kernels, and the GPU libraries (cuBLASLt, NCCL) of clipo_gpulibs.so.
import { availableBackends, cudaDeviceInfo } from '../kernels/backend.js';
import { engineGemmInfo, gpuLibUnusable, gpuLibsInfo } from '../kernels/gpulibs.js';
import { round } from './bandwidth.js';
import type { BenchReport, BenchRow, BenchSuite } from './types.js';

/** cuBLASLt 130101 -> 13.1.1; NCCL 23007 -> 2.30.7 */
function version(v: number, major: number, minor: number): string {
  return `${Math.floor(v / major)}.${Math.floor((v % major) / minor)}.${v % minor}`;
}

export function backendRows(): { rows: BenchRow[]; notes: string[] } {
  const a = availableBackends();
  const info = cudaDeviceInfo();
  const rows: BenchRow[] = [{ backend: 'cpu', compiled: true, usable: true, device: 'host CPU (OpenMP)', detail: '' }];
  rows.push({
    backend: 'cuda', compiled: a.cudaCompiled, usable: a.cuda, device: a.device ?? null,
    detail: a.cuda ? info.devices.map((d) => `${d.name} sm_${d.computeCapability.replace('.', '')} ${round(d.memoryBytes / 2 ** 30)} GiB`).join('; ') + ` (runtime ${info.runtimeVersion}, driver ${info.driverVersion})` : a.reason ?? '',
  });
  const g = gpuLibsInfo();
  for (const [name, lib, ver] of [
    ['cublaslt', 'cublasLt', (v: number) => version(v, 10000, 100)],
    ['nccl', 'nccl', (v: number) => version(v, 10000, 100)],
  ] as const) {
    const found = g.build[lib];
    const why = gpuLibUnusable(lib, g);
    const v = g.runtime?.[`${lib}Version`] ?? 0;
    rows.push({
      backend: name, compiled: g.built && found.found && (g.runtime ? g.runtime[lib] : true), usable: why === null,
      device: why === null ? (a.device ?? null) : null,
      detail: [found.found ? `built against ${found.library}` : `not found at build time: ${found.why ?? ''}`,
        g.loaded && v ? `loaded ${ver(v)}` : '', why ?? ''].filter(Boolean).join('; '),
    });
  }
  // the GEMM the CUDA engine's projections take (native/engine/gemm.cu): cuBLASLt or the built-in kernel, and why
  const gemm = engineGemmInfo();
  rows.push({
    backend: 'engine gemm', compiled: gemm.impl !== 'none', usable: a.cuda && gemm.impl !== 'none' && !gemm.error,
    device: a.cuda ? (a.device ?? null) : null,
    detail: gemm.impl === 'none' ? gemm.why : `${gemm.impl} (CLIPO_CUDA_GEMM=${gemm.mode}: ${gemm.error ?? gemm.why})`,
  });
  const notes = [
    g.built
      ? `clipo_gpulibs: ${g.path ?? ''} ${g.loaded ? 'loads' : `does not load: ${g.error ?? ''}`}`
      : `clipo_gpulibs not built: ${g.build.why ?? ''}`,
  ];
  return { rows, notes };
}

export const backendsSuite: BenchSuite = {
  name: 'backends',
  groups: ['machine'],
  description: 'what this build has compiled in, found and can use now (cpu, cuda, cuBLASLt, NCCL)',
  async run(): Promise<BenchReport> {
    const { rows, notes } = backendRows();
    return { suite: 'backends', rows, notes };
  },
};
