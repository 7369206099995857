// Atomic file writes: write a temp file in the same directory, fsync, then rename over the target, so a reader
// (or a resumed run) sees either the old file or the new one, never a torn one. Failures name the file and say
// why in words (Node's own messages for a failed write name neither, e.g. "ENOSPC: no space left on device, write").
import { accessSync, appendFileSync, closeSync, constants, existsSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';

const REASONS: Record<string, string> = {
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'the file system is read-only',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EFBIG: 'file too large',
  EIO: 'input/output error',
  ENOTDIR: 'a part of the path is not a folder',
  EISDIR: 'it is a folder',
};

/** An error for a failed file operation that names the file and the reason; keeps `code`. */
export function fileError(e: unknown, action: string, file: string): Error {
  const code = (e as NodeJS.ErrnoException)?.code;
  const reason = (code && REASONS[code]) ?? (e as Error)?.message ?? String(e);
  const err = new Error(`cannot ${action} ${file}: ${reason}${code ? ` (${code})` : ''}`) as NodeJS.ErrnoException;
  if (code) err.code = code;
  return err;
}

/** Writes all of `buf` to `fd`; a failure names `file`. */
export function writeAll(fd: number, buf: Uint8Array, file: string): void {
  try {
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
  } catch (e) {
    throw fileError(e, 'write', file);
  }
}

/** appendFileSync with a message naming the file. */
export function appendText(file: string, text: string): void {
  try {
    appendFileSync(file, text);
  } catch (e) {
    throw fileError(e, 'append to', file);
  }
}

/**
 * Creates `dir` (and its parents) if needed and checks that it is writable. `what` names it in messages (e.g.
 * 'output.dir', '--out'). A read-only or unwritable place is reported as such, naming the folder that refuses.
 */
export function ensureDir(dir: string, what: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    // Node reports some refusals of a recursive mkdir as ENOENT; find the deepest existing folder and say why
    let parent = path.dirname(dir);
    while (!existsSync(parent) && path.dirname(parent) !== parent) parent = path.dirname(parent);
    if (existsSync(parent) && !statSync(parent).isDirectory()) throw new Error(`cannot create ${what} ${dir}: ${parent} is not a folder`);
    try {
      accessSync(parent, constants.W_OK);
    } catch (a) {
      throw fileError(a, `create ${what} ${dir}: cannot write in`, parent);
    }
    throw fileError(e, `create ${what}`, dir);
  }
  if (!statSync(dir).isDirectory()) throw new Error(`${what} ${dir} is not a folder`);
  try {
    accessSync(dir, constants.W_OK);
  } catch (e) {
    throw fileError(e, `write in ${what}`, dir);
  }
}

export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  const dir = path.dirname(file);
  ensureDir(dir, 'folder');
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
  let fd: number;
  try {
    fd = openSync(tmp, 'w');
  } catch (e) {
    throw fileError(e, 'write', file);
  }
  try {
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    writeAll(fd, buf, file);
    try {
      fsyncSync(fd);
    } catch (e) {
      throw fileError(e, 'write', file);
    }
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true }); // a full disk must not also keep a half-written temporary file
    throw e;
  }
  closeSync(fd);
  try {
    renameSync(tmp, file);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw fileError(e, 'write', file);
  }
}

export function writeJsonAtomic(file: string, value: unknown): void {
  writeFileAtomic(file, JSON.stringify(value, null, 2) + '\n');
}
