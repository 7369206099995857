// Fresh models for small experiments: a complete HF config.json for the chosen shape, and random weights
// initialized as transformers' _init_weights does (embeddings and linear weights ~ N(0, initializer_range^2),
// biases 0, RMSNorm weights 1).
import { hfArchitectures, parseModelConfig } from './config.js';
import { expectedTensors } from './tensors.js';
import type { Architecture, ModelConfig, TensorMap } from './types.js';
import { Rng } from '../util/rng.js';

export interface InitShape {
  architecture: Architecture;
  numLayers: number;
  hiddenSize: number;
  numHeads: number;
  numKvHeads: number;
  intermediateSize: number;
  vocabSize: number;
  tieWordEmbeddings?: boolean;
  ropeTheta?: number;
  maxPositionEmbeddings?: number;
  bosTokenId?: number | null;
  eosTokenIds?: number[];
  padTokenId?: number | null;
  initializerRange?: number;
}

/** The config.json a fresh model gets (the keys transformers writes for these classes). */
export function initConfigJson(s: InitShape): Record<string, unknown> {
  const arch = hfArchitectures[s.architecture];
  const eos = s.eosTokenIds ?? [];
  const common: Record<string, unknown> = {
    architectures: [arch.className],
    model_type: arch.modelType,
    vocab_size: s.vocabSize,
    hidden_size: s.hiddenSize,
    intermediate_size: s.intermediateSize,
    num_hidden_layers: s.numLayers,
    num_attention_heads: s.numHeads,
    num_key_value_heads: s.numKvHeads,
    head_dim: Math.floor(s.hiddenSize / s.numHeads),
    hidden_act: 'silu',
    rms_norm_eps: 1e-6,
    rope_theta: s.ropeTheta ?? 10000,
    rope_scaling: null,
    max_position_embeddings: s.maxPositionEmbeddings ?? 4096,
    initializer_range: s.initializerRange ?? 0.02,
    tie_word_embeddings: s.tieWordEmbeddings ?? false,
    attention_dropout: 0,
    use_cache: true,
    bos_token_id: s.bosTokenId ?? null,
    eos_token_id: eos.length === 1 ? eos[0] : eos.length ? eos : null,
    pad_token_id: s.padTokenId ?? null,
  };
  if (s.architecture === 'llama') {
    return { ...common, attention_bias: false, mlp_bias: false, pretraining_tp: 1 };
  }
  // Qwen2Config has no head_dim key (it is hidden/heads); sliding windows off as in the released models.
  const { head_dim: _unused, ...rest } = common;
  return { ...rest, use_sliding_window: false, sliding_window: null, max_window_layers: s.numLayers };
}

/** Random weights for `config` from a seeded generator: same seed, same weights. */
export function randomWeights(config: ModelConfig, seed: number, std = 0.02): TensorMap {
  const rng = new Rng(seed);
  const weights: TensorMap = new Map();
  for (const spec of expectedTensors(config)) {
    if (spec.optional) continue; // tied lm_head: the embedding
    const n = spec.shape.reduce((a, d) => a * d, 1);
    const data = new Float32Array(n);
    if (spec.kind === 'norm') data.fill(1);
    else if (spec.kind !== 'bias') fillNormal(rng, data, std);
    weights.set(spec.name, { shape: [...spec.shape], data });
  }
  return weights;
}

/** Config + weights for a fresh model. */
export function initModel(s: InitShape, seed: number): { config: ModelConfig; weights: TensorMap } {
  const config = parseModelConfig(initConfigJson(s), 'model init');
  return { config, weights: randomWeights(config, seed, s.initializerRange ?? 0.02) };
}

/**
 * data[i] ~ N(0, std^2) by Marsaglia's polar method: a uniform point (u, v) in the unit disc, s = u^2 + v^2, gives two
 * independent normals u*f and v*f with f = sqrt(-2 ln s / s); no trigonometry, ~4x faster than Box-Muller per value.
 */
export function fillNormal(rng: Rng, data: Float32Array, std: number): void {
  for (let i = 0; i < data.length; i += 2) {
    let u: number;
    let v: number;
    let s: number;
    do {
      u = 2 * rng.next() - 1;
      v = 2 * rng.next() - 1;
      s = u * u + v * v;
    } while (s >= 1 || s === 0);
    const f = std * Math.sqrt((-2 * Math.log(s)) / s);
    data[i] = u * f;
    if (i + 1 < data.length) data[i + 1] = v * f;
  }
}
