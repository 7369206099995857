// The policy model on the CPU: a decoder-only transformer (Qwen2ForCausalLM / LlamaForCausalLM) in fp32 with
// scoring, KV-cache sampling, training forward/backward and AdamW. Parameters, gradients and Adam moments are
// flat buffers; each Hugging Face tensor is a contiguous range of them (q/k/v rows stacked into one matrix, gate/up
// likewise, so each layer runs one wide GEMM instead of three or two).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <stdexcept>
#include <string>
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

struct ParamInfo {
  std::string name;
  std::vector<int64_t> shape;
  size_t offset = 0, size = 0;
};

static constexpr size_t kAbsent = SIZE_MAX;

struct LayerOffsets {
  size_t ln1, wqkv, bqkv, wo, bo, ln2, wgu, bgu, wd, bd;
};

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

// One token chosen from one row of logits (also exposed for tests of the sampler against a reference).
struct SampledToken {
  int32_t token = 0;
  float logprob = 0.f;                                // under the processed, temperature-scaled distribution
  std::vector<std::pair<int32_t, float>> top;         // topLogprobs most likely tokens, same distribution
};
SampledToken sampleLogits(const float* z, int64_t V, const SamplerSettings& s, const std::vector<int32_t>& history,
                          double u);

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

struct GeneratedSequence {
  int64_t promptIndex = 0, sampleIndex = 0;
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  bool stopped = false;
  std::vector<float> pooled;
};

class Model {
 public:
  Model(const ModelConfig& cfg, int threads);
  Model(const Model& source, bool frozen);  // a copy of the weights; no grads, no optimizer state

  const ModelConfig cfg;
  int threads;
  bool frozen = false;
  std::vector<ParamInfo> params;  // HF names, in the order of the flat buffer
  std::vector<float> w;           // parameters
  std::vector<float> g, m, v;     // gradients and Adam moments (allocated by the first training call)
  int64_t adamSteps = 0;

  size_t numParams() const { return w.size(); }
  const ParamInfo* find(const std::string& name) const;

  // tokens [batch*length] -> logits [batch*length*vocab]
  void logits(const int32_t* tokens, int64_t batch, int64_t length, float* out);
  // sequences concatenated in `tokens`; logprobs of response tokens, optional entropy and pooled final states
  ScoreResult score(const std::vector<int32_t>& tokens, const std::vector<Span>& spans, bool entropy, bool pooled);
  std::vector<GeneratedSequence> generate(const GenerateRequest& req,
                                          const std::function<void(int64_t, int64_t)>& progress);

  // step-wise decoding (continuous batching): sequences join between steps (prefilled at once) and leave when
  // finished or removed; each step advances every live sequence by one token. A sequence's tokens depend only on
  // its prompt, settings, seed, promptIndex and sampleIndex (its random stream is the one generate() gives prompt
  // promptIndex, sample sampleIndex), never on the other sequences in the batch.
  std::vector<int64_t> decodeAdd(const DecodeAddRequest& req);
  std::vector<DecodeStepToken> decodeStep();
  bool decodeRemove(int64_t id);
  int64_t decodeActive() const { return static_cast<int64_t>(live_.size()); }

  // training: forward keeping activations, then backward from d loss / d logp ([B*T] layout of the forward)
  ScoreResult forwardTrain(const std::vector<int32_t>& tokens, const std::vector<Span>& spans);
  // gradEntropy (optional, same layout): d loss / d entropy of each position, for an entropy bonus
  void backward(const float* gradLogp, size_t count, const float* gradEntropy = nullptr, size_t entropyCount = 0);
  bool hasActivations() const { return train_.N > 0; }
  void zeroGrad();
  double adamw(double lr, double beta1, double beta2, double eps, double weightDecay, double maxGradNorm);
  void releaseActivations() { train_ = TrainState{}; }

 private:
  size_t embOff_ = 0, normOff_ = 0, headOff_ = 0;
  std::vector<LayerOffsets> lay_;
  int64_t qd_ = 0, kvd_ = 0, qkv_ = 0;
  std::vector<double> invFreq_;
  std::vector<float> cos_, sin_;  // [positions][headDim/2], grown on demand
  int64_t ropeLen_ = 0;

  struct LayerActs {
    float *xin, *xn1, *rstd1, *qkv, *o, *lse, *x1, *xn2, *rstd2, *gu, *act, *xout;
  };
  struct KVCache {
    int64_t layers = 0, kvd = 0;
    std::vector<std::vector<float>> k, v;  // per slot: [layers][capacity][kvd]
    std::vector<int64_t> capacity;
    float* K(int64_t slot, int64_t l) { return k[slot].data() + l * capacity[slot] * kvd; }
    float* V(int64_t slot, int64_t l) { return v[slot].data() + l * capacity[slot] * kvd; }
  };
  struct TrainState {
    int64_t N = 0, T = 0;
    std::vector<Span> spans;
    std::vector<int32_t> tokens;
    std::vector<int32_t> pos;
    std::vector<float> res, xn1, rstd1, qkv, o, lse, x1, xn2, rstd2, gu, xf, rstdF;
    std::vector<int64_t> headRows, headTargets, headOut;  // row that predicts, token predicted, index in [B*T]
    std::vector<float> probs;  // [rows x vocab] softmax of the head rows, kept when small enough (else recomputed)
  };
  TrainState train_;

  struct LiveSeq {
    int64_t id = 0, slot = 0, promptIndex = 0, sampleIndex = 0, nextPos = 0, maxNewTokens = 0;
    uint64_t seed = 0;
    std::shared_ptr<const DecodeAddRequest> req;  // shared by the n samples of one request
    std::vector<int32_t> history;                 // prompt + generated (repetition penalty)
    int64_t generated = 0;
    int32_t lastToken = 0;
    std::vector<float> logits;                    // the row the next token is drawn from
    bool needsForward = false;
  };
  KVCache dcache_;
  std::vector<int64_t> freeSlots_;
  std::vector<LiveSeq> live_;
  int64_t nextId_ = 1;
  void freeSlot(int64_t slot);

  void layout();
  void ensureRope(int64_t positions);
  void ensureGrads();
  float* P(size_t off) { return w.data() + off; }
  const float* P(size_t off) const { return w.data() + off; }

  void embed(const int32_t* tokens, int64_t N, float* x) const;
  void rmsnorm(const float* x, const float* weight, float* y, float* rstd, int64_t N) const;
  void rope(float* x, int64_t rowStride, int64_t N, int64_t nHeads, const int32_t* pos, bool inverse) const;
  void linear(int64_t N, int64_t out, int64_t in, const float* X, size_t wOff, size_t bOff, float* Y, bool rows);
  // one transformer block; spans != null: causal attention inside each span (+ optional prefill into the cache);
  // otherwise decode rows against the cache
  void layerForward(int64_t l, int64_t N, const int32_t* pos, const std::vector<Span>* spans, KVCache* cache,
                    const std::vector<std::vector<int64_t>>* prefillSlots, const int64_t* rowSlot, LayerActs& a,
                    bool rowsKernel);
  void forwardStream(const std::vector<int32_t>& tokens, const std::vector<Span>& spans, std::vector<int32_t>& pos,
                     float* xf, KVCache* cache, const std::vector<std::vector<int64_t>>* prefillSlots);
  // log-softmax over the vocabulary, row by row, for rows of xf; fills logp, entropy (optional)
  void headLogprobs(const float* xf, const std::vector<int64_t>& rows, const std::vector<int64_t>& targets,
                    float* logp, float* entropy, float* keepProbs = nullptr);
};

}  // namespace clipo::engine
