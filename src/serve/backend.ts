// Where the engine runs, seen from the HTTP side. The server talks only to ServeBackend: submit a request, get its
// events, cancel it. WorkerBackend keeps the engine (and tokenizing, detokenizing, stop strings) on a worker thread
// so the HTTP side always answers; InProcessBackend runs the same scheduler on the calling thread (tests, embedding).
import { Worker } from 'node:worker_threads';
import type { LocalModel } from '../eval/localmodel.js';
import { isStepEngine, Scheduler, type JobEvent, type JobSpec, type SchedulerMetrics, type SchedulerOptions } from './scheduler.js';

export interface ServeInfo {
  name: string;
  contextLength: number;
  vocabSize: number;
}

export interface ServeBackend {
  readonly info: ServeInfo;
  /** Queues a request; returns a function that cancels it (no events after). */
  submit(spec: JobSpec, emit: (e: JobEvent) => void): () => void;
  metrics(): Promise<SchedulerMetrics>;
  /** false once the engine is gone (worker died) */
  healthy(): boolean;
  close(): Promise<void>;
}

export class InProcessBackend implements ServeBackend {
  readonly info: ServeInfo;
  private readonly scheduler: Scheduler;

  constructor(model: LocalModel, opts: SchedulerOptions = {}) {
    if (!isStepEngine(model.engine)) throw new Error('this engine has no step-wise decoding (decodeAdd/decodeStep/decodeRemove)');
    this.scheduler = new Scheduler(model, model.engine, opts);
    this.info = { name: model.name, contextLength: model.contextLength, vocabSize: model.engine.config.vocabSize };
  }

  submit(spec: JobSpec, emit: (e: JobEvent) => void): () => void {
    const id = this.scheduler.submit(spec, emit);
    return () => this.scheduler.cancel(id);
  }

  async metrics(): Promise<SchedulerMetrics> {
    return this.scheduler.snapshot();
  }

  healthy(): boolean {
    return true;
  }

  async close(): Promise<void> {}
}

export interface WorkerBackendOptions extends SchedulerOptions {
  modelDir: string;
  name?: string;
  threads?: number;
  /** the engine backend (default 'auto') */
  backend?: 'cpu' | 'cuda' | 'auto';
}

/** Messages between the server and its engine worker (src/serve/worker.ts). */
export type ToWorker = { type: 'submit'; job: number; spec: JobSpec } | { type: 'cancel'; job: number } | { type: 'metrics'; ask: number };
export type FromWorker =
  | { type: 'ready'; info: ServeInfo }
  | { type: 'events'; events: Array<{ job: number; event: JobEvent }> }
  | { type: 'metrics'; ask: number; metrics: SchedulerMetrics }
  | { type: 'fatal'; message: string };

export class WorkerBackend implements ServeBackend {
  private readonly sinks = new Map<number, (e: JobEvent) => void>();
  private readonly asks = new Map<number, (m: SchedulerMetrics) => void>();
  private nextJob = 1;
  private nextAsk = 1;
  private alive = true;
  /** called once if the worker dies (the server then answers 503 on /health and 500/503 on requests) */
  onDeath: ((why: string) => void) | null = null;

  private constructor(
    private readonly worker: Worker,
    readonly info: ServeInfo,
  ) {
    worker.on('message', (m: FromWorker) => {
      if (m.type === 'events') {
        for (const { job, event } of m.events) {
          const sink = this.sinks.get(job);
          if (!sink) continue;
          if (event.type === 'done' || event.type === 'error') this.sinks.delete(job);
          sink(event);
        }
      } else if (m.type === 'metrics') {
        this.asks.get(m.ask)?.(m.metrics);
        this.asks.delete(m.ask);
      }
    });
    const die = (why: string) => {
      if (!this.alive) return;
      this.alive = false;
      for (const sink of this.sinks.values()) sink({ type: 'error', status: 500, message: `the engine worker stopped: ${why}`, param: null });
      this.sinks.clear();
      this.onDeath?.(why);
    };
    worker.on('error', (e) => die(e.message));
    worker.on('exit', (code) => die(`exit code ${code}`));
  }

  /** Starts the worker and waits until it has loaded the model (its errors are thrown here). */
  static start(opts: WorkerBackendOptions): Promise<WorkerBackend> {
    const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: opts });
    return new Promise((resolve, reject) => {
      const onMessage = (m: FromWorker) => {
        if (m.type === 'ready') {
          cleanup();
          resolve(new WorkerBackend(worker, m.info));
        } else if (m.type === 'fatal') {
          cleanup();
          void worker.terminate();
          reject(new Error(m.message));
        }
      };
      const onError = (e: Error) => {
        cleanup();
        reject(e);
      };
      const onExit = (code: number) => {
        cleanup();
        reject(new Error(`the engine worker exited (code ${code}) while loading the model`));
      };
      const cleanup = () => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
      };
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
    });
  }

  private post(m: ToWorker): void {
    this.worker.postMessage(m);
  }

  submit(spec: JobSpec, emit: (e: JobEvent) => void): () => void {
    if (!this.alive) {
      emit({ type: 'error', status: 503, message: 'the engine worker is not running', param: null });
      return () => {};
    }
    const job = this.nextJob++;
    this.sinks.set(job, emit);
    this.post({ type: 'submit', job, spec });
    return () => {
      if (this.sinks.delete(job)) this.post({ type: 'cancel', job });
    };
  }

  metrics(): Promise<SchedulerMetrics> {
    if (!this.alive) return Promise.reject(new Error('the engine worker is not running'));
    const ask = this.nextAsk++;
    return new Promise((resolve) => {
      this.asks.set(ask, resolve);
      this.post({ type: 'metrics', ask });
    });
  }

  healthy(): boolean {
    return this.alive;
  }

  async close(): Promise<void> {
    this.alive = false;
    await this.worker.terminate();
  }
}
