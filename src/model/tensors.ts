// The parameter set of a Qwen2 / Llama decoder, by HF name and shape, derived from the config. This is the list a
// model directory must provide and the order in which clipo writes and initializes parameters.
import type { ModelConfig, TensorMap } from './types.js';

export type ParamKind = 'embedding' | 'linear' | 'bias' | 'norm';

export interface ParamSpec {
  name: string;
  shape: number[];
  kind: ParamKind;
  /** lm_head.weight of a model with tied embeddings: may be absent (it is the embedding matrix) */
  optional?: boolean;
}

/** Every parameter of the model, in the order HF modules define them. */
export function expectedTensors(c: ModelConfig): ParamSpec[] {
  const H = c.hiddenSize;
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  const I = c.intermediateSize;
  const specs: ParamSpec[] = [{ name: 'model.embed_tokens.weight', shape: [c.vocabSize, H], kind: 'embedding' }];
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    specs.push({ name: `${p}.input_layernorm.weight`, shape: [H], kind: 'norm' });
    for (const [proj, out] of [['q_proj', q], ['k_proj', kv], ['v_proj', kv]] as const) {
      specs.push({ name: `${p}.self_attn.${proj}.weight`, shape: [out, H], kind: 'linear' });
      if (c.attentionBias) specs.push({ name: `${p}.self_attn.${proj}.bias`, shape: [out], kind: 'bias' });
    }
    specs.push({ name: `${p}.self_attn.o_proj.weight`, shape: [H, q], kind: 'linear' });
    if (c.mlpBias) specs.push({ name: `${p}.self_attn.o_proj.bias`, shape: [H], kind: 'bias' });
    specs.push({ name: `${p}.post_attention_layernorm.weight`, shape: [H], kind: 'norm' });
    for (const [proj, shape] of [['gate_proj', [I, H]], ['up_proj', [I, H]], ['down_proj', [H, I]]] as const) {
      specs.push({ name: `${p}.mlp.${proj}.weight`, shape: [...shape], kind: 'linear' });
      if (c.mlpBias) specs.push({ name: `${p}.mlp.${proj}.bias`, shape: [shape[0]], kind: 'bias' });
    }
  }
  specs.push({ name: 'model.norm.weight', shape: [H], kind: 'norm' });
  specs.push({ name: 'lm_head.weight', shape: [c.vocabSize, H], kind: 'linear', optional: c.tieWordEmbeddings });
  return specs;
}

/** Number of parameters (tied embeddings counted once). */
export function parameterCount(c: ModelConfig): number {
  return expectedTensors(c)
    .filter((s) => !s.optional)
    .reduce((a, s) => a + s.shape.reduce((x, d) => x * d, 1), 0);
}

// Buffers some older checkpoints carry that are recomputed from the config, never parameters.
const IGNORED = /\.rotary_emb\.inv_freq$/;

/**
 * Checks a weight map against the config: every expected tensor present with its exact shape, nothing unexpected.
 * Returns the map to use (buffers dropped; a tied model's redundant lm_head.weight dropped). `where` names the
 * source (a directory) in errors.
 */
export function checkWeights(c: ModelConfig, weights: TensorMap, where: string): TensorMap {
  const specs = expectedTensors(c);
  const out: TensorMap = new Map();
  for (const s of specs) {
    const t = weights.get(s.name);
    if (!t) {
      if (s.optional) continue;
      throw new Error(`${where}: tensor '${s.name}' is missing (expected shape [${s.shape.join(', ')}])`);
    }
    if (t.shape.length !== s.shape.length || t.shape.some((d, i) => d !== s.shape[i])) {
      throw new Error(`${where}: tensor '${s.name}' has shape [${t.shape.join(', ')}], expected [${s.shape.join(', ')}] from config.json`);
    }
    if (t.data.length !== s.shape.reduce((a, d) => a * d, 1)) {
      throw new Error(`${where}: tensor '${s.name}' holds ${t.data.length} values for shape [${s.shape.join(', ')}]`);
    }
    if (s.optional) continue; // tied: the embedding is the output matrix
    out.set(s.name, t);
  }
  const known = new Set(specs.map((s) => s.name));
  const extra = [...weights.keys()].filter((n) => !known.has(n) && !IGNORED.test(n));
  if (extra.length) {
    throw new Error(
      `${where}: unexpected tensor${extra.length > 1 ? 's' : ''} ${extra.slice(0, 3).map((n) => `'${n}'`).join(', ')}` +
        `${extra.length > 3 ? ` and ${extra.length - 3} more` : ''} for ${c.hfArchitecture} as configured (wrong config.json?)`,
    );
  }
  return out;
}
