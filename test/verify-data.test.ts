// The verifier on every ground truth of every benchmark test file (the real data in ../shared/data/clipo-benchmarks,
// skipped with a message when absent): `The answer is \boxed{GT}.` must verify correct, a rewrite of GT in another
// accepted form must too, and GT with one number (or letter, or boolean) changed must verify incorrect.
// Rates are printed per file.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { loadDataset } from '../src/data/load.js';
import { defaultDataRoot, suites } from '../src/data/suites.js';
import { verify } from '../src/verify/index.js';
import { mathRewrite } from '../src/bench/verify.js';

const root = defaultDataRoot();
const have = existsSync(path.join(root, 'test'));
if (!have) console.warn(`verify-data: skipped, the benchmark data folder is absent (${root}; set CLIPO_DATA_ROOT)`);
const describeData = have ? describe : describe.skip;

const FILES = [...suites.track1.benchmarks, ...suites.track2.benchmarks].map((b) => b.file);

/** GT with one thing changed: the first number + 1 (keeping its width), the next letter, the other boolean. */
function perturb(gt: string): string {
  if (/^[A-Z]$/.test(gt)) return gt === 'Z' ? 'A' : String.fromCharCode(gt.charCodeAt(0) + 1);
  const paren = /^\(([a-z])\)$/.exec(gt);
  if (paren) return `(${paren[1] === 'z' ? 'a' : String.fromCharCode(paren[1].charCodeAt(0) + 1)})`;
  if (gt === 'True') return 'False';
  if (gt === 'False') return 'True';
  const m = /\d+/.exec(gt);
  if (m) return gt.slice(0, m.index) + String(BigInt(m[0]) + 1n).padStart(m[0].length, '0') + gt.slice(m.index + m[0].length);
  const word = /^\\text\{([A-Za-z ]+)\}$|^([A-Za-z ]{3,})$/.exec(gt);
  if (word) return (word[1] ?? word[2]) + 'x';
  return `${gt}+1`;
}

/** GT written another accepted way (null when there is no obvious other way); LaTeX fractions and roots in a form
 * only the compute engine can match. */
function rewrite(gt: string): string | null {
  const engineForm = mathRewrite(gt);
  if (engineForm) return engineForm;
  if (/^\d+$/.test(gt)) return gt.length > 3 ? Number(gt).toLocaleString('en-US').replace(/,/g, ',\\!') : `${gt}.0`;
  if (/^0\d+$/.test(gt)) return String(Number(gt));
  const dec = /^(-?\d+)\.(\d+)$/.exec(gt);
  if (dec) {
    if (/^0+$/.test(dec[2])) return dec[1];
    // 32.5 -> \frac{325}{10}, -1.047 -> -\frac{1047}{1000}
    const num = BigInt(dec[1].replace('-', '') + dec[2]);
    return `${gt.startsWith('-') ? '-' : ''}\\frac{${num}}{${10n ** BigInt(dec[2].length)}}`;
  }
  if (/^[A-Z]$/.test(gt)) return `(${gt}) the option's text`;
  if (/^\([a-z]\)$/.test(gt)) return gt[1].toUpperCase();
  if (gt === 'True' || gt === 'False') return `\\text{${gt}}`;
  if (/^\[.*\]$/.test(gt)) return gt.replace(/\s+/g, '');
  return null;
}

describeData('every ground truth of every test file', () => {
  const lines: string[] = [];
  afterAll(() => {
    if (lines.length) console.log(['verifier on the benchmark ground truths (correct | rewrite | perturbed rejected):', ...lines].join('\n'));
  });

  test.each(FILES)('%s', async (file) => {
    const { rows } = await loadDataset(path.join(root, file));
    let correct = 0;
    let rewrites = 0;
    let rewritesOk = 0;
    let rejected = 0;
    const failures: string[] = [];
    const accepted: string[] = [];
    for (const r of rows) {
      const gt = r.groundTruth;
      const v = verify(`The answer is \\boxed{${gt}}.`, gt);
      if (v.correct) correct++;
      else failures.push(`${gt} (${v.reason})`);
      const rw = rewrite(gt);
      if (rw !== null) {
        rewrites++;
        const w = verify(`So the final answer is $\\boxed{${rw}}$`, gt);
        if (w.correct) rewritesOk++;
        else failures.push(`rewrite ${rw} of ${gt} (${w.reason})`);
      }
      const p = perturb(gt);
      if (!verify(`The answer is \\boxed{${p}}.`, gt).correct) rejected++;
      else accepted.push(`${p} for ${gt}`);
    }
    const pct = (a: number, b: number) => (b ? ((100 * a) / b).toFixed(2) : '-');
    lines.push(`  ${file.padEnd(34)} ${String(rows.length).padStart(5)} rows  correct ${pct(correct, rows.length)}%  rewrite ${pct(rewritesOk, rewrites)}% of ${rewrites}  perturbed rejected ${pct(rejected, rows.length)}%`);
    // every ground truth verifies against itself and its rewrites: no exceptions
    expect(failures).toEqual([]);
    expect(correct).toBe(rows.length);
    // a changed number is rejected; all files reach 100% today, the floor leaves room for an equal-value change
    // such as a digit inside an exponent that cancels out
    expect(accepted.length / rows.length).toBeLessThanOrEqual(0.005);
  });
});

describeData('MATH training rows: the ground truth is the worked solution', () => {
  test('train/math75.parquet (first 1500 rows): its last box, boxed again, verifies; a changed number does not', async () => {
    const { rows } = await loadDataset(path.join(root, 'train', 'math75.parquet'), { limit: 1500 });
    let correct = 0;
    let rejected = 0;
    for (const r of rows) {
      const at = r.groundTruth.lastIndexOf('\\boxed');
      expect(at).toBeGreaterThanOrEqual(0);
      const answer = verify(r.groundTruth.slice(at), r.groundTruth).extracted as string;
      if (verify(`Final: \\boxed{${answer}}`, r.groundTruth).correct) correct++;
      if (!verify(`Final: \\boxed{${perturb(answer)}}`, r.groundTruth).correct) rejected++;
    }
    console.log(`train/math75.parquet: ${rows.length} solutions, boxed answer correct ${correct}, perturbed rejected ${rejected}`);
    expect(correct).toBe(rows.length);
    expect(rejected / rows.length).toBeGreaterThanOrEqual(0.995);
  });
});

describeData('GSM8K training rows', () => {
  test('train/gsm8k.parquet: every ground truth verifies when boxed; with a changed number it does not', async () => {
    const { rows } = await loadDataset(path.join(root, 'train', 'gsm8k.parquet'));
    let correct = 0;
    let rejected = 0;
    for (const r of rows) {
      if (verify(`So the answer is \\boxed{${r.groundTruth}}.`, r.groundTruth).correct) correct++;
      if (!verify(`So the answer is \\boxed{${perturb(r.groundTruth)}}.`, r.groundTruth).correct) rejected++;
    }
    console.log(`train/gsm8k.parquet: ${rows.length} rows, correct ${correct}, perturbed rejected ${rejected}`);
    expect(correct).toBe(rows.length);
    expect(rejected).toBe(rows.length);
  });
});
