// safetensors reading and writing, by hand (the format is tiny):
//
//   [8 bytes: N, u64 little-endian] [N bytes: JSON header, space-padded] [data]
//   header = { "<name>": { "dtype": "BF16", "shape": [r, c], "data_offsets": [begin, end] }, ...,
//              "__metadata__": { "<key>": "<string>" } }        offsets are relative to the start of the data
//
// Reading converts BF16/F16/F32/F64 to fp32. Every tensor is read straight from the file into its own
// Float32Array (fp32 data lands in place; half-precision data goes through one bounded chunk buffer), so a file is
// never held in memory twice. Sharded checkpoints use model.safetensors.index.json { weight_map: { name: file } }.
import { closeSync, existsSync, fstatSync, fsyncSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileError } from '../util/atomic.js';
import type { LazyTensorMap, Tensor, TensorMap } from './types.js';

/** Largest header the reference implementation accepts (100 MB). */
const MAX_HEADER_BYTES = 100_000_000;
/** Chunk for half-precision conversion and for large reads/writes. */
const CHUNK_BYTES = 1 << 24;

const dtypeBytes: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2 };
export type StoredDtype = 'F32' | 'F16' | 'BF16' | 'F64';

if (os.endianness() !== 'LE') throw new Error('clipo safetensors I/O assumes a little-endian machine');

export interface TensorEntry {
  name: string;
  dtype: StoredDtype;
  shape: number[];
  /** absolute byte range in the file */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  entries: TensorEntry[];
  metadata: Record<string, string>;
  dataStart: number;
}

export class SafetensorsError extends Error {
  constructor(file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'SafetensorsError';
  }
}

function readExactly(fd: number, target: Uint8Array, position: number, file: string): void {
  let done = 0;
  while (done < target.length) {
    const n = readSync(fd, target, done, Math.min(target.length - done, 1 << 30), position + done);
    if (n === 0) throw new SafetensorsError(file, `unexpected end of file at byte ${position + done}`);
    done += n;
  }
}

/** Reads and validates the header of an open file: offsets in range, sizes consistent, no overlaps. */
export function readHeader(fd: number, file: string): SafetensorsHeader {
  const fileSize = fstatSync(fd).size;
  if (fileSize < 8) throw new SafetensorsError(file, `too short to be a safetensors file (${fileSize} bytes)`);
  const lenBuf = new Uint8Array(8);
  readExactly(fd, lenBuf, 0, file);
  const headerLen = Number(new DataView(lenBuf.buffer).getBigUint64(0, true));
  if (headerLen > MAX_HEADER_BYTES) throw new SafetensorsError(file, `header length ${headerLen} exceeds ${MAX_HEADER_BYTES} bytes (not a safetensors file?)`);
  if (8 + headerLen > fileSize) throw new SafetensorsError(file, `header length ${headerLen} runs past the end of the file (${fileSize} bytes)`);
  const headerBuf = new Uint8Array(headerLen);
  readExactly(fd, headerBuf, 8, file);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBuf));
  } catch (e) {
    throw new SafetensorsError(file, `header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new SafetensorsError(file, 'header is not a JSON object');

  const dataStart = 8 + headerLen;
  const dataLen = fileSize - dataStart;
  const entries: TensorEntry[] = [];
  let metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof value !== 'object' || value === null || Array.isArray(value) || Object.values(value).some((v) => typeof v !== 'string')) {
        throw new SafetensorsError(file, '__metadata__ must be an object of strings');
      }
      metadata = value as Record<string, string>;
      continue;
    }
    const bad = (msg: string) => new SafetensorsError(file, `tensor '${name}': ${msg}`);
    if (typeof value !== 'object' || value === null) throw bad('header entry is not an object');
    const { dtype, shape, data_offsets: offsets } = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof dtype !== 'string') throw bad('missing dtype');
    const width = dtypeBytes[dtype];
    if (width === undefined) throw bad(`dtype ${dtype} is not supported (supported: ${Object.keys(dtypeBytes).join(', ')})`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw bad(`shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      throw bad(`data_offsets ${JSON.stringify(offsets)} is not a pair of non-negative integers`);
    }
    const [b, e] = offsets as [number, number];
    if (b > e) throw bad(`data_offsets [${b}, ${e}] are reversed`);
    if (e > dataLen) throw bad(`data_offsets [${b}, ${e}] run past the end of the data (${dataLen} bytes)`);
    const numel = (shape as number[]).reduce((a, d) => a * d, 1);
    if (numel * width !== e - b) {
      throw bad(`shape [${shape.join(', ')}] x ${width} bytes (${dtype}) = ${numel * width} bytes, but data_offsets span ${e - b} bytes`);
    }
    entries.push({ name, dtype: dtype as StoredDtype, shape: [...(shape as number[])], begin: dataStart + b, end: dataStart + e });
  }
  // Sorted by start, a tensor overlaps an earlier one iff it starts before the furthest end seen so far.
  const sorted = entries.filter((e) => e.end > e.begin).sort((x, y) => x.begin - y.begin);
  let reach: TensorEntry | undefined;
  for (const cur of sorted) {
    if (reach && cur.begin < reach.end) {
      throw new SafetensorsError(file, `tensors '${reach.name}' and '${cur.name}' overlap in the data section`);
    }
    if (!reach || cur.end > reach.end) reach = cur;
  }
  return { entries, metadata, dataStart };
}

// bf16 is the top half of an fp32: widen by shifting 16 bits up.
function bf16ToF32(src: Uint16Array, dst: Float32Array, at: number): void {
  const out = new Uint32Array(dst.buffer, dst.byteOffset + at * 4, src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i]! << 16;
}

// IEEE half -> float: sign, 5-bit exponent (bias 15), 10-bit mantissa; subnormals are m * 2^-24.
const F16_TABLE = (() => {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    t[h] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return t;
})();

function f16ToF32(src: Uint16Array, dst: Float32Array, at: number): void {
  for (let i = 0; i < src.length; i++) dst[at + i] = F16_TABLE[src[i]!]!;
}

/** Reads one tensor of an open file as fp32. */
export function readTensor(fd: number, entry: TensorEntry, file: string): Tensor {
  const numel = entry.shape.reduce((a, d) => a * d, 1);
  const data = new Float32Array(numel);
  const bytes = entry.end - entry.begin;
  if (entry.dtype === 'F32') {
    readExactly(fd, new Uint8Array(data.buffer, 0, bytes), entry.begin, file);
  } else {
    const width = dtypeBytes[entry.dtype]!;
    const per = Math.floor(CHUNK_BYTES / width);
    const chunk = new Uint8Array(Math.min(bytes, per * width));
    for (let i = 0; i < numel; i += per) {
      const n = Math.min(per, numel - i);
      const view = chunk.subarray(0, n * width);
      readExactly(fd, view, entry.begin + i * width, file);
      if (entry.dtype === 'BF16') bf16ToF32(new Uint16Array(chunk.buffer, 0, n), data, i);
      else if (entry.dtype === 'F16') f16ToF32(new Uint16Array(chunk.buffer, 0, n), data, i);
      else data.set(new Float64Array(chunk.buffer, 0, n), i);
    }
  }
  return { shape: entry.shape, data };
}

/** Reads every tensor of one .safetensors file as fp32 (optionally only the names `want` accepts). */
export function readSafetensors(file: string, want?: (name: string) => boolean): { tensors: TensorMap; metadata: Record<string, string>; dtypes: Map<string, StoredDtype> } {
  const fd = openSync(file, 'r');
  try {
    const header = readHeader(fd, file);
    const tensors: TensorMap = new Map();
    const dtypes = new Map<string, StoredDtype>();
    for (const e of header.entries) {
      if (want && !want(e.name)) continue;
      tensors.set(e.name, readTensor(fd, e, file));
      dtypes.set(e.name, e.dtype);
    }
    return { tensors, metadata: header.metadata, dtypes };
  } finally {
    closeSync(fd);
  }
}

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';

/**
 * The weight files of a model directory: model.safetensors, or the shards listed in model.safetensors.index.json
 * with the names each must hold (null: every tensor of the file).
 */
function locateShards(dir: string): { indexPath: string | null; shards: Array<{ file: string; names: Set<string> | null }> } {
  const indexPath = path.join(dir, INDEX_FILE);
  if (existsSync(indexPath)) {
    let index: unknown;
    try {
      index = JSON.parse(readFileSync(indexPath, 'utf8'));
    } catch (e) {
      throw new SafetensorsError(indexPath, `not valid JSON (${(e as Error).message})`);
    }
    const map = (index as { weight_map?: unknown })?.weight_map;
    if (typeof map !== 'object' || map === null || Array.isArray(map)) throw new SafetensorsError(indexPath, "key 'weight_map': missing or not an object");
    const byFile = new Map<string, Set<string>>();
    for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
      if (typeof shard !== 'string' || shard.includes('/') || shard.includes('\\') || shard.startsWith('.')) {
        throw new SafetensorsError(indexPath, `weight_map['${name}']: ${JSON.stringify(shard)} is not a file name in this directory`);
      }
      if (!byFile.has(shard)) byFile.set(shard, new Set());
      byFile.get(shard)!.add(name);
    }
    for (const [shard, names] of byFile) {
      if (!existsSync(path.join(dir, shard))) throw new SafetensorsError(indexPath, `shard ${shard} (holding '${[...names][0]}') does not exist`);
    }
    return { indexPath, shards: [...byFile].map(([file, names]) => ({ file, names })) };
  }
  if (!existsSync(path.join(dir, SINGLE_FILE))) {
    const bin = existsSync(path.join(dir, 'pytorch_model.bin')) ? ' (pytorch_model.bin is not supported; convert it to safetensors)' : '';
    throw new SafetensorsError(dir, `no ${SINGLE_FILE} or ${INDEX_FILE}${bin}`);
  }
  return { indexPath: null, shards: [{ file: SINGLE_FILE, names: null }] };
}

function checkListed(names: Set<string> | null, present: (n: string) => boolean, shardPath: string): void {
  for (const n of names ?? []) {
    if (!present(n)) throw new SafetensorsError(shardPath, `tensor '${n}' is listed in ${INDEX_FILE} but not in this shard`);
  }
}

/**
 * Reads the weights of a model directory: model.safetensors, or the shards listed in model.safetensors.index.json.
 * Every name in the index must be present in the shard it points to.
 */
export function readSafetensorsDir(dir: string): { tensors: TensorMap; dtypes: Map<string, StoredDtype>; files: string[] } {
  const { shards } = locateShards(dir);
  const tensors: TensorMap = new Map();
  const dtypes = new Map<string, StoredDtype>();
  for (const { file, names } of shards) {
    const shardPath = path.join(dir, file);
    const r = readSafetensors(shardPath, names ? (n) => names.has(n) : undefined);
    checkListed(names, (n) => r.tensors.has(n), shardPath);
    for (const [n, t] of r.tensors) tensors.set(n, t);
    for (const [n, d] of r.dtypes) dtypes.set(n, d);
  }
  return { tensors, dtypes, files: shards.map((s) => s.file) };
}

/**
 * The weights of a model directory as lazy tensors: every header is read and checked now (names, shapes, offsets),
 * the values only when a tensor's `load()` is called (each call opens the file, reads that tensor as fp32, closes).
 * A consumer that takes the tensors one at a time (Engine.create) then never holds the whole model on the host.
 */
export function openSafetensorsDir(dir: string): { tensors: LazyTensorMap; dtypes: Map<string, StoredDtype>; files: string[] } {
  const { shards } = locateShards(dir);
  const tensors: LazyTensorMap = new Map();
  const dtypes = new Map<string, StoredDtype>();
  for (const { file, names } of shards) {
    const shardPath = path.join(dir, file);
    const fd = openSync(shardPath, 'r');
    let header: SafetensorsHeader;
    try {
      header = readHeader(fd, shardPath);
    } finally {
      closeSync(fd);
    }
    const inFile = new Set(header.entries.map((e) => e.name));
    checkListed(names, (n) => inFile.has(n), shardPath);
    for (const e of header.entries) {
      if (names && !names.has(e.name)) continue;
      tensors.set(e.name, { shape: e.shape, load: () => readTensorFrom(shardPath, e) });
      dtypes.set(e.name, e.dtype);
    }
  }
  return { tensors, dtypes, files: shards.map((s) => s.file) };
}

/** One tensor of a file as fp32 (opens and closes the file). */
function readTensorFrom(file: string, entry: TensorEntry): Float32Array {
  const fd = openSync(file, 'r');
  try {
    return readTensor(fd, entry, file).data;
  } finally {
    closeSync(fd);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Writing

export type WriteDtype = 'F32' | 'BF16' | 'F16';

/** fp32 -> bf16 with round-to-nearest-even on the dropped 16 bits; NaN stays a (quiet) NaN. */
export function f32ToBf16Bits(bits: number): number {
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff) !== 0) return ((bits >>> 16) | 0x40) & 0xffff;
  const rounded = bits + 0x7fff + ((bits >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

/** fp32 -> IEEE half, round to nearest even, overflow to infinity (used for tests and f16 export). */
export function f32ToF16Bits(x: number): number {
  const f = new Float32Array([x]);
  const bits = new Uint32Array(f.buffer)[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = m & ((1 << shift) - 1);
    let r = m >>> shift;
    if (rest > half || (rest === half && r & 1)) r++;
    return sign | r;
  }
  let r = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && r & 1)) r++;
  return sign | r;
}

function encodeChunk(src: Float32Array, dtype: WriteDtype): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(src.buffer, src.byteOffset, src.byteLength);
  const out = new Uint16Array(src.length);
  if (dtype === 'BF16') {
    const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
    for (let i = 0; i < src.length; i++) out[i] = f32ToBf16Bits(bits[i]!);
  } else {
    for (let i = 0; i < src.length; i++) out[i] = f32ToF16Bits(src[i]!);
  }
  return new Uint8Array(out.buffer);
}

function writeAll(fd: number, data: Uint8Array, file: string): void {
  try {
    let off = 0;
    while (off < data.length) off += writeSync(fd, data, off, Math.min(data.length - off, 1 << 30));
  } catch (e) {
    throw fileError(e, 'write', file);
  }
}

function openForWrite(file: string): number {
  try {
    return openSync(file, 'w');
  } catch (e) {
    throw fileError(e, 'write', file);
  }
}

function syncNamed(fd: number, file: string): void {
  try {
    fsyncSync(fd);
  } catch (e) {
    throw fileError(e, 'write', file);
  }
}

/** Builds the header bytes (length prefix + JSON padded with spaces so the data starts 8-byte aligned). */
function encodeHeader(tensors: Array<[string, Tensor]>, dtype: WriteDtype, metadata: Record<string, string>): { bytes: Uint8Array; dataLen: number } {
  const width = dtypeBytes[dtype]!;
  const header: Record<string, unknown> = { __metadata__: metadata };
  let off = 0;
  for (const [name, t] of tensors) {
    const numel = t.shape.reduce((a, d) => a * d, 1);
    if (numel !== t.data.length) throw new Error(`tensor '${name}': shape [${t.shape.join(', ')}] has ${numel} elements but the data has ${t.data.length}`);
    header[name] = { dtype, shape: t.shape, data_offsets: [off, off + numel * width] };
    off += numel * width;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - ((8 + json.length) % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const bytes = new Uint8Array(8 + json.length);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(json.length), true);
  bytes.set(json, 8);
  return { bytes, dataLen: off };
}

/** Writes tensors (in the given order) to one safetensors file, converting from fp32 chunk by chunk. */
export function writeSafetensors(file: string, tensors: Array<[string, Tensor]>, opts: { dtype?: WriteDtype; metadata?: Record<string, string> } = {}): number {
  const dtype = opts.dtype ?? 'F32';
  const { bytes, dataLen } = encodeHeader(tensors, dtype, { format: 'pt', ...opts.metadata });
  const fd = openForWrite(file);
  try {
    writeAll(fd, bytes, file);
    const per = CHUNK_BYTES / 4;
    for (const [, t] of tensors) {
      for (let i = 0; i < t.data.length; i += per) writeAll(fd, encodeChunk(t.data.subarray(i, Math.min(t.data.length, i + per)), dtype), file);
    }
    syncNamed(fd, file); // on disk before the directory holding it is renamed into place
  } finally {
    closeSync(fd);
  }
  return bytes.length + dataLen;
}

/** Default shard size: transformers' save_pretrained default (5 GB). */
export const DEFAULT_MAX_SHARD_BYTES = 5_000_000_000;

/**
 * Writes a model's tensors into `dir`: model.safetensors when the data fits in one shard, else
 * model-0000k-of-0000n.safetensors plus model.safetensors.index.json. Returns the file names written.
 */
export function writeSafetensorsDir(dir: string, tensors: Array<[string, Tensor]>, opts: { dtype?: WriteDtype; maxShardBytes?: number } = {}): string[] {
  const dtype = opts.dtype ?? 'F32';
  const width = dtypeBytes[dtype]!;
  const maxShard = opts.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
  const shards: Array<Array<[string, Tensor]>> = [[]];
  let cur = 0;
  let total = 0;
  for (const entry of tensors) {
    const size = entry[1].data.length * width;
    if (cur > 0 && cur + size > maxShard) {
      shards.push([]);
      cur = 0;
    }
    shards[shards.length - 1]!.push(entry);
    cur += size;
    total += size;
  }
  if (shards.length === 1) {
    writeSafetensors(path.join(dir, SINGLE_FILE), tensors, { dtype });
    return [SINGLE_FILE];
  }
  const n = shards.length;
  const names = shards.map((_, i) => `model-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`);
  const weightMap: Record<string, string> = {};
  shards.forEach((s, i) => {
    writeSafetensors(path.join(dir, names[i]!), s, { dtype });
    for (const [name] of s) weightMap[name] = names[i]!;
  });
  const sortedMap = Object.fromEntries(Object.keys(weightMap).sort().map((k) => [k, weightMap[k]]));
  const index = { metadata: { total_size: total }, weight_map: sortedMap };
  const indexFile = path.join(dir, INDEX_FILE);
  const fd = openForWrite(indexFile);
  try {
    writeAll(fd, Buffer.from(JSON.stringify(index, null, 2) + '\n', 'utf8'), indexFile);
    syncNamed(fd, indexFile);
  } finally {
    closeSync(fd);
  }
  return [...names, INDEX_FILE];
}
