// A child process that takes the output-folder lock of `dir` and holds it until killed: the "other clipo" of the
// lock tests. Resolves once the child reports that it holds the lock.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { packageRoot } from '../../src/native.js';

export async function holdLock(dir: string, what: string): Promise<ChildProcess> {
  const lockModule = pathToFileURL(path.join(packageRoot, 'dist', 'src', 'util', 'lock.js')).href;
  const code = `import(${JSON.stringify(lockModule)}).then((m) => { m.lockDir(${JSON.stringify(dir)}, ${JSON.stringify(what)}); console.log('locked'); setInterval(() => {}, 1000); });`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('locked')) resolve();
    });
    child.on('exit', (c) => reject(new Error(`the lock holder exited (${c}) before taking the lock`)));
  });
  return child;
}

/** Kills with SIGKILL (no cleanup runs: the lock file stays behind) and waits for the exit. */
export async function killHard(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}
