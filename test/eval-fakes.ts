// Test helpers for the evaluation tests: a scripted OpenAI-compatible server on loopback (in-process, no network)
// and small data files.
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface FakeRequest {
  model: string;
  messages: Array<{ role: string; content: string }>;
  temperature?: number;
  top_p?: number;
  max_tokens?: number;
  seed?: number;
  n?: number;
}

/** What the script answers: a completion text, or an HTTP error status (optionally with Retry-After seconds). */
export type FakeReply = { text: string; finishReason?: string; delayMs?: number } | { status: number; retryAfter?: number; delayMs?: number };

export interface FakeServer {
  url: string;
  requests: FakeRequest[];
  close(): Promise<void>;
}

export async function startFakeOpenAI(script: (req: FakeRequest, callNo: number) => FakeReply, opts: { model?: string } = {}): Promise<FakeServer> {
  const requests: FakeRequest[] = [];
  const model = opts.model ?? 'fake-model';
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const send = (status: number, obj: unknown, headers: Record<string, string> = {}) => {
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(JSON.stringify(obj));
      };
      if (req.method === 'GET' && req.url === '/v1/models') return send(200, { object: 'list', data: [{ id: model, object: 'model' }] });
      if (req.method !== 'POST' || req.url !== '/v1/chat/completions') return send(404, { error: { message: `no route ${req.url}` } });
      const r = JSON.parse(body) as FakeRequest;
      if (r.model !== model) return send(404, { error: { message: `model '${r.model}' not found` } });
      requests.push(r);
      const reply = script(r, requests.length);
      setTimeout(() => {
        if ('status' in reply) {
          return send(reply.status, { error: { message: `scripted ${reply.status}` } }, reply.retryAfter !== undefined ? { 'retry-after': String(reply.retryAfter) } : {});
        }
        const tokens = reply.text.split(/\s+/).length;
        send(200, {
          id: `cmpl-${requests.length}`,
          object: 'chat.completion',
          created: 0,
          model,
          choices: [{ index: 0, message: { role: 'assistant', content: reply.text }, finish_reason: reply.finishReason ?? 'stop', logprobs: null }],
          usage: { prompt_tokens: 10, completion_tokens: tokens, total_tokens: 10 + tokens },
        });
      }, reply.delayMs ?? 0);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

export function tmpDir(prefix = 'clipo-eval-'): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** A jsonl file of n arithmetic questions "What is a + b?" with their answers. */
export function writeArithmeticJsonl(dir: string, name: string, n: number): { file: string; answers: Map<string, string> } {
  const answers = new Map<string, string>();
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const a = 3 + 7 * i;
    const b = 11 + 5 * i;
    const question = `What is ${a} + ${b}?`;
    answers.set(question, String(a + b));
    lines.push(JSON.stringify({ question, answer: String(a + b) }));
  }
  const file = path.join(dir, name);
  writeFileSync(file, lines.join('\n') + '\n');
  return { file, answers };
}

/** The question inside a built prompt (the loader appends an instruction after a newline). */
export function questionOf(req: FakeRequest): string {
  const user = req.messages.find((m) => m.role === 'user')?.content ?? '';
  return user.split('\n')[0];
}
