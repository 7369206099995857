// The contract between the model-directory code (src/model: config.json, safetensors, tokenizer) and the native
// engine (native/engine, src/engine): a validated architecture description plus named fp32 tensors using the
// Hugging Face parameter names (model.layers.0.self_attn.q_proj.weight, ...), row-major like torch.

export type Architecture = 'qwen2' | 'llama';

export interface RopeScaling {
  /** 'llama3' (Llama-3.1 frequency scaling) or 'default' (none) */
  type: 'default' | 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

export interface ModelConfig {
  architecture: Architecture;
  /** the HF class name, written back on save: Qwen2ForCausalLM | LlamaForCausalLM */
  hfArchitecture: string;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  /** q/k/v projections carry a bias (Qwen2: true, Llama: false) */
  attentionBias: boolean;
  /** o_proj and MLP biases (Llama's mlp_bias/attention_bias options; false for the paper's models) */
  mlpBias: boolean;
  bosTokenId: number | null;
  eosTokenIds: number[];
  /** the original config.json, kept so that saving preserves keys clipo does not interpret */
  raw: Record<string, unknown>;
}

export interface Tensor {
  shape: number[];
  data: Float32Array;
}

/** Parameters by HF name. */
export type TensorMap = Map<string, Tensor>;

/** A tensor whose values are read (from disk, as fp32) only when `load` is called: the shape is known up front. */
export interface LazyTensor {
  shape: number[];
  load(): Float32Array;
}

/** Parameters by HF name, read one at a time by whoever consumes them (Engine.create), never all at once. */
export type LazyTensorMap = Map<string, LazyTensor>;
