// A custom reward (`reward.module`): an ES module whose default export (or `reward` export) maps
//   { prompt, response, groundTruth, row, verifierReward }
// to a number, or to { score, parts } where parts are named numbers that are logged (e.g. { format: 0.1, answer: 1 }).
// It may be async. It runs in a worker thread with a time limit per response; the trainer waits for it synchronously
// (Atomics.wait on a shared flag, the result read with receiveMessageOnPort), so the step loop stays synchronous.
// A reward that throws, returns something else than a finite number, or runs past the limit scores 0 and is
// counted; a timed-out worker is terminated and a fresh one started for the next response.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';

export interface RewardItem {
  prompt: string;
  response: string;
  groundTruth: string;
  row: unknown;
  verifierReward: number;
}

export interface RewardOutcome {
  score: number;
  parts: Record<string, number>;
  /** why the score is 0 instead of the module's value */
  error: 'throw' | 'timeout' | 'invalid' | null;
  message?: string;
}

const LOAD_TIMEOUT_MS = 60_000;

/** Turns what the module returned into a score and parts (or an 'invalid' outcome). */
export function normalizeRewardValue(v: unknown): RewardOutcome {
  if (typeof v === 'number') return Number.isFinite(v) ? { score: v, parts: {}, error: null } : { score: 0, parts: {}, error: 'invalid', message: `non-finite score ${v}` };
  if (typeof v === 'object' && v !== null && typeof (v as { score?: unknown }).score === 'number') {
    const o = v as { score: number; parts?: unknown };
    if (!Number.isFinite(o.score)) return { score: 0, parts: {}, error: 'invalid', message: `non-finite score ${o.score}` };
    const parts: Record<string, number> = {};
    if (o.parts !== undefined) {
      if (typeof o.parts !== 'object' || o.parts === null) return { score: 0, parts: {}, error: 'invalid', message: 'parts is not an object of numbers' };
      for (const [k, x] of Object.entries(o.parts)) {
        if (typeof x !== 'number' || !Number.isFinite(x)) return { score: 0, parts: {}, error: 'invalid', message: `part '${k}' is not a finite number` };
        parts[k] = x;
      }
    }
    return { score: o.score, parts, error: null };
  }
  return { score: 0, parts: {}, error: 'invalid', message: `expected a number or { score, parts }, got ${v === null ? 'null' : typeof v}` };
}

export class RewardModule {
  readonly file: string;
  private worker: Worker | null = null;
  private port: MessagePort | null = null;
  private flag: Int32Array | null = null;
  private nextId = 1;

  private constructor(file: string, private readonly timeoutMs: number) {
    this.file = file;
  }

  /** Loads the module in a worker; a missing file, a load error or a missing export throws. */
  static open(file: string, timeoutMs: number): RewardModule {
    const abs = path.resolve(file);
    if (!existsSync(abs)) throw new Error(`reward.module: file not found: ${file}`);
    const m = new RewardModule(abs, timeoutMs);
    m.start();
    return m;
  }

  private start(): void {
    const flag = new Int32Array(new SharedArrayBuffer(8));
    const { port1, port2 } = new MessageChannel();
    // the module's console output goes to stderr: stdout may carry --json
    const worker = new Worker(new URL('./reward-worker.js', import.meta.url), { workerData: { file: this.file, flag, port: port2 }, transferList: [port2], stdout: true });
    worker.stdout.pipe(process.stderr, { end: false });
    // an error inside the worker after loading is reported per request; keep the process alive and quiet
    worker.on('error', () => {});
    worker.unref();
    this.worker = worker;
    this.port = port1;
    this.flag = flag;
    if (Atomics.wait(flag, 1, 0, LOAD_TIMEOUT_MS) === 'timed-out') {
      this.close();
      throw new Error(`reward.module ${this.file}: loading took more than ${LOAD_TIMEOUT_MS / 1000} s`);
    }
    if (Atomics.load(flag, 1) === 2) {
      const msg = this.drain((m) => (m as { type?: string }).type === 'load-error') as { message: string } | null;
      this.close();
      throw new Error(`reward.module ${this.file}: ${msg?.message ?? 'failed to load'}`);
    }
    this.drain((m) => (m as { type?: string }).type === 'ready');
  }

  /** Reads messages until one matches (returns it) or none is left (null). */
  private drain(match: (m: unknown) => boolean): unknown {
    for (;;) {
      const r = receiveMessageOnPort(this.port!);
      if (!r) return null;
      if (match(r.message)) return r.message;
    }
  }

  /** Scores one response, waiting at most the time limit. */
  score(item: RewardItem): RewardOutcome {
    if (!this.worker) this.start();
    const id = this.nextId++;
    this.port!.postMessage({ id, item });
    const deadline = Date.now() + this.timeoutMs;
    for (;;) {
      const seen = Atomics.load(this.flag!, 0);
      if (seen === id) break;
      const left = deadline - Date.now();
      if (left <= 0 || Atomics.wait(this.flag!, 0, seen, left) === 'timed-out') {
        if (Atomics.load(this.flag!, 0) === id) break;
        this.close(); // the next call starts a fresh worker
        return { score: 0, parts: {}, error: 'timeout', message: `took more than ${this.timeoutMs / 1000} s` };
      }
    }
    const msg = this.drain((m) => (m as { id?: number }).id === id) as { value?: unknown; error?: string } | null;
    if (!msg) return { score: 0, parts: {}, error: 'invalid', message: 'no result' };
    if (msg.error !== undefined) return { score: 0, parts: {}, error: 'throw', message: msg.error };
    return normalizeRewardValue(msg.value);
  }

  close(): void {
    if (this.worker) void this.worker.terminate();
    this.port?.close();
    this.worker = null;
    this.port = null;
    this.flag = null;
  }
}
