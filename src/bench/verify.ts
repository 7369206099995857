// `clipo bench verify`: verifications per second, one core (the verifier is synchronous JavaScript), on real ground
// truths from the benchmark data (synthetic ones when the data folder is absent):
//   GSM8K-style: gsm8k + gsm_p2 ground truths (integers, decimals); completions end in \boxed{GT}, in another
//                accepted form (\$1,234 / 32.50 / x = 18) or with a changed number
//   MATH-style:  MATH500 + Math_S + Math_H ground truths (LaTeX); completions carry GT as written, GT rewritten
//                so that only the compute engine can match it (\frac{a}{b} -> (a)/(b), \sqrt{x} -> (x)^{1/2}), or
//                GT with a changed number
// Each completion is a few hundred characters of reasoning before the box, as a model writes. Targets (issue 5):
// GSM8K-style >= 5,000/s and MATH-style >= 200/s. Ground truths repeat in training (k samples per problem), so the
// verifier caches their parse; a first untimed pass warms that cache and the JIT, as training does.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { loadDataset } from '../data/load.js';
import { defaultDataRoot } from '../data/suites.js';
import { verify } from '../verify/index.js';
import { VerifierPool } from '../verify/pool.js';
import { median, timeRepeats } from '../util/stats.js';
import { round } from './bandwidth.js';
import { loadBefore, loadRecord, standardNotes, threadCounts } from './harness.js';
import type { BenchContext, BenchReport, BenchRow, BenchSuite } from './types.js';

const REASONING =
  "Let's think step by step. First we find the quantities given in the problem and write the relations between " +
  'them. Substituting the known values, we simplify the expression carefully, checking each arithmetic step. ' +
  'Combining the terms gives the value below, which also satisfies the original conditions. ';

/** The first number in `gt` plus one (width kept); the next letter; else `+1`. */
export function perturbAnswer(gt: string): string {
  if (/^[A-Z]$/.test(gt)) return gt === 'Z' ? 'A' : String.fromCharCode(gt.charCodeAt(0) + 1);
  const m = /\d+/.exec(gt);
  if (m) return gt.slice(0, m.index) + String(BigInt(m[0]) + 1n).padStart(m[0].length, '0') + gt.slice(m.index + m[0].length);
  return `${gt}+1`;
}

function gsmVariant(gt: string, k: number): string {
  if (/^\d{4,}$/.test(gt) && k % 2 === 0) return `\\$${Number(gt).toLocaleString('en-US')}`;
  if (/^\d+\.\d+$/.test(gt)) return `${gt}0`;
  return k % 2 === 0 ? `x = ${gt}` : `${gt} \\text{ dollars}`;
}

/** GT in a form only the compute engine can match: \frac{a}{b} -> ((a)/(b)), \sqrt{x} -> ((x)^{1/2}). */
export function mathRewrite(gt: string): string | null {
  // a mixed number (1\frac{4}{5}) would become a product
  if (/\d\s*\\d?frac/.test(gt)) return null;
  const r = gt.replace(/\\d?frac\{([^{}]*)\}\{([^{}]*)\}/g, '(($1)/($2))').replace(/\\sqrt\{([^{}]*)\}/g, '(($1)^{1/2})');
  return r === gt ? null : r;
}

interface Case {
  completion: string;
  gt: string;
  expect: boolean;
}

async function groundTruths(files: string[], fallback: string[]): Promise<{ gts: string[]; source: string }> {
  const root = defaultDataRoot();
  const paths = files.map((f) => path.join(root, f));
  if (!paths.every((p) => existsSync(p))) return { gts: fallback, source: 'synthetic (benchmark data folder absent)' };
  const gts: string[] = [];
  for (const p of paths) for (const r of (await loadDataset(p)).rows) gts.push(r.groundTruth);
  return { gts, source: files.map((f) => path.basename(f, '.parquet')).join(' + ') };
}

function measure(ctx: BenchContext, cases: Case[], label: string, source: string): BenchRow {
  let wrong = 0;
  // warm pass: JIT, the engine's first parses, the ground-truth cache; also checks the expected verdicts
  for (const c of cases) {
    const v = verify(c.completion, c.gt);
    if (v.correct !== c.expect) {
      wrong++;
      ctx.log(`verify: unexpected verdict ${v.correct} for \\boxed{${v.extracted}} against ${c.gt}${v.reason ? ` (${v.reason})` : ''}`);
    }
  }
  const times = timeRepeats(() => {
    for (const c of cases) verify(c.completion, c.gt);
  }, ctx.repeats, 0);
  const perSec = cases.length / median(times);
  return { set: label, path: 'in-process', threads: 1, data: source, completions: cases.length, 'verify/s': round(perSec), 'us/verify': round(1e6 / perSec), 'unexpected verdicts': wrong };
}

/**
 * The same completions through the verifier pool (worker threads, each answer under a time bound: the path
 * `clipo train` and `clipo eval` take), with `threads` workers: the batch API's cost (messages, results) included.
 */
async function measurePool(ctx: BenchContext, cases: Case[], label: string, source: string, threads: number): Promise<BenchRow> {
  const pool = new VerifierPool({ threads });
  try {
    const items = cases.map((c) => ({ completion: c.completion, groundTruth: c.gt }));
    const warm = pool.verifyBatchSync(items); // workers started and warmed; verdicts checked
    const wrong = warm.results.filter((r, k) => r.correct !== cases[k]!.expect).length;
    const times = timeRepeats(() => pool.verifyBatchSync(items), ctx.repeats, 0);
    const perSec = cases.length / median(times);
    return { set: label, path: `pool, ${threads} worker${threads > 1 ? 's' : ''}`, threads, data: source, completions: cases.length, 'verify/s': round(perSec), 'us/verify': round(1e6 / perSec), 'unexpected verdicts': wrong, timeouts: warm.timeouts };
  } finally {
    await pool.close();
  }
}

export const verifySuite: BenchSuite = {
  name: 'verify',
  groups: ['verify'],
  description: 'verifier throughput on GSM8K-style and MATH-style answers (real ground truths): in-process on one core, and through the worker pool on one and all threads',
  async run(ctx: BenchContext): Promise<BenchReport> {
    const before = loadBefore();
    const gsm = await groundTruths(['test/gsm8k.parquet', 'test/gsm_p2.parquet'], Array.from({ length: 2000 }, (_, i) => (i % 5 === 4 ? `${(i * 7.3).toFixed(1)}` : String(i * 37))));
    const math = await groundTruths(['test/math.parquet', 'test/math_perturb_simple.parquet', 'test/math_perturb_hard.parquet'], [
      '\\frac{14}{3}', '3\\sqrt{13}', '\\left( 3, \\frac{\\pi}{2} \\right)', 'p - q', '90^\\circ', '(3,4]', '\\frac{\\sqrt{3}}{3}', 'x^3+3x-6', '6 - 5i', '1 \\pm \\sqrt{19}',
    ]);
    const nG = ctx.quick ? Math.min(600, gsm.gts.length) : gsm.gts.length;
    const nM = ctx.quick ? Math.min(150, math.gts.length) : math.gts.length;
    const gsmCases = { correct: [] as Case[], variant: [] as Case[], perturbed: [] as Case[] };
    gsm.gts.slice(0, nG).forEach((gt, k) => {
      gsmCases.correct.push({ completion: `${REASONING}The answer is $\\boxed{${gt}}$.`, gt, expect: true });
      gsmCases.variant.push({ completion: `${REASONING}The answer is $\\boxed{${gsmVariant(gt, k)}}$.`, gt, expect: true });
      gsmCases.perturbed.push({ completion: `${REASONING}The answer is $\\boxed{${perturbAnswer(gt)}}$.`, gt, expect: false });
    });
    const mathCases = { correct: [] as Case[], rewritten: [] as Case[], perturbed: [] as Case[] };
    for (const gt of math.gts.slice(0, nM)) {
      mathCases.correct.push({ completion: `${REASONING}Therefore the answer is $\\boxed{${gt}}$.`, gt, expect: true });
      const rw = mathRewrite(gt);
      if (rw) mathCases.rewritten.push({ completion: `${REASONING}Therefore the answer is $\\boxed{${rw}}$.`, gt, expect: true });
      mathCases.perturbed.push({ completion: `${REASONING}Therefore the answer is $\\boxed{${perturbAnswer(gt)}}$.`, gt, expect: false });
    }
    const gsmMix = [...gsmCases.correct, ...gsmCases.variant, ...gsmCases.perturbed];
    const mathMix = [...mathCases.correct, ...mathCases.rewritten, ...mathCases.perturbed];
    ctx.log(`verify: ${gsmMix.length} GSM8K-style and ${mathMix.length} MATH-style completions`);
    const rows: BenchRow[] = [
      measure(ctx, gsmCases.correct, 'GSM8K-style: \\boxed{GT}', gsm.source),
      measure(ctx, gsmCases.variant, 'GSM8K-style: GT in another form', gsm.source),
      measure(ctx, gsmCases.perturbed, 'GSM8K-style: changed number', gsm.source),
      measure(ctx, gsmMix, 'GSM8K-style: all of the above', gsm.source),
      measure(ctx, mathCases.correct, 'MATH-style: \\boxed{GT}', math.source),
      measure(ctx, mathCases.rewritten, 'MATH-style: GT rewritten (engine)', math.source),
      measure(ctx, mathCases.perturbed, 'MATH-style: changed number', math.source),
      measure(ctx, mathMix, 'MATH-style: all of the above', math.source),
    ];
    const gsmRate = rows[3]['verify/s'] as number;
    const mathRate = rows[7]['verify/s'] as number;
    // the mixes again through the worker pool, one worker and all threads
    for (const t of threadCounts(ctx.threads)) {
      rows.push(await measurePool(ctx, gsmMix, 'GSM8K-style: all of the above', gsm.source, t));
      rows.push(await measurePool(ctx, mathMix, 'MATH-style: all of the above', math.source, t));
    }
    const notes = [
      `GSM8K-style: ${gsmRate} verifications/s (target >= 5000): ${gsmRate >= 5000 ? 'met' : 'MISSED'}`,
      `MATH-style: ${mathRate} verifications/s (target >= 200): ${mathRate >= 200 ? 'met' : 'MISSED'}`,
      'in-process rows: the verifier called directly on one core; pool rows: the same completions through the verifier pool (worker threads, each answer under a time bound; what clipo train and clipo eval use), one worker and all threads, messages included; rates are medians over repeats after a warm pass',
    ];
    const unexpected = rows.reduce((a, r) => a + (r['unexpected verdicts'] as number), 0);
    if (unexpected) notes.push(`${unexpected} completions got a verdict other than expected (see the rows)`);
    const load = loadRecord(before);
    return { suite: 'verify', rows, notes: [...standardNotes(load, []), ...notes], load };
  },
};
