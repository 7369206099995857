// `clipo bench gpulibs`: the GPU libraries the GPU engine will stand on, measured where it will use them. A bf16
// cuBLASLt GEMM at the projection shapes of Qwen2.5-0.5B/1.5B/7B over a few thousand tokens (each product checked
// against an fp32 reference kernel before it is timed), and an NCCL all-reduce over one rank. PyTorch's
// torch.matmul at the same shapes on the same GPU: scripts/gpu/torch_gemm.py (reads these rows' shapes).
import { availableBackends } from '../kernels/backend.js';
import { allReduceProbe, gemmProbe, gpuLibUnusable } from '../kernels/gpulibs.js';
import { round } from './bandwidth.js';
import type { BenchContext, BenchReport, BenchRow, BenchSuite } from './types.js';

/** Linear layers of a Qwen2 block (+ the LM head): [name, out features N, in features K]. */
export function qwen2Projections(hidden: number, intermediate: number, heads: number, kvHeads: number, vocab: number): Array<[string, number, number]> {
  const headDim = hidden / heads;
  return [
    ['qkv', hidden + 2 * kvHeads * headDim, hidden],
    ['o', hidden, hidden],
    ['gate_up', 2 * intermediate, hidden],
    ['down', hidden, intermediate],
    ['lm_head', vocab, hidden],
  ];
}

/** The models' config.json figures (hidden_size, intermediate_size, heads, key-value heads, vocabulary). */
export const gemmModels: Array<{ model: string; shape: [number, number, number, number, number] }> = [
  { model: 'Qwen2.5-0.5B', shape: [896, 4864, 14, 2, 151936] },
  { model: 'Qwen2.5-1.5B', shape: [1536, 8960, 12, 2, 151936] },
  { model: 'Qwen2.5-7B', shape: [3584, 18944, 28, 4, 152064] },
];

/** The GEMM probe's rows: M tokens through every projection of every model (the shapes torch_gemm.py reads). */
export function gemmShapes(tokens: number): Array<{ model: string; proj: string; M: number; N: number; K: number }> {
  return gemmModels.flatMap(({ model, shape }) => qwen2Projections(...shape).map(([proj, N, K]) => ({ model, proj, M: tokens, N, K })));
}

/** Largest scaled error a bf16-output GEMM may show: the output rounding (2^-9) plus fp32 accumulation, with room. */
export const gemmTolerance = 1e-2;

export const gpuLibsSuite: BenchSuite = {
  name: 'gpulibs',
  groups: ['gpu'],
  description: 'cuBLASLt bf16 GEMM at Qwen2.5 projection shapes and a one-rank NCCL all-reduce (clipo_gpulibs.so)',
  async run(ctx: BenchContext): Promise<BenchReport> {
    const rows: BenchRow[] = [];
    const notes: string[] = [];
    const wantCuda = ctx.backend !== 'cpu';
    const blas = gpuLibUnusable('cublasLt');
    const nccl = gpuLibUnusable('nccl');
    if (ctx.backend === 'cuda' && (blas || nccl)) throw new Error(`gpulibs: --backend cuda: cuBLASLt: ${blas ?? 'usable'}; NCCL: ${nccl ?? 'usable'}`);
    if (!wantCuda || blas) notes.push(`cublaslt: not measured (${wantCuda ? blas : '--backend cpu'})`);
    else {
      const tokens = ctx.quick ? 512 : 4096;
      for (const s of gemmShapes(tokens)) {
        ctx.log(`  cublasLt bf16 ${s.model} ${s.proj}: M=${s.M} N=${s.N} K=${s.K}`);
        const r = gemmProbe({ m: s.M, n: s.N, k: s.K, repeats: Math.max(10, ctx.repeats * 2), warmup: 5, checkSamples: 256, seed: 1 });
        rows.push({
          kind: 'gemm', ...s, ms: round(r.msMedian, 4), bestMs: round(r.msMin, 4), TFLOPs: round(r.tflops),
          maxScaledError: Number(r.maxScaledError.toPrecision(3)), checked: r.checked, ok: r.maxScaledError <= gemmTolerance,
        });
      }
      const bad = rows.filter((r) => r.ok === false);
      notes.push(`cublaslt (${availableBackends().device ?? 'GPU'}): bf16 in/out, fp32 accumulate; every product checked on 256 elements against an fp32 reference kernel: ${bad.length ? `${bad.length} OVER the tolerance ${gemmTolerance}` : `all within ${gemmTolerance}`}.`);
      if (bad.length) throw new Error(`gpulibs: cuBLASLt results wrong for ${bad.map((r) => `${r.model} ${r.proj}`).join(', ')}`);
    }
    if (!wantCuda || nccl) notes.push(`nccl: not measured (${wantCuda ? nccl : '--backend cpu'})`);
    else {
      for (const mb of ctx.quick ? [16] : [16, 256]) {
        ctx.log(`  nccl all-reduce 1 rank: ${mb} MiB`);
        const r = allReduceProbe({ megabytes: mb, repeats: Math.max(10, ctx.repeats * 2) });
        rows.push({ kind: 'allreduce', ranks: r.nranks, MiB: mb, ms: round(r.msMedian, 4), bestMs: round(r.msMin, 4), algGBs: round(r.algGBs), maxAbsError: r.maxAbsError, ok: r.maxAbsError === 0 });
      }
      notes.push('nccl: ncclAllReduce (sum, float32, in place) over one rank: the result must equal the input exactly (maxAbsError 0).');
    }
    return { suite: 'gpulibs', rows, notes };
  },
};
