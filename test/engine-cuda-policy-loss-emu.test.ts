// The CUDA engine's policy-loss micro-batch on the device (Engine::policyLossBackward: cuda_policy_loss.cuh, the glue
// kernels of policy_loss.cu and the surrogate kernel) under host emulation (scripts/cuda-emu/run-cuda-policy-loss.sh:
// the engine and its kernels compiled as host C++, one std::thread per CUDA thread) in fp32 mode on a tiny random
// model, against the CPU engine's policyLossBackward: GRPO with KL and the entropy bonus, DAPO with a response
// filtered out, two micro-batches each; gradients and figures within 1e-5; a non-finite loss accumulates nothing. The
// quick run; the script without `quick` adds GRPO alone, GSPO and GMPO, the comparison with the same engine's host
// path, a rerun giving the same bits and non-finite log-probs. Needs g++ and python3; skipped without them.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { packageRoot } from '../src/native.js';
import { hasHostCompiler } from './helpers/cuda-twins.js';

describe(`CUDA engine's policy-loss step under host emulation${hasHostCompiler ? '' : ' — skipped: needs g++ and python3'}`, () => {
  (hasHostCompiler ? test : test.skip)('scripts/cuda-emu/run-cuda-policy-loss.sh quick: the device path agrees with the CPU engine within 1e-5', () => {
    const seed = String(Math.floor(Math.random() * 2 ** 31));
    const r = spawnSync('bash', [path.join(packageRoot, 'scripts', 'cuda-emu', 'run-cuda-policy-loss.sh'), seed, 'quick'], { encoding: 'utf8', timeout: 590_000 });
    const out = r.stdout + r.stderr;
    if (r.status !== 0) console.log(`seed ${seed}\n${out.slice(-4000)}`);
    expect(out).toMatch(/all ok/);
    expect(out).not.toMatch(/FAIL/);
    expect(r.status).toBe(0);
  }, 600_000);
});
