// The training memory plan: what one `clipo train` run holds at its peak (weights, master copy, optimizer moments,
// gradients, activations of one micro-batch, the rollouts' KV cache, the logits chunk, the reference policy), computed
// from the model's shapes and the config before any weight is loaded, so that a configuration that cannot fit is
// refused up front instead of dying mid-run. Pure: no I/O; the caller supplies the device's (or host's) memory.
//
// What the engines keep, counted from their code:
// - the CPU engine (native/engine/cpu_forward.cpp, forwardTrain) keeps per layer and token, in fp32: the layer's
//   input (residual) H, xn1 H, rstd1 1, qkv (heads + 2 kvHeads) headDim, attention output heads*headDim, the
//   attention's log-sum-exp per head, x1 H, xn2 H, rstd2 1, gate|up 2I; plus the final norm's output H and rstd;
//   the backward pass (cpu_train.cpp) adds per token act, dact I each, dgu 2I, dxn H, dO heads*headDim, dqkv, and
//   dres, dxf H each; the head's logits chunk (at most 2^24 / V rows, 256 at most) and the kept softmax of the head
//   rows (when at most 256 MiB). It has no recomputation: checkpointing is off on the CPU.
// - the CUDA engine (native/engine/cuda_train.cuh, trainBytes) keeps the same tensors in bf16 (statistics fp32) and
//   its backward scratch is the same one layer of activation gradients; the head's chunk is at most 64 MiB of logits
//   (counted here as the CPU's, an upper bound). With per-layer recomputation (model.checkpointing on, or auto when
//   the activations of every layer would not fit) it keeps only each layer's input, the last layer's output and the
//   final norm's, plus one layer's set, which the backward pass refills for each layer in turn. Its master weights are
//   fp32 or bf16 (optim.master_weights), its moments fp32: `clipo train` plans with `current: true` (what runs today).
//   The plan also models the engine this is heading for (`current` false, the default): bf16 or 8-bit moments.
// - rollouts: the CPU engine decodes max(1, floor(64 / n)) prompts × n samples at once, each with its own fp32 cache
//   of prompt + response + 1 positions; the CUDA engine pages a bf16 cache in 16-token blocks, a group's prompt
//   blocks shared by its n samples, for at most `decodeSequences` (default 256) sequences at once.

import { configTotals } from '../model/tensors.js';
import type { ModelConfig } from '../model/types.js';

export type Checkpointing = 'auto' | 'on' | 'off';
export type MasterDtype = 'fp32' | 'bf16';
export type MomentsDtype = 'fp32' | 'bf16' | 'int8';

/** The model's shapes (config.json). */
export interface PlanModel {
  layers: number;
  hidden: number;
  intermediate: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  vocab: number;
  tied: boolean;
  /** q/k/v biases (Qwen2) */
  attentionBias: boolean;
  /** o_proj and MLP biases */
  mlpBias?: boolean;
}

export interface PlanTraining {
  backend: 'cpu' | 'cuda';
  /** responses per forward/backward micro-batch */
  microBatch: number;
  promptTokens: number;
  responseTokens: number;
  /** responses per prompt */
  groupSize: number;
  /** prompts per RL step */
  promptsPerStep: number;
  checkpointing: Checkpointing;
  /** a KL term to the reference policy is on (its weights stay resident) */
  reference: boolean;
  /** the CUDA backend's master weights: fp32 beside the bf16 working copy, or bf16 only (stochastic rounding) */
  masterDtype?: MasterDtype;
  momentsDtype?: MomentsDtype;
  /** CLIPO's contrastive head: its output size (hidden -> outSize, fp32 with AdamW) */
  contrastiveOutSize?: number;
  /** sequences decoded at once (CUDA; default 256) */
  decodeSequences?: number;
  /** plan what today's engines do (`clipo train`): fp32 moments, and the refusal's hints name only what they offer;
   *  false (default): the planned CUDA engine's options as well (bf16 or 8-bit moments) */
  current?: boolean;
  /** bytes of the device (cuda) or of the host (cpu) */
  memoryBytes: number;
}

export interface PlanItem {
  name: string;
  bytes: number;
  /** held for the whole run, or only while rolling out / while training (the two phases never overlap) */
  phase: 'always' | 'rollout' | 'train';
  note: string;
}

export interface MemoryPlan {
  backend: 'cpu' | 'cuda';
  params: number;
  checkpointing: 'on' | 'off';
  /** counted for today's engines (PlanTraining.current): the refusal suggests only what they offer */
  current: boolean;
  /** sequences decoded at once (CUDA: as many of the asked ones as the memory left holds, whole groups) */
  decodeSequences: number;
  items: PlanItem[];
  /** the run's peak: what is always held + the larger phase + the reserve */
  total: number;
  memoryBytes: number;
  fits: boolean;
}

/** Parameters of a Qwen2/Llama model of these shapes (the model's own count, src/model/tensors.ts configTotals). */
export function parameterCount(m: PlanModel): number {
  return configTotals({
    hiddenSize: m.hidden, numHeads: m.heads, numKvHeads: m.kvHeads, headDim: m.headDim, intermediateSize: m.intermediate,
    numLayers: m.layers, vocabSize: m.vocab, tieWordEmbeddings: m.tied, attentionBias: m.attentionBias, mlpBias: !!m.mlpBias,
  } as ModelConfig).params;
}

const GiB = 2 ** 30;

/** Bytes kept per token by one layer's forward for the backward pass besides its input (see the file's header): xn1,
 *  x1, xn2 (H each), q|k|v after RoPE, the attention output and gate|up (2I) in the storage type (eb bytes), the two
 *  rstd and the attention's log-sum-exp per head in fp32. */
function layerBytes(m: PlanModel, eb: number): number {
  const qd = m.heads * m.headDim, qkv = qd + 2 * m.kvHeads * m.headDim;
  return eb * (3 * m.hidden + qkv + qd + 2 * m.intermediate) + 4 * (2 + m.heads);
}
/** Elements per token of the backward pass's scratch (one layer at a time). */
function backwardElements(m: PlanModel): number {
  const qd = m.heads * m.headDim, qkv = qd + 2 * m.kvHeads * m.headDim;
  return 4 * m.intermediate + 3 * m.hidden + qd + qkv;
}

/** The training activations' peak (the backward pass): every layer's input and the last layer's output, the layers'
 *  sets (every layer's, or one with recomputation), the final norm's output (eb) and rstd (fp32), and the backward's
 *  scratch. The CUDA engine's trainBytes + backwardBytes count the same (plus its index arrays and a fixed margin). */
export function activationsBytes(m: PlanModel, tokens: number, eb: number, recompute: boolean): number {
  const inputs = tokens * (m.layers + 1) * m.hidden * eb;
  const layers = tokens * (recompute ? 1 : m.layers) * layerBytes(m, eb);
  const final = tokens * (m.hidden * eb + 4);
  const scratch = tokens * backwardElements(m) * eb;
  return inputs + layers + final + scratch;
}

const sum = (items: PlanItem[], phase: PlanItem['phase']) => items.filter((i) => i.phase === phase).reduce((s, i) => s + i.bytes, 0);

/**
 * The plan. `auto` checkpointing picks off when everything fits without recomputation, else on (CUDA only: the CPU
 * engine has no recomputation, so auto is off there). On CUDA the rollouts' KV cache takes the memory the rest leaves,
 * in whole groups, up to `decodeSequences`; the run does not fit when not even one group's cache fits.
 */
export function planMemory(m: PlanModel, t: PlanTraining): MemoryPlan {
  const P = parameterCount(m);
  const cuda = t.backend === 'cuda';
  const master = t.masterDtype ?? 'fp32', moments = t.momentsDtype ?? 'fp32';
  const items: PlanItem[] = [];
  const add = (name: string, bytes: number, phase: PlanItem['phase'], note: string) => items.push({ name, bytes, phase, note });
  if (cuda) {
    add('weights', 2 * P, 'always', 'bf16 working copy');
    add('master weights', master === 'fp32' ? 4 * P : 0, 'always', master === 'fp32' ? 'fp32' : 'bf16: the working copy (stochastic rounding)');
    const mb = moments === 'fp32' ? 8 : moments === 'bf16' ? 4 : 2 + 8 / 2048; // int8: plus an fp32 scale per 2048 values
    add('Adam moments', mb * P, 'always', `m and v, ${moments}`);
  } else {
    add('weights', 4 * P, 'always', 'fp32 in the engine (the master copy itself)');
    add('loaded weights', 4 * P, 'always', 'fp32 as read from safetensors, kept by the run (reference, saving)');
    add('Adam moments', 8 * P, 'always', 'm and v, fp32');
  }
  add('gradients', 4 * P, 'always', 'fp32, accumulated over micro-batches');
  add('reference policy', t.reference ? (cuda ? 2 : 4) * P : 0, 'always', t.reference ? `${cuda ? 'bf16' : 'fp32'} weights (KL term on)` : 'none (no KL term)');
  if (t.contrastiveOutSize) add('contrastive head', 16 * (m.hidden * t.contrastiveOutSize + t.contrastiveOutSize), 'always', 'fp32 weights, gradient, moments');
  const eb = cuda ? 2 : 4;
  const tokens = t.microBatch * (t.promptTokens + t.responseTokens);
  // the head's chunk of rows x vocab (fp32: logits and their gradient) and, on the CPU, the kept softmax of the head rows
  const headRows = t.microBatch * t.responseTokens;
  const chunkRows = Math.max(1, Math.min(256, Math.floor(2 ** 24 / m.vocab), headRows));
  const kept = cuda ? 0 : headRows * m.vocab * 4 <= 256 * 2 ** 20 ? headRows * m.vocab * 4 : 0;
  const chunk = 2 * chunkRows * m.vocab * 4 + kept;
  // the reserve: the CUDA context, library workspaces and fragmentation; on the CPU, the runtime and the OS
  const reserve = cuda ? 2 * GiB + 0.03 * t.memoryBytes : 1 * GiB;
  const always = sum(items, 'always');
  const actOff = activationsBytes(m, tokens, eb, false), actOn = activationsBytes(m, tokens, eb, true);
  let ckpt: 'on' | 'off';
  if (t.checkpointing === 'auto') ckpt = !cuda || always + actOff + chunk + reserve <= t.memoryBytes ? 'off' : 'on';
  else ckpt = t.checkpointing;
  add('activations', ckpt === 'on' ? actOn : actOff, 'train', `${t.microBatch} x ${t.promptTokens + t.responseTokens} tokens, ${cuda ? 'bf16' : 'fp32'}, ${ckpt === 'on' ? 'layer inputs only (recomputed per layer)' : 'every layer kept'}${t.checkpointing === 'auto' && cuda ? ' (checkpointing auto)' : ''}`);
  add('logits chunk', chunk, 'train', `${chunkRows} rows x ${m.vocab} fp32, logits and their gradient${kept ? ', + the kept softmax' : ''}`);
  // rollouts' KV cache
  const kvPerToken = m.layers * 2 * m.kvHeads * m.headDim * eb;
  let seqs: number;
  if (cuda) {
    const perGroup = (Math.ceil(t.promptTokens / 16) + t.groupSize * Math.ceil((t.responseTokens + 1) / 16)) * 16 * kvPerToken;
    const asked = Math.max(1, Math.ceil(Math.min(t.decodeSequences ?? 256, t.promptsPerStep * t.groupSize) / t.groupSize));
    const room = Math.floor((t.memoryBytes - always - reserve) / perGroup);
    const groups = Math.max(1, Math.min(asked, room));
    seqs = groups * t.groupSize;
    add('KV cache', groups * perGroup, 'rollout', `${seqs} sequences at once${groups < asked ? ` (of ${asked * t.groupSize} asked: what the memory holds)` : ''}, 16-token pages, prompts shared per group, bf16`);
  } else {
    seqs = Math.min(t.promptsPerStep, Math.max(1, Math.floor(64 / t.groupSize))) * t.groupSize;
    add('KV cache', seqs * (t.promptTokens + t.responseTokens + 1) * kvPerToken, 'rollout', `${seqs} sequences at once, fp32`);
  }
  items.push({ name: 'reserve', bytes: reserve, phase: 'always', note: cuda ? 'CUDA context, workspaces, fragmentation' : 'runtime and OS' });
  const total = sum(items, 'always') + Math.max(sum(items, 'train'), sum(items, 'rollout'));
  return { backend: t.backend, params: P, checkpointing: ckpt, current: !!t.current, decodeSequences: seqs, items, total, memoryBytes: t.memoryBytes, fits: total <= t.memoryBytes };
}

export function formatBytes(b: number): string {
  if (b >= GiB) return `${(b / GiB).toFixed(2)} GiB`;
  if (b >= 2 ** 20) return `${(b / 2 ** 20).toFixed(1)} MiB`;
  return `${(b / 1024).toFixed(1)} KiB`;
}

/** The plan as a table (one line an item, the total against the memory). */
export function formatPlan(p: MemoryPlan): string {
  const w = Math.max(...p.items.map((i) => i.name.length), 'total'.length);
  const params = p.params >= 1e9 ? `${(p.params / 1e9).toFixed(3)}B` : `${(p.params / 1e6).toFixed(2)}M`;
  const lines = [`memory plan (${p.backend}, ${params} parameters, checkpointing ${p.checkpointing}):`];
  for (const i of p.items) lines.push(`  ${i.name.padEnd(w)}  ${formatBytes(i.bytes).padStart(11)}  ${i.phase === 'always' ? '' : `(${i.phase} phase) `}${i.note}`);
  lines.push(`  ${'total'.padEnd(w)}  ${formatBytes(p.total).padStart(11)}  peak (always held + the larger phase) of ${formatBytes(p.memoryBytes)} ${p.backend === 'cuda' ? 'on the device' : 'of host memory'}${p.fits ? '' : ' — DOES NOT FIT'}`);
  return lines.join('\n');
}

/** Null when the plan fits; else a message naming the largest items and what to change. */
export function planRefusal(p: MemoryPlan): string | null {
  if (p.fits) return null;
  const top = [...p.items].filter((i) => i.name !== 'reserve').sort((a, b) => b.bytes - a.bytes).slice(0, 3);
  const by = (n: string) => p.items.find((i) => i.name === n)!.bytes;
  const hints: string[] = [];
  if (by('activations') > 0.2 * p.total) hints.push('lower optim.micro_batch or data.max_response_tokens / data.max_prompt_tokens');
  if (p.backend === 'cuda' && p.checkpointing === 'off') hints.push('set model.checkpointing to auto or on');
  if (by('KV cache') > 0.2 * p.total) hints.push(p.backend === 'cpu' ? 'lower rollout.n or data.max_response_tokens' : 'lower data.max_response_tokens or rollout.n');
  if (by('reference policy') > 0) hints.push('algorithm.kl_coef: 0 drops the reference policy');
  if (p.backend === 'cuda' && by('master weights') > 0) hints.push(p.current ? 'set optim.master_weights to bf16-sr (bf16 master weights, stochastic rounding)' : 'keep the master weights in bf16 (stochastic rounding) or the moments in 8 bits');
  hints.push(p.backend === 'cuda' ? 'use a GPU with more memory or a smaller model' : 'use a machine with more memory, a smaller model, or the cuda backend');
  return `the run does not fit: it needs ${formatBytes(p.total)} but ${p.backend === 'cuda' ? 'the device has' : 'this machine has'} ${formatBytes(p.memoryBytes)}; the largest items: ${top.map((i) => `${i.name} ${formatBytes(i.bytes)}`).join(', ')}. To fit: ${hints.join('; ')}.`;
}
