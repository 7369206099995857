// `clipo bench engine --backend cuda [--compare torch]`: the CUDA engine (bf16) on random models of Qwen2.5-0.5B's
// and 1.5B's shapes, beside transformers (bf16, sdpa attention) on the same GPU in the same run:
//   scoring   prefill of B sequences of ~2k tokens: log-probs of every token after the first and the mean final
//             hidden state (what CLIPO consumes); tokens/s and MFU = model FLOPs/s over the bf16 GEMM peak measured
//             in this run by the GPU library's GEMM probe (cuBLASLt at 8192^3);
//   decoding  a group of 16 samples of one prompt, and a batch of 256 (16 prompts x 16 samples): the time of one
//             decoding step, (generate(S new tokens) - generate(1 new token)) / (S - 1) on both sides, against its
//             roofline: the bf16 weights + the KV cache read in a step, over the device-to-device copy bandwidth
//             measured in this run.
// Before any timing the two must agree on the values (engine-peer.ts's discipline, bf16 tolerances: the issue's
// max <= 0.05 nats, mean <= 0.005): the scoring log-probs of the bench batch, and the log-probs clipo's sampler
// reports for the tokens it sampled, scored by a transformers forward. Without a usable GPU the suite says why and
// reports nothing (exit 0); without --compare torch (or without torch/transformers) clipo's rows stand alone.
import { Engine, engineBackends, type ScoreBatch } from '../engine/engine.js';
import { countParameters, randomWeights } from '../engine/params.js';
import { availableBackends } from '../kernels/backend.js';
import { engineGemmInfo, gemmProbe, gpuLibUnusable, ltPlans } from '../kernels/gpulibs.js';
import type { ModelConfig } from '../model/types.js';
import { nativeFunction } from '../native.js';
import { round } from './bandwidth.js';
import { batchTokens, enginePeer, maxAbsDiff, setupEnginePeer, type EnginePeerCase } from './engine-peer.js';
import { checkedFraction, flagRow, interleave, loadBefore, loadRecord, medianWall, standardNotes, unavailableReport, type Entry, type Sample } from './harness.js';
import type { TorchPeer } from './peer.js';
import { benchShape, quickShape } from './shapes.js';
import type { BenchContext, BenchReport, BenchRow } from './types.js';

/** bf16 log-probs of the same model on the two sides: the largest and the mean |difference| allowed (issue 11). */
export const GPU_LOGPROB_MAX = 0.05;
export const GPU_LOGPROB_MEAN = 0.005;

interface GpuModel {
  label: string;
  config: ModelConfig;
}

/** Random models of the Qwen2.5 configs' shapes (config.json: hidden, layers, heads, kv heads, intermediate, tied). */
export function gpuBenchModels(quick: boolean): GpuModel[] {
  if (quick) return [quickShape()];
  return [benchShape('qwen2.5-0.5b'), benchShape('qwen2.5-1.5b')];
}

/** Bytes one decoding step reads at the least: every bf16 parameter once (a tied embedding once, as the head), and
 *  the K and V cache of every sequence over `context` positions. */
export function decodeStepBytes(c: ModelConfig, seqs: number, context: number): number {
  const kv = seqs * c.numLayers * 2 * c.numKvHeads * c.headDim * context * 2;
  return 2 * countParameters(c) + kv;
}

/** The time one decoding step takes, from generate calls of S and of 1 new tokens (prefill and first token cancel). */
export function stepSeconds(tS: number, t1: number, S: number): number {
  return (tS - t1) / (S - 1);
}

function randomTokens(rng: () => number, vocab: number, n: number): Int32Array {
  return Int32Array.from({ length: n }, () => Math.floor(rng() * vocab));
}

/** max and mean |a - b| (Infinity when the lengths differ or a value is not finite) */
function diffStats(a: Float32Array, b: Float32Array): { max: number; mean: number } {
  const max = maxAbsDiff(a, b);
  if (!Number.isFinite(max)) return { max, mean: Infinity };
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i]! - b[i]!);
  return { max, mean: s / Math.max(1, a.length) };
}

/** The value checks against the peer before timing: scoring log-probs and the sampled tokens' log-probs. */
async function checkGpuPeer(peer: TorchPeer, engine: Engine, c: EnginePeerCase): Promise<{ agree: boolean; note: string }> {
  const { B, T } = batchTokens(c.batch);
  const mine = engine.score(c.batch).logprobs;
  const theirs = await peer.values({ cmd: 'engine_check', what: 'score', threads: 1 }, B * (T - 1));
  const dScore = diffStats(mine, theirs.values);
  const gen = engine.generate({ prompts: c.prompts.slice(0, 1), n: 16, maxNewTokens: c.newTokens, temperature: 1, topP: 1, seed: 11, stopTokens: [], maxBatch: 16 });
  const promptLen = c.prompts[0]!.length, length = promptLen + c.newTokens;
  const seqs = new Int32Array(gen.sequences.length * length);
  const sampled = new Float32Array(gen.sequences.length * c.newTokens);
  gen.sequences.forEach((s, i) => {
    if (s.tokens.length !== c.newTokens) throw new Error(`engine bench: clipo generated ${s.tokens.length} tokens, expected ${c.newTokens}`);
    seqs.set(c.prompts[0]!, i * length);
    seqs.set(s.tokens, i * length + promptLen);
    sampled.set(s.logprobs, i * c.newTokens);
  });
  const sq = await peer.values({ cmd: 'engine_check', what: 'sequences', sequences: peer.writeInput('engine-sampled.i32', seqs), count: gen.sequences.length, length, promptLen, threads: 1 }, sampled.length);
  const dSample = diffStats(sampled, sq.values);
  const ok = (d: { max: number; mean: number }) => d.max <= GPU_LOGPROB_MAX && d.mean <= GPU_LOGPROB_MEAN;
  const agree = ok(dScore) && ok(dSample);
  const e = (x: number) => x.toExponential(1);
  const note = `${c.label}: values checked against transformers (bf16, same GPU) before timing: scoring log-probs |difference| max ${e(dScore.max)} mean ${e(dScore.mean)} nats; ` +
    `log-probs of clipo's sampled tokens (its KV-cache decoder, 16 samples) vs a transformers forward: max ${e(dSample.max)} mean ${e(dSample.mean)} (tolerance max ${GPU_LOGPROB_MAX}, mean ${GPU_LOGPROB_MEAN}): ${agree ? 'agree' : 'DISAGREE'}`;
  return { agree, note };
}

export async function runEngineCuda(ctx: BenchContext): Promise<BenchReport> {
  const before = loadBefore();
  const rows: BenchRow[] = [];
  const notes: string[] = [];
  const errors: string[] = [];
  const backends = engineBackends();
  if (!backends.cuda) return unavailableReport('engine', backends.cudaReason ?? 'the CUDA engine cannot run here', loadRecord(before));
  const device = availableBackends().device ?? 'GPU';
  const gemm = engineGemmInfo();
  notes.push(`cuda engine (${device}), bf16 weights and activations, fp32 accumulation; its projections through ${gemm.impl} (${gemm.why}).`);

  // the limits, measured in this run: device-to-device copy bandwidth, the bf16 GEMM peak (cuBLASLt probe)
  const copyGBs = nativeFunction<(o: object) => { copyGBs: number }>('measureDeviceBandwidth')({ megabytes: 1024, repeats: 20 }).copyGBs;
  let peakTflops: number | null = null;
  const blas = gpuLibUnusable('cublasLt');
  if (blas === null) {
    const s = ctx.quick ? 4096 : 8192;
    const p = gemmProbe({ m: s, n: s, k: s, repeats: 10, warmup: 3, checkSamples: 64, seed: 3 });
    peakTflops = p.tflops;
    rows.push({ measure: `bf16 GEMM peak (cuBLASLt ${s}^3, the MFU limit)`, model: '', impl: 'cublaslt', value: round(p.tflops), unit: 'TFLOP/s', fraction: 1 });
  } else notes.push(`no bf16 GEMM peak (cuBLASLt unusable: ${blas}): MFU not reported.`);
  rows.push({ measure: 'device-to-device copy (the roofline bandwidth)', model: '', impl: 'cuda', value: round(copyGBs), unit: 'GB/s', fraction: 1 });

  const { peer, note: peerNote } = await enginePeer(ctx);
  if (peerNote) notes.push(peerNote);
  let seed = 4242;
  const rng = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  const B = ctx.quick ? 2 : 4, T = ctx.quick ? 256 : 2048;
  const promptLen = ctx.quick ? 32 : 128, S = ctx.quick ? 8 : 64;
  const decodes = [{ label: 'a group of 16 (1 prompt x 16)', prompts: 1, n: 16 }, { label: 'a batch of 256 (16 prompts x 16)', prompts: 16, n: 16 }];
  const reps = Math.min(ctx.repeats, ctx.quick ? 2 : 3);
  const targets: string[] = [];

  // --shape picks the models (shapes.ts), --quick or not; else Qwen2.5-0.5B and 1.5B (--quick: one small model)
  const models = ctx.shapes?.length ? ctx.shapes.map((n) => benchShape(n)) : gpuBenchModels(ctx.quick);
  for (const m of models) {
    const c = m.config;
    const params = countParameters(c);
    ctx.log(`engine cuda: ${m.label} (${(params / 1e6).toFixed(0)}M parameters): random weights`);
    const batch: ScoreBatch = { sequences: Array.from({ length: B }, () => ({ prompt: randomTokens(rng, c.vocabSize, 1), response: randomTokens(rng, c.vocabSize, T - 1) })) };
    const prompts = Array.from({ length: 16 }, () => randomTokens(rng, c.vocabSize, promptLen));
    let weights: ReturnType<typeof randomWeights> | null = randomWeights(c, { seed: 1, uniform: true });
    const engine = Engine.create(c, weights, { backend: 'cuda', precision: 'bf16' });
    try {
      let withPeer = false;
      if (peer) {
        ctx.log(`engine cuda: ${m.label} in transformers (bf16, sdpa, same GPU): loading, checking values`);
        const pc: EnginePeerCase = { label: m.label, config: c, weights, batch, prompts, samples: 16, newTokens: S };
        await setupEnginePeer(peer, pc, 1, true);
        const v = await checkGpuPeer(peer, engine, pc);
        notes.push(v.note);
        if (v.agree) withPeer = true;
        else errors.push(`${m.label}: transformers disagrees with clipo (${v.note}); its timings are not reported`);
      }
      weights = null; // the engine and the peer hold their own copies

      // scoring
      ctx.log(`engine cuda: ${m.label}: scoring ${B} x ${T} tokens${withPeer ? ', interleaved with transformers' : ''}`);
      const wall = (fn: () => void): Sample => {
        const t0 = performance.now();
        fn();
        const w = (performance.now() - t0) / 1000;
        return { wall: w, cpu: w };
      };
      const peerEntry = (name: string, req: Record<string, unknown>): Entry[] => (withPeer ? [{ name, run: () => peer!.time({ kernel: 'engine', threads: 1, ...req }) }] : []);
      const sc = await interleave([
        { name: 'score', run: () => wall(() => engine.score(batch, { pooled: true })) },
        ...peerEntry('torch score', { op: 'score' }),
      ], reps, 1);
      // FLOPs as the CPU rows count them (2 * params * tokens + causal attention; engine.ts forwardFlops)
      const { forwardFlops } = await import('./engine.js');
      const flops = forwardFlops(c, B, T);
      const tokens = B * T;
      const scoreRow = (impl: string, sec: number, vs: number | null) => {
        const tf = flops / sec / 1e12;
        const f = peakTflops === null ? { fraction: null } : checkedFraction(tf, peakTflops, `${m.label} ${impl} scoring MFU`);
        const row: BenchRow = { measure: `score (prefill ${B} x ${T}, log-probs, pooled)`, model: m.label, impl, value: round(tokens / sec), unit: 'tokens/s', ms: round(sec * 1e3), TFLOPs: round(tf), mfu: f.fraction, ...(vs === null ? {} : { vsClipo: round(vs) }) };
        flagRow(row, errors, (f as { error?: string }).error);
        rows.push(row);
        return f.fraction;
      };
      const tScore = medianWall(sc.get('score')!);
      const mfu = scoreRow('clipo', tScore, null);
      let ahead: boolean | null = null;
      if (withPeer) {
        const tTorch = medianWall(sc.get('torch score')!);
        scoreRow('transformers', tTorch, tTorch / tScore);
        ahead = tTorch > tScore;
      }
      if (m.label.includes('1.5B')) targets.push(`scoring at 1.5B: MFU ${mfu === null ? 'not measured' : `${round(100 * mfu)}%`} (target >= 40%: ${mfu === null ? 'not measured' : mfu >= 0.4 ? 'met' : 'NOT met'}), ahead of transformers: ${ahead === null ? 'not compared' : ahead ? 'met' : 'NOT met'}`);
      else if (ahead !== null) targets.push(`scoring at ${m.label}: ahead of transformers: ${ahead ? 'met' : 'NOT met'}`);

      // decoding
      for (const d of decodes) {
        const seqs = d.prompts * d.n;
        ctx.log(`engine cuda: ${m.label}: decoding ${d.label}, ${S} new tokens${withPeer ? ', interleaved with transformers' : ''}`);
        const gen = (newTokens: number) => () => wall(() => {
          engine.generate({ prompts: prompts.slice(0, d.prompts), n: d.n, maxNewTokens: newTokens, temperature: 1, topP: 1, seed: 7, stopTokens: [], maxBatch: seqs });
        });
        const cfg = (newTokens: number) => ({ op: 'generate', decode: { prompts: d.prompts, samples: d.n, newTokens } });
        const res = await interleave([
          { name: 'S', run: gen(S) }, { name: '1', run: gen(1) },
          ...peerEntry('torch S', cfg(S)), ...peerEntry('torch 1', cfg(1)),
        ], Math.min(reps, 2), 1);
        const context = promptLen + S / 2; // mean context of the timed steps (positions promptLen+1 .. promptLen+S-1)
        const bytes = decodeStepBytes(c, seqs, context);
        const roofline = bytes / (copyGBs * 1e9);
        const decodeRow = (impl: string, step: number, vs: number | null) => {
          const f = checkedFraction(roofline / step, 1, `${m.label} ${impl} decoding ${d.label}: fraction of the roofline`);
          const row: BenchRow = { measure: `decode step: ${d.label}`, model: m.label, impl, value: round(step * 1e3, 4), unit: 'ms/step', tokensPerSecond: round(seqs / step), context, rooflineMs: round(roofline * 1e3, 4), ofRoofline: f.fraction, ...(vs === null ? {} : { vsClipo: round(vs) }) };
          flagRow(row, errors, f.error);
          rows.push(row);
          return f.fraction;
        };
        const mine = stepSeconds(medianWall(res.get('S')!), medianWall(res.get('1')!), S);
        const frac = decodeRow('clipo', mine, null);
        let dAhead: boolean | null = null;
        if (withPeer) {
          const theirs = stepSeconds(medianWall(res.get('torch S')!), medianWall(res.get('torch 1')!), S);
          decodeRow('transformers', theirs, theirs / mine);
          dAhead = theirs > mine;
        }
        targets.push(`decoding ${d.label} at ${m.label}: ${frac === null ? 'roofline fraction withheld' : `${round(100 * frac)}% of the roofline`} (target >= 60%: ${frac !== null && frac >= 0.6 ? 'met' : 'NOT met'}), ahead of transformers' generate: ${dAhead === null ? 'not compared' : dAhead ? 'met' : 'NOT met'}`);
      }
    } finally {
      engine.dispose();
      if (peer) await peer.call({ cmd: 'release' });
    }
  }
  notes.push(...targets);
  notes.push(`scoring: ${B} sequences of ${T} tokens (1 prompt token + ${T - 1} scored), clipo's score(pooled) against the peer's forward + log_softmax/gather + mean final hidden state; FLOPs 2 * params * tokens + causal attention (as the CPU rows), MFU over the bf16 GEMM peak of this run. ` +
    `decoding: prompts of ${promptLen} tokens, ${S} new tokens at temperature 1 (no top-p/top-k cut), both sides timed on the wall clock (the peer synchronizes the device before its clock stops); a step = (generate(${S}) - generate(1)) / ${S - 1}; roofline = (2 bytes x parameters + the KV cache at the mean context) / the copy bandwidth above.`);
  const plans = ltPlans();
  if (plans.length) {
    const used = plans.filter((p) => p.supported).length;
    notes.push(`cuBLASLt plans made in this run: ${plans.length} (${used} with an algorithm, ${plans.length - used} on the built-in kernel); calls ${plans.reduce((a, p) => a + p.calls, 0)}; split-K used by ${plans.filter((p) => p.splitK > 1).length}.`);
  }
  if (peer) notes.push(`transformers ${peer.info.transformers} (torch ${peer.info.torch}) in bf16 with sdpa attention on the same GPU; vsClipo = its time / clipo's (above 1: clipo is faster).`);
  const load = loadRecord(before);
  return { suite: 'engine', rows, notes: [...standardNotes(load, errors), ...notes], load, errors };
}
