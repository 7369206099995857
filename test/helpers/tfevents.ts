// An independent reader of TensorBoard event files for tests: TFRecord framing checked with a bit-by-bit CRC32C
// (not the table-driven library the writer uses) and a generic protocol-buffer wire-format parser (not the writer's
// encoder). It returns every event with its scalar and text values.
import { readFileSync } from 'node:fs';

/** CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), one bit at a time. */
export function crc32cBitwise(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

export function maskCrc(crc: number): number {
  const rotated = ((crc >>> 15) | (crc << 17)) >>> 0;
  return (rotated + 0xa282ead8) % 0x100000000;
}

type Field = { field: number; wire: number; varint?: bigint; bytes?: Uint8Array; fixed?: DataView };

/** Parses one message into its fields (wire types 0, 1, 2, 5). */
export function parseFields(buf: Uint8Array): Field[] {
  const out: Field[] = [];
  let i = 0;
  const readVarint = (): bigint => {
    let v = 0n, shift = 0n;
    for (;;) {
      if (i >= buf.length) throw new Error('truncated varint');
      const b = buf[i++]!;
      v |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
      shift += 7n;
    }
  };
  while (i < buf.length) {
    const key = Number(readVarint());
    const field = key >> 3, wire = key & 7;
    if (wire === 0) out.push({ field, wire, varint: readVarint() });
    else if (wire === 2) {
      const n = Number(readVarint());
      if (i + n > buf.length) throw new Error('truncated length-delimited field');
      out.push({ field, wire, bytes: buf.subarray(i, i + n) });
      i += n;
    } else if (wire === 1 || wire === 5) {
      const n = wire === 1 ? 8 : 4;
      out.push({ field, wire, fixed: new DataView(buf.buffer, buf.byteOffset + i, n) });
      i += n;
    } else throw new Error(`unsupported wire type ${wire}`);
  }
  return out;
}

export interface ReadEvent {
  wallTime: number;
  step: number;
  fileVersion?: string;
  scalars: Record<string, number>;
  texts: Record<string, string>;
  textPlugin: boolean;
}

export function readEventFile(file: string): ReadEvent[] {
  const buf = new Uint8Array(readFileSync(file));
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const events: ReadEvent[] = [];
  let off = 0;
  const dec = new TextDecoder();
  while (off < buf.length) {
    if (off + 12 > buf.length) throw new Error(`torn record header at ${off}`);
    const len = Number(dv.getBigUint64(off, true));
    if (maskCrc(crc32cBitwise(buf.subarray(off, off + 8))) !== dv.getUint32(off + 8, true)) throw new Error(`bad length crc at ${off}`);
    const data = buf.subarray(off + 12, off + 12 + len);
    if (data.length !== len || off + 16 + len > buf.length) throw new Error(`torn record at ${off}`);
    if (maskCrc(crc32cBitwise(data)) !== dv.getUint32(off + 12 + len, true)) throw new Error(`bad data crc at ${off}`);
    off += 16 + len;
    const ev: ReadEvent = { wallTime: NaN, step: 0, scalars: {}, texts: {}, textPlugin: false };
    for (const f of parseFields(data)) {
      if (f.field === 1 && f.wire === 1) ev.wallTime = f.fixed!.getFloat64(0, true);
      else if (f.field === 2 && f.wire === 0) ev.step = Number(BigInt.asIntN(64, f.varint!));
      else if (f.field === 3 && f.wire === 2) ev.fileVersion = dec.decode(f.bytes);
      else if (f.field === 5 && f.wire === 2) {
        for (const v of parseFields(f.bytes!).filter((x) => x.field === 1)) {
          const vf = parseFields(v.bytes!);
          const tag = dec.decode(vf.find((x) => x.field === 1)!.bytes);
          const simple = vf.find((x) => x.field === 2 && x.wire === 5);
          if (simple) ev.scalars[tag] = simple.fixed!.getFloat32(0, true);
          const tensor = vf.find((x) => x.field === 8);
          if (tensor) {
            const tf = parseFields(tensor.bytes!);
            if (tf.find((x) => x.field === 1)?.varint !== 7n) throw new Error('text tensor is not DT_STRING');
            ev.texts[tag] = dec.decode(tf.find((x) => x.field === 8)!.bytes);
          }
          const meta = vf.find((x) => x.field === 9);
          if (meta) {
            const plugin = parseFields(parseFields(meta.bytes!).find((x) => x.field === 1)!.bytes!);
            ev.textPlugin = dec.decode(plugin.find((x) => x.field === 1)!.bytes) === 'text';
          }
        }
      }
    }
    events.push(ev);
  }
  return events;
}
