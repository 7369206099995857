// The engine suite's peer for `clipo bench engine --compare torch`: the same model in PyTorch + transformers
// (scripts/bench/engine_peer.py, driven through the kernels' peer process). clipo writes the model as a Hugging Face
// directory into the peer's private folder, the peer loads it, and before anything is timed three value checks must
// pass: the scoring log-probs, the gradients after one backward (every tensor of the first and last layer, the final
// norm and the embedding), and the log-probs of clipo's sampled tokens (its KV-cache decoder) under transformers.
import { mkdtempSync, rmSync, statfsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Engine, ScoreBatch } from '../engine/engine.js';
import { countParameters, parameterShapes } from '../engine/params.js';
import { saveModelDir } from '../model/hfdir.js';
import type { ModelConfig, TensorMap } from '../model/types.js';
import { round } from './bandwidth.js';
import { howToGetTorch, TorchPeer } from './peer.js';
import type { BenchContext } from './types.js';

/** Largest |clipo logp - transformers logp| (nats) for the two to count as the same model. fp32 on both sides with
 *  different summation orders differs by ~1e-5 here; a wrong RoPE, norm or attention mask differs by > 0.1. */
export const LOGPROB_TOLERANCE = 1e-3;
/** Largest |clipo grad - transformers grad| of a tensor, over that tensor's largest |grad|. */
export const GRADIENT_TOLERANCE = 1e-3;

/** The peer when it can run the engine comparison (torch and transformers importable), else the note saying why not. */
export async function enginePeer(ctx: BenchContext): Promise<{ peer: TorchPeer | null; note: string | null }> {
  if (!ctx.peer) return { peer: null, note: null };
  const p = await ctx.peer();
  if (!(p instanceof TorchPeer)) return { peer: null, note: `--compare torch: skipped: ${p.unavailable}; ${howToGetTorch}.` };
  if (!p.info.transformers) return { peer: null, note: `--compare torch: skipped for the engine: torch ${p.info.torch} is there but transformers is not importable; ${howToGetTorch}.` };
  return { peer: p, note: null };
}

export interface EnginePeerCase {
  label: string;
  config: ModelConfig;
  weights: TensorMap;
  batch: ScoreBatch;
  prompts: Int32Array[];
  samples: number;
  newTokens: number;
}

/** Every sequence of the batch as one row of B x T token ids (the bench's batches have equal lengths). */
export function batchTokens(batch: ScoreBatch): { tokens: Int32Array; B: number; T: number } {
  const B = batch.sequences.length;
  const T = batch.sequences[0]!.prompt.length + batch.sequences[0]!.response.length;
  const tokens = new Int32Array(B * T);
  batch.sequences.forEach((s, b) => {
    if (s.prompt.length !== 1 || s.prompt.length + s.response.length !== T) throw new Error('engine peer: the bench batch must be one prompt token + equal-length responses');
    tokens.set(s.prompt, b * T);
    tokens.set(s.response, b * T + 1);
  });
  return { tokens, B, T };
}

function concat(arrays: Int32Array[]): Int32Array {
  const out = new Int32Array(arrays.reduce((a, x) => a + x.length, 0));
  let at = 0;
  for (const x of arrays) {
    out.set(x, at);
    at += x.length;
  }
  return out;
}

/** Loads the case's model into the peer (as a HF directory in the peer's folder, removed once loaded). `gpu`: the
 *  peer runs it in bf16 on the GPU (the directory is written in bf16: the same rounding as clipo's CUDA engine makes
 *  of the fp32 weights, so both hold the same values), sampling without a top-p cut. */
export async function setupEnginePeer(peer: TorchPeer, c: EnginePeerCase, threads: number, gpu = false): Promise<void> {
  const { dir, remove } = writePeerModel(peer, c.label, c.config, c.weights, gpu ? 'bf16' : 'fp32');
  const { tokens, B, T } = batchTokens(c.batch);
  const promptLen = c.prompts[0]!.length;
  if (c.prompts.some((p) => p.length !== promptLen)) throw new Error('engine peer: the bench prompts must have equal lengths');
  try {
    await peer.call({
      cmd: 'engine_setup', model: dir, tokens: peer.writeInput('engine-tokens.i32', tokens), B, T,
      promptTokens: peer.writeInput('engine-prompts.i32', concat(c.prompts)), prompts: c.prompts.length, promptLen,
      samples: c.samples, newTokens: c.newTokens, threads,
      ...(gpu ? { device: 'cuda', dtype: 'bfloat16', topP: 1 } : {}),
    });
  } finally {
    remove(); // loaded: the peer holds its own copy
  }
}

/** Writes a model as a HF directory for the peer to load: in the peer's folder, which is in /dev/shm where there is
 *  one (a container may keep it small: a model that would not fit there, with room to spare, goes to the temporary
 *  folder instead). `remove` deletes it once the peer has loaded it. */
export function writePeerModel(peer: TorchPeer, label: string, config: ModelConfig, weights: TensorMap, dtype: 'bf16' | 'fp32'): { dir: string; remove: () => void } {
  const bytes = countParameters(config) * (dtype === 'bf16' ? 2 : 4);
  const base = freeBytes(peer.dir) > 1.25 * bytes + 2 ** 28 ? peer.dir : mkdtempSync(path.join(os.tmpdir(), 'clipo-bench-model-'));
  const dir = path.join(base, `model-${label.replace(/[^A-Za-z0-9]/g, '')}`);
  saveModelDir(dir, config, weights, { force: true, ...(dtype === 'bf16' ? { dtype: 'bf16' as const } : {}) });
  return { dir, remove: () => rmSync(base === peer.dir ? dir : base, { recursive: true, force: true }) };
}

/** Bytes free to an unprivileged writer on the filesystem of `dir` (Infinity when it cannot be asked). */
function freeBytes(dir: string): number {
  try {
    const s = statfsSync(dir);
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return Infinity;
  }
}

/** Largest absolute difference of two equal-length arrays (Infinity when the lengths differ or a value is not finite). */
export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

/** Per tensor: largest |a - b| over the largest |b|; returns the worst tensor. */
export function worstTensorDiff(mine: Float32Array[], theirs: Float32Array[], names: string[]): { name: string; rel: number } {
  let worst = { name: names[0] ?? '', rel: 0 };
  names.forEach((name, k) => {
    let ref = 0;
    for (const x of theirs[k]!) ref = Math.max(ref, Math.abs(x));
    const rel = maxAbsDiff(mine[k]!, theirs[k]!) / Math.max(ref, 1e-30);
    if (!(rel <= worst.rel)) worst = { name, rel: Number.isNaN(rel) ? Infinity : rel };
  });
  return worst;
}

export interface EngineCheck {
  agree: boolean;
  /** what was compared and by how much, one sentence */
  note: string;
}

/**
 * The value checks, before any timing: scoring log-probs, gradients after one backward of mean log-prob (the
 * bench's training loss), and the log-probs of clipo's sampled tokens. Leaves clipo's gradients zeroed.
 */
export async function checkEnginePeer(peer: TorchPeer, engine: Engine, c: EnginePeerCase, threads: number): Promise<EngineCheck> {
  const { B, T } = batchTokens(c.batch);
  // 1. scoring
  const mine = engine.score(c.batch).logprobs;
  const score = await peer.values({ cmd: 'engine_check', what: 'score', threads }, B * (T - 1));
  const dScore = maxAbsDiff(mine, score.values);

  // 2. gradients of sum(logp) / (B * T), the loss the timed training step uses
  engine.zeroGrad();
  const f = engine.forwardTrain(c.batch);
  const g = new Float32Array(f.logprobs.length);
  for (let i = 0; i < g.length; i++) g[i] = f.mask[i] ? 1 / (B * T) : 0;
  engine.backward(g);
  const grads = engine.exportGradients()!;
  engine.zeroGrad();
  let norm2 = 0;
  for (const t of grads.values()) for (const x of t.data) norm2 += x * x;
  const last = c.config.numLayers - 1;
  const names = parameterShapes(c.config).map((s) => s.name)
    .filter((n) => n.startsWith('model.layers.0.') || n.startsWith(`model.layers.${last}.`) || n === 'model.norm.weight' || n === 'model.embed_tokens.weight');
  const sizes = names.map((n) => grads.get(n)!.data.length);
  const gr = await peer.values({ cmd: 'engine_check', what: 'grads', names, threads }, sizes.reduce((a, b) => a + b, 0));
  const theirs: Float32Array[] = [];
  let at = 0;
  for (const n of sizes) {
    theirs.push(gr.values.subarray(at, at + n));
    at += n;
  }
  const worst = worstTensorDiff(names.map((n) => grads.get(n)!.data), theirs, names);
  const theirNorm = gr.answer.gradNorm as number;
  const normRel = Math.abs(Math.sqrt(norm2) - theirNorm) / Math.max(theirNorm, 1e-30);

  // 3. sampling: clipo's sampled tokens and their log-probs (temperature 1), scored by transformers
  const gen = engine.generate({ prompts: c.prompts, n: c.samples, maxNewTokens: c.newTokens, temperature: 1, topP: 0.95, seed: 11, stopTokens: [] });
  const promptLen = c.prompts[0]!.length, length = promptLen + c.newTokens;
  const seqs = new Int32Array(gen.sequences.length * length);
  const sampled = new Float32Array(gen.sequences.length * c.newTokens);
  gen.sequences.forEach((s, i) => {
    if (s.tokens.length !== c.newTokens) throw new Error(`engine peer: clipo generated ${s.tokens.length} tokens, expected ${c.newTokens}`);
    seqs.set(c.prompts[s.promptIndex]!, i * length);
    seqs.set(s.tokens, i * length + promptLen);
    sampled.set(s.logprobs, i * c.newTokens);
  });
  const sq = await peer.values({
    cmd: 'engine_check', what: 'sequences', sequences: peer.writeInput('engine-sampled.i32', seqs), count: gen.sequences.length,
    length, promptLen, threads,
  }, sampled.length);
  const dSample = maxAbsDiff(sampled, sq.values);

  const agree = dScore <= LOGPROB_TOLERANCE && dSample <= LOGPROB_TOLERANCE && worst.rel <= GRADIENT_TOLERANCE && normRel <= GRADIENT_TOLERANCE;
  const e = (x: number) => x.toExponential(1);
  const note = `${c.label}: values checked against transformers before timing: scoring log-probs max |difference| ${e(dScore)} nats, ` +
    `sampled tokens' log-probs (clipo's KV-cache decoder vs a transformers forward) ${e(dSample)} (tolerance ${LOGPROB_TOLERANCE}); ` +
    `gradients after one backward: worst tensor ${worst.name} ${e(worst.rel)} of its largest entry (${names.length} tensors), ` +
    `gradient norm ${round(Math.sqrt(norm2), 6)} vs ${round(theirNorm, 6)} (relative ${e(normRel)}; tolerance ${GRADIENT_TOLERANCE}): ${agree ? 'agree' : 'DISAGREE'}`;
  return { agree, note };
}
