// One writer per output folder (a training run's output.dir, an evaluation's --out). The lock is a kernel lock
// (flock) on `<dir>/.lock`, taken through the native addon: the kernel drops it when its process ends, however it
// ends, so a lock left by a killed run is stale by construction and the next run takes it over with no guessing
// about pids. The file holds the owner's pid and command for the refusal message.
import path from 'node:path';
import { UsageError } from '../errors.js';
import { nativeFunction } from '../native.js';

type LockFileFn = (file: string, owner: string) => { fd: number } | { heldBy: string };
type UnlockFileFn = (fd: number, file: string) => void;

export interface DirLock {
  file: string;
  /** releases the lock (idempotent) */
  release(): void;
}

/**
 * Locks `dir` (which must exist) for `what` (e.g. 'clipo train'); throws a UsageError naming the holder when
 * another process (or another lock in this one) holds it.
 */
export function lockDir(dir: string, what: string): DirLock {
  const file = path.join(dir, '.lock');
  const lock = nativeFunction<LockFileFn>('lockFile');
  const unlock = nativeFunction<UnlockFileFn>('unlockFile');
  const r = lock(file, JSON.stringify({ pid: process.pid, command: what, since: new Date().toISOString() }) + '\n');
  if ('heldBy' in r) {
    let holder = 'another process';
    try {
      const o = JSON.parse(r.heldBy) as { pid?: number; command?: string };
      if (o.pid) holder = `another ${o.command ?? 'process'} (pid ${o.pid}${o.pid === process.pid ? ': this process' : ''})`;
    } catch {
      // the holder is still writing its owner text, or an older clipo wrote a bare pid: the generic name will do
    }
    throw new UsageError(`${holder} is writing to ${dir}; wait for it to finish or stop it (one process per folder)`);
  }
  let released = false;
  return {
    file,
    release() {
      if (released) return;
      released = true;
      unlock(r.fd, file);
    },
  };
}
