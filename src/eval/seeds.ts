// Deterministic seeds for every sample, derived from the user's --seed and the sample's identity, so that a sample
// gets the same seed whether it is drawn in the first run or in a resumed one (and whatever the concurrency).

/** 32-bit FNV-1a over the parts' text, finished with a murmur3-style avalanche; result in [0, 2^31). */
export function deriveSeed(base: number, ...parts: Array<string | number>): number {
  let h = 0x811c9dc5 ^ (base >>> 0);
  const text = parts.join('\u0000');
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) & 0x7fffffff;
}
