// The parameters a config implies (HF names and shapes), and random weights for experiments, tests and benchmarks.
import type { ModelConfig, TensorMap } from '../model/types.js';
import { Rng } from '../util/rng.js';

export function parameterShapes(c: ModelConfig): Array<{ name: string; shape: number[] }> {
  const H = c.hiddenSize, I = c.intermediateSize, qd = c.numHeads * c.headDim, kvd = c.numKvHeads * c.headDim;
  const out: Array<{ name: string; shape: number[] }> = [{ name: 'model.embed_tokens.weight', shape: [c.vocabSize, H] }];
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}.`;
    out.push({ name: p + 'input_layernorm.weight', shape: [H] });
    out.push({ name: p + 'self_attn.q_proj.weight', shape: [qd, H] });
    out.push({ name: p + 'self_attn.k_proj.weight', shape: [kvd, H] });
    out.push({ name: p + 'self_attn.v_proj.weight', shape: [kvd, H] });
    if (c.attentionBias) {
      out.push({ name: p + 'self_attn.q_proj.bias', shape: [qd] });
      out.push({ name: p + 'self_attn.k_proj.bias', shape: [kvd] });
      out.push({ name: p + 'self_attn.v_proj.bias', shape: [kvd] });
    }
    out.push({ name: p + 'self_attn.o_proj.weight', shape: [H, qd] });
    if (c.mlpBias) out.push({ name: p + 'self_attn.o_proj.bias', shape: [H] });
    out.push({ name: p + 'post_attention_layernorm.weight', shape: [H] });
    out.push({ name: p + 'mlp.gate_proj.weight', shape: [I, H] });
    out.push({ name: p + 'mlp.up_proj.weight', shape: [I, H] });
    if (c.mlpBias) {
      out.push({ name: p + 'mlp.gate_proj.bias', shape: [I] });
      out.push({ name: p + 'mlp.up_proj.bias', shape: [I] });
    }
    out.push({ name: p + 'mlp.down_proj.weight', shape: [H, I] });
    if (c.mlpBias) out.push({ name: p + 'mlp.down_proj.bias', shape: [H] });
  }
  out.push({ name: 'model.norm.weight', shape: [H] });
  if (!c.tieWordEmbeddings) out.push({ name: 'lm_head.weight', shape: [c.vocabSize, H] });
  return out;
}

export function countParameters(c: ModelConfig): number {
  return parameterShapes(c).reduce((s, p) => s + p.shape.reduce((a, b) => a * b, 1), 0);
}

/** Random weights: matrices ~ N(0, std^2) (HF's initializer_range, 0.02 by default; `uniform`: U(-a, a) with the
 *  same std), norm weights = 1 (+ optional jitter so tests exercise them), biases like matrices. */
export function randomWeights(c: ModelConfig, opts: { seed?: number; std?: number; normJitter?: number; uniform?: boolean } = {}): TensorMap {
  const rng = new Rng(opts.seed ?? 0);
  const std = opts.std ?? 0.02;
  const jitter = opts.normJitter ?? 0;
  const out: TensorMap = new Map();
  for (const { name, shape } of parameterShapes(c)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    const isNorm = name.endsWith('layernorm.weight') || name === 'model.norm.weight';
    if (opts.uniform && !isNorm) {
      // uniform on [-a, a] with the same standard deviation (a = std * sqrt(3)); much faster for large models
      const a = std * Math.sqrt(3);
      for (let i = 0; i < n; i++) data[i] = a * (2 * rng.next() - 1);
    } else {
      for (let i = 0; i < n; i++) data[i] = isNorm ? 1 + jitter * rng.normal() : std * rng.normal();
    }
    out.set(name, { shape, data });
  }
  return out;
}

/** A small config of either architecture (for tests and benchmarks). */
export function smallConfig(arch: 'qwen2' | 'llama', s: {
  vocab: number; hidden: number; layers: number; heads: number; kvHeads: number; intermediate: number;
  headDim?: number; tie?: boolean; mlpBias?: boolean;
}): ModelConfig {
  const llama = arch === 'llama';
  return {
    architecture: arch,
    hfArchitecture: llama ? 'LlamaForCausalLM' : 'Qwen2ForCausalLM',
    vocabSize: s.vocab,
    hiddenSize: s.hidden,
    intermediateSize: s.intermediate,
    numLayers: s.layers,
    numHeads: s.heads,
    numKvHeads: s.kvHeads,
    headDim: s.headDim ?? s.hidden / s.heads,
    rmsNormEps: 1e-6,
    ropeTheta: llama ? 500000 : 1000000,
    ropeScaling: llama
      ? { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 }
      : null,
    maxPositionEmbeddings: 4096,
    tieWordEmbeddings: s.tie ?? !llama,
    attentionBias: !llama,
    mlpBias: s.mlpBias ?? false,
    bosTokenId: null,
    eosTokenIds: [],
    raw: {},
  };
}
