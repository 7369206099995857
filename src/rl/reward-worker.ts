// The worker thread of a custom reward module (reward-module.ts). It imports the user's module, then answers one
// request at a time: each result is posted on the port first and then announced through the shared flag, so the
// trainer (blocked in Atomics.wait with a deadline) can read it synchronously. The user's code runs only here: a
// reward that loops forever is ended by terminating this thread.
import { pathToFileURL } from 'node:url';
import { workerData, type MessagePort } from 'node:worker_threads';

const { file, flag, port } = workerData as { file: string; flag: Int32Array; port: MessagePort };

function announce(index: number, value: number): void {
  Atomics.store(flag, index, value);
  Atomics.notify(flag, index);
}

let fn: ((item: unknown) => unknown) | null = null;
try {
  const m = (await import(pathToFileURL(file).href)) as { default?: unknown; reward?: unknown };
  const f = typeof m.default === 'function' ? m.default : m.reward;
  if (typeof f !== 'function') throw new Error('the module exports no function (export default function, or export function reward)');
  fn = f as (item: unknown) => unknown;
} catch (e) {
  port.postMessage({ type: 'load-error', message: (e as Error)?.message ?? String(e) });
  announce(1, 2);
}
if (fn) {
  const reward = fn;
  port.on('message', async (req: { id: number; item: unknown }) => {
    let out: { id: number; value?: unknown; error?: string };
    try {
      out = { id: req.id, value: await reward(req.item) };
    } catch (e) {
      out = { id: req.id, error: (e as Error)?.message ?? String(e) };
    }
    try {
      port.postMessage(out);
    } catch {
      port.postMessage({ id: req.id, error: 'the reward returned a value that cannot be passed between threads' });
    }
    announce(0, req.id);
  });
  port.postMessage({ type: 'ready' });
  announce(1, 1);
}
