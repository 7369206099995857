// Which compute backends this build of the addon offers, and the choice between them: 'cpu' always, 'cuda' when
// the addon was compiled with CUDA and a GPU is usable at run time. 'auto' picks CUDA when it is usable.
import { loadNative } from '../native.js';

export type Backend = 'cpu' | 'cuda';
export type BackendRequest = Backend | 'auto';

export interface CudaDevice {
  index: number;
  name: string;
  memoryBytes: number;
  computeCapability: string;
  multiprocessors: number;
}

export interface CudaDeviceInfo {
  compiled: boolean;
  count: number;
  devices: CudaDevice[];
  runtimeVersion?: number;
  driverVersion?: number;
  /** why no device is usable (no driver, no GPU), when the runtime says so */
  error?: string;
}

export interface AvailableBackends {
  cpu: true;
  /** compiled in and at least one GPU usable now */
  cuda: boolean;
  cudaCompiled: boolean;
  /** name of the GPU that 'cuda' runs on */
  device?: string;
  /** why cuda is not usable, when it is not */
  reason?: string;
}

let cachedInfo: CudaDeviceInfo | undefined;

/** The addon's view of the CUDA devices (cached: device discovery costs a driver call). */
export function cudaDeviceInfo(): CudaDeviceInfo {
  if (cachedInfo) return cachedInfo;
  const fn = loadNative().cudaDeviceInfo as (() => CudaDeviceInfo) | undefined;
  cachedInfo = typeof fn === 'function' ? fn() : { compiled: false, count: 0, devices: [] };
  return cachedInfo;
}

export function availableBackends(): AvailableBackends {
  const info = cudaDeviceInfo();
  const out: AvailableBackends = { cpu: true, cuda: info.compiled && info.count > 0, cudaCompiled: info.compiled };
  if (out.cuda) out.device = info.devices[0]?.name;
  else out.reason = !info.compiled ? 'the addon was built without CUDA (rebuild with `npm run build:cuda` where nvcc exists)' : `no usable GPU${info.error ? ` (${info.error})` : ''}`;
  return out;
}

/** Resolves a backend request; asking for 'cuda' where it is not usable is an Error that says why. */
export function resolveBackend(requested: BackendRequest | undefined, what = 'backend'): Backend {
  const r = requested ?? 'auto';
  if (r !== 'cpu' && r !== 'cuda' && r !== 'auto') throw new Error(`${what}: expected 'cpu', 'cuda' or 'auto', got ${JSON.stringify(requested)}`);
  if (r === 'cpu') return 'cpu';
  const avail = availableBackends();
  if (r === 'cuda' && !avail.cuda) throw new Error(`${what}: 'cuda' is not available: ${avail.reason}`);
  return avail.cuda ? 'cuda' : 'cpu';
}
