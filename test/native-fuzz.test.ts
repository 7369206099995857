// Fuzzing the native boundary: random mutations of valid calls of every native entry (kernels, the engine and its
// callbacks, benchmark probes, the file lock), each family in its own child process so that a crash is a signal
// seen here, not a dead test runner. A bad call must throw an Error: never a signal, never a hang.
// CI runs a few seconds per family; CLIPO_FUZZ_SECONDS=N runs longer, CLIPO_FUZZ_SEED=S picks the seed
// (the default changes with every run, and a failure prints the seed and the call that crashed).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { packageRoot } from '../src/native.js';

const seconds = Number(process.env.CLIPO_FUZZ_SECONDS ?? 3);
const seed = Number(process.env.CLIPO_FUZZ_SEED ?? Date.now() % 1_000_000);
const driver = path.join(packageRoot, 'dist', 'test', 'helpers', 'fuzz-driver.js');

describe('native boundary fuzz', () => {
  for (const family of ['kernels', 'engine', 'misc']) {
    test(`${family}: mutated calls throw Errors; no signal, no hang (seed ${seed}, ${seconds} s)`, () => {
      const cwd = mkdtempSync(path.join(os.tmpdir(), 'clipo-fuzz-')); // the lock fuzzing may create files here
      try {
        // slack for a loaded machine: a call that takes this long is a hang
        const r = spawnSync(process.execPath, [driver, family, String(seed), String(seconds)], { cwd, encoding: 'utf8', timeout: (seconds + 90) * 1000, maxBuffer: 1 << 30 });
        const lines = r.stdout.trimEnd().split('\n');
        const last = lines.at(-1) ?? '';
        const context = `family ${family}, seed ${seed}: last call: ${last}\n${r.stderr.slice(-2000)}`;
        if (r.error) throw new Error(`the fuzz child did not finish (${(r.error as Error).message}); ${context}`);
        expect({ signal: r.signal, context: r.signal ? context : '' }).toEqual({ signal: null, context: '' });
        expect({ status: r.status, context: r.status ? context : '' }).toEqual({ status: 0, context: '' });
        expect(last).toMatch(/^done \d+ rounds$/);
        expect(Number(last.split(' ')[1])).toBeGreaterThan(0);
      } finally {
        rmSync(cwd, { recursive: true, force: true });
      }
    }, (seconds + 120) * 1000);
  }
});
