// TEMPORARY adapter: the data loader, suites and verifier live in src/data and src/verify (being built in
// parallel). Until they land, these minimal stand-ins with the same signatures let eval be built and tested.
import { readFileSync } from 'node:fs';
import type { ChatMessage } from './types.js';

export interface DataRow {
  id: string;
  index: number;
  messages: ChatMessage[];
  groundTruth: string;
  source: string;
}

export async function loadDataset(file: string, opts: { limit?: number } = {}): Promise<{ rows: DataRow[]; file: string; used: number; skipped: number }> {
  const rows: DataRow[] = [];
  const lines = readFileSync(file, 'utf8').split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i].trim()) continue;
    if (opts.limit !== undefined && rows.length >= opts.limit) break;
    const o = JSON.parse(lines[i]) as Record<string, unknown>;
    const q = (o.prompt ?? o.question ?? o.problem) as string | ChatMessage[];
    const gt = String(o.answer ?? o.ground_truth);
    const messages = typeof q === 'string' ? [{ role: 'user', content: `${q}\nLet's think step by step and output the final answer within \\boxed{}.` }] : q;
    rows.push({ id: String(rows.length), index: rows.length, messages, groundTruth: gt, source: file });
  }
  return { rows, file, used: rows.length, skipped: 0 };
}

export function verify(completion: string, groundTruth: string): { correct: boolean; extracted: string | null; reason?: string } {
  const i = completion.lastIndexOf('\\boxed{');
  if (i < 0) return { correct: false, extracted: null, reason: 'no boxed answer' };
  let depth = 0;
  let j = i + 7;
  for (; j < completion.length; j++) {
    if (completion[j] === '{') depth++;
    else if (completion[j] === '}') {
      if (depth === 0) break;
      depth--;
    }
  }
  const extracted = completion.slice(i + 7, j).trim();
  return { correct: extracted === groundTruth.trim(), extracted };
}

export interface SuiteBenchmark {
  key: string;
  display: string;
  file: string;
}
export interface SuiteDef {
  name: 'track1' | 'track2';
  benchmarks: SuiteBenchmark[];
  defaults: { samples: number; temperature: number; topP: number; maxNewTokens: number };
}

export const suites: Record<string, SuiteDef> = {
  track1: {
    name: 'track1',
    benchmarks: [
      ['gsm8k', 'GSM8K', 'gsm8k'], ['gsm_symbolic', 'SYM', 'gsm_symbolic'], ['gsm_p1', 'P1', 'gsm_p1'], ['gsm_p2', 'P2', 'gsm_p2'],
      ['commonsense_qa', 'cQA', 'commonsense_qa'], ['truthfulqa', 'tQA', 'truthfulqa'], ['theoremqa', 'thrmQA', 'theoremqa'], ['mmlu', 'MMLU', 'mmlu2k'],
    ].map(([key, display, f]) => ({ key, display, file: `test/${f}.parquet` })),
    defaults: { samples: 1, temperature: 0, topP: 1, maxNewTokens: 2048 },
  },
  track2: {
    name: 'track2',
    benchmarks: [
      ['math', 'MATH500', 'math'], ['math_perturb_simple', 'Math_S', 'math_perturb_simple'], ['math_perturb_hard', 'Math_H', 'math_perturb_hard'],
      ['amc', 'AMC23', 'amc'], ['aime', 'AIME24', 'aime'], ['aime2025', 'AIME25', 'aime2025'],
    ].map(([key, display, f]) => ({ key, display, file: `test/${f}.parquet` })),
    defaults: { samples: 16, temperature: 0.6, topP: 0.95, maxNewTokens: 4096 },
  },
};

export function suiteSummary(suite: 'track1' | 'track2', scores: Record<string, number>): Record<string, number> {
  const mean = (ks: string[]) => ks.reduce((a, k) => a + scores[k], 0) / ks.length;
  const keys = suites[suite].benchmarks.map((b) => b.key);
  const half = suite === 'track1' ? 4 : 3;
  const m = mean(keys.slice(0, half));
  const g = mean(keys.slice(half));
  return { ...scores, 'M-Avg': m, [suite === 'track1' ? 'G-Avg' : 'C-Avg']: g, Avg: mean(keys) };
}
