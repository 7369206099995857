// Verification with a hard time bound: a pool of worker threads (worker.ts), each verifying one answer at a time.
// An answer still running after `timeoutMs` has its thread stopped (Worker.terminate interrupts even a tight
// synchronous loop in the compute engine), scores 0 with `timedOut: true`, and a fresh thread takes the stopped
// one's place; the other answers that thread held go back to the queue.
//
// Two ways in, one machinery:
//   await pool.verify(text, gt) / await pool.verifyBatch(items)   (eval: verification overlaps generation)
//   pool.verifyBatchSync(items)                                    (the synchronous training step)
// The synchronous form blocks the calling thread in Atomics.wait until the workers have answered (or been
// stopped); results come in through receiveMessageOnPort, so it works without the event loop turning.
//
// The stuck-answer check reads the start time each worker writes into shared memory, not message arrival times, so
// a main thread that is itself busy (an engine generating) never makes a worker look stuck.
import { availableParallelism } from 'node:os';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { lastBoxed } from './extract.js';
import type { VerifyResult } from './index.js';
import type { WorkerData, WorkerMessage, WorkerTask } from './worker.js';

export interface VerifierPoolOptions {
  /** worker threads (default: min(4, available cores)) */
  threads?: number;
  /** hard limit per answer in milliseconds, from the moment a worker starts on it (default 5000) */
  timeoutMs?: number;
  /** how long the pool waits for a worker thread to start before giving up (default 60000) */
  startTimeoutMs?: number;
  /** which boxes answer (see VerifyOptions.boxes; default 'last') */
  boxes?: 'last' | 'all';
  /** the in-thread budget per answer, checked between steps (default 60% of timeoutMs) */
  softTimeoutMs?: number;
}

export interface BatchItem {
  completion: string;
  groundTruth: string;
}

export interface BatchResult {
  results: VerifyResult[];
  /** answers that ran out of time (stopped by the pool, or over the in-thread budget): each scored 0 */
  timeouts: number;
}

export interface PoolStats {
  verified: number;
  timeouts: number;
  /** worker threads stopped for running past the deadline */
  restarts: number;
}

interface Task {
  id: number;
  item: BatchItem;
  done: (r: VerifyResult) => void;
  fail: (e: Error) => void;
}

interface Slot {
  worker: Worker;
  port: MessagePort;
  state: Float64Array;
  ready: boolean;
  spawnedAt: number;
  inflight: Task[];
}

/** Answers sent to a worker per message: enough to amortise the message cost, few enough to rebalance. */
const CHUNK = 4;
const WORKER_URL = new URL('./worker.js', import.meta.url);

export function defaultVerifierThreads(): number {
  return Math.max(1, Math.min(4, availableParallelism()));
}

/** True for a result that ran out of time (either bound). */
export function isTimeout(r: VerifyResult): boolean {
  return r.timedOut === true;
}

export class VerifierPool {
  readonly threads: number;
  readonly timeoutMs: number;
  readonly boxes: 'last' | 'all';
  private readonly softMs: number;
  private readonly startTimeoutMs: number;
  private readonly signal = new SharedArrayBuffer(4);
  private readonly counter = new Int32Array(this.signal);
  private slots: Slot[] = [];
  private queue: Task[] = [];
  private nextId = 0;
  private pending = 0;
  private watchdog: NodeJS.Timeout | null = null;
  private closed = false;
  private failure: Error | null = null;
  private readonly counts: PoolStats = { verified: 0, timeouts: 0, restarts: 0 };

  constructor(opts: VerifierPoolOptions = {}) {
    const threads = opts.threads ?? defaultVerifierThreads();
    const timeoutMs = opts.timeoutMs ?? 5000;
    if (!Number.isInteger(threads) || threads < 1 || threads > 256) throw new RangeError(`verifier threads must be an integer in 1..256, got ${threads}`);
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new RangeError(`verifier timeout must be a positive number of milliseconds, got ${timeoutMs}`);
    this.threads = threads;
    this.timeoutMs = timeoutMs;
    this.startTimeoutMs = opts.startTimeoutMs ?? 60000;
    this.boxes = opts.boxes ?? 'last';
    this.softMs = Math.max(1, Math.floor(opts.softTimeoutMs ?? timeoutMs * 0.6));
    if (this.boxes !== 'last' && this.boxes !== 'all') throw new RangeError(`verifier boxes must be 'last' or 'all', got ${String(this.boxes)}`);
    for (let k = 0; k < threads; k++) this.slots.push(this.spawn());
  }

  /** Resolves once every worker thread has loaded the verifier (answers submitted earlier simply wait). */
  async ready(): Promise<void> {
    while (!this.closed && !this.failure && !this.slots.every((s) => s.ready)) {
      this.drainAll();
      this.check();
      await new Promise((r) => setTimeout(r, 20));
    }
    if (this.failure) throw this.failure;
  }

  get stats(): PoolStats {
    return { ...this.counts };
  }

  /** Verifies one answer within the deadline. Never rejects (a pool failure rejects). */
  verify(completion: string, groundTruth: string): Promise<VerifyResult> {
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new Error('the verifier pool is closed'));
      if (this.failure) return reject(this.failure);
      this.submit({ completion, groundTruth }, resolve, reject);
      this.pump();
      this.arm();
    });
  }

  async verifyBatch(items: readonly BatchItem[]): Promise<BatchResult> {
    const results = await Promise.all(items.map((it) => this.verify(it.completion, it.groundTruth)));
    return { results, timeouts: results.filter(isTimeout).length };
  }

  /** Verifies a batch, blocking this thread until every answer has a result; each within the deadline. */
  verifyBatchSync(items: readonly BatchItem[]): BatchResult {
    if (this.closed) throw new Error('the verifier pool is closed');
    const results = new Array<VerifyResult>(items.length);
    let left = items.length;
    items.forEach((item, k) =>
      this.submit(
        item,
        (r) => {
          results[k] = r;
          left--;
        },
        () => undefined,
      ),
    );
    while (left > 0) {
      if (this.failure) throw this.failure;
      const seen = Atomics.load(this.counter, 0);
      this.drainAll();
      this.check();
      this.pump();
      if (left === 0) break;
      Atomics.wait(this.counter, 0, seen, this.nextWakeMs());
    }
    return { results, timeouts: results.filter(isTimeout).length };
  }

  /** Stops the worker threads; answers still waiting are rejected (async) or the call throws (sync). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const waiting = [...this.queue, ...this.slots.flatMap((s) => s.inflight)];
    for (const t of waiting) t.fail(this.failure ?? new Error('the verifier pool was closed'));
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = null;
    const slots = this.slots;
    this.slots = [];
    this.queue = [];
    await Promise.all(slots.map((s) => s.worker.terminate().catch(() => 0)));
  }

  // ---------------------------------------------------------------------------------------------------------------

  private spawn(): Slot {
    const { port1, port2 } = new MessageChannel();
    const state = new SharedArrayBuffer(16);
    const view = new Float64Array(state);
    view[0] = -1;
    const data: WorkerData = { port: port2, signal: this.signal, state };
    const worker = new Worker(WORKER_URL, { workerData: data, transferList: [port2] });
    const slot: Slot = { worker, port: port1, state: view, ready: false, spawnedAt: Date.now(), inflight: [] };
    worker.unref();
    port1.on('message', (m: WorkerMessage) => {
      this.handle(slot, m);
      this.pump();
    });
    port1.unref();
    worker.on('error', (e) => this.lost(slot, e));
    worker.on('exit', (code) => {
      if (!this.closed && this.slots.includes(slot)) this.lost(slot, new Error(`verifier thread exited with code ${code}`));
    });
    return slot;
  }

  private submit(item: BatchItem, done: (r: VerifyResult) => void, fail: (e: Error) => void): void {
    this.pending++;
    this.queue.push({
      id: this.nextId++,
      item,
      fail,
      done: (r) => {
        this.pending--;
        this.counts.verified++;
        if (isTimeout(r)) this.counts.timeouts++;
        done(r);
      },
    });
  }

  private handle(slot: Slot, m: WorkerMessage): void {
    if (m.kind === 'ready') {
      slot.ready = true;
      return;
    }
    const k = slot.inflight.findIndex((t) => t.id === m.id);
    if (k < 0) return; // already settled (the thread was stopped as it answered)
    const [task] = slot.inflight.splice(k, 1);
    task!.done(m.result);
  }

  private drain(slot: Slot): void {
    for (let m = receiveMessageOnPort(slot.port); m; m = receiveMessageOnPort(slot.port)) this.handle(slot, m.message as WorkerMessage);
  }

  private drainAll(): void {
    for (const s of this.slots) this.drain(s);
  }

  private pump(): void {
    for (const s of this.slots) {
      if (!s.ready || this.queue.length === 0) continue;
      const room = CHUNK - s.inflight.length;
      if (room <= 0) continue;
      const take = this.queue.splice(0, room);
      s.inflight.push(...take);
      const softMs = this.softMs;
      s.port.postMessage(take.map((t): WorkerTask => ({ id: t.id, completion: t.item.completion, groundTruth: t.item.groundTruth, softMs, boxes: this.boxes })));
    }
  }

  /** The answer a worker is on and since when, read consistently from shared memory. */
  private current(slot: Slot): { id: number; since: number } | null {
    for (;;) {
      const id = slot.state[0]!;
      const since = slot.state[1]!;
      if (slot.state[0] === id) return id < 0 ? null : { id, since };
    }
  }

  /** Stops workers past the deadline; fails the pool when a worker never starts. */
  private check(): void {
    const now = Date.now();
    for (const slot of [...this.slots]) {
      if (!slot.ready) {
        if (now - slot.spawnedAt > this.startTimeoutMs) this.fail(new Error(`a verifier thread did not start within ${this.startTimeoutMs} ms`));
        continue;
      }
      const cur = this.current(slot);
      if (!cur || now - cur.since <= this.timeoutMs) continue;
      this.drain(slot); // it may have answered just now
      const again = this.current(slot);
      if (!again || again.id !== cur.id) continue;
      this.replace(slot, cur.id);
    }
  }

  /** Stops a stuck worker: its answer times out, the rest of what it held is queued again, a new thread starts. */
  private replace(slot: Slot, stuckId: number): void {
    const i = this.slots.indexOf(slot);
    if (i < 0) return;
    this.slots[i] = this.spawn();
    void slot.worker.terminate().catch(() => 0);
    slot.port.close();
    this.counts.restarts++;
    const stuck = slot.inflight.find((t) => t.id === stuckId);
    const rest = slot.inflight.filter((t) => t.id !== stuckId);
    slot.inflight = [];
    this.queue.unshift(...rest);
    if (stuck) stuck.done(timedOut(stuck.item.completion, this.timeoutMs));
  }

  /** A worker crashed (not a timeout): what it held goes back to the queue on a new thread. */
  private lost(slot: Slot, e: unknown): void {
    if (this.closed) return;
    const i = this.slots.indexOf(slot);
    if (i < 0) return;
    if (!slot.ready) return this.fail(e instanceof Error ? e : new Error(String(e)));
    this.drain(slot);
    this.slots[i] = this.spawn();
    this.queue.unshift(...slot.inflight);
    slot.inflight = [];
    this.pump();
  }

  private fail(e: Error): void {
    if (this.failure) return;
    this.failure = new Error(`verifier pool: ${e.message}`);
    void this.close();
  }

  private nextWakeMs(): number {
    const now = Date.now();
    // a worker may start an answer while this thread waits (no message says so): wake often enough to see its
    // deadline pass
    let wake = Math.max(1, Math.min(100, Math.floor(this.timeoutMs / 4)));
    for (const s of this.slots) {
      const cur = s.ready ? this.current(s) : null;
      if (cur) wake = Math.min(wake, Math.max(1, cur.since + this.timeoutMs - now + 1));
    }
    return wake;
  }

  /** The asynchronous path's deadline check runs on a timer while answers are pending. */
  private arm(): void {
    if (this.watchdog) return;
    const every = Math.max(10, Math.min(250, Math.floor(this.timeoutMs / 4)));
    this.watchdog = setInterval(() => {
      this.drainAll();
      this.check();
      this.pump();
      if (this.pending === 0 && this.watchdog) {
        clearInterval(this.watchdog);
        this.watchdog = null;
      }
    }, every);
  }
}

function timedOut(completion: string, ms: number): VerifyResult {
  let extracted: string | null = null;
  try {
    extracted = lastBoxed(completion).content;
  } catch {
    extracted = null;
  }
  return { correct: false, extracted: extracted === null ? null : extracted.slice(0, 1000), reason: `verification timed out after ${ms} ms`, timedOut: true };
}
