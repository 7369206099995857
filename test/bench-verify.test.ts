// `clipo bench verify` in quick mode: it runs on the real data (or synthetic answers without it), reports positive
// rates for every set, and every completion gets the verdict it was built for.
import { verifySuite } from '../src/bench/verify.js';

test('bench verify --quick: rates for every set, no unexpected verdicts', async () => {
  const report = await verifySuite.run({ quick: true, repeats: 1, backend: 'cpu', log: () => undefined });
  expect(report.rows).toHaveLength(8);
  for (const r of report.rows) {
    expect(r['verify/s'] as number).toBeGreaterThan(0);
    expect(r['unexpected verdicts']).toBe(0);
  }
  expect(report.notes?.some((n) => /GSM8K-style: \d+ verifications\/s/.test(n))).toBe(true);
});
