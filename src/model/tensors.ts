// The parameter set of a Qwen2 / Llama decoder, by HF name and shape, derived from the config. This is the list a
// model directory must provide and the order in which clipo writes and initializes parameters.
import type { LazyTensor, LazyTensorMap, ModelConfig, Tensor, TensorMap } from './types.js';

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

/**
 * Number of tensors and parameters a config implies (tied embeddings counted once), by arithmetic: a hostile
 * config.json may claim a billion layers, and listing its tensors would run out of memory.
 */
export function configTotals(c: ModelConfig): { tensors: number; params: number } {
  const H = c.hiddenSize, q = c.numHeads * c.headDim, kv = c.numKvHeads * c.headDim, I = c.intermediateSize;
  const layerTensors = 9 + (c.attentionBias ? 3 : 0) + (c.mlpBias ? 4 : 0);
  const layerParams = 2 * H + (q + 2 * kv) * H + H * q + 3 * I * H + (c.attentionBias ? q + 2 * kv : 0) + (c.mlpBias ? 2 * H + 2 * I : 0);
  const heads = c.tieWordEmbeddings ? 1 : 2;
  return { tensors: c.numLayers * layerTensors + 1 + heads, params: c.numLayers * layerParams + H + heads * c.vocabSize * H };
}

/** Number of parameters (tied embeddings counted once). */
export function parameterCount(c: ModelConfig): number {
  return configTotals(c).params;
}

// Buffers some older checkpoints carry that are recomputed from the config, never parameters.
const IGNORED = /\.rotary_emb\.inv_freq$/;

/**
 * Checks a weight map against the config: every expected tensor present with its exact shape, nothing unexpected,
 * and (for tensors already in memory) every value finite. Returns the map to use (buffers dropped; a tied model's
 * redundant lm_head.weight dropped). `where` names the source (a directory) in errors. Lazy tensors (shape only)
 * are checked by shape here; their values by `finiteOnLoad` when they are read.
 */
export function checkWeights(c: ModelConfig, weights: TensorMap, where: string): TensorMap;
export function checkWeights(c: ModelConfig, weights: LazyTensorMap, where: string): LazyTensorMap;
export function checkWeights<T extends Tensor | LazyTensor>(c: ModelConfig, weights: Map<string, T>, where: string): Map<string, T> {
  // first the totals: a config that implies far more tensors than the weights hold (num_hidden_layers: 1e9) fails
  // here, before its tensor list is built; small mismatches get the precise messages of the loop below
  const implied = configTotals(c);
  if (implied.tensors > weights.size + 1024) {
    let present = 0;
    for (const [n, t] of weights) if (!IGNORED.test(n)) present += t.shape.reduce((a, d) => a * d, 1);
    throw new Error(
      `${where}: config.json describes ${implied.params.toExponential(3)} parameters in ${implied.tensors} tensors ` +
        `(num_hidden_layers ${c.numLayers}, hidden_size ${c.hiddenSize}, intermediate_size ${c.intermediateSize}, vocab_size ${c.vocabSize}), ` +
        `but the weights hold ${present} parameters in ${weights.size} tensors: config.json does not match the weights`,
    );
  }
  const specs = expectedTensors(c);
  const out = new Map<string, T>();
  for (const s of specs) {
    const t = weights.get(s.name);
    if (!t) {
      if (s.optional) continue;
      throw new Error(`${where}: tensor '${s.name}' is missing (expected shape [${s.shape.join(', ')}])`);
    }
    if (t.shape.length !== s.shape.length || t.shape.some((d, i) => d !== s.shape[i])) {
      throw new Error(`${where}: tensor '${s.name}' has shape [${t.shape.join(', ')}], expected [${s.shape.join(', ')}] from config.json`);
    }
    if ('data' in t) {
      if (t.data.length !== s.shape.reduce((a, d) => a * d, 1)) {
        throw new Error(`${where}: tensor '${s.name}' holds ${t.data.length} values for shape [${s.shape.join(', ')}]`);
      }
      checkFinite(t.data, s.name, where);
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

function checkFinite(data: Float32Array, name: string, where: string): void {
  const bad = firstNonFinite(data);
  if (bad >= 0) throw new Error(`${where}: tensor '${name}' holds a non-finite value (${data[bad]}) at index ${bad}; the weights are corrupt`);
}

/** The same lazy tensors, each checked for non-finite values as it is read (what checkWeights does for loaded ones). */
export function finiteOnLoad(weights: LazyTensorMap, where: string): LazyTensorMap {
  const out: LazyTensorMap = new Map();
  for (const [name, t] of weights) {
    out.set(name, {
      shape: t.shape, load: () => {
        const data = t.load();
        checkFinite(data, name, where);
        return data;
      },
    });
  }
  return out;
}

/** Index of the first NaN or +-Infinity, -1 when every value is finite. */
export function firstNonFinite(a: Float32Array): number {
  for (let i = 0; i < a.length; i++) {
    const v = a[i]!;
    if (v - v !== 0) return i; // NaN - NaN and Inf - Inf are NaN; finite - itself is 0
  }
  return -1;
}
