// Runs the clipo CLI as a user would (a child process through bin/clipo), with colour off. The environment passes
// through, so CLIPO_DIST_DIR / CLIPO_NATIVE_ADDON reach the child.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../../src/native.js';

export const clipoBin = path.join(packageRoot, 'bin', 'clipo');
export const cliEnv: NodeJS.ProcessEnv = { ...process.env, FORCE_COLOR: '0' };

export function runClipo(...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [clipoBin, ...args], { encoding: 'utf8', env: cliEnv });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/**
 * Starts `clipo train --config cfg` and kills it with SIGKILL as soon as `file` exists (a checkpoint's state.json) or
 * it exits by itself; resolves with the signal that ended it (null: it exited before the kill).
 */
export async function trainKilledAt(cfg: string, file: string): Promise<NodeJS.Signals | null> {
  const child = spawn(process.execPath, [clipoBin, 'train', '--config', cfg], { env: cliEnv, stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  await new Promise<void>((resolve) => {
    const poll = setInterval(() => {
      if (existsSync(file) || child.exitCode !== null) {
        clearInterval(poll);
        resolve();
      }
    }, 5);
  });
  child.kill('SIGKILL');
  await exited;
  return child.signalCode;
}
