// Limits shared by the validation layers (config schema, CLI options, library calls, and again in C++).
import os from 'node:os';

/**
 * Smallest non-zero sampling temperature. Logits are divided by it in fp32: below about 1e-37 the scaled logits
 * overflow to Infinity and the log-probs become NaN, and long before that sampling is greedy in all but name.
 * 0 means greedy decoding.
 */
export const MIN_SAMPLING_TEMPERATURE = 1e-4;

/**
 * Smallest contrastive temperature tau. The kernel holds tau in fp32 (1e-50 becomes 0 there) and divides
 * similarities by it; 1e-4 keeps every logit finite (|sim| <= 4 for normalized embeddings).
 */
export const MIN_CONTRASTIVE_TEMPERATURE = 1e-4;

/** What a sampling temperature must be, for messages. */
export const SAMPLING_TEMPERATURE_RULE = `0 (greedy) or at least ${MIN_SAMPLING_TEMPERATURE}`;

export function isSamplingTemperature(t: number): boolean {
  return Number.isFinite(t) && (t === 0 || t >= MIN_SAMPLING_TEMPERATURE);
}

/**
 * Bytes this process can allocate at most: physical memory, lowered by a container's memory limit. Sizes that come
 * from callers are checked against it before any work starts (the native side checks again, adding rlimits).
 */
export function allocatableBytes(): number {
  const total = os.totalmem();
  const constrained = typeof process.constrainedMemory === 'function' ? process.constrainedMemory() : 0;
  return constrained && constrained > 0 ? Math.min(total, constrained) : total;
}

function formatBytes(b: number): string {
  return b >= 1e9 ? `${(b / 1e9).toFixed(1)} GB` : `${(b / 1e6).toFixed(1)} MB`;
}

/** Throws a RangeError naming `what` unless `bytes` can be allocated. */
export function checkAllocatable(bytes: number, what: string): void {
  const limit = allocatableBytes();
  if (!(bytes <= limit)) throw new RangeError(`${what}: needs ${formatBytes(bytes)} of memory, more than this process can allocate (${formatBytes(limit)})`);
}
