// The gradient check against PyTorch autograd (test/engine-cuda-torch-grad.test.ts on the GPU, test/grad-peer.test.ts
// on the CPU): one loss on one model in clipo's engine and in transformers (scripts/bench/grad_peer.py through the
// torch peer), gradients compared per tensor at a fixed random sample of entries, so that a 0.5B model's 2 GB of fp32
// gradient never crosses between the processes.
//
// The loss is  sum over response tokens of w[b, t] * logp[b, t]  with fixed random weights w: d loss / d logp = w,
// so every token counts with its own sign (a plain mean of log-probs would let errors that cancel over tokens hide).
import type { Engine, ScoreBatch } from '../engine/engine.js';
import type { ModelConfig, TensorMap } from '../model/types.js';
import { parameterShapes } from '../engine/params.js';
import { Rng } from '../util/rng.js';
import type { TorchPeer } from './peer.js';

/** Where in each tensor the gradients are compared: every entry of a tensor of at most `perTensor` entries, else
 *  `perTensor` distinct random entries (flat row-major indices into the HF shape, ascending). */
export interface GradSample {
  names: string[];
  indices: BigInt64Array[];
}

export function sampleGradientIndices(config: ModelConfig, perTensor: number, seed: number): GradSample {
  if (!Number.isInteger(perTensor) || perTensor < 1) throw new Error(`sampleGradientIndices: perTensor must be a positive integer, got ${perTensor}`);
  const rng = new Rng(seed);
  const names: string[] = [], indices: BigInt64Array[] = [];
  for (const { name, shape } of parameterShapes(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    let idx: number[];
    if (n <= perTensor) idx = Array.from({ length: n }, (_, i) => i);
    else {
      const seen = new Set<number>();
      while (seen.size < perTensor) seen.add(Math.floor(rng.next() * n));
      idx = [...seen].sort((a, b) => a - b);
    }
    names.push(name);
    indices.push(BigInt64Array.from(idx, (i) => BigInt(i)));
  }
  return { names, indices };
}

/** Per sequence prompt and response lengths, and the longest response (forwardTrain's row length). */
function lengths(batch: ScoreBatch): { promptLengths: number[]; responseLengths: number[]; Tmax: number } {
  const promptLengths = batch.sequences.map((s) => s.prompt.length);
  const responseLengths = batch.sequences.map((s) => s.response.length);
  if (promptLengths.some((p) => p < 1)) throw new Error('gradient check: every sequence needs a prompt token');
  return { promptLengths, responseLengths, Tmax: Math.max(...responseLengths) };
}

/** Fixed random d loss / d logp, in forwardTrain's layout (B rows of Tmax), 0 at padding. */
export function lossWeights(batch: ScoreBatch, seed: number): Float32Array {
  const { responseLengths, Tmax } = lengths(batch);
  const rng = new Rng(seed);
  const w = new Float32Array(batch.sequences.length * Tmax);
  responseLengths.forEach((r, b) => {
    for (let t = 0; t < r; t++) w[b * Tmax + t] = rng.normal();
  });
  return w;
}

/** The engine's side: one forwardTrain + backward from `w`; its log-probs and its gradient at the sample. */
export function engineGradients(engine: Engine, batch: ScoreBatch, w: Float32Array, sample: GradSample): { logprobs: Float32Array; mask: Uint8Array; values: Float32Array[] } {
  engine.zeroGrad();
  const f = engine.forwardTrain(batch);
  if (f.logprobs.length !== w.length) throw new Error(`gradient check: forwardTrain gave ${f.logprobs.length} log-probs, the weights have ${w.length}`);
  engine.backward(w);
  const grads: TensorMap = engine.exportGradients()!;
  const values = sample.names.map((name, k) => {
    const g = grads.get(name);
    if (!g) throw new Error(`gradient check: the engine has no gradient for ${name}`);
    return Float32Array.from(sample.indices[k]!, (i) => g.data[Number(i)]!);
  });
  engine.zeroGrad();
  return { logprobs: f.logprobs, mask: f.mask, values };
}

/** The peer's side (the model already loaded by grad_setup): the same loss by autograd; log-probs and sampled
 *  gradient. */
export async function peerGradients(peer: TorchPeer, batch: ScoreBatch, w: Float32Array, sample: GradSample): Promise<{ logprobs: Float32Array; loss: number; values: Float32Array[] }> {
  const { promptLengths, responseLengths, Tmax } = lengths(batch);
  const total = batch.sequences.reduce((a, s) => a + s.prompt.length + s.response.length, 0);
  const tokens = new Int32Array(total);
  let at = 0;
  for (const s of batch.sequences) {
    tokens.set(s.prompt, at);
    tokens.set(s.response, at + s.prompt.length);
    at += s.prompt.length + s.response.length;
  }
  const B = batch.sequences.length;
  const run = await peer.values({
    cmd: 'grad_run', tokens: peer.writeInput('grad-tokens.i32', tokens), weights: peer.writeInput('grad-weights.f32', w),
    B, Tmax, promptLengths, responseLengths,
  }, B * Tmax);
  const counts = sample.indices.map((x) => x.length);
  const all = new BigInt64Array(counts.reduce((a, b) => a + b, 0));
  at = 0;
  for (const x of sample.indices) {
    all.set(x, at);
    at += x.length;
  }
  const s = await peer.values({ cmd: 'grad_sample', names: sample.names, counts, indices: peer.writeInput('grad-indices.i64', all) }, all.length);
  const values: Float32Array[] = [];
  at = 0;
  for (const n of counts) {
    values.push(s.values.subarray(at, at + n));
    at += n;
  }
  return { logprobs: run.values, loss: run.answer.loss as number, values };
}

export interface TensorError {
  name: string;
  /** ||g_engine - g_torch|| / ||g_torch|| over the sampled entries */
  rel: number;
  /** ||g_torch|| over the sampled entries */
  norm: number;
}

/** Per tensor relative error over the sample, worst first (NaN counts as Infinity). */
export function tensorErrors(mine: Float32Array[], theirs: Float32Array[], names: string[]): TensorError[] {
  const out = names.map((name, k) => {
    const a = mine[k]!, b = theirs[k]!;
    if (a.length !== b.length) return { name, rel: Infinity, norm: NaN };
    let d2 = 0, r2 = 0;
    for (let i = 0; i < b.length; i++) {
      const d = a[i]! - b[i]!;
      d2 += d * d;
      r2 += b[i]! * b[i]!;
    }
    const rel = Math.sqrt(d2) / Math.max(Math.sqrt(r2), 1e-30);
    return { name, rel: Number.isNaN(rel) ? Infinity : rel, norm: Math.sqrt(r2) };
  });
  return out.sort((x, y) => y.rel - x.rel);
}

/** The worst `n` tensors, one line each, for the test's log. */
export function describeWorst(errors: TensorError[], n = 8): string {
  return errors.slice(0, n).map((e) => `  ${e.name}: ${e.rel.toExponential(2)} (|g| ${e.norm.toExponential(2)})`).join('\n');
}
