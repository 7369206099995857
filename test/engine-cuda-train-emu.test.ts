// The CUDA engine's training path under host emulation (scripts/cuda-emu/run-cuda-train.sh: cuda_engine.cu with
// cuda_train.cuh and the kernels it runs compiled as host C++, one std::thread per CUDA thread) against the CPU engine
// on a tiny random model (vocab 64, hidden 32, 2 layers): fp32 forwardTrain within 1e-4, gradients of the
// policy-gradient loss and of the cross-entropy over two micro-batches within 1e-4 of the largest entry and
// deterministic, one AdamW step within 1e-6 of the CPU kernel; bf16 gradients near the CPU's and the working weights
// refreshed from the fp32 master. The quick run; the script without `quick` adds a tied Llama-3 model with MLP
// biases. Needs g++ and python3; skipped without them.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { packageRoot } from '../src/native.js';
import { hasHostCompiler } from './helpers/cuda-twins.js';

describe(`CUDA engine training under host emulation${hasHostCompiler ? '' : ' — skipped: needs g++ and python3'}`, () => {
  (hasHostCompiler ? test : test.skip)('scripts/cuda-emu/run-cuda-train.sh quick: fp32 gradients and AdamW agree with the CPU engine', () => {
    const seed = String(Math.floor(Math.random() * 2 ** 31));
    const r = spawnSync('bash', [path.join(packageRoot, 'scripts', 'cuda-emu', 'run-cuda-train.sh'), seed, 'quick'], { encoding: 'utf8', timeout: 590_000 });
    const out = r.stdout + r.stderr;
    if (r.status !== 0) console.log(`seed ${seed}\n${out.slice(-4000)}`);
    expect(out).toMatch(/all ok/);
    expect(out).not.toMatch(/FAIL/);
    expect(r.status).toBe(0);
  }, 600_000);
});
