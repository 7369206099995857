// The paper's benchmark suites (docs/algorithm.md §4-6) and their averages.
//   Track I:  M-Avg = mean(GSM8K, SYM, P1, P2), G-Avg = mean(cQA, tQA, thrmQA, MMLU), Avg = mean of the eight
//   Track II: M-Avg = mean(MATH500, Math_S, Math_H), C-Avg = mean(AMC23, AIME24, AIME25), Avg = mean of the six
// Validation sampling: Track I one greedy sample per problem; Track II 16 samples at T = 0.6, top-p 0.95.
import path from 'node:path';
import { packageRoot } from '../native.js';

export type SuiteName = 'track1' | 'track2';

export interface SuiteBenchmark {
  /** key in results and suiteSummary scores, e.g. 'gsm_symbolic' */
  key: string;
  /** the paper's column name, e.g. 'SYM' */
  display: string;
  /** path relative to the data root, e.g. 'test/gsm_symbolic.parquet' */
  file: string;
  /** which of the two averages it belongs to */
  group: 'M-Avg' | 'G-Avg' | 'C-Avg';
}

export interface SuiteDef {
  name: SuiteName;
  title: string;
  benchmarks: SuiteBenchmark[];
  /** the second average's label: G-Avg (Track I, general reasoning) or C-Avg (Track II, competition) */
  secondAverage: 'G-Avg' | 'C-Avg';
  defaults: { samples: number; temperature: number; topP: number; maxNewTokens: number };
}

const bench = (key: string, display: string, file: string, group: SuiteBenchmark['group']): SuiteBenchmark => ({ key, display, file: `test/${file}.parquet`, group });

export const suites: Record<SuiteName, SuiteDef> = {
  track1: {
    name: 'track1',
    title: 'Track I (GSM8K-trained; math and general reasoning)',
    benchmarks: [
      bench('gsm8k', 'GSM8K', 'gsm8k', 'M-Avg'),
      bench('gsm_symbolic', 'SYM', 'gsm_symbolic', 'M-Avg'),
      bench('gsm_p1', 'P1', 'gsm_p1', 'M-Avg'),
      bench('gsm_p2', 'P2', 'gsm_p2', 'M-Avg'),
      bench('commonsense_qa', 'cQA', 'commonsense_qa', 'G-Avg'),
      bench('truthfulqa', 'tQA', 'truthfulqa', 'G-Avg'),
      bench('theoremqa', 'thrmQA', 'theoremqa', 'G-Avg'),
      bench('mmlu', 'MMLU', 'mmlu2k', 'G-Avg'),
    ],
    secondAverage: 'G-Avg',
    defaults: { samples: 1, temperature: 0, topP: 1, maxNewTokens: 2048 },
  },
  track2: {
    name: 'track2',
    title: 'Track II (MATH-trained; math and competition)',
    benchmarks: [
      bench('math', 'MATH500', 'math', 'M-Avg'),
      bench('math_perturb_simple', 'Math_S', 'math_perturb_simple', 'M-Avg'),
      bench('math_perturb_hard', 'Math_H', 'math_perturb_hard', 'M-Avg'),
      bench('amc', 'AMC23', 'amc', 'C-Avg'),
      bench('aime', 'AIME24', 'aime', 'C-Avg'),
      bench('aime2025', 'AIME25', 'aime2025', 'C-Avg'),
    ],
    secondAverage: 'C-Avg',
    defaults: { samples: 16, temperature: 0.6, topP: 0.95, maxNewTokens: 4096 },
  },
};

export function isSuiteName(s: string): s is SuiteName {
  return s === 'track1' || s === 'track2';
}

/** The benchmark data folder: CLIPO_DATA_ROOT, else `../shared/data/clipo-benchmarks` next to the package. */
export function defaultDataRoot(): string {
  return process.env.CLIPO_DATA_ROOT ?? path.resolve(packageRoot, '..', 'shared', 'data', 'clipo-benchmarks');
}

export type SuiteSummary = Record<string, number | null>;

/**
 * The scores with the suite's averages appended: {...scores, 'M-Avg', 'G-Avg' | 'C-Avg', 'Avg'}, in the scores'
 * own unit (fractions or percent). An average is null unless every benchmark it covers has a finite score; Avg is
 * the mean over all of the suite's benchmarks (equal to the mean of the two group averages, as the groups are
 * the same size). No rounding: the paper rounds only for display (see the test against docs/algorithm.md §6).
 */
export function suiteSummary(suite: SuiteName, scores: Record<string, number | null | undefined>): SuiteSummary {
  const def = suites[suite];
  if (!def) throw new Error(`unknown suite '${suite}' (expected track1 or track2)`);
  const known = new Set(def.benchmarks.map((b) => b.key));
  const out: SuiteSummary = {};
  for (const [k, v] of Object.entries(scores)) {
    if (!known.has(k)) throw new Error(`suiteSummary(${suite}): unknown benchmark key '${k}' (expected one of ${[...known].join(', ')})`);
    out[k] = v ?? null;
  }
  const mean = (keys: string[]): number | null => {
    let s = 0;
    for (const k of keys) {
      const v = scores[k];
      if (typeof v !== 'number' || !Number.isFinite(v)) return null;
      s += v;
    }
    return s / keys.length;
  };
  const keysOf = (g: SuiteBenchmark['group']) => def.benchmarks.filter((b) => b.group === g).map((b) => b.key);
  out['M-Avg'] = mean(keysOf('M-Avg'));
  out[def.secondAverage] = mean(keysOf(def.secondAverage));
  out.Avg = mean(def.benchmarks.map((b) => b.key));
  return out;
}
