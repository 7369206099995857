// What every engine backend shares, with no device and no N-API in it: the model config, the parameter layout
// (Hugging Face names -> ranges of one flat buffer), and the request/result types of scoring, sampling and
// step-wise decoding. The CPU engine (cpu_model.h) and the CUDA engine use the same layout, so weights, gradients
// and optimizer state move between them as one flat buffer in this order.
//
// Layout: each Hugging Face tensor is a contiguous range; q/k/v rows are stacked into one [qd + 2 kvd, H] matrix
// (their biases likewise) and gate/up into one [2I, H] matrix, so each layer runs one wide GEMM instead of three
// or two.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace clipo::engine {

struct EngineError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct ModelConfig {
  int64_t vocab = 0, hidden = 0, intermediate = 0, layers = 0, heads = 0, kvHeads = 0, headDim = 0;
  double rmsEps = 1e-6, ropeTheta = 10000.0;
  bool llama3Scaling = false;
  double ropeFactor = 1.0, lowFreqFactor = 1.0, highFreqFactor = 4.0, originalMaxPositions = 8192.0;
  bool tieEmbeddings = false, attentionBias = false, mlpBias = false;
};

// Throws EngineError("invalid model config: ...") when the config cannot describe a model.
void validateConfig(const ModelConfig& c);

// RoPE inverse frequencies invFreq_i = theta^(-2i/d), i < headDim/2, with Llama-3 scaling when configured (as in
// transformers' _compute_llama3_parameters), in double.
std::vector<double> ropeInvFreq(const ModelConfig& c);

struct ParamInfo {
  std::string name;
  std::vector<int64_t> shape;
  size_t offset = 0, size = 0;
};

static constexpr size_t kAbsent = SIZE_MAX;

struct LayerOffsets {
  size_t ln1, wqkv, bqkv, wo, bo, ln2, wgu, bgu, wd, bd;  // kAbsent for a bias the config does not have
};

struct ParamLayout {
  std::vector<ParamInfo> params;  // HF names, in the order of the flat buffer
  std::vector<LayerOffsets> layers;
  size_t embOff = 0, normOff = 0, headOff = 0;  // headOff == embOff with tied embeddings
  size_t total = 0;                              // floats in the flat buffer
  int64_t qd = 0, kvd = 0, qkv = 0;              // heads*headDim, kvHeads*headDim, qd + 2 kvd

  const ParamInfo* find(const std::string& name) const;
};
ParamLayout makeLayout(const ModelConfig& c);

// A sequence inside a concatenated token stream: rows [start, start+length), prompt = first promptLength tokens.
struct Span {
  int64_t start = 0, length = 0, promptLength = 0;
};

struct ScoreResult {
  int64_t T = 0;                 // max response length (padded layout [B*T])
  std::vector<float> logprobs;   // [B*T]
  std::vector<float> entropy;    // [B*T] when asked
  std::vector<float> pooled;     // [B*H] when asked
  std::vector<uint8_t> mask;     // [B*T]
};

struct GenerateRequest {
  std::vector<std::vector<int32_t>> prompts;
  int64_t n = 1, maxNewTokens = 0, maxBatch = 64;
  double temperature = 1.0, topP = 1.0;
  uint64_t seed = 0;
  std::vector<int32_t> stopTokens;
  bool returnPooled = false;
};

// Per-sequence sampling settings of the step-wise decoder (vLLM/OpenAI semantics; the neutral values change
// nothing). Order: repetition penalty and logit bias on the raw logits, then temperature, then top-k, the nucleus
// (top-p, over the top-k set) and min-p (p_i >= minP * p_max).
struct SamplerSettings {
  double temperature = 1.0, topP = 1.0, minP = 0.0, repetitionPenalty = 1.0;
  int64_t topK = 0;                                   // 0: off
  std::vector<std::pair<int32_t, float>> logitBias;   // added to the logits
  int64_t topLogprobs = 0;                            // report the most likely tokens at each step
};

// One token chosen from one row of logits.
struct SampledToken {
  int32_t token = 0;
  float logprob = 0.f;                                // under the processed, temperature-scaled distribution
  std::vector<std::pair<int32_t, float>> top;         // topLogprobs most likely tokens, same distribution
};

// A request joining the running batch of the step-wise decoder: one prompt, n samples.
struct DecodeAddRequest {
  std::vector<int32_t> prompt;
  int64_t n = 1, maxNewTokens = 1, promptIndex = 0;
  uint64_t seed = 0;
  SamplerSettings sampler;
  std::vector<int32_t> stopTokens;
};

struct DecodeStepToken {
  int64_t id = 0;
  SampledToken t;
  bool finished = false, stopped = false;
};

// backward's inputs, as either engine takes them: gradLogp (and gradEntropy, if given) of `expected` values (batch x
// max response length of the forward), every one finite; an EngineError naming the first bad one otherwise.
void checkBackwardGradients(const float* gradLogp, size_t count, const float* gradEntropy, size_t entropyCount,
                            size_t expected);

// The bookkeeping after a live sequence of the step-wise decoder (either backend's; S has generated, maxNewTokens,
// lastToken, history and req, a DecodeAddRequest*) got token out.t.token: count it, keep it for the repetition
// penalty when one is on, and say whether it stopped (a stop token) or finished (stopped, or maxNewTokens reached).
template <typename S>
void recordDecodedToken(S& q, DecodeStepToken& out) {
  const int32_t t = out.t.token;
  ++q.generated;
  q.lastToken = t;
  if (q.req->sampler.repetitionPenalty != 1.0) q.history.push_back(t);
  bool stop = false;
  for (const int32_t s : q.req->stopTokens) stop = stop || s == t;
  out.stopped = stop;
  out.finished = stop || q.generated >= q.maxNewTokens;
}

struct GeneratedSequence {
  int64_t promptIndex = 0, sampleIndex = 0;
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  bool stopped = false;
  std::vector<float> pooled;
};

struct OptimizerState {
  int64_t step = 0;
  std::vector<float> m, v;  // empty before the first step
};

}  // namespace clipo::engine
