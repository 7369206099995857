// Summary statistics used by benchmarks and reports.
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : 0.5 * (s[m - 1]! + s[m]!);
}

export function mean(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  let t = 0;
  for (const v of values) t += v;
  return t / values.length;
}

/** Sample standard deviation (Bessel's correction); 0 for fewer than two values. */
export function stddev(values: readonly number[]): number {
  if (values.length < 2) return 0;
  const m = mean(values);
  let t = 0;
  for (const v of values) t += (v - m) * (v - m);
  return Math.sqrt(t / (values.length - 1));
}

/** Times `fn` (after `warmup` untimed calls) `repeats` times; returns each duration in seconds. */
export function timeRepeats(fn: () => void, repeats: number, warmup = 1): number[] {
  for (let i = 0; i < warmup; i++) fn();
  const out: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = process.hrtime.bigint();
    fn();
    out.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return out;
}

// Largest / smallest value by a loop: Math.max(...values) passes every value as an argument, which overflows the
// call stack for large arrays (about 100k values and up).
export function maxOf(values: Iterable<number>, empty = -Infinity): number {
  let m = empty;
  for (const v of values) if (v > m || Number.isNaN(v)) m = v;
  return m;
}

export function minOf(values: Iterable<number>, empty = Infinity): number {
  let m = empty;
  for (const v of values) if (v < m || Number.isNaN(v)) m = v;
  return m;
}

/** Appends `items` to `target` one by one (target.push(...items) overflows the stack for large arrays). */
export function appendAll<T>(target: T[], items: Iterable<T>): T[] {
  for (const x of items) target.push(x);
  return target;
}
