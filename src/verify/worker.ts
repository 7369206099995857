// A verifier worker thread (see pool.ts). It verifies the answers it is sent one at a time and posts each result
// as soon as it is ready. Before each answer it writes the answer's id and its start time into memory it shares
// with the pool, so the pool can tell — without waiting for a message — which answer a worker is stuck on and since
// when. After each message it bumps a shared counter and wakes a pool that waits synchronously (Atomics.wait).
import { workerData } from 'node:worker_threads';
import type { MessagePort } from 'node:worker_threads';
import { verify, type VerifyResult } from './index.js';

export interface WorkerTask {
  id: number;
  completion: string;
  groundTruth: string;
  /** the in-thread budget, checked between steps (the pool's deadline is the hard one) */
  softMs: number;
  boxes: 'last' | 'all';
}

export type WorkerMessage = { kind: 'ready' } | { kind: 'result'; id: number; result: VerifyResult };

export interface WorkerData {
  port: MessagePort;
  /** Int32Array(1): bumped after every message */
  signal: SharedArrayBuffer;
  /** Float64Array(2): [id of the answer being verified or -1, its start time (Date.now())] */
  state: SharedArrayBuffer;
}

const { port, signal, state } = workerData as WorkerData;
const counter = new Int32Array(signal);
const current = new Float64Array(state);

function post(m: WorkerMessage): void {
  port.postMessage(m);
  Atomics.add(counter, 0, 1);
  Atomics.notify(counter, 0);
}

function run(t: WorkerTask): VerifyResult {
  current[0] = -1;
  current[1] = Date.now();
  current[0] = t.id;
  try {
    return verify(t.completion, t.groundTruth, { timeoutMs: t.softMs, boxes: t.boxes });
  } finally {
    current[0] = -1;
  }
}

port.on('message', (tasks: WorkerTask[]) => {
  for (const t of tasks) post({ kind: 'result', id: t.id, result: run(t) });
});
// load and warm the engine before saying ready, so the first answer's deadline does not pay for it
verify('\\boxed{\\frac{1}{2}x}', '\\frac{x}{2}');
current[0] = -1;
post({ kind: 'ready' });
