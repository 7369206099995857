// Command-line helpers. UsageError itself lives in src/errors.ts (the library raises it too); it is re-exported here
// for the commands.
import { UsageError } from '../errors.js';
import { resolveEngineBackend, type EngineBackend } from '../engine/engine.js';

export { UsageError };

/** Parses a CLI number option with a clear message; `integer` rejects fractions. */
export function parseNumberOption(name: string, raw: string, opts: { integer?: boolean; min?: number; max?: number } = {}): number {
  const v = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(v)) throw new UsageError(`${name}: expected a number, got '${raw}'`);
  if (opts.integer && !Number.isInteger(v)) throw new UsageError(`${name}: expected an integer, got '${raw}'`);
  if (opts.min !== undefined && v < opts.min) throw new UsageError(`${name}: must be at least ${opts.min}, got ${v}`);
  if (opts.max !== undefined && v > opts.max) throw new UsageError(`${name}: must be at most ${opts.max}, got ${v}`);
  return v;
}

/** The help text of every engine command's --threads. */
export const THREADS_HELP = 'CPU threads of the engine (default: picked by the model\'s size, one for small models, up to all cores)';

/** Parses --threads (absent: undefined, i.e. picked by the model's size). */
export function threadsOption(raw: string | undefined): number | undefined {
  return raw === undefined ? undefined : parseNumberOption('--threads', raw, { integer: true, min: 1, max: 1024 });
}

/** The help text of every engine command's --backend. */
export const BACKEND_HELP = "engine backend: cpu, cuda or auto (auto: the GPU when this build has a CUDA engine and a GPU is usable, else cpu; cuda where no CUDA engine can run is an error saying why)";

/** Parses --backend and resolves it to the engine that will run, before any model is loaded: a value other than
 *  cpu/cuda/auto is a usage error (exit 2), 'cuda' where no CUDA engine can run is an error saying why (exit 1). */
export function backendOption(raw: string | undefined): EngineBackend {
  const v = raw ?? 'auto';
  if (v !== 'cpu' && v !== 'cuda' && v !== 'auto') throw new UsageError(`--backend: expected cpu, cuda or auto, got '${v}'`);
  try {
    return resolveEngineBackend(v);
  } catch (e) {
    throw new UsageError(`--backend ${v}: ${(e as Error).message.replace(/^backend 'cuda': /, '')}`, 1);
  }
}
