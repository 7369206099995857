// Command-line helpers. UsageError itself lives in src/errors.ts (the library raises it too); it is re-exported here
// for the commands.
import { UsageError } from '../errors.js';

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
