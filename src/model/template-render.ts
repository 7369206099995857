// Bounded chat-template rendering. Templates come with model directories, so they are untrusted: a template with a
// billion-step loop or a list that fills the heap must not hang or kill `clipo generate`, `serve`, `train` or
// `eval`. Rendering runs in a worker thread with a heap limit; the caller waits for it synchronously (Atomics.wait)
// for at most `timeoutMs` and abandons (terminates) it after that, and a rendered prompt longer than `maxChars` is
// an error. One worker is kept and reused while it behaves.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';

export interface TemplateLimits {
  /** wall-clock limit of one rendering, ms (default 5000; CLIPO_TEMPLATE_TIMEOUT_MS overrides the default) */
  timeoutMs: number;
  /** longest rendered prompt, characters (default 4M) */
  maxChars: number;
  /** heap of the rendering thread, MB (default 256) */
  heapMb: number;
}

function defaultLimits(): TemplateLimits {
  const env = Number(process.env.CLIPO_TEMPLATE_TIMEOUT_MS);
  return { timeoutMs: Number.isFinite(env) && env > 0 ? env : 5000, maxChars: 4_000_000, heapMb: 256 };
}

let limits: TemplateLimits = defaultLimits();

/** Changes the limits (tests, or a caller with unusually long prompts); returns the previous ones. */
export function setTemplateLimits(l: Partial<TemplateLimits>): TemplateLimits {
  const prev = limits;
  limits = { ...limits, ...l };
  if (limits.heapMb !== prev.heapMb) stopWorker();
  return prev;
}

export class TemplateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TemplateError';
  }
}

interface Running {
  worker: Worker;
  /** replies arrive here, read synchronously with receiveMessageOnPort (the event loop is not running meanwhile) */
  port: MessagePort;
  flag: Int32Array;
}
let running: Running | null = null;

function workerFile(): string {
  // compiled next to this file (dist/src/model/)
  const here = fileURLToPath(import.meta.url);
  const js = path.join(path.dirname(here), 'template-worker.js');
  if (!existsSync(js)) throw new TemplateError(`the template renderer is not built (${js} is missing); run \`npm run build:ts\``);
  return js;
}

function startWorker(): Running {
  // flag[0]: the reply is ready; flag[1]: renderings finished so far (the worker bumps it after each one)
  const flag = new Int32Array(new SharedArrayBuffer(8));
  const { port1, port2 } = new MessageChannel();
  const worker = new Worker(workerFile(), {
    workerData: { flag, port: port1 },
    transferList: [port1],
    resourceLimits: { maxOldGenerationSizeMb: limits.heapMb, maxYoungGenerationSizeMb: 32 },
    stdout: false,
    stderr: false,
  });
  worker.on('error', () => {}); // out of heap: the caller gets no reply in time and reports it
  worker.unref();
  port2.unref();
  return { worker, port: port2, flag };
}

function stopWorker(): void {
  if (!running) return;
  void running.worker.terminate();
  running.port.close();
  running = null;
}

type Reply = { texts: string[] } | { error: string; index: number };

/**
 * Renders `template` with `context` (plain data: strings, numbers, booleans, arrays and objects of them) within the
 * limits; throws a TemplateError saying which limit was hit.
 */
export function renderTemplateBounded(template: string, context: Record<string, unknown>): string {
  return renderTemplatesBounded(template, [context])[0]!;
}

/**
 * Renders `template` once per context in one round trip to the renderer (the way to render many prompts: the
 * round trip costs more than a short rendering). The time limit applies to each rendering.
 */
export function renderTemplatesBounded(template: string, contexts: Array<Record<string, unknown>>): string[] {
  if (contexts.length === 0) return [];
  if (!running) running = startWorker();
  const r = running;
  Atomics.store(r.flag, 0, 0);
  let seen = Atomics.load(r.flag, 1);
  r.worker.postMessage({ template, contexts, maxChars: limits.maxChars });
  let deadline = Date.now() + limits.timeoutMs;
  while (Atomics.load(r.flag, 0) === 0) {
    const left = deadline - Date.now();
    if (left <= 0) {
      stopWorker();
      throw new TemplateError(`rendering the chat template did not finish within ${limits.timeoutMs} ms (an endless loop, or it ran out of its ${limits.heapMb} MB heap); abandoned`);
    }
    Atomics.wait(r.flag, 1, seen, left);
    const now = Atomics.load(r.flag, 1);
    if (now !== seen) {
      seen = now;
      deadline = Date.now() + limits.timeoutMs; // each rendering gets the whole limit
    }
  }
  const reply = receiveMessageOnPort(r.port)?.message as Reply | undefined;
  if (!reply) {
    stopWorker();
    throw new TemplateError('rendering the chat template failed: the renderer stopped without a reply');
  }
  if ('error' in reply) throw new TemplateError(contexts.length > 1 ? `${reply.error} (rendering ${reply.index + 1} of ${contexts.length})` : reply.error);
  return reply.texts;
}
