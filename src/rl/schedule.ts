// The step schedule and the prompt stream. Steps per epoch = ⌊prompts / prompts_per_step⌋ (the last partial batch
// of an epoch is dropped, as verl's dataloader does: 7,473 GSM8K prompts / 512 = 14 steps, MATH 7,500 / 128 = 58).
// The head warm-up is the first `warmup_steps` steps (one epoch by default) in which the policy is frozen.
//
// Every random choice is a pure function of (seed, counter): the epoch's permutation of the prompts is seeded by
// (seed, epoch) and each generation round by (seed, step, round). A checkpoint therefore holds the whole RNG state
// as a few integers, and a resumed run draws exactly what the uninterrupted one would have.
import { Rng } from '../util/rng.js';
import { counterSeed, SeedStream } from '../util/seeds.js';

export interface Schedule {
  stepsPerEpoch: number;
  totalSteps: number;
  warmupSteps: number;
}

export function makeSchedule(o: { numPrompts: number; promptsPerStep: number; epochs: number; maxSteps: number | null; warmup: number | 'epoch'; clipoEnabled: boolean }): Schedule {
  const stepsPerEpoch = Math.floor(o.numPrompts / o.promptsPerStep);
  if (stepsPerEpoch < 1) throw new Error(`the training data has ${o.numPrompts} usable prompts, fewer than optim.prompts_per_step (${o.promptsPerStep})`);
  let totalSteps = o.epochs * stepsPerEpoch;
  if (o.maxSteps !== null) totalSteps = Math.min(totalSteps, o.maxSteps);
  const warmupSteps = o.clipoEnabled ? (o.warmup === 'epoch' ? stepsPerEpoch : o.warmup) : 0;
  return { stepsPerEpoch, totalSteps, warmupSteps };
}

export interface StreamPosition {
  epoch: number;
  offset: number;
}

/** An endless stream of prompt indices, epoch after epoch, each epoch a seeded permutation (or the file order). */
export class PromptStream {
  private readonly n: number;
  private readonly seed: number;
  private readonly shuffle: boolean;
  private perm: number[] = [];
  private permEpoch = -1;
  pos: StreamPosition;

  constructor(numPrompts: number, seed: number, shuffle: boolean, pos: StreamPosition = { epoch: 0, offset: 0 }) {
    this.n = numPrompts;
    this.seed = seed;
    this.shuffle = shuffle;
    this.pos = { ...pos };
  }

  private order(epoch: number): number[] {
    if (this.permEpoch !== epoch) {
      const p = Array.from({ length: this.n }, (_, i) => i);
      this.perm = this.shuffle ? new Rng(counterSeed(this.seed, SeedStream.promptShuffle, epoch)).shuffle(p) : p;
      this.permEpoch = epoch;
    }
    return this.perm;
  }

  /** The next `k` prompt indices; an epoch with fewer than k left is closed (drop-last) and the next one begins. */
  next(k: number): number[] {
    if (k > this.n) throw new Error(`cannot draw ${k} prompts from ${this.n}`);
    if (this.pos.offset + k > this.n) this.pos = { epoch: this.pos.epoch + 1, offset: 0 };
    const out = this.order(this.pos.epoch).slice(this.pos.offset, this.pos.offset + k);
    this.pos = { epoch: this.pos.epoch, offset: this.pos.offset + k };
    return out;
  }
}
