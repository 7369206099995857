// How many CPU threads an engine uses when the caller does not say. The work of decoding one token is about
// 2 × parameters FLOPs, split over many small parallel regions (one per layer and matrix); below a few million
// parameters a region is microseconds of work, and the threads' barriers cost more than they save — on a busy
// machine far more (measured on a shared 2-core machine: two threads made a 2,000-token greedy request of a tiny model
// 5–50× slower than one). So: one thread per PARAMS_PER_THREAD parameters, at least one, at most the cores.
// The engine's GEMMs also drop to one thread below their own size threshold (native/engine/gemm.cpp).
import os from 'node:os';
import { parameterCount } from '../model/tensors.js';
import type { ModelConfig } from '../model/types.js';

/** Parameters per thread: a model this size decodes a token in a few milliseconds on one core. */
export const PARAMS_PER_THREAD = 4_000_000;

/** The machine's cores available to this process. */
export function availableCores(): number {
  return Math.max(1, os.availableParallelism?.() ?? os.cpus().length);
}

/** Threads for an engine running `config`, picked by its size (see above). */
export function threadsForModel(config: ModelConfig, cores = availableCores()): number {
  return Math.max(1, Math.min(cores, Math.floor(parameterCount(config) / PARAMS_PER_THREAD)));
}
