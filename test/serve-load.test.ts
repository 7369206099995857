// `clipo serve` under a bounded load on loopback (the real CLI process, engine on its worker thread, tiny random
// model): 8 clients x 20 requests, greedy and sampled, chat and completions, some streamed. Every response must be
// valid, /health must answer within 100 ms throughout, requests must share decode steps at the default settings,
// and a seeded request must give the same text under load as alone.
import OpenAI from 'openai';
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { loadNative, packageRoot } from '../src/native.js';
import { tmpDir } from './eval-fakes.js';
import { runClipo } from './helpers/cli.js';

function engineBuilt(): boolean {
  try {
    return loadNative().buildInfo().modules.includes('engine');
  } catch {
    return false;
  }
}
const maybe = engineBuilt() ? describe : describe.skip;
const bin = path.join(packageRoot, 'bin', 'clipo');
const env = { ...process.env, FORCE_COLOR: '0' };

async function metric(base: string, name: string): Promise<number> {
  const t = await (await fetch(base + '/metrics')).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(t);
  if (!m) throw new Error(`no ${name} in /metrics`);
  return Number(m[1]);
}

maybe('clipo serve under load', () => {
  test('8 clients x 20 requests: valid answers, /health < 100 ms, batching at default settings, seeds honoured', async () => {
    const dir = tmpDir();
    const modelDir = path.join(dir, 'tiny');
    const init = spawnSync(process.execPath, [bin, 'model', 'init', '--arch', 'qwen2', '--layers', '2', '--hidden', '64', '--heads', '4', '--kv-heads', '2', '--intermediate', '128', '--vocab', '259', '--tokenizer', 'byte', '--seed', '9', '--out', modelDir], { encoding: 'utf8', env });
    expect(init.stderr + init.stdout).toMatch(/wrote/);
    const serve = spawn(process.execPath, [bin, 'serve', '--model', modelDir, '--port', '0', '--threads', '1', '--quiet'], { env });
    let serveErr = '';
    serve.stderr.on('data', (d) => (serveErr += d));
    const exited = new Promise<number | null>((r) => serve.on('close', (code) => r(code)));
    try {
      const line = await new Promise<string>((resolve, reject) => {
        createInterface({ input: serve.stdout }).once('line', resolve);
        serve.once('close', () => reject(new Error(`clipo serve exited: ${serveErr}`)));
      });
      const url = line.match(/at (http:\/\/127\.0\.0\.1:\d+\/v1)/)![1];
      const base = url.replace(/\/v1$/, '');
      const client = new OpenAI({ baseURL: url, apiKey: 'none', maxRetries: 0 });

      type Kind = 'chat-greedy' | 'chat-sampled' | 'completion-greedy' | 'completion-sampled' | 'chat-stream';
      const kinds: Kind[] = ['chat-greedy', 'chat-sampled', 'completion-greedy', 'completion-sampled', 'chat-stream'];
      const run = async (kind: Kind, i: number): Promise<{ text: string[]; finish: string[]; tokens: number; maxTokens: number; n: number }> => {
        const maxTokens = 8 + (i % 17);
        const sampled = kind.endsWith('sampled') || kind === 'chat-stream';
        const p = { temperature: sampled ? 0.9 : 0, top_p: sampled ? 0.95 : 1, max_tokens: maxTokens, seed: 1000 + i };
        const n = kind === 'chat-sampled' ? 2 : 1;
        if (kind === 'chat-stream') {
          const s = await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: `stream ${i}` }], ...p, stream: true, stream_options: { include_usage: true } });
          let text = '';
          let finish = '';
          let tokens = -1;
          for await (const c of s) {
            text += c.choices[0]?.delta.content ?? '';
            finish = c.choices[0]?.finish_reason ?? finish;
            if (c.usage) tokens = c.usage.completion_tokens;
          }
          return { text: [text], finish: [finish], tokens, maxTokens, n };
        }
        if (kind.startsWith('chat')) {
          const r = await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: `question ${i}` }], n, ...p });
          expect(r.choices.map((c) => c.index)).toEqual(Array.from({ length: n }, (_, k) => k));
          return { text: r.choices.map((c) => c.message.content ?? ''), finish: r.choices.map((c) => c.finish_reason), tokens: r.usage!.completion_tokens, maxTokens, n };
        }
        const r = await client.completions.create({ model: 'tiny', prompt: `text ${i}:`, ...p });
        return { text: r.choices.map((c) => c.text), finish: r.choices.map((c) => c.finish_reason), tokens: r.usage!.completion_tokens, maxTokens, n };
      };

      // references, one at a time
      const probe = [3, 7, 12, 44, 90, 121];
      const alone = new Map<string, string[]>();
      for (const i of probe) alone.set(`${kinds[i % kinds.length]}/${i}`, (await run(kinds[i % kinds.length], i)).text);

      const steps0 = await metric(base, 'clipo_decode_steps_total');
      const seqs0 = await metric(base, 'clipo_decode_step_sequences_total');
      // /health every 20 ms while the load runs, from a separate process (so the clients' work here cannot delay it).
      // Each probe also asks an idle control server (another process answering the same JSON) at the same moment:
      // on a machine shared with other work, the control's latency is what scheduling alone costs.
      const control = spawn(process.execPath, ['-e', `
        const s = require('node:http').createServer((q, r) => { r.writeHead(200, { 'content-type': 'application/json' }); r.end('{"status":"ok"}'); });
        s.listen(0, '127.0.0.1', () => process.stdout.write(String(s.address().port) + '\\n'));`], { env });
      const controlPort = await new Promise<string>((r) => createInterface({ input: control.stdout }).once('line', r));
      const prober = spawn(process.execPath, ['-e', `
        const ms = [];
        let on = true;
        process.stdin.on('data', () => { on = false; });
        const probe = async (u) => {
          const t0 = performance.now();
          const r = await fetch(u);
          await r.json();
          return r.status === 200 ? performance.now() - t0 : -1;
        };
        const urls = [${JSON.stringify(base + '/health')}, 'http://127.0.0.1:${controlPort.trim()}/health'];
        (async () => {
          await Promise.all(urls.map(probe)); // warm-up: loads fetch, opens the connections
          process.stderr.write('ready\\n');
          while (on) {
            ms.push(await Promise.all(urls.map(probe)));
            await new Promise((r) => setTimeout(r, 20));
          }
          process.stdout.write(JSON.stringify(ms));
          process.exit(0);
        })();`], { env });
      let probed = '';
      prober.stdout.on('data', (d) => (probed += d));
      const proberDone = new Promise<void>((r) => prober.on('close', () => r()));
      await new Promise((r) => prober.stderr.once('data', r));
      const results = new Map<string, Awaited<ReturnType<typeof run>>>();
      await Promise.all(
        Array.from({ length: 8 }, async (_, c) => {
          for (let j = 0; j < 20; j++) {
            const i = c * 20 + j;
            const kind = kinds[i % kinds.length];
            results.set(`${kind}/${i}`, await run(kind, i));
          }
        }),
      );
      prober.stdin.end('stop');
      await proberDone;
      control.kill();
      const pairs = JSON.parse(probed) as Array<[number, number]>;
      expect(pairs.every(([h]) => h >= 0)).toBe(true); // every /health was a 200
      const healthMs = pairs.map(([h]) => h);

      expect(results.size).toBe(160);
      for (const r of results.values()) {
        expect(r.text.length).toBe(r.n);
        for (const f of r.finish) expect(['stop', 'length']).toContain(f);
        expect(r.tokens).toBeGreaterThan(0);
        expect(r.tokens).toBeLessThanOrEqual(r.maxTokens * r.n);
        r.text.forEach((t, k) => {
          expect(typeof t).toBe('string');
          if (r.finish[k] === 'length') expect(t.length).toBeGreaterThan(0);
        });
      }
      // same seed, same text, whatever else was in the batch
      expect(new Set(probe.map((i) => kinds[i % kinds.length])).size).toBe(kinds.length);
      for (const [key, text] of alone) expect({ key, text: results.get(key)!.text }).toEqual({ key, text });
      expect(healthMs.length).toBeGreaterThan(5);
      if (process.env.CLIPO_DEBUG_LOAD) console.log(JSON.stringify(pairs.map(([h, c]) => [Math.round(h), Math.round(c)])));
      // Within 100 ms. On a quiet machine the control answers in a millisecond or two and this is 100 ms flat; on a
      // machine busy with other work, the worst the control (an idle server) saw during the run is added, since
      // no server can answer faster than the machine schedules it.
      const machineNoise = Math.max(...pairs.map(([, c]) => c));
      expect(Math.max(...healthMs)).toBeLessThan(100 + machineNoise);
      const sorted = [...healthMs].sort((a, b) => a - b);
      expect(sorted[Math.floor(sorted.length / 2)]).toBeLessThan(100);
      const meanBatch = ((await metric(base, 'clipo_decode_step_sequences_total')) - seqs0) / ((await metric(base, 'clipo_decode_steps_total')) - steps0);
      expect(meanBatch).toBeGreaterThan(2);
      expect(await metric(base, 'clipo_running_sequences')).toBe(0);
    } finally {
      serve.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  }, 180_000);

  test('clipo bench serve: requests/s, tokens/s, p50/p99 latency and mean batch size; bad flags refused', () => {
    const dir = tmpDir();
    const modelDir = path.join(dir, 'tiny');
    expect(runClipo('model', 'init', '--arch', 'llama', '--layers', '1', '--hidden', '32', '--heads', '2', '--kv-heads', '1', '--intermediate', '64', '--vocab', '259', '--tokenizer', 'byte', '--seed', '2', '--out', modelDir).code).toBe(0);
    const r = runClipo('bench', 'serve', '--model', modelDir, '--threads', '1', '--requests', '12', '--concurrency', '4', '--max-tokens', '6', '--json');
    expect(r.err).toMatch(/bench serve: 12\/12 requests/);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.out);
    const row = doc.reports[0].rows[0];
    expect(row).toMatchObject({ clients: 4, requests: 12, errors: 0, 'max tokens': 6 });
    for (const k of ['req/s', 'tokens/s', 'p50 ms', 'p99 ms']) expect(row[k]).toBeGreaterThan(0);
    expect(row['p99 ms']).toBeGreaterThanOrEqual(row['p50 ms']);
    expect(row['mean batch']).toBeGreaterThanOrEqual(1);
    expect(row['mean batch']).toBeLessThanOrEqual(4);
    const bad = runClipo('bench', 'serve');
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--model DIR .* or --endpoint URL/);
    expect(runClipo('bench', 'serve', '--endpoint', 'http://127.0.0.1:1/v1').err).toMatch(/--served-model/);
    expect(runClipo('bench', 'serve', 'kernels', '--model', modelDir).err).toMatch(/on its own/);
  }, 120_000);
});
