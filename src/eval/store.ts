// generations.jsonl: the append-only record of every sample of an evaluation, which is also what makes it resumable.
//
// Each line is one SampleRecord keyed by (benchmark, problem, sample). Lines are appended in batches, each batch
// written with one write and fsync'd, so after a crash (even SIGKILL) the file holds every flushed sample plus at
// most one torn last line. On open we read it back, drop a torn tail (truncating the file, so the next append
// starts on a fresh line), and index the records:
//   - a record without `error` is finished: it is never generated again, and a later line for the same key is
//     ignored (so even a duplicated line could not be counted twice);
//   - a record with `error` is a failed attempt: it does not count as finished, the key is retried on the next
//     run, and a later success supersedes it.
import { closeSync, existsSync, fsyncSync, ftruncateSync, openSync, readFileSync } from 'node:fs';
import { fileError, writeAll } from '../util/atomic.js';
import type { SampleRecord } from './types.js';

export function sampleKey(benchmark: string, problem: number, sample: number): string {
  return `${benchmark}\u0000${problem}\u0000${sample}`;
}

export interface StoreOpenInfo {
  /** lines read back */
  lines: number;
  /** bytes of a torn last line that were dropped (0 when the file ended cleanly) */
  tornBytes: number;
}

export class GenerationStore {
  readonly file: string;
  private fd: number;
  private finished = new Map<string, SampleRecord>();
  private failed = new Map<string, SampleRecord>();
  private buffer: string[] = [];
  private lastFlush = Date.now();
  readonly openInfo: StoreOpenInfo;

  private constructor(file: string, fd: number, info: StoreOpenInfo) {
    this.file = file;
    this.fd = fd;
    this.openInfo = info;
  }

  /** Opens (creating if absent) and indexes the file; throws naming the line if a complete line is not a record. */
  static open(file: string): GenerationStore {
    const existed = existsSync(file);
    // O_APPEND: every write lands at the end of the file, whatever else happened to it.
    const fd = openSync(file, 'a+');
    try {
      const records: SampleRecord[] = [];
      let tornBytes = 0;
      let lines = 0;
      if (existed) {
        const buf = readFileSync(file);
        // Complete lines end with '\n'; anything after the last newline is a torn write from a killed run.
        const end = buf.lastIndexOf(0x0a) + 1;
        tornBytes = buf.length - end;
        const text = buf.subarray(0, end).toString('utf8');
        let lineNo = 0;
        for (const line of text.split('\n')) {
          lineNo++;
          if (line.trim() === '') continue;
          let rec: SampleRecord;
          try {
            rec = JSON.parse(line) as SampleRecord;
          } catch {
            throw new Error(`${file}:${lineNo}: not valid JSON (the file was edited or corrupted; fix or delete that line)`);
          }
          checkRecord(rec, file, lineNo);
          records.push(rec);
          lines++;
        }
        if (tornBytes > 0) {
          ftruncateSync(fd, end);
          fsyncSync(fd);
        }
      }
      const store = new GenerationStore(file, fd, { lines, tornBytes });
      for (const r of records) store.index(r);
      return store;
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  private index(r: SampleRecord): void {
    const key = sampleKey(r.benchmark, r.problem, r.sample);
    if (this.finished.has(key)) return;
    if (r.error === undefined) {
      this.finished.set(key, r);
      this.failed.delete(key);
    } else {
      this.failed.set(key, r);
    }
  }

  isFinished(benchmark: string, problem: number, sample: number): boolean {
    return this.finished.has(sampleKey(benchmark, problem, sample));
  }

  get(benchmark: string, problem: number, sample: number): SampleRecord | undefined {
    const key = sampleKey(benchmark, problem, sample);
    return this.finished.get(key) ?? this.failed.get(key);
  }

  /** Queues a record (visible to isFinished/get at once); it reaches the disk on the next flush(). */
  add(r: SampleRecord): void {
    this.index(r);
    this.buffer.push(JSON.stringify(r) + '\n');
  }

  get pending(): number {
    return this.buffer.length;
  }

  /** Flushes when `maxPending` records are queued or `maxAgeMs` passed since the last flush. */
  maybeFlush(maxPending = 64, maxAgeMs = 1000): void {
    if (this.buffer.length >= maxPending || (this.buffer.length > 0 && Date.now() - this.lastFlush >= maxAgeMs)) this.flush();
  }

  /** Appends the queued records with one write and fsyncs. */
  flush(): void {
    this.lastFlush = Date.now();
    if (this.buffer.length === 0) return;
    const data = Buffer.from(this.buffer.join(''), 'utf8');
    this.buffer = [];
    writeAll(this.fd, data, this.file);
    try {
      fsyncSync(this.fd);
    } catch (e) {
      throw fileError(e, 'write', this.file);
    }
  }

  close(): void {
    this.flush();
    closeSync(this.fd);
    this.fd = -1;
  }
}

function checkRecord(r: SampleRecord, file: string, lineNo: number): void {
  const bad = (field: string) => new Error(`${file}:${lineNo}: field '${field}' is missing or has the wrong type`);
  if (typeof r !== 'object' || r === null) throw new Error(`${file}:${lineNo}: not a JSON object`);
  if (typeof r.benchmark !== 'string') throw bad('benchmark');
  if (!Number.isInteger(r.problem) || r.problem < 0) throw bad('problem');
  if (!Number.isInteger(r.sample) || r.sample < 0) throw bad('sample');
  if (r.error === undefined && typeof r.correct !== 'boolean') throw bad('correct');
  if (r.error !== undefined && typeof r.error !== 'string') throw bad('error');
}
