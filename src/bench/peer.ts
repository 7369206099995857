// The PyTorch peer of `clipo bench --compare torch`: a python3 process running scripts/bench/torch_peer.py, driven
// one call at a time over stdin/stdout so that its repeats interleave with clipo's in the same run. Nothing in clipo
// needs Python; when python3 or torch is missing the comparison says how to get them and is skipped.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { nativeFunction, packageRoot } from '../native.js';
import type { Sample } from './harness.js';

export const peerScript = path.join(packageRoot, 'scripts', 'bench', 'torch_peer.py');

/** The interpreter the peer runs on: CLIPO_PYTHON, else python3 from PATH. */
export function peerPython(): string {
  return process.env.CLIPO_PYTHON || 'python3';
}

export const howToGetTorch =
  'to compare with PyTorch, make `python3 -c "import torch, transformers"` work (for example ' +
  '`python3 -m pip install torch transformers`, or the CPU-only wheels: `python3 -m pip install torch ' +
  '--index-url https://download.pytorch.org/whl/cpu` then `python3 -m pip install transformers`), or set ' +
  'CLIPO_PYTHON to a Python that has them';

export interface PeerInfo {
  torch: string;
  transformers: string | null;
  threads: number;
  mkl: boolean;
}

type Answer = { ok: boolean; error?: string } & Record<string, unknown>;

export class TorchPeer {
  private readonly lines: AsyncIterator<string>;
  private closed = false;
  readonly dir: string;

  private constructor(private readonly proc: ChildProcessWithoutNullStreams, public readonly info: PeerInfo, lines: AsyncIterator<string>) {
    this.lines = lines;
    this.dir = mkdtempSync(path.join(existsShm() ? '/dev/shm' : os.tmpdir(), 'clipo-bench-'));
    const dir = this.dir;
    process.once('exit', () => rmSync(dir, { recursive: true, force: true })); // also on an error mid-run
  }

  /** Starts the peer; resolves to the peer or to the reason it is not available. */
  static async start(log: (m: string) => void): Promise<TorchPeer | { unavailable: string }> {
    const py = peerPython();
    let proc: ChildProcessWithoutNullStreams;
    try {
      proc = spawn(py, ['-u', peerScript], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' } });
    } catch (e) {
      return { unavailable: `cannot start ${py}: ${(e as Error).message}` };
    }
    let stderr = '';
    proc.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (stderr.length > 20000) stderr = stderr.slice(-10000);
    });
    const spawnError = new Promise<string>((resolve) => proc.on('error', (e) => resolve(`cannot start ${py}: ${e.message}`)));
    const lines = createInterface({ input: proc.stdout })[Symbol.asyncIterator]();
    proc.stdin.on('error', () => undefined); // a peer that died is reported by the missing answer
    proc.stdin.write(JSON.stringify({ cmd: 'hello' }) + '\n');
    const first = await Promise.race([
      lines.next().then((r) => (r.done ? null : r.value)),
      spawnError,
      new Promise<string>((resolve) => setTimeout(() => resolve('timeout'), 120_000).unref()),
    ]);
    if (first === null || first === 'timeout' || !first.startsWith('{')) {
      proc.kill();
      const why = first && first !== 'timeout' && !first.startsWith('{') ? first : lastLine(stderr) || (first === 'timeout' ? 'no answer in 120 s' : 'it exited');
      return { unavailable: `${py} with torch is not usable (${why})` };
    }
    const a = JSON.parse(first) as Answer;
    if (!a.ok) {
      proc.kill();
      return { unavailable: `the peer failed: ${a.error}` };
    }
    log(`  peer: ${py}, torch ${a.torch}${a.transformers ? `, transformers ${a.transformers}` : ''}`);
    return new TorchPeer(proc, a as unknown as PeerInfo, lines);
  }

  async call(req: Record<string, unknown>): Promise<Answer> {
    if (this.closed) throw new Error('torch peer: already closed');
    this.proc.stdin.write(JSON.stringify(req) + '\n');
    const r = await this.lines.next();
    if (r.done) throw new Error('torch peer: the Python process exited');
    const a = JSON.parse(r.value) as Answer;
    if (!a.ok) throw new Error(`torch peer: ${a.error}`);
    return a;
  }

  /** One timed call on the peer (its own clocks, so the pipe's latency is not counted). */
  async time(req: Record<string, unknown>): Promise<Sample> {
    const a = await this.call({ ...req, cmd: 'time' });
    return { wall: a.wall as number, cpu: a.cpu as number };
  }

  /** A file in the peer's folder holding `data` (raw little-endian). */
  writeInput(name: string, data: ArrayBufferView): string {
    const p = path.join(this.dir, name);
    writeFileSync(p, new Uint8Array(data.buffer, data.byteOffset, data.byteLength), { mode: 0o600 });
    return p;
  }

  /** A Float32Array the peer can map too (no second copy of large inputs). */
  sharedFloat32(name: string, length: number): { array: Float32Array; path: string } {
    const p = path.join(this.dir, name);
    const array = nativeFunction<(o: object) => Float32Array>('mapSharedFloat32')({ path: p, length });
    return { array, path: p };
  }

  /** Runs the peer's implementation once and returns its loss and the checked gradient. */
  async check(req: Record<string, unknown>, gradLength: number): Promise<{ loss: number; grad: Float32Array }> {
    const { answer, values } = await this.values({ ...req, cmd: 'check' }, gradLength);
    return { loss: answer.loss as number, grad: values };
  }

  /** Runs a peer command that writes `length` float32 values to the file it is given (`out`); returns both. */
  async values(req: Record<string, unknown>, length: number): Promise<{ answer: Answer; values: Float32Array }> {
    const out = path.join(this.dir, `out-${Math.random().toString(36).slice(2)}.f32`);
    writeFileSync(out, new Uint8Array(length * 4), { mode: 0o600 });
    try {
      const answer = await this.call({ ...req, out });
      const b = readFileSync(out);
      if (b.byteLength !== length * 4) throw new Error(`torch peer: wrote ${b.byteLength} bytes, expected ${length * 4}`);
      return { answer, values: new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)) };
    } finally {
      rmSync(out, { force: true });
    }
  }

  removeFile(p: string): void {
    rmSync(p, { force: true });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.proc.stdin.end();
    const exited = new Promise<void>((resolve) => this.proc.once('exit', () => resolve()));
    await Promise.race([exited, new Promise<void>((resolve) => setTimeout(resolve, 5000).unref())]);
    if (this.proc.exitCode === null) this.proc.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function existsShm(): boolean {
  try {
    return os.platform() === 'linux' && readFileSync('/proc/mounts', 'utf8').includes(' /dev/shm ');
  } catch {
    return false;
  }
}

function lastLine(s: string): string {
  const lines = s.trim().split('\n');
  return lines[lines.length - 1] ?? '';
}

/** Largest |a - b| over the largest |b|, and the loss's relative difference: the value check before any timing. */
export function compareValues(mine: { loss: number; grad: Float32Array }, peer: { loss: number; grad: Float32Array }) {
  let maxDiff = 0, maxRef = 0;
  for (let k = 0; k < peer.grad.length; k++) {
    maxDiff = Math.max(maxDiff, Math.abs(mine.grad[k]! - peer.grad[k]!));
    maxRef = Math.max(maxRef, Math.abs(peer.grad[k]!));
  }
  const lossRel = Math.abs(mine.loss - peer.loss) / Math.max(Math.abs(peer.loss), 1e-12);
  const gradRel = maxDiff / Math.max(maxRef, 1e-30);
  return { lossRel, gradRel, agree: mine.grad.length === peer.grad.length && lossRel <= 1e-3 && gradRel <= 1e-3 };
}
