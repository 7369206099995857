// TensorBoard event files written directly, without TensorFlow: a TFRecord stream of `Event` protocol buffers.
//
//   record  = uint64 length (LE) | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)
//   masked  = ((crc >>> 15) | (crc << 17)) + 0xa282ead8        (TFRecord's mask, mod 2^32)
//   Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
//   Summary { repeated Value value = 1; }
//   Value   { string tag = 1; float simple_value = 2; TensorProto tensor = 8; SummaryMetadata metadata = 9; }
//   text    = a DT_STRING tensor of shape [1] with metadata.plugin_data.plugin_name = "text"
//
// The first record is the file-version event `brain.Event:2`. The file is named like TensorFlow's
// (`events.out.tfevents.<seconds>.<host>`), so `tensorboard --logdir <dir>` finds it. Records are appended and flushed
// per call: a crash loses at most the record being written, and a reader skips a torn tail.
import { crc32c } from '@node-rs/crc32';
import { closeSync, fsyncSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';

/** TFRecord's masked CRC32C. */
export function maskedCrc32c(data: Uint8Array): number {
  const c = crc32c(Buffer.from(data.buffer, data.byteOffset, data.byteLength)) >>> 0;
  return ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** Frames one record. */
export function tfrecord(data: Uint8Array): Buffer {
  const out = Buffer.alloc(8 + 4 + data.length + 4);
  out.writeBigUInt64LE(BigInt(data.length), 0);
  out.writeUInt32LE(maskedCrc32c(out.subarray(0, 8)), 8);
  out.set(data, 12);
  out.writeUInt32LE(maskedCrc32c(data), 12 + data.length);
  return out;
}

// --- protocol-buffer encoding (only the wire types the Event message needs) ---

function varint(v: number | bigint): number[] {
  let x = BigInt.asUintN(64, BigInt(v));
  const out: number[] = [];
  while (x >= 0x80n) {
    out.push(Number(x & 0x7fn) | 0x80);
    x >>= 7n;
  }
  out.push(Number(x));
  return out;
}
const key = (field: number, wire: number) => varint((field << 3) | wire);
function bytesField(field: number, b: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from(key(field, 2)), Buffer.from(varint(b.length)), b]);
}
const strField = (field: number, s: string) => bytesField(field, Buffer.from(s, 'utf8'));
function doubleField(field: number, v: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(v);
  return Buffer.concat([Buffer.from(key(field, 1)), b]);
}
function floatField(field: number, v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeFloatLE(v);
  return Buffer.concat([Buffer.from(key(field, 5)), b]);
}
const intField = (field: number, v: number) => Buffer.from([...key(field, 0), ...varint(v)]);

function event(step: number, wallTime: number, body: Buffer): Buffer {
  return Buffer.concat([doubleField(1, wallTime), intField(2, step), body]);
}
function scalarValue(tag: string, v: number): Buffer {
  return bytesField(1, Buffer.concat([strField(1, tag), floatField(2, v)]));
}
function textValue(tag: string, text: string): Buffer {
  const DT_STRING = 7;
  const shape = bytesField(2, bytesField(2, intField(1, 1))); // TensorShapeProto { dim { size: 1 } }
  const tensor = Buffer.concat([intField(1, DT_STRING), shape, strField(8, text)]);
  const metadata = bytesField(1, strField(1, 'text')); // SummaryMetadata { plugin_data { plugin_name: "text" } }
  return bytesField(1, Buffer.concat([strField(1, tag), bytesField(8, tensor), bytesField(9, metadata)]));
}

export interface EventWriterOptions {
  /** wall clock in seconds (tests pin it) */
  now?: () => number;
}

/** Appends scalar and text summaries to one event file in `dir`. */
export class EventWriter {
  readonly file: string;
  private fd: number | null;
  private readonly now: () => number;

  constructor(dir: string, o: EventWriterOptions = {}) {
    this.now = o.now ?? (() => Date.now() / 1000);
    mkdirSync(dir, { recursive: true });
    const t = this.now();
    this.file = path.join(dir, `events.out.tfevents.${Math.floor(t)}.${hostname().replace(/[^A-Za-z0-9.-]/g, '_')}.${process.pid}`);
    this.fd = openSync(this.file, 'a');
    this.write(event(0, t, strField(3, 'brain.Event:2')));
  }

  /** One event holding every finite number of `values` under its key (null and non-finite values are skipped). */
  scalars(step: number, values: Record<string, number | boolean | null | undefined>, prefix = ''): void {
    const parts: Buffer[] = [];
    for (const [k, v] of Object.entries(values)) {
      const x = typeof v === 'boolean' ? (v ? 1 : 0) : v;
      if (typeof x === 'number' && Number.isFinite(x)) parts.push(scalarValue(prefix + k, x));
    }
    if (parts.length) this.write(event(step, this.now(), bytesField(5, Buffer.concat(parts))));
  }

  /** A text summary (rendered as markdown by TensorBoard's text plugin). */
  text(step: number, tag: string, text: string): void {
    this.write(event(step, this.now(), bytesField(5, textValue(tag, text))));
  }

  close(): void {
    if (this.fd === null) return;
    fsyncSync(this.fd);
    closeSync(this.fd);
    this.fd = null;
  }

  private write(eventBytes: Buffer): void {
    if (this.fd === null) throw new Error(`${this.file}: the event writer is closed`);
    writeSync(this.fd, tfrecord(eventBytes));
  }
}
