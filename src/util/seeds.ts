// Deterministic seeds. Every random choice in clipo is a pure function of the user's seed and a counter or a key,
// so that a resumed run or a re-run draws exactly what the uninterrupted one would have. Two derivations with
// different inputs (their outputs are part of recorded runs and results, so neither replaces the other):
//
//   counterSeed(seed, stream, ...counters)  training: integers only (seed, a SeedStream tag, step, round, epoch)
//   keySeed(seed, ...key)                   evaluation: a sample's identity as text (benchmark, problem, sample)
import { Rng } from './rng.js';

/**
 * Tags of the training's independent random streams: one per use, so that no two uses of one seed draw the same
 * numbers. The values are arbitrary but fixed (changing one changes every run that uses it).
 */
export const SeedStream = {
  /** the contrastive head's initial weights */
  headInit: 0x4ead,
  /** the epoch's permutation of the training prompts */
  promptShuffle: 0x5eed,
  /** one generation round of a step (with step and round) */
  rollout: 0x9e4,
  /** the InfoNCE positive draw of a step's contrastive loss (with step) */
  infoNcePositive: 0xc1,
} as const;

/** A 32-bit seed mixed from integers (splitmix-style through Rng), for counter-based seeding. */
export function counterSeed(...parts: number[]): number {
  let s = 0x2545f491;
  for (const p of parts) s = new Rng((s ^ (p >>> 0)) + p * 0x9e3779b1).nextU32();
  return s >>> 0;
}

/** 32-bit FNV-1a over the parts' text, finished with a murmur3-style avalanche; result in [0, 2^31). */
export function keySeed(base: number, ...parts: Array<string | number>): number {
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
