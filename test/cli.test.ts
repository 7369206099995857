// The CLI as a user meets it: help lists the commands, version prints, unbuilt commands refuse, bad flags explain.
import os from 'node:os';
import { runClipo as clipo } from './helpers/cli.js';


describe('clipo CLI', () => {
  test('--help lists train, eval, bench and demo', () => {
    const r = clipo('--help');
    expect(r.code).toBe(0);
    for (const c of ['train', 'eval', 'bench', 'demo']) expect(r.out).toMatch(new RegExp(`^\\s+${c}\\b`, 'm'));
  });

  test('--version prints the package version', () => {
    const r = clipo('--version');
    expect(r.code).toBe(0);
    expect(r.out.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  test('an unknown command fails with a message', () => {
    const r = clipo('frobnicate');
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/unknown command/i);
  });

  test('bench rejects an unknown suite and a bad --repeats', () => {
    const a = clipo('bench', 'nosuchsuite');
    expect(a.code).toBe(2);
    expect(a.err).toMatch(/unknown benchmark 'nosuchsuite'/);
    const b = clipo('bench', 'bandwidth', '--repeats', 'x');
    expect(b.code).toBe(2);
    expect(b.err).toMatch(/--repeats: expected a number/);
  });

  test('bench bandwidth --json emits a parseable document with positive figures', () => {
    const r = clipo('bench', 'bandwidth', '--quick', '--json');
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.out);
    expect(doc.machine.cores).toBeGreaterThan(0);
    const rows = doc.reports[0].rows as { GBs: number; threads: number }[];
    expect(rows.length).toBe(2 * (os.availableParallelism() > 1 ? 2 : 1)); // read and copy, one thread and all
    expect(rows[0]!.threads).toBe(1);
    for (const row of rows) expect(row.GBs).toBeGreaterThan(0.1);
  });
});
