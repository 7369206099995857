// Runs the clipo CLI as a user would (a child process through bin/clipo), with colour off. The environment passes
// through, so CLIPO_DIST_DIR / CLIPO_NATIVE_ADDON reach the child.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { packageRoot } from '../../src/native.js';

export const clipoBin = path.join(packageRoot, 'bin', 'clipo');
export const cliEnv: NodeJS.ProcessEnv = { ...process.env, FORCE_COLOR: '0' };

export function runClipo(...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [clipoBin, ...args], { encoding: 'utf8', env: cliEnv });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
