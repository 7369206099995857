// `clipo bench serve`: throughput and latency of an OpenAI-compatible server under a fixed closed-loop load
// (C clients, R requests in all, each client sends its next request when the last one is answered). Measures
// `clipo serve` on a model directory (started here, engine on its worker thread) or any server at --endpoint (e.g.
// vLLM on the same model), so the two can be compared with the same client. The mean batch size comes from the
// server's /metrics when it is clipo's (decode-step sequences / decode steps over the run).
import type { BenchReport } from './types.js';

export interface ServeBenchOptions {
  /** base URL ending in /v1 */
  url: string;
  model: string;
  concurrency: number;
  requests: number;
  maxTokens: number;
  temperature: number;
  /** prompt words per request (a fixed filler text plus the request number) */
  promptWords: number;
  apiKey?: string;
  log?: (m: string) => void;
}

export interface ServeBenchResult {
  requests: number;
  errors: number;
  seconds: number;
  requestsPerSecond: number;
  completionTokens: number;
  promptTokens: number;
  tokensPerSecond: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  meanLatencyMs: number;
  /** null when the server does not report clipo's decode-step metrics */
  meanBatchSize: number | null;
}

/** Quantile by the nearest-rank rule (q in (0, 1]). */
export function nearestRank(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

async function clipoMetrics(base: string, headers: Record<string, string>): Promise<{ steps: number; seqs: number } | null> {
  try {
    const r = await fetch(base + '/metrics', { headers });
    if (!r.ok) return null;
    const t = await r.text();
    const get = (name: string) => {
      const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(t);
      return m ? Number(m[1]) : NaN;
    };
    const steps = get('clipo_decode_steps_total'), seqs = get('clipo_decode_step_sequences_total');
    return Number.isFinite(steps) && Number.isFinite(seqs) ? { steps, seqs } : null;
  } catch {
    return null;
  }
}

export async function benchServe(o: ServeBenchOptions): Promise<ServeBenchResult> {
  const base = o.url.replace(/\/v1\/?$/, '');
  const headers: Record<string, string> = { 'content-type': 'application/json', ...(o.apiKey ? { authorization: `Bearer ${o.apiKey}` } : {}) };
  const filler = 'Please continue the following list of numbers and words as long as you can:';
  const prompt = (i: number) => `${filler} ${Array.from({ length: Math.max(0, o.promptWords - 14) }, (_, k) => `w${(i * 7 + k) % 97}`).join(' ')} #${i}`;
  const one = async (i: number) => {
    const t0 = performance.now();
    const r = await fetch(o.url + '/completions', {
      method: 'POST',
      headers,
      body: JSON.stringify({ model: o.model, prompt: prompt(i), max_tokens: o.maxTokens, temperature: o.temperature, seed: i }),
    });
    const body = (await r.json()) as { usage?: { prompt_tokens: number; completion_tokens: number }; error?: { message: string } };
    if (!r.ok || !body.usage) throw new Error(body.error?.message ?? `HTTP ${r.status}`);
    return { ms: performance.now() - t0, prompt: body.usage.prompt_tokens, completion: body.usage.completion_tokens };
  };
  // one warm-up request (connections, first-call costs), not counted
  await one(o.requests);
  const before = await clipoMetrics(base, headers);
  const lat: number[] = [];
  let errors = 0, completion = 0, promptTokens = 0, next = 0, doneCount = 0;
  let lastError = '';
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: o.concurrency }, async () => {
      while (next < o.requests) {
        const i = next++;
        try {
          const r = await one(i);
          lat.push(r.ms);
          completion += r.completion;
          promptTokens += r.prompt;
        } catch (e) {
          errors++;
          lastError = (e as Error).message;
        }
        if (++doneCount % Math.max(1, Math.floor(o.requests / 10)) === 0) o.log?.(`bench serve: ${doneCount}/${o.requests} requests`);
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const after = await clipoMetrics(base, headers);
  if (errors) o.log?.(`bench serve: ${errors} request(s) failed; last error: ${lastError}`);
  lat.sort((a, b) => a - b);
  const meanBatchSize = before && after && after.steps > before.steps ? (after.seqs - before.seqs) / (after.steps - before.steps) : null;
  return {
    requests: lat.length,
    errors,
    seconds,
    requestsPerSecond: lat.length / seconds,
    completionTokens: completion,
    promptTokens,
    tokensPerSecond: completion / seconds,
    latencyP50Ms: nearestRank(lat, 0.5),
    latencyP99Ms: nearestRank(lat, 0.99),
    meanLatencyMs: lat.reduce((a, b) => a + b, 0) / Math.max(1, lat.length),
    meanBatchSize,
  };
}

export function serveReport(o: ServeBenchOptions, r: ServeBenchResult, target: string): BenchReport {
  const f = (x: number, d = 1) => Number(x.toFixed(d));
  return {
    suite: 'serve',
    rows: [
      {
        target,
        clients: o.concurrency,
        requests: r.requests,
        errors: r.errors,
        'max tokens': o.maxTokens,
        temperature: o.temperature,
        'req/s': f(r.requestsPerSecond, 2),
        'tokens/s': f(r.tokensPerSecond),
        'p50 ms': f(r.latencyP50Ms, 0),
        'p99 ms': f(r.latencyP99Ms, 0),
        'mean batch': r.meanBatchSize === null ? null : f(r.meanBatchSize, 2),
      },
    ],
    notes: [`${r.completionTokens} completion tokens and ${r.promptTokens} prompt tokens in ${r.seconds.toFixed(2)} s (closed loop: each client sends its next request when the last is answered)`],
  };
}
