// clipo eval on the paper's real benchmark files (first few problems of each), against an oracle server that
// answers every problem with its ground truth, or with a wrong number on odd problems: checks the suite plan and
// its per-track defaults, the real loader and verifier in the loop, Pass@1 and the paper's averages.
// Skipped with a message when the benchmark data folder is absent.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseEvalFlags } from '../src/cli/commands/eval.js';
import { defaultDataRoot, loadDataset, suites } from '../src/eval/deps.js';
import { EndpointGenerator } from '../src/eval/endpoint.js';
import { runEval } from '../src/eval/run.js';
import { startFakeOpenAI, tmpDir, type FakeRequest } from './eval-fakes.js';

const root = defaultDataRoot();
const have = existsSync(path.join(root, 'test'));
if (!have) console.warn(`eval-suites.test: benchmark data not found at ${root} (set CLIPO_DATA_ROOT); skipping`);
const maybe = have ? describe : describe.skip;

const LIMIT = 3;

async function oracle(suite: 'track1' | 'track2', wrongOnOdd: boolean) {
  // prompt text -> [ground truth, problem index]
  const truth = new Map<string, [string, number]>();
  for (const b of suites[suite].benchmarks) {
    const ds = await loadDataset(path.join(root, b.file), { limit: LIMIT });
    ds.rows.forEach((r, i) => truth.set(r.messages.map((m) => m.content).join('\n'), [r.groundTruth, i]));
  }
  return startFakeOpenAI((r: FakeRequest) => {
    const [gt, i] = truth.get(r.messages.map((m) => m.content).join('\n'))!;
    const wrong = wrongOnOdd && i % 2 === 1;
    // a wrong answer: a number that no ground truth here equals
    return { text: `Thus the answer is \\boxed{${wrong ? '-987654.321' : gt}}.` };
  });
}

maybe('clipo eval --suite on the real files', () => {
  test('track1 defaults: 1 greedy sample, 2048 tokens; oracle answers score 100 everywhere', async () => {
    const server = await oracle('track1', false);
    const out = path.join(tmpDir(), 'out');
    try {
      const plan = parseEvalFlags({ endpoint: server.url, servedModel: 'fake-model', suite: 'track1', limit: String(LIMIT), out });
      expect(plan).toMatchObject({ samples: 1, temperature: 0, topP: 1, maxNewTokens: 2048, concurrency: 16 });
      expect(plan.benchmarks.map((b) => b.display)).toEqual(['GSM8K', 'SYM', 'P1', 'P2', 'cQA', 'tQA', 'thrmQA', 'MMLU']);
      const res = await runEval({ ...plan, params: plan, generator: new EndpointGenerator({ baseURL: server.url, model: 'fake-model', concurrency: 8 }) });
      expect(server.requests.length).toBe(8 * LIMIT);
      expect(server.requests.every((r) => r.temperature === 0 && r.max_tokens === 2048)).toBe(true);
      for (const [k, b] of Object.entries(res.benchmarks)) expect([k, b.pass1]).toEqual([k, 100]);
      expect(res.summary).toMatchObject({ 'M-Avg': 100, 'G-Avg': 100, Avg: 100 });
      const md = readFileSync(path.join(out, 'results.md'), 'utf8');
      expect(md).toMatch(/\| model \| GSM8K \| SYM \| P1 \| P2 \| cQA \| tQA \| thrmQA \| MMLU \| M-Avg \| G-Avg \| Avg \|/);
      expect(md).toMatch(/--limit 3/);
    } finally {
      await server.close();
    }
  });

  test('track2 defaults: 16 samples at T 0.6, top-p 0.95; wrong answers on odd problems give the expected averages', async () => {
    const server = await oracle('track2', true);
    const out = path.join(tmpDir(), 'out');
    try {
      const plan = parseEvalFlags({ endpoint: server.url, servedModel: 'fake-model', suite: 'track2', limit: String(LIMIT), samples: '2', out });
      expect(plan).toMatchObject({ samples: 2, temperature: 0.6, topP: 0.95, maxNewTokens: 4096 });
      expect(parseEvalFlags({ endpoint: server.url, servedModel: 'm', suite: 'track2', out }).samples).toBe(16);
      const res = await runEval({ ...plan, params: plan, generator: new EndpointGenerator({ baseURL: server.url, model: 'fake-model', concurrency: 8 }) });
      expect(server.requests.length).toBe(6 * LIMIT * 2);
      expect(server.requests.every((r) => r.temperature === 0.6 && r.top_p === 0.95 && r.max_tokens === 4096)).toBe(true);
      // problems 0 and 2 right, 1 wrong -> 2/3 on every benchmark
      for (const b of Object.values(res.benchmarks)) expect(b.pass1).toBeCloseTo(200 / 3, 10);
      expect(res.summary!['M-Avg']).toBeCloseTo(200 / 3, 10);
      expect(res.summary!['C-Avg']).toBeCloseTo(200 / 3, 10);
      expect(res.summary!.Avg).toBeCloseTo(200 / 3, 10);
      expect(Object.keys(res.benchmarks)).toEqual(['math', 'math_perturb_simple', 'math_perturb_hard', 'amc', 'aime', 'aime2025']);
    } finally {
      await server.close();
    }
  });
});
