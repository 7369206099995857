// config.json of a Hugging Face model directory -> a validated ModelConfig, and back.
//
// Supported: Qwen2ForCausalLM (model_type qwen2) and LlamaForCausalLM (model_type llama). Defaults follow the
// transformers config classes (Qwen2Config / LlamaConfig); keys that change the maths but that the engine does not
// implement (sliding windows, other RoPE scalings, activations other than SiLU) are refused rather than ignored.
import { z } from 'zod';
import type { Architecture, ModelConfig, RopeScaling } from './types.js';
import { ConfigError } from '../errors.js';

/** HF class name and model_type per supported architecture. */
export const hfArchitectures: Record<Architecture, { className: string; modelType: string }> = {
  qwen2: { className: 'Qwen2ForCausalLM', modelType: 'qwen2' },
  llama: { className: 'LlamaForCausalLM', modelType: 'llama' },
};

const posInt = z.number().int().positive();
const tokenId = z.number().int().nonnegative();

// Only the keys clipo interprets; everything else passes through untouched (kept in ModelConfig.raw).
const rawSchema = z.looseObject({
  architectures: z.array(z.string()).min(1).optional(),
  model_type: z.string().optional(),
  vocab_size: posInt,
  hidden_size: posInt,
  intermediate_size: posInt,
  num_hidden_layers: posInt,
  num_attention_heads: posInt,
  num_key_value_heads: posInt.nullish(),
  head_dim: posInt.nullish(),
  hidden_act: z.string().optional(),
  rms_norm_eps: z.number().positive().optional(),
  rope_theta: z.number().positive().optional(),
  rope_scaling: z.looseObject({}).nullish(),
  rope_parameters: z.looseObject({}).nullish(),
  max_position_embeddings: posInt.optional(),
  tie_word_embeddings: z.boolean().optional(),
  attention_bias: z.boolean().optional(),
  mlp_bias: z.boolean().optional(),
  use_sliding_window: z.boolean().optional(),
  layer_types: z.array(z.string()).optional(),
  bos_token_id: tokenId.nullish(),
  eos_token_id: z.union([tokenId, z.array(tokenId)]).nullish(),
});

const llama3Schema = z.looseObject({
  factor: z.number().positive(),
  low_freq_factor: z.number().positive(),
  high_freq_factor: z.number().positive(),
  original_max_position_embeddings: posInt,
});

export { ConfigError };

function firstIssue(file: string, error: z.ZodError): ConfigError {
  const issue = error.issues[0]!;
  const key = issue.path.map(String).join('.') || '(root)';
  const missing = issue.code === 'invalid_type' && /received undefined/.test(issue.message);
  return ConfigError.atKey(file, key, missing ? 'missing (required)' : issue.message);
}

/** Parses and validates a config.json object. `file` names the file in error messages. */
export function parseModelConfig(raw: unknown, file = 'config.json'): ModelConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw ConfigError.atKey(file, '(root)', 'expected a JSON object');
  }
  const parsed = rawSchema.safeParse(raw);
  if (!parsed.success) throw firstIssue(file, parsed.error);
  const c = parsed.data;

  const architecture = detectArchitecture(c.architectures, c.model_type, file);
  const err = (key: string, msg: string) => ConfigError.atKey(file, key, msg);

  if (c.hidden_act !== undefined && c.hidden_act !== 'silu') {
    throw err('hidden_act', `'${c.hidden_act}' is not supported (the engine implements SwiGLU with 'silu')`);
  }
  if (c.use_sliding_window === true) {
    throw err('use_sliding_window', 'sliding-window attention is not supported; set it to false');
  }
  // transformers 5 lists the attention kind per layer
  if (c.layer_types) {
    if (c.layer_types.length !== c.num_hidden_layers) {
      throw err('layer_types', `has ${c.layer_types.length} entries but num_hidden_layers = ${c.num_hidden_layers}`);
    }
    const i = c.layer_types.findIndex((t) => t !== 'full_attention');
    if (i >= 0) throw err(`layer_types.${i}`, `'${c.layer_types[i]}' is not supported (only 'full_attention')`);
  }

  const numHeads = c.num_attention_heads;
  const numKvHeads = c.num_key_value_heads ?? numHeads;
  if (numHeads % numKvHeads !== 0) {
    throw err('num_key_value_heads', `${numKvHeads} does not divide num_attention_heads = ${numHeads}`);
  }
  let headDim: number;
  if (c.head_dim != null) {
    headDim = c.head_dim;
  } else {
    if (c.hidden_size % numHeads !== 0) {
      throw err('num_attention_heads', `${numHeads} does not divide hidden_size = ${c.hidden_size} (and no head_dim is given)`);
    }
    headDim = c.hidden_size / numHeads;
  }
  if (headDim % 2 !== 0) throw err('head_dim', `rotary embeddings need an even head dimension, got ${headDim}`);

  // transformers >= 5 moves rope_theta and rope_scaling into rope_parameters; accept both layouts.
  const ropeParams = c.rope_parameters ?? null;
  const ropeThetaRaw = c.rope_theta ?? (ropeParams?.rope_theta as unknown);
  if (ropeThetaRaw !== undefined && !(typeof ropeThetaRaw === 'number' && ropeThetaRaw > 0)) {
    throw err(c.rope_theta !== undefined ? 'rope_theta' : 'rope_parameters.rope_theta', `expected a positive number, got ${JSON.stringify(ropeThetaRaw)}`);
  }
  const ropeTheta = (ropeThetaRaw as number | undefined) ?? 10000;
  const ropeScaling = parseRopeScaling(c.rope_scaling ?? ropeParams, c.rope_scaling ? 'rope_scaling' : 'rope_parameters', file);

  // Biases. Qwen2 always has q/k/v biases and nothing else. Llama's attention_bias puts a bias on q, k, v AND o;
  // mlp_bias on gate/up/down. ModelConfig.mlpBias covers o_proj and the MLP together, so Llama must set both or
  // neither (the released Llama models set neither).
  let attentionBias: boolean;
  let mlpBias: boolean;
  if (architecture === 'qwen2') {
    attentionBias = true;
    mlpBias = false;
    if (c.mlp_bias === true) throw err('mlp_bias', 'Qwen2 has no MLP biases; mlp_bias: true is not supported');
  } else {
    attentionBias = c.attention_bias ?? false;
    mlpBias = c.mlp_bias ?? false;
    if (attentionBias !== mlpBias) {
      throw err(
        attentionBias ? 'mlp_bias' : 'attention_bias',
        `attention_bias = ${attentionBias} with mlp_bias = ${mlpBias} is not supported (set both to the same value)`,
      );
    }
  }

  const eos = c.eos_token_id;
  const eosTokenIds = eos == null ? [] : Array.isArray(eos) ? [...eos] : [eos];
  for (const [key, id] of [['bos_token_id', c.bos_token_id], ...eosTokenIds.map((e) => ['eos_token_id', e] as const)] as const) {
    if (id != null && id >= c.vocab_size) throw err(key, `token id ${id} is outside the vocabulary (vocab_size = ${c.vocab_size})`);
  }

  return {
    architecture,
    hfArchitecture: hfArchitectures[architecture].className,
    vocabSize: c.vocab_size,
    hiddenSize: c.hidden_size,
    intermediateSize: c.intermediate_size,
    numLayers: c.num_hidden_layers,
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: c.rms_norm_eps ?? 1e-6,
    ropeTheta,
    ropeScaling,
    maxPositionEmbeddings: c.max_position_embeddings ?? (architecture === 'qwen2' ? 32768 : 2048),
    tieWordEmbeddings: c.tie_word_embeddings ?? false,
    attentionBias,
    mlpBias,
    bosTokenId: c.bos_token_id ?? null,
    eosTokenIds,
    raw: { ...(raw as Record<string, unknown>) },
  };
}

function detectArchitecture(architectures: string[] | undefined, modelType: string | undefined, file: string): Architecture {
  const known = Object.entries(hfArchitectures) as Array<[Architecture, { className: string; modelType: string }]>;
  if (architectures) {
    const name = architectures[0]!;
    const hit = known.find(([, v]) => v.className === name);
    if (!hit) {
      throw ConfigError.atKey(file, 'architectures', `'${name}' is not supported (supported: ${known.map(([, v]) => v.className).join(', ')})`);
    }
    if (modelType !== undefined && modelType !== hit[1].modelType) {
      throw ConfigError.atKey(file, 'model_type', `'${modelType}' does not match architectures[0] = '${name}' (expected '${hit[1].modelType}')`);
    }
    return hit[0];
  }
  if (modelType === undefined) throw ConfigError.atKey(file, 'architectures', 'missing (neither architectures nor model_type is given)');
  const hit = known.find(([, v]) => v.modelType === modelType);
  if (!hit) throw ConfigError.atKey(file, 'model_type', `'${modelType}' is not supported (supported: ${known.map(([, v]) => v.modelType).join(', ')})`);
  return hit[0];
}

function parseRopeScaling(rs: Record<string, unknown> | null, key: string, file: string): RopeScaling | null {
  if (!rs) return null;
  const type = (rs.rope_type ?? rs.type ?? 'default') as unknown;
  if (type === 'default') return null;
  if (type !== 'llama3') {
    throw ConfigError.atKey(file, `${key}.rope_type`, `${JSON.stringify(type)} is not supported (supported: 'default', 'llama3')`);
  }
  const p = llama3Schema.safeParse(rs);
  if (!p.success) {
    const issue = p.error.issues[0]!;
    const missing = issue.code === 'invalid_type' && /received undefined/.test(issue.message);
    throw ConfigError.atKey(file, `${key}.${issue.path.map(String).join('.')}`, missing ? 'missing (required for llama3 scaling)' : issue.message);
  }
  if (p.data.high_freq_factor <= p.data.low_freq_factor) {
    throw ConfigError.atKey(file, `${key}.high_freq_factor`, `must be greater than low_freq_factor (${p.data.low_freq_factor})`);
  }
  return {
    type: 'llama3',
    factor: p.data.factor,
    lowFreqFactor: p.data.low_freq_factor,
    highFreqFactor: p.data.high_freq_factor,
    originalMaxPositionEmbeddings: p.data.original_max_position_embeddings,
  };
}

export type SaveDtype = 'f32' | 'bf16';
export const torchDtypeName: Record<SaveDtype, string> = { f32: 'float32', bf16: 'bfloat16' };

/**
 * The config.json object to write for `config`: the original keys (so nothing clipo does not interpret is lost)
 * with the interpreted ones set from the ModelConfig, the architecture names, and torch_dtype for the saved weights.
 */
export function modelConfigToJson(config: ModelConfig, dtype: SaveDtype): Record<string, unknown> {
  const arch = hfArchitectures[config.architecture];
  const out: Record<string, unknown> = { ...config.raw };
  out.architectures = [arch.className];
  out.model_type = arch.modelType;
  out.vocab_size = config.vocabSize;
  out.hidden_size = config.hiddenSize;
  out.intermediate_size = config.intermediateSize;
  out.num_hidden_layers = config.numLayers;
  out.num_attention_heads = config.numHeads;
  out.num_key_value_heads = config.numKvHeads;
  if ('head_dim' in out || config.headDim * config.numHeads !== config.hiddenSize) out.head_dim = config.headDim;
  out.hidden_act = 'silu';
  out.rms_norm_eps = config.rmsNormEps;
  out.max_position_embeddings = config.maxPositionEmbeddings;
  out.tie_word_embeddings = config.tieWordEmbeddings;
  if (config.architecture === 'llama') {
    out.attention_bias = config.attentionBias;
    out.mlp_bias = config.mlpBias;
  }
  const scaling = config.ropeScaling
    ? {
        rope_type: 'llama3',
        factor: config.ropeScaling.factor,
        low_freq_factor: config.ropeScaling.lowFreqFactor,
        high_freq_factor: config.ropeScaling.highFreqFactor,
        original_max_position_embeddings: config.ropeScaling.originalMaxPositionEmbeddings,
      }
    : null;
  if (out.rope_parameters && typeof out.rope_parameters === 'object') {
    out.rope_parameters = { ...(out.rope_parameters as object), ...(scaling ?? { rope_type: 'default' }), rope_theta: config.ropeTheta };
  } else {
    out.rope_theta = config.ropeTheta;
    out.rope_scaling = scaling;
  }
  out.bos_token_id = config.bosTokenId;
  out.eos_token_id = config.eosTokenIds.length === 1 ? config.eosTokenIds[0] : config.eosTokenIds.length ? [...config.eosTokenIds] : null;
  // transformers < 5 reads torch_dtype, >= 5 writes dtype; keep whichever the original had, torch_dtype by default.
  if ('dtype' in out) out.dtype = torchDtypeName[dtype];
  else out.torch_dtype = torchDtypeName[dtype];
  return out;
}
