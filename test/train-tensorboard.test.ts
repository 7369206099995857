// TensorBoard event files: the writer's records read back by an independent decoder (bitwise CRC32C, generic
// protobuf parser in test/helpers/tfevents.ts): framing, masked checksums, the version event, scalars, text.
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EventWriter, maskedCrc32c, tfrecord } from '../src/rl/tensorboard.js';
import { Rng } from '../src/util/rng.js';
import { crc32cBitwise, maskCrc, readEventFile } from './helpers/tfevents.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'clipo-tb-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('TensorBoard event files', () => {
  test('CRC32C: the standard check value and random inputs against a bitwise reference', () => {
    expect(crc32cBitwise(new TextEncoder().encode('123456789'))).toBe(0xe3069283);
    const rng = new Rng(3);
    for (let t = 0; t < 50; t++) {
      const b = Uint8Array.from({ length: 1 + Math.floor(rng.next() * 300) }, () => Math.floor(rng.next() * 256));
      expect(maskedCrc32c(b)).toBe(maskCrc(crc32cBitwise(b)));
    }
    const rec = tfrecord(new Uint8Array([1, 2, 3]));
    expect(rec.length).toBe(8 + 4 + 3 + 4);
  });

  test('scalars and text come back with their steps, tags and values; every checksum verifies', () => {
    const rng = new Rng(11);
    let t = 1700000000.25;
    const w = new EventWriter(path.join(dir, 'a'), { now: () => (t += 1) });
    const written: Array<Record<string, number>> = [];
    for (let step = 1; step <= 5; step++) {
      const vals = { loss: rng.normal(), 'acc/x': rng.next(), big: 1e6 * rng.normal() };
      written.push(vals);
      w.scalars(step, { ...vals, skipped: null, inf: Infinity, flag: true }, 'train/');
    }
    const txt = 'response: **7** ünïcode ' + 'x'.repeat(300);
    w.text(5, 'rollouts/0', txt);
    w.close();
    const files = readdirSync(path.join(dir, 'a'));
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^events\.out\.tfevents\.\d+\./);
    const ev = readEventFile(path.join(dir, 'a', files[0]!));
    expect(ev[0]!.fileVersion).toBe('brain.Event:2');
    expect(ev).toHaveLength(1 + 5 + 1);
    for (let s = 1; s <= 5; s++) {
      const e = ev[s]!;
      expect(e.step).toBe(s);
      expect(e.wallTime).toBe(1700000000.25 + 1 + s);
      expect(Object.keys(e.scalars).sort()).toEqual(['train/acc/x', 'train/big', 'train/flag', 'train/loss']);
      for (const [k, v] of Object.entries(written[s - 1]!)) expect(e.scalars[`train/${k}`]).toBe(Math.fround(v));
      expect(e.scalars['train/flag']).toBe(1);
    }
    expect(ev[6]!.texts['rollouts/0']).toBe(txt);
    expect(ev[6]!.textPlugin).toBe(true);
  });

  test('a corrupted byte fails the checksum', () => {
    const w = new EventWriter(path.join(dir, 'b'));
    w.scalars(1, { a: 0.5 });
    w.close();
    const f = path.join(dir, 'b', readdirSync(path.join(dir, 'b'))[0]!);
    const buf = readFileSync(f);
    buf[buf.length - 6] ^= 0x10;
    writeFileSync(f, buf);
    expect(() => readEventFile(f)).toThrow(/bad data crc/);
  });
});
