// Types shared by `clipo eval`: what a generation backend is asked for and what it returns, and the shape of one
// line of generations.jsonl. Backends (local engine, OpenAI-compatible endpoint) sit behind `Generator`.

export interface ChatMessage {
  role: string;
  content: string;
}

export interface SamplingParams {
  /** 0 = greedy */
  temperature: number;
  topP: number;
  maxNewTokens: number;
}

/** One problem to sample: the chat messages and which sample indices are still missing. */
export interface GenRequest {
  benchmark: string;
  problem: number;
  messages: ChatMessage[];
  /** sample indices (0..K-1) still to produce for this problem (may be empty: the problem is finished) */
  samples: number[];
  /** K, the samples per problem of this evaluation */
  k: number;
  /** the per-problem seed; a backend derives per-sample seeds from it (see seeds.ts) */
  seed: number;
}

export interface Usage {
  promptTokens: number;
  completionTokens: number;
}

/** One finished (or failed) sample. `error` set means the backend gave up on it after its retries. */
export interface Completion {
  text: string;
  finishReason: string | null;
  usage?: Usage;
  error?: string;
  /** requests made for this sample (1 = no retry) */
  attempts?: number;
}

export interface Generator {
  /** what to record in results.json: backend kind and model identity */
  readonly info: { backend: 'local' | 'endpoint'; model: string; [k: string]: unknown };
  /**
   * Produces every sample of every request. `onSample` is called as each sample finishes (in any order), so the
   * caller can persist it at once; the promise resolves when all are done. Failures are reported as completions
   * with `error`, never thrown (a thrown error means the backend itself is unusable and the run should stop).
   */
  generate(requests: GenRequest[], params: SamplingParams, onSample: (req: GenRequest, sample: number, c: Completion) => void): Promise<void>;
  /** checks run once before any data is generated (e.g. that a server is reachable); throws to stop the run */
  prepare?(): Promise<void>;
  close?(): Promise<void>;
}

/** One line of generations.jsonl. */
export interface SampleRecord {
  benchmark: string;
  problem: number;
  sample: number;
  id: string;
  prompt: ChatMessage[];
  completion: string;
  extracted: string | null;
  /** null on an error record */
  correct: boolean | null;
  groundTruth: string;
  finishReason: string | null;
  usage?: Usage;
  /** set on a sample the backend failed to produce; such lines do not count as finished and are retried on rerun */
  error?: string;
  attempts?: number;
  verifyReason?: string;
  /** the verification ran out of time (the sample counts as incorrect) */
  verifyTimedOut?: true;
}
