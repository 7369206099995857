// The chat-template renderer's worker thread (see template-render.ts). A model directory's chat template is
// untrusted code for a small language; it runs here, where a loop that never ends or a value that fills the heap
// costs only this thread: the caller abandons (terminates) it after the time limit, and the heap limit ends it.
import { Template } from '@huggingface/jinja';
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';

interface Request {
  template: string;
  /** one context per rendering */
  contexts: Array<Record<string, unknown>>;
  maxChars: number;
}

const { flag, port } = workerData as { flag: Int32Array; port: MessagePort };
const parsed = new Map<string, Template>();

parentPort!.on('message', (req: Request) => {
  let reply: { texts: string[] } | { error: string; index: number };
  let i = 0;
  try {
    let t = parsed.get(req.template);
    if (!t) {
      if (parsed.size > 16) parsed.clear();
      t = new Template(req.template);
      parsed.set(req.template, t);
    }
    const texts: string[] = [];
    for (; i < req.contexts.length; i++) {
      const text = t.render(req.contexts[i]!);
      if (text.length > req.maxChars) throw new Error(`the rendered prompt has ${text.length} characters, more than the limit of ${req.maxChars}`);
      texts.push(text);
      // one more rendering done: the caller's time limit applies to each rendering, not to the whole batch
      Atomics.add(flag, 1, 1);
      Atomics.notify(flag, 1);
    }
    reply = { texts };
  } catch (e) {
    reply = { error: (e as Error)?.message ?? String(e), index: i };
  }
  port.postMessage(reply); // (posted before the flag is set, so the waiting caller finds it on its port)
  Atomics.store(flag, 0, 1);
  Atomics.add(flag, 1, 1);
  Atomics.notify(flag, 1);
});
