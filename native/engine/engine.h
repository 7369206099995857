// The engine interface every backend implements (the CPU engine, cpu_model.h; the CUDA engine, cuda_engine.h), and
// the choice of backend. The N-API binding (engine_napi.cpp) sees only this: it validates what JS passes, calls
// these methods and converts the results.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/config.h"
#include "engine/policy_loss.h"

namespace clipo::engine {

// Device memory (Engine::deviceMemory): the bytes the backend's device buffers hold now and their peak since the
// last resetPeakDeviceMemory, and the device's free and total bytes (cudaMemGetInfo).
struct DeviceMemory {
  double currentBytes = 0, peakBytes = 0, freeBytes = 0, totalBytes = 0;
};

class Engine {
 public:
  virtual ~Engine() = default;

  virtual const char* backend() const = 0;  // "cpu" | "cuda"
  virtual const ModelConfig& config() const = 0;
  virtual const ParamLayout& layout() const = 0;
  // a frozen copy has no gradients or optimizer state; training calls throw
  virtual bool frozen() const = 0;

  // ---- weights in and out, as fp32 host values in the layout's flat order (a backend keeps its own precision) ----
  virtual void setParameter(const ParamInfo& p, const float* data) = 0;
  virtual std::vector<float> exportWeights() const = 0;
  virtual std::vector<float> exportGradients() const = 0;  // empty before the first backward
  virtual double stateBytes() const = 0;                    // parameters + gradients + Adam moments
  virtual std::unique_ptr<Engine> clone(bool frozen) const = 0;

  // ---- inference ----
  // tokens [batch*length] -> logits [batch*length*vocab]
  virtual void logits(const int32_t* tokens, int64_t batch, int64_t length, float* out) = 0;
  // sequences concatenated in `tokens`; logprobs of response tokens, optional entropy and pooled final states
  virtual ScoreResult score(const std::vector<int32_t>& tokens, const std::vector<Span>& spans, bool entropy,
                            bool pooled) = 0;
  virtual std::vector<GeneratedSequence> generate(const GenerateRequest& req,
                                                  const std::function<void(int64_t, int64_t)>& progress) = 0;
  // step-wise decoding (continuous batching): sequences join between steps (prefilled at once) and leave when
  // finished or removed; each step advances every live sequence by one token. A sequence's tokens depend only on
  // its prompt, settings, seed, promptIndex and sampleIndex, never on the other sequences in the batch.
  virtual std::vector<int64_t> decodeAdd(const DecodeAddRequest& req) = 0;
  virtual std::vector<DecodeStepToken> decodeStep() = 0;
  virtual bool decodeRemove(int64_t id) = 0;
  virtual int64_t decodeActive() const = 0;

  // ---- training ----
  // forward keeping activations, then backward from d loss / d logp ([B*T] layout of the forward) and optionally
  // d loss / d entropy (same layout)
  virtual ScoreResult forwardTrain(const std::vector<int32_t>& tokens, const std::vector<Span>& spans) = 0;
  virtual void backward(const float* gradLogp, size_t count, const float* gradEntropy = nullptr,
                        size_t entropyCount = 0) = 0;
  // One micro-batch of the policy update (policy_loss.h): forwardTrain, the surrogate loss on its log-probs, the
  // weighted gradient and the entropy bonus's, backward (gradients accumulate until zeroGrad); the activations are
  // released. Only the figures come back: the CUDA engine keeps log-probs, entropies and gradients on the device.
  virtual PolicyLossFigures policyLossBackward(const std::vector<int32_t>& tokens, const std::vector<Span>& spans,
                                               const PolicyLossRequest& req) = 0;
  virtual bool hasActivations() const = 0;
  virtual void releaseActivations() = 0;
  virtual void zeroGrad() = 0;
  virtual double adamw(double lr, double beta1, double beta2, double eps, double weightDecay, double maxGradNorm) = 0;
  virtual OptimizerState optimizerState() const = 0;
  virtual void setOptimizerState(OptimizerState s) = 0;
  // The optimizer's master weights: fp32 (the default) or bf16 rounded stochastically at every step (optim.h
  // AdamwHyper::bf16Master, `seed` picks the rounding bits). Switching to bf16 rounds the weights to bf16 (nearest
  // even) once, so the master is bf16 from then on. A backend without it refuses bf16.
  virtual void setMasterWeights(bool bf16, uint64_t seed) {
    (void)seed;
    if (bf16) throw EngineError(std::string(backend()) + " engine: bf16 master weights are not supported");
  }
  // Per-layer activation recomputation ("checkpointing"): forwardTrain keeps only each layer's input and backward
  // re-runs one layer's forward at a time before its backward; the gradients are the same bits, the memory is one
  // layer's activations instead of all of them. Takes effect at the next forwardTrain. A backend without it refuses.
  virtual void setCheckpointing(bool on) {
    if (on) throw EngineError(std::string(backend()) + " engine: per-layer recomputation (checkpointing) is not supported");
  }
  virtual bool checkpointing() const { return false; }
  // Device memory figures; none (nullopt) for a backend without a device (the CPU engine). The CUDA engine counts
  // every CUDA engine of the process together (cuda_engine.cu DevMemCounter). resetPeak: the peak restarts from the
  // bytes held now (a no-op without a device).
  virtual std::optional<DeviceMemory> deviceMemory() const { return std::nullopt; }
  virtual void resetPeakDeviceMemory() {}
};

// What this build can run: the CPU engine always; the CUDA engine (cuda_engine.h) when the addon was built with CUDA
// and a device is usable. cudaReason says why not.
struct EngineBackends {
  bool cpu = true, cuda = false;
  std::string cudaReason;
};
EngineBackends engineBackends();

// backend "cpu" or "cuda"; a backend this build cannot run throws EngineError saying why. precision: "" (the
// backend's default: fp32 on the CPU, bf16 on CUDA), "fp32", or "bf16" (CUDA only). training: the engine will be
// trained (the bf16 CUDA engine then keeps an fp32 master copy of the weights from the start, so setParameter's exact
// values are the master's; without it the master is made at the first training call from the bf16 weights).
std::unique_ptr<Engine> createEngine(const std::string& backend, const ModelConfig& cfg, int threads,
                                     const std::string& precision = "", bool training = false);

}  // namespace clipo::engine
