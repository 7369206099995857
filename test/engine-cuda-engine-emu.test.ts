// The CUDA engine end to end under host emulation (scripts/cuda-emu/run-cuda-engine.sh: cuda_engine.cu and the
// kernels it runs compiled as host C++, one std::thread per CUDA thread) against the CPU engine on a tiny random
// model in fp32 mode: logits, score (log-probs, entropy, pooled states) within 1e-4, greedy generation and
// continuous batching giving the CPU's tokens. The quick run (one model); the script without `quick` also checks
// sampled generation, a tied Llama-3 model and bf16 logits. Needs g++ and python3; skipped without them.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { packageRoot } from '../src/native.js';
import { hasHostCompiler } from './helpers/cuda-twins.js';


describe(`CUDA engine under host emulation${hasHostCompiler ? '' : ' — skipped: needs g++ and python3'}`, () => {
  (hasHostCompiler ? test : test.skip)('scripts/cuda-emu/run-cuda-engine.sh quick: fp32 mode agrees with the CPU engine', () => {
    const seed = String(Math.floor(Math.random() * 2 ** 31));
    const r = spawnSync('bash', [path.join(packageRoot, 'scripts', 'cuda-emu', 'run-cuda-engine.sh'), seed, 'quick'], { encoding: 'utf8', timeout: 590_000 });
    const out = r.stdout + r.stderr;
    if (r.status !== 0) console.log(`seed ${seed}\n${out.slice(-4000)}`);
    expect(out).toMatch(/all ok/);
    expect(out).not.toMatch(/FAIL/);
    expect(r.status).toBe(0);
  }, 600_000);
});
