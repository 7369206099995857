// What every benchmark suite returns: rows of named figures, printed as a table or emitted as JSON (--json).
import type { TorchPeer } from './peer.js';

export type BenchValue = string | number | boolean | null;
export type BenchRow = Record<string, BenchValue>;

export interface BenchContext {
  /** fewer repeats and smaller sizes, for smoke tests */
  quick: boolean;
  /** timed repetitions per measurement (the median is reported) */
  repeats: number;
  /** 'cpu' | 'cuda' | 'auto' */
  backend: string;
  /** progress/diagnostic line (goes to stderr, never into --json output) */
  log: (msg: string) => void;
  /** `--threads N`: the thread count of the all-thread rows (default: every core) */
  threads?: number;
  /** `--compare torch`: the PyTorch peer, started on first use (null when not asked for) */
  peer?: (() => Promise<TorchPeer | { unavailable: string }>) | null;
  /** `--shape`: the model shapes of `train --backend cuda` (src/bench/shapes.ts names) */
  shapes?: string[];
  /** `--batch BxT`: the micro-batch of `train --backend cuda` */
  trainBatch?: { batch: number; seqLen: number };
}

export interface BenchReport {
  suite: string;
  rows: BenchRow[];
  /** one-line conclusions: targets met or missed, with the figures */
  notes?: string[];
  /** load average (1, 5, 15 min) before and after the suite */
  load?: { before: number[]; after: number[]; cores: number; note: string | null };
  /** wall seconds the suite took (set by `clipo bench`) */
  seconds?: number;
  /** figures the bench withheld because they cannot be right (a fraction of a limit above 1, ...) */
  errors?: string[];
  /** set when the suite could not run at all here (e.g. `train --backend cuda` without a GPU): why; `clipo bench`
   *  then exits 1 */
  unavailable?: string;
}

export interface BenchSuite {
  name: string;
  /** groups this suite belongs to; `clipo bench GROUP` runs every suite of the group */
  groups: string[];
  description: string;
  run(ctx: BenchContext): Promise<BenchReport>;
}
