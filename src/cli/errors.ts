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
