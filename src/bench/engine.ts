// `clipo bench engine`: throughput of the CPU policy engine (scoring forward, forward+backward+AdamW, sampling) for a
// ~10M and a ~100M parameter Qwen2-shaped model, one thread and all threads, against the fp32 FMA peak probed
// between the repeats (same rounds, same load); GEMM GFLOP/s the same way; peak RSS against parameters + gradients
// + Adam moments + one micro-batch of activations. One-thread figures are per second of the thread's own CPU time
// (exact on short calls; see native/bench/probes.cpp), all-thread figures per wall second. A fraction of the peak
// above 1 is reported as a bench error, not as a figure. With --compare torch, the same model in PyTorch +
// transformers does the same three jobs interleaved with clipo's repeats, after value checks (engine-peer.ts).
import { Engine, type ScoreBatch } from '../engine/engine.js';
import { countParameters, randomWeights, smallConfig } from '../engine/params.js';
import type { ModelConfig } from '../model/types.js';
import { nativeFunction } from '../native.js';
import { round } from './bandwidth.js';
import { checkEnginePeer, enginePeer, setupEnginePeer } from './engine-peer.js';
import { checkedFraction, flagRow, interleave, loadBefore, loadRecord, rowSeconds, standardNotes, threadCounts, timeCall, type Entry, type Sample } from './harness.js';
import type { BenchContext, BenchReport, BenchRow, BenchSuite } from './types.js';

const fmaPeak = (threads: number) =>
  nativeFunction<(o: object) => { gflops: number; gflopsPerCpuSecond: number }>('engineFmaPeak')({ threads, seconds: 0.02 });
const gemm = (o: { M: number; N: number; K: number; mode: string; repeats: number; threads: number }) =>
  nativeFunction<(o: object) => { seconds: number; gflops: number; gflopsPerCpuSecond: number; kernel: string }>('engineGemm')(o);

/** An FMA-peak probe as an interleave entry: its sample is the time 1 GFLOP takes at the probed rate. */
function fmaEntry(threads: number): Entry {
  return {
    name: `fma ${threads}`,
    run: () => {
      const p = fmaPeak(threads);
      return { wall: 1 / p.gflops, cpu: 1 / p.gflopsPerCpuSecond };
    },
  };
}

/** GFLOP/s of the probe rounds: one thread per CPU-second of the thread, more per wall second (all threads). */
function probeRate(samples: Sample[], threads: number): number {
  return 1 / rowSeconds(samples, threads);
}

interface ModelSpec {
  label: string;
  config: ModelConfig;
  batch: number;
  seqLen: number;
  prompts: number;
  samples: number;
  promptLen: number;
  newTokens: number;
}

/** forward FLOPs for one micro-batch where every position but the first computes logits:
 *  2 * (layer params + head) per token, plus causal attention 2 * 2 * ctx * qd per token per layer (ctx ~ t/2). */
export function forwardFlops(c: ModelConfig, batch: number, seqLen: number): number {
  const H = c.hiddenSize, qd = c.numHeads * c.headDim;
  const head = c.vocabSize * H;
  const layerParams = countParameters(c) - c.vocabSize * H * (c.tieWordEmbeddings ? 1 : 2) - H;
  let attn = 0;
  for (let t = 0; t < seqLen; t++) attn += 4 * (t + 1) * qd * c.numLayers;
  return batch * (2 * layerParams * seqLen + 2 * head * (seqLen - 1) + attn);
}

/** bytes of one micro-batch of training activations (as kept by forwardTrain) plus the backward scratch */
function activationBytes(c: ModelConfig, tokens: number): number {
  const H = c.hiddenSize, I = c.intermediateSize, qd = c.numHeads * c.headDim, qkv = qd + 2 * c.numKvHeads * c.headDim;
  const perLayer = 4 * H + qkv + qd + c.numHeads + 2 * I + 2;
  const kept = tokens * (c.numLayers * perLayer + 3 * H + 1);
  const scratch = tokens * (4 * I + 3 * H + qd + qkv + I);
  const headChunk = 2 * Math.min(256, Math.floor(2 ** 24 / c.vocabSize)) * (c.vocabSize + H);
  // the head's softmax over the predicting rows is kept for the backward pass when it fits in 2^26 floats
  const headRows = tokens * c.vocabSize <= 2 ** 26 ? tokens * c.vocabSize : 0;
  return 4 * (kept + scratch + headChunk + headRows);
}

function batchOf(rng: () => number, c: ModelConfig, batch: number, seqLen: number): ScoreBatch {
  const ids = (n: number) => Int32Array.from({ length: n }, () => Math.floor(rng() * c.vocabSize));
  return { sequences: Array.from({ length: batch }, () => ({ prompt: ids(1), response: ids(seqLen - 1) })) };
}

export const engineSuite: BenchSuite = {
  name: 'engine',
  groups: ['engine'],
  description: 'policy engine: CPU (default): tokens/s for scoring, forward+backward and sampling (~10M, ~100M params), 1 and all threads, fraction of the fp32 FMA peak probed in the same rounds, GEMM GFLOP/s, peak RSS; --backend cuda: the CUDA engine at Qwen2.5-0.5B/1.5B shapes, scoring MFU and decoding against its roofline, beside transformers with --compare torch',
  async run(ctx: BenchContext): Promise<BenchReport> {
    // --backend cuda: the CUDA engine beside transformers on the GPU (engine-cuda.ts); 'auto' and 'cpu' run the CPU rows
    if (ctx.backend === 'cuda') return (await import('./engine-cuda.js')).runEngineCuda(ctx);
    const before = loadBefore();
    const rows: BenchRow[] = [];
    const notes: string[] = [];
    const errors: string[] = [];
    const rssBase = process.memoryUsage().rss;
    let seed = 12345;
    const rng = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    const threadList = threadCounts(ctx.threads);
    const { peer, note: peerNote } = await enginePeer(ctx);
    if (peerNote) notes.push(peerNote);
    const peerNotes: string[] = [];
    const tag = (t: number) => `${t} thread${t > 1 ? 's' : ''}`;

    const gemmSizes: Array<[number, number, number, string]> = ctx.quick
      ? [[256, 1024, 256, 'nt'], [256, 1024, 256, 'tn'], [16, 4096, 512, 'rows']]
      : [[512, 2048, 768, 'nt'], [512, 768, 2048, 'nn'], [2048, 768, 512, 'tn'], [1024, 1024, 1024, 'nt'], [16, 8192, 768, 'rows']];
    const kernelName = gemm({ M: 8, N: 8, K: 8, mode: 'nt', repeats: 1, threads: 1 }).kernel;
    for (const t of threadList) {
      ctx.log(`engine: GEMMs, ${tag(t)}, interleaved with the FMA-peak probe`);
      const entries: Entry[] = [fmaEntry(t)];
      for (const [M, N, K, mode] of gemmSizes)
        entries.push({ name: `gemm ${mode} ${M}x${N}x${K}`, run: () => {
          const r = gemm({ M, N, K, mode, repeats: 1, threads: t });
          const gf = (2 * M * N * K) / 1e9;
          return { wall: gf / r.gflops, cpu: gf / r.gflopsPerCpuSecond };
        } });
      const res = await interleave(entries, ctx.repeats, 1);
      const peak = probeRate(res.get(`fma ${t}`)!, t);
      for (const [M, N, K, mode] of gemmSizes) {
        const name = `gemm ${mode} ${M}x${N}x${K}`;
        const gflops = ((2 * M * N * K) / 1e9) / rowSeconds(res.get(name)!, t);
        const f = checkedFraction(gflops, peak, `${name}, ${tag(t)}`);
        const row: BenchRow = { measure: name, model: kernelName, threads: t, value: round(gflops), unit: t === 1 ? 'GFLOP/cpu-s' : 'GFLOP/s', peakFraction: f.fraction };
        flagRow(row, errors, f.error);
        rows.push(row);
      }
      rows.push({ measure: 'fp32 FMA peak (register-only loop, probed between the repeats)', model: '', threads: t, value: round(peak), unit: t === 1 ? 'GFLOP/cpu-s' : 'GFLOP/s', peakFraction: 1 });
    }

    const specs: ModelSpec[] = [
      {
        label: '~10M',
        config: smallConfig('qwen2', { vocab: 32000, hidden: 256, layers: 4, heads: 4, kvHeads: 2, intermediate: 768 }),
        batch: ctx.quick ? 2 : 4, seqLen: ctx.quick ? 64 : 256, prompts: 4, samples: 4, promptLen: 32, newTokens: ctx.quick ? 8 : 32,
      },
    ];
    if (!ctx.quick) {
      specs.push({
        label: '~100M',
        config: smallConfig('qwen2', { vocab: 32000, hidden: 768, layers: 12, heads: 12, kvHeads: 2, intermediate: 2048 }),
        batch: 2, seqLen: 256, prompts: 4, samples: 4, promptLen: 32, newTokens: 32,
      });
    }
    let expectedPeak = 0;
    const fbNotes: string[] = [];
    const peerRatios: string[] = [];
    for (const s of specs) {
      const c = s.config;
      const params = countParameters(c);
      const batch = batchOf(rng, c, s.batch, s.seqLen);
      const tokens = s.batch * s.seqLen;
      const reps = s.label === '~100M' ? Math.min(ctx.repeats, 3) : Math.min(ctx.repeats, 5);
      const flops = forwardFlops(c, s.batch, s.seqLen);
      // made afresh for each use (the same seed, the same values), so no JavaScript copy outlives its engine's load
      const weights = () => randomWeights(c, { seed: 1, uniform: true });
      const prompts = Array.from({ length: s.prompts }, () => Int32Array.from({ length: s.promptLen }, () => Math.floor(rng() * c.vocabSize)));
      // the peer: the same weights, batch and prompts; its values checked against clipo's before any timing
      let withPeer = false;
      if (peer) {
        const all = threadList.at(-1)!;
        ctx.log(`engine: ${s.label} model in transformers: loading, checking values`);
        const pc = { label: s.label, config: c, weights: weights(), batch, prompts, samples: s.samples, newTokens: s.newTokens };
        await setupEnginePeer(peer, pc, all);
        const checker = Engine.create(c, pc.weights, { threads: all, backend: 'cpu' });
        try {
          const v = await checkEnginePeer(peer, checker, pc, all);
          peerNotes.push(v.note);
          if (v.agree) withPeer = true;
          else errors.push(`${s.label}: transformers disagrees with clipo (${v.note}); its timings are not reported`);
        } finally {
          checker.dispose();
        }
      }
      const peerEntries = (t: number, ops: string[]): Entry[] => withPeer ? ops.map((op) => ({ name: `torch ${op}`, run: () => peer!.time({ kernel: 'engine', op, threads: t }) })) : [];
      for (const t of threadList) {
        ctx.log(`engine: ${s.label} model (${(params / 1e6).toFixed(1)}M parameters), ${tag(t)}${withPeer ? ', interleaved with transformers' : ''}`);
        const engine = Engine.create(c, weights(), { threads: t, backend: 'cpu' });
        try {
          const res = await interleave([
            fmaEntry(t),
            { name: 'score', run: () => timeCall(() => engine.score(batch, { pooled: true }), t) },
            ...peerEntries(t, ['score']),
            { name: 'train', run: () => timeCall(() => {
              engine.zeroGrad();
              const f = engine.forwardTrain(batch);
              const g = new Float32Array(f.logprobs.length);
              for (let i = 0; i < g.length; i++) g[i] = f.mask[i] ? 1 / tokens : 0;
              engine.backward(g);
              engine.adamwStep({ lr: 1e-6, weightDecay: 0.01, maxGradNorm: 1 });
            }, t) },
            ...peerEntries(t, ['train']),
          ], reps, 1);
          const peak = probeRate(res.get(`fma ${t}`)!, t);
          const unit = t === 1 ? 'tokens/cpu-s' : 'tokens/s';
          const tFwd = rowSeconds(res.get('score')!, t);
          const tTrain = rowSeconds(res.get('train')!, t);
          const fFwd = checkedFraction(flops / tFwd / 1e9, peak, `${s.label} score, ${tag(t)}`);
          const fTrain = checkedFraction((3 * flops) / tTrain / 1e9, peak, `${s.label} forward+backward, ${tag(t)}`);
          const r1: BenchRow = { measure: 'score (forward, log-probs, pooled)', model: s.label, impl: 'clipo', threads: t, value: round(tokens / tFwd), unit, peakFraction: fFwd.fraction };
          const r2: BenchRow = { measure: 'forward+backward+AdamW', model: s.label, impl: 'clipo', threads: t, value: round(tokens / tTrain), unit, peakFraction: fTrain.fraction };
          flagRow(r1, errors, fFwd.error);
          flagRow(r2, errors, fTrain.error);
          rows.push(r1, r2);
          if (fTrain.fraction !== null) fbNotes.push(`${s.label} ${tag(t)} ${(fTrain.fraction * 100).toFixed(1)}%`);
          // transformers' rows: the same tokens and FLOPs over its time; vsClipo = its time / clipo's (> 1: clipo faster)
          const peerRow = (measure: string, op: string, clipoS: number, work: number | null) => {
            const sec = rowSeconds(res.get(`torch ${op}`)!, t);
            const f = work === null ? { fraction: null } : checkedFraction(work / sec / 1e9, peak, `${s.label} transformers ${op}, ${tag(t)}`);
            const row: BenchRow = { measure, model: s.label, impl: 'transformers', threads: t, value: round(tokens / sec), unit, peakFraction: f.fraction, vsClipo: round(sec / clipoS) };
            flagRow(row, errors, f.error);
            rows.push(row);
            peerRatios.push(`${s.label} ${op} ${tag(t)} ${round(sec / clipoS)}x`);
          };
          if (withPeer) {
            peerRow('score (forward, log-probs, pooled)', 'score', tFwd, flops);
            peerRow('forward+backward+AdamW', 'train', tTrain, 3 * flops);
          }

          let generated = 0;
          const gen = await interleave([{ name: 'gen', run: () => timeCall(() => {
            const r = engine.generate({ prompts, n: s.samples, maxNewTokens: s.newTokens, temperature: 1, topP: 0.95, seed: 7, stopTokens: [] });
            generated = r.sequences.reduce((a, q) => a + q.tokens.length, 0);
          }, t) }, ...peerEntries(t, ['generate'])], Math.min(reps, 2), 1);
          const sampling = `sampling (${s.prompts}x${s.samples} seqs, ${s.promptLen}+${s.newTokens} tokens)`;
          const tGen = rowSeconds(gen.get('gen')!, t);
          rows.push({ measure: sampling, model: s.label, impl: 'clipo', threads: t, value: round(generated / tGen), unit, peakFraction: null });
          if (withPeer) {
            // transformers always makes exactly s.newTokens per sequence (the peer checks it); so does clipo here
            const sec = rowSeconds(gen.get('torch generate')!, t);
            rows.push({ measure: sampling, model: s.label, impl: 'transformers', threads: t, value: round((s.prompts * s.samples * s.newTokens) / sec), unit, peakFraction: null, vsClipo: round(sec / tGen) });
            peerRatios.push(`${s.label} sampling ${tag(t)} ${round(sec / tGen)}x`);
          }
          if (t === threadList.at(-1)) {
            expectedPeak = Math.max(expectedPeak, engine.stateBytes() + activationBytes(c, tokens));
            rows.push({ measure: 'params + grads + Adam m,v', model: s.label, threads: null, value: round(engine.stateBytes() / 2 ** 20), unit: 'MiB', peakFraction: null });
          }
        } finally {
          engine.dispose();
        }
      }
    }
    const peakRss = process.resourceUsage().maxRSS * 1024;
    rows.push({ measure: 'peak RSS (process)', model: '', threads: null, value: round(peakRss / 2 ** 20), unit: 'MiB', peakFraction: null });
    rows.push({ measure: 'expected: start RSS + state + activations', model: '', threads: null, value: round((rssBase + expectedPeak) / 2 ** 20), unit: 'MiB', peakFraction: null });
    notes.push(`forward+backward as a fraction of the fp32 FMA peak probed in the same rounds (target >= 30% on all threads): ${fbNotes.join(', ')}`);
    notes.push(`peak RSS ${(peakRss / 2 ** 20).toFixed(0)} MiB vs expected ${((rssBase + expectedPeak) / 2 ** 20).toFixed(0)} MiB (ratio ${(peakRss / (rssBase + expectedPeak)).toFixed(2)})`);
    notes.push('FLOPs: 2*params*tokens (+ causal attention) forward, x3 for forward+backward. One-thread rows: per second of the thread\'s CPU time (kernel and probe alike); all-thread rows: per wall second.');
    if (peer) {
      notes.push(...peerNotes);
      if (peerRatios.length)
        notes.push(`transformers ${peer.info.transformers} (torch ${peer.info.torch}, fp32, sdpa attention) takes this multiple of clipo's time (above 1: clipo is faster): ${peerRatios.join(', ')}. ` +
          'Its rows do the same work: scoring = forward + log_softmax/gather + mean final hidden state; forward+backward = the same loss, backward, clip_grad_norm_, torch.optim.AdamW; sampling = model.generate (top-p 0.95, KV cache). One-thread rows on the Python thread\'s CPU clock, all-thread rows on the wall clock, like clipo\'s.');
      await peer.call({ cmd: 'release' });
    }
    const load = loadRecord(before);
    return { suite: 'engine', rows, notes: [...standardNotes(load, errors), ...notes], load, errors };
  },
};
