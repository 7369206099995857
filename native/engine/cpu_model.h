// The CPU engine: the decoder-only transformer (Qwen2ForCausalLM / LlamaForCausalLM) in fp32 with scoring,
// KV-cache sampling, training forward/backward and AdamW. Parameters, gradients and Adam moments are flat buffers
// in the layout of config.h. The kernels it runs are in the per-concern files (norm_rope, attention, mlp, head,
// sampling, gemm); this class holds the state and the order of the passes:
//   cpu_forward.cpp  forward passes (scoring, logits, training forward)
//   cpu_decode.cpp   batched sampling and step-wise decoding with the KV cache
//   cpu_train.cpp    backward and AdamW
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/config.h"
#include "engine/engine.h"
#include "engine/norm_rope.h"

namespace clipo::engine {

class CpuModel final : public Engine {
 public:
  CpuModel(const ModelConfig& cfg, int threads);
  CpuModel(const CpuModel& source, bool frozen);  // a copy of the weights; no grads, no optimizer state

  const char* backend() const override { return "cpu"; }
  const ModelConfig& config() const override { return cfg; }
  const ParamLayout& layout() const override { return lay_; }
  bool frozen() const override { return frozen_; }

  void setParameter(const ParamInfo& p, const float* data) override;
  std::vector<float> exportWeights() const override { return w; }
  std::vector<float> exportGradients() const override { return g; }
  double stateBytes() const override { return 4.0 * static_cast<double>(w.size() + g.size() + m.size() + v.size()); }
  std::unique_ptr<Engine> clone(bool fr) const override { return std::make_unique<CpuModel>(*this, fr); }

  void logits(const int32_t* tokens, int64_t batch, int64_t length, float* out) override;
  ScoreResult score(const std::vector<int32_t>& tokens, const std::vector<Span>& spans, bool entropy,
                    bool pooled) override;
  std::vector<GeneratedSequence> generate(const GenerateRequest& req,
                                          const std::function<void(int64_t, int64_t)>& progress) override;
  std::vector<int64_t> decodeAdd(const DecodeAddRequest& req) override;
  std::vector<DecodeStepToken> decodeStep() override;
  bool decodeRemove(int64_t id) override;
  int64_t decodeActive() const override { return static_cast<int64_t>(live_.size()); }

  ScoreResult forwardTrain(const std::vector<int32_t>& tokens, const std::vector<Span>& spans) override;
  void backward(const float* gradLogp, size_t count, const float* gradEntropy = nullptr,
                size_t entropyCount = 0) override;
  PolicyLossFigures policyLossBackward(const std::vector<int32_t>& tokens, const std::vector<Span>& spans,
                                       const PolicyLossRequest& req) override {
    return policyLossBackwardOnHost(*this, tokens, spans, req);  // policy_loss.cpp: the arrays are on the host anyway
  }
  bool hasActivations() const override { return train_.N > 0; }
  void releaseActivations() override { train_ = TrainState{}; }
  void zeroGrad() override;
  double adamw(double lr, double beta1, double beta2, double eps, double weightDecay, double maxGradNorm) override;
  OptimizerState optimizerState() const override { return OptimizerState{adamSteps, m, v}; }
  void setMasterWeights(bool bf16, uint64_t seed) override;
  void setOptimizerState(OptimizerState s) override;

 private:
  const ModelConfig cfg;
  int threads;
  bool frozen_ = false;
  ParamLayout lay_;
  std::vector<float> w;        // parameters
  std::vector<float> g, m, v;  // gradients and Adam moments (allocated by the first training call)
  int64_t adamSteps = 0;
  bool bf16Master = false;  // setMasterWeights: w holds bf16 values, each step rounds stochastically
  uint64_t masterSeed = 0;
  int64_t qd_ = 0, kvd_ = 0, qkv_ = 0;
  RopeTable rope_;

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
