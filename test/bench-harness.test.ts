// The bench's measuring rules: an impossible fraction is withheld as an error, CPU clocks are exact on short
// multi-thread calls, load is recorded, and --compare torch without a usable Python says how to get it and skips.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { checkedFraction, flagRow, interleave, limitSpread, loadBefore, loadRecord, pairedFraction, poolCpuSeconds, threadCpuSeconds, timeCall, type Sample } from '../src/bench/harness.js';
import { ReadProbe } from '../src/bench/bandwidth.js';
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

test('read probe: every pattern reads the whole buffer; the limit is the pattern fastest on its median', () => {
  const probe = new ReadProbe(1);
  expect(probe.patterns.length).toBeGreaterThanOrEqual(4);
  const readPass = nativeFunction<(o: object) => { sum: number }>('readPass');
  const data = new Float32Array((1 << 20) + 37).fill(1); // a tail no window covers
  for (let k = 0; k < probe.patterns.length; k++) expect(readPass({ data, threads: 1, pattern: k }).sum).toBe(data.length);
  expect(() => readPass({ data, threads: 1, pattern: probe.patterns.length })).toThrow(/pattern/);
  // medians, not the best single pass: pattern a has the fastest single pass but the slower median
  const res = new Map<string, Sample[]>();
  const [a, b] = probe.entries(1).map((e) => e.name);
  const s = (xs: number[]) => xs.map((cpu) => ({ cpu, wall: 9 }));
  res.set(a!, s([0.5, 2, 2, 2, 2]));
  res.set(b!, s([1.5, 1.5, 1.5, 1.5, 1.5]));
  for (const e of probe.entries(1).slice(2)) res.set(e.name, s([3, 3, 3]));
  const lim = probe.limit(res, 1);
  expect(lim.pattern).toBe(probe.patterns[1]);
  expect(lim.seconds).toBe(1.5);
  expect(probe.limit(res, 2, 'read 1').seconds).toBe(9); // more threads: the wall clock
  res.delete(b!);
  expect(() => probe.limit(res, 1)).toThrow(/no samples/);
});

test('paired fraction: each sample against the probe of its own round, then the median', () => {
  // the probe and the kernel both slow down in round 2 (load): paired, the kernel is at 0.9 of the limit every round
  const probe = [1, 2, 1, 1, 1].map((cpu) => ({ cpu, wall: cpu }));
  const kernel = [1.25, 2.5, 1.25, 1.25, 1.25].map((cpu) => ({ cpu, wall: cpu }));
  expect(pairedFraction(90, kernel, 100, probe, 1)).toBeCloseTo(0.72, 12); // (90 / 1.25) / (100 / 1)
  const drift = [1, 1.5, 2, 2.5, 3].map((cpu) => ({ cpu, wall: cpu }));
  const k2 = drift.map((s) => ({ cpu: s.cpu / 0.9, wall: s.wall / 0.9 }));
  expect(pairedFraction(100, k2, 100, drift, 2)).toBeCloseTo(0.9, 12);
  expect(() => pairedFraction(1, kernel.slice(1), 1, probe, 1)).toThrow(/one each per round/);
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
