// What the tests of the engine's CUDA twins share: bf16 as the top 16 bits of an fp32 (rounded to nearest even, NaN
// kept a quiet NaN: formulas.h's floatToBf16/bf16ToFloat), and whether the host emulation of scripts/cuda-emu/ can
// run here (it compiles the .cu files for the host with g++ after a python3 rewrite).
import { spawnSync } from 'node:child_process';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function toBf16(x: number): number {
  f32[0] = x;
  const u = u32[0]!;
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff;
  return Math.floor((u + 0x7fff + ((u >>> 16) & 1)) / 65536) & 0xffff;
}

export function fromBf16(h: number): number {
  u32[0] = (h << 16) >>> 0;
  return f32[0]!;
}

export const hasHostCompiler = ['g++', 'python3'].every((c) => spawnSync(c, ['--version'], { encoding: 'utf8' }).status === 0);
