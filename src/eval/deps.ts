// What eval takes from the data and verifier modules, in one place.
// TEMPORARY: `verify` is a minimal stand-in (last \boxed{...}, exact string match) until src/verify lands.
export { loadDataset, type DataRow } from '../data/load.js';
export { suites, suiteSummary, isSuiteName, defaultDataRoot, type SuiteName } from '../data/suites.js';

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
