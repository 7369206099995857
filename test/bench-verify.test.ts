// `clipo bench verify` in quick mode: it runs on the real data (or synthetic answers without it), reports positive
// rates for every set, in-process and through the worker pool (one and all threads), and every completion gets the
// verdict it was built for.
import { threadCounts } from '../src/bench/harness.js';
import { verifySuite } from '../src/bench/verify.js';

test('bench verify --quick: rates for every set, no unexpected verdicts', async () => {
  const report = await verifySuite.run({ quick: true, repeats: 1, backend: 'cpu', log: () => undefined });
  // 8 sets in-process, then the two mixes through the worker pool at 1 thread and at all threads
  const pool = report.rows.filter((r) => String(r.path).startsWith('pool'));
  expect(pool.map((r) => r.threads).sort()).toEqual(threadCounts().flatMap((t) => [t, t]).sort());
  expect(report.rows).toHaveLength(8 + pool.length);
  for (const r of report.rows) {
    expect(r['verify/s'] as number).toBeGreaterThan(0);
    expect(r['unexpected verdicts']).toBe(0);
    if (r.timeouts !== undefined) expect(r.timeouts).toBe(0);
  }
  expect(report.notes?.some((n) => /GSM8K-style: \d+ verifications\/s/.test(n))).toBe(true);
});
