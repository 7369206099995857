// The bench's measuring rules: an impossible fraction is withheld as an error, CPU clocks are exact on short
// multi-thread calls, load is recorded, and --compare torch without a usable Python says how to get it and skips.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { checkedFraction, flagRow, interleave, limitSpread, loadBefore, loadRecord, poolCpuSeconds, threadCpuSeconds, timeCall } from '../src/bench/harness.js';
import { compareValues } from '../src/bench/peer.js';
import type { BenchRow } from '../src/bench/types.js';
import { nativeFunction, packageRoot } from '../src/native.js';

test('a fraction above 1 is an error, never a number; one at or below 1 is kept', () => {
  expect(checkedFraction(9, 10, 'x')).toEqual({ fraction: 0.9 });
  const bad = checkedFraction(12, 10, 'gemm nt');
  expect(bad.fraction).toBeNull();
  expect(bad.error).toMatch(/gemm nt: 1.2 of the limit .* impossible/);
  expect(checkedFraction(1, 0, 'y').fraction).toBeNull();
  const row: BenchRow = { a: 1 };
  const errors: string[] = [];
  flagRow(row, errors, bad.error);
  flagRow(row, errors, undefined);
  expect(row.benchError).toBe(bad.error);
  expect(errors).toEqual([bad.error]);
});

test("a fraction just above 1 is kept as 'at the limit' only within the probe's own spread", () => {
  // probe times 1.00, 1.02, 0.98, 1.04, 0.96 s: quartiles 0.98 and 1.02 around a median of 1 -> spread 2%
  const probe = [1, 1.02, 0.98, 1.04, 0.96].map((s) => ({ wall: s, cpu: s }));
  const spread = limitSpread(probe, 2);
  expect(spread).toBeCloseTo(0.02, 10);
  expect(checkedFraction(10.1, 10, 'pool', spread)).toEqual({ fraction: 1.01, atLimit: true });
  const beyond = checkedFraction(10.3, 10, 'pool', spread);
  expect(beyond.fraction).toBeNull();
  expect(beyond.error).toMatch(/pool: 1.03 of the limit .*beyond the probe's own spread of 2%.* impossible/);
  expect(limitSpread(probe.slice(0, 3), 1)).toBe(0); // too few samples to say: no allowance
});

test('interleave runs entries round-robin, back to back, and drops the warm-up round', async () => {
  const order: string[] = [];
  const mk = (name: string) => ({ name, run: () => { order.push(name); return { wall: 1, cpu: 1 }; } });
  const res = await interleave([mk('a'), mk('b')], 3, 1);
  expect(order).toEqual(['a', 'b', 'a', 'b', 'a', 'b', 'a', 'b']);
  expect(res.get('a')!.length).toBe(3);
});

test('CPU clocks: the team clock sees every thread of a short parallel call', () => {
  const t0 = threadCpuSeconds();
  let x = 0;
  for (let i = 0; i < 2e6; i++) x += Math.sqrt(i);
  expect(threadCpuSeconds() - t0).toBeGreaterThan(0);
  expect(x).toBeGreaterThan(0);
  // two threads reading a buffer: the team's CPU time must not be below the wall time of the busiest thread's
  // share by more than rounding (CLOCK_PROCESS_CPUTIME_ID could report ~half here on a sub-tick call)
  const data = new Float32Array(1 << 22).fill(1);
  const readPass = nativeFunction<(o: object) => { seconds: number; cpuSeconds: number; sum: number }>('readPass');
  const r = readPass({ data, threads: 2 });
  expect(r.sum).toBe(data.length);
  expect(r.cpuSeconds).toBeGreaterThan(0);
  const c0 = poolCpuSeconds(2);
  const s = timeCall(() => readPass({ data, threads: 2 }), 2);
  expect(poolCpuSeconds(2)).toBeGreaterThan(c0);
  expect(s.wall).toBeGreaterThan(0);
  expect(s.cpu).toBeGreaterThan(0);
});

test('load is recorded before and after; a large change gets a note', () => {
  const before = loadBefore();
  expect(before.length).toBe(3);
  const rec = loadRecord([before[0]! + 1000, 0, 0]);
  expect(rec.note).toMatch(/load changed during the run/);
});

test('the value check compares loss and the largest gradient difference', () => {
  const a = { loss: 1, grad: Float32Array.from([1, 2, 3]) };
  expect(compareValues(a, { loss: 1.00001, grad: Float32Array.from([1, 2, 3.0001]) }).agree).toBe(true);
  expect(compareValues(a, { loss: 1, grad: Float32Array.from([1, 2, 4]) }).agree).toBe(false);
  expect(compareValues(a, { loss: 2, grad: Float32Array.from([1, 2, 3]) }).agree).toBe(false);
});

test('--compare torch without a usable Python says how to get torch and skips the comparison', () => {
  const r = spawnSync(process.execPath, [path.join(packageRoot, 'bin', 'clipo'), 'bench', 'contrastive', '--quick', '--json', '--repeats', '1', '--backend', 'cpu', '--compare', 'torch'], {
    encoding: 'utf8', env: { ...process.env, FORCE_COLOR: '0', CLIPO_PYTHON: '/nonexistent/python3' },
  });
  expect(r.status).toBe(0);
  const doc = JSON.parse(r.stdout);
  expect(doc.peer.unavailable).toMatch(/nonexistent/);
  expect(doc.reports[0].notes.join('\n')).toMatch(/--compare torch: skipped: .*pip install torch/);
  expect(doc.reports[0].rows.some((x: { impl: string }) => x.impl.startsWith('torch'))).toBe(false);
});

test('--compare accepts only torch', () => {
  const r = spawnSync(process.execPath, [path.join(packageRoot, 'bin', 'clipo'), 'bench', 'bandwidth', '--compare', 'jax'], { encoding: 'utf8' });
  expect(r.status).toBe(2);
  expect(r.stderr).toMatch(/--compare: expected torch/);
});
