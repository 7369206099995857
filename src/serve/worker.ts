// The engine thread of `clipo serve` (started by WorkerBackend): loads the model, runs the continuous-batching
// scheduler and relays its events. Everything slow (tokenizing, prefill, decoding) happens here, never on the
// thread that answers HTTP.
import os from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { loadLocalModel } from '../eval/local.js';
import type { FromWorker, ToWorker, WorkerBackendOptions } from './backend.js';
import { isStepEngine, Scheduler, type JobEvent } from './scheduler.js';

const port = parentPort!;
const opts = workerData as WorkerBackendOptions;
const post = (m: FromWorker) => port.postMessage(m);

async function main(): Promise<void> {
  // The engine thread (and the OpenMP threads it starts, which inherit this) yields the CPU to the HTTP thread when
  // they compete, so /health and new requests are answered at once even when every core is decoding. (Linux: the
  // nice value is per thread; elsewhere this may lower the whole process, which is harmless.)
  try {
    os.setPriority(0, Math.min(19, Math.max(os.getPriority(0), 0) + 5));
  } catch {
    // not allowed here: run at the inherited priority
  }
  const model = await loadLocalModel(opts.modelDir, { name: opts.name, threads: opts.threads, backend: opts.backend });
  if (!isStepEngine(model.engine)) throw new Error('this engine has no step-wise decoding');
  const scheduler = new Scheduler(model, model.engine, { maxBatchSequences: opts.maxBatchSequences, defaultMaxTokens: opts.defaultMaxTokens });
  const ids = new Map<number, number>();
  // one message per scheduler step, not one per token: events are gathered and sent when the step's work is done
  let outbox: Array<{ job: number; event: JobEvent }> = [];
  const send = (job: number, event: JobEvent) => {
    if (outbox.length === 0) queueMicrotask(() => {
      const batch = outbox;
      outbox = [];
      post({ type: 'events', events: batch });
    });
    outbox.push({ job, event });
  };
  port.on('message', (m: ToWorker) => {
    if (m.type === 'submit') {
      let over = false;
      const id = scheduler.submit(m.spec, (event) => {
        if (event.type === 'done' || event.type === 'error') {
          over = true;
          ids.delete(m.job);
        }
        send(m.job, event);
      });
      // (a request refused at once has already ended)
      if (!over) ids.set(m.job, id);
    } else if (m.type === 'cancel') {
      const id = ids.get(m.job);
      if (id !== undefined) scheduler.cancel(id);
      ids.delete(m.job);
    } else if (m.type === 'metrics') {
      post({ type: 'metrics', ask: m.ask, metrics: scheduler.snapshot() });
    }
  });
  post({ type: 'ready', info: { name: model.name, contextLength: model.contextLength, vocabSize: model.engine.config.vocabSize } });
}

main().catch((e: unknown) => post({ type: 'fatal', message: (e as Error)?.message ?? String(e) }));
