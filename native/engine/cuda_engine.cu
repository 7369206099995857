// The CUDA engine: the transformer of cpu_forward.cpp on one GPU, in bf16 (default) or fp32 storage (a template over
// the storage type T; arithmetic fp32 in both). The kernels are the CUDA twins of the CPU kernels (norm_rope.cu,
// attention.cu, mlp.cu, head.cu, gemm.cu); this file holds the state and the order of the passes.
//
// Memory: the parameters are one device buffer in the layout of config.h (T per value; tied embeddings share the
// embedding rows). Activations of one pass live in buffers grown on demand. A layer is
//   r = r + delta; xn = RMSNorm(r)            (rmsnormResidualCuda: the previous block's output added in place)
//   qkv = xn Wqkv^T + b; RoPE on q and k; attention -> o
//   r = r + (o Wo^T + b); xn = RMSNorm(r)
//   delta = down(swiglu(xn Wgu^T + b)) + b
// KV cache (decoding): paged as in vLLM (attention.h, KvCacheShape), per layer one K and one V pool of blocks of
// kBlockSize positions. A sequence holds a table of block ids; the n samples of one prompt share the prompt's full
// blocks (reference counts) and each has its own copy of the partial last block. Finished or removed sequences
// release their blocks; the pool grows (doubling, contents copied) when no block is free.
// Sampling (sampleRows): on the device. A step's last-row logits stay there ([rows x V] fp32 from the head GEMM, plus
// the prompt's last row for sequences drawing their first token) and the CUDA sampler (sampling.cu, sampleRowsCuda:
// one block per row) picks every token by the CPU sampler's rules with the same random stream (formulas.h uniformAt),
// so fp32 mode picks the CPU's tokens. Per step only the rows' SampleRowParams, the logit-bias slices (one per
// request) and the repetition-penalty tokens that are NEW since the last step go up; each sequence's distinct
// history (prompt + output) lives in a slice of a device pool (penPool_), appended to as tokens first appear, so a
// step never rebuilds it. Only tokens, log-probs and the top log-probs come back.
// Training (forward keeping every layer's activations, backward, AdamW): cuda_train.cuh, included at the end.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "common/cuda_common.cuh"
#include "engine/attention.h"
#include "engine/config.h"
#include "engine/cuda_engine.h"
#include "engine/cuda_storage.cuh"
#include "engine/cuda_util.cuh"
#include "engine/engine.h"
#include "engine/formulas.h"
#include "engine/gemm.h"
#include "engine/head.h"
#include "engine/mlp.h"
#include "engine/norm_rope.h"
#include "engine/sampling.h"

namespace clipo::engine {

namespace {

using namespace cudatwin;

constexpr int64_t kBlockSize = 16;        // positions per KV-cache block
constexpr int64_t kGroupTokens = 4096;    // scoring: sequences per pass up to about this many tokens (as the CPU)
constexpr int kThreads = 256;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    const std::string msg = std::string("cuda engine: ") + what + ": " + cudaGetErrorString(e);
    cudaGetLastError();
    throw EngineError(msg);
  }
}
void check(const char* err) {
  if (err && *err) throw EngineError(std::string("cuda engine: ") + err);
}

std::string mib(double bytes) { return std::to_string(static_cast<long long>(std::ceil(bytes / (1024.0 * 1024.0)))) + " MiB"; }

// Throws a clear EngineError when `bytes` more device memory will not fit (before any of it is allocated).
void requireFree(double bytes, const std::string& what) {
  size_t freeB = 0, totalB = 0;
  check(cudaMemGetInfo(&freeB, &totalB), "cudaMemGetInfo");
  if (bytes > static_cast<double>(freeB))
    throw EngineError("out of GPU memory: " + what + " needs " + mib(bytes) + ", the GPU has " +
                      mib(static_cast<double>(freeB)) + " free of " + mib(static_cast<double>(totalB)));
}

// The bytes the engine's device buffers (DevBuf, the one place the engine allocates device memory) hold now, and
// their peak since the last resetPeakDeviceMemory. Process-wide: one count over every CUDA engine of the process (a
// policy and its frozen reference copy share the GPU, so their sum is what must fit; a DevBuf does not know its
// engine). Not counted: the CUDA context, cuBLASLt's workspace per stream (32 MiB, gpulibs) and the allocator's
// rounding; cudaMemGetInfo's free/total (Engine::deviceMemory) see those.
struct DevMemCounter {
  std::atomic<int64_t> current{0}, peak{0};
};
DevMemCounter& devMem() {
  static DevMemCounter c;
  return c;
}
void countAlloc(size_t bytes) {
  DevMemCounter& c = devMem();
  const int64_t now = c.current.fetch_add(static_cast<int64_t>(bytes)) + static_cast<int64_t>(bytes);
  int64_t p = c.peak.load();
  while (now > p && !c.peak.compare_exchange_weak(p, now)) {
  }
}
void countFree(size_t bytes) { devMem().current.fetch_sub(static_cast<int64_t>(bytes)); }

// A device buffer of `count` values of T; resize drops the contents (grow only).
template <typename T>
struct DevBuf {
  T* p = nullptr;
  size_t n = 0;
  DevBuf() = default;
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  DevBuf(DevBuf&& o) noexcept : p(o.p), n(o.n) { o.p = nullptr, o.n = 0; }
  DevBuf& operator=(DevBuf&& o) noexcept {
    if (this != &o) {
      release();
      p = o.p, n = o.n;
      o.p = nullptr, o.n = 0;
    }
    return *this;
  }
  ~DevBuf() { release(); }
  void release() {
    if (p) {
      cudaFree(p);
      countFree(n * sizeof(T));
    }
    p = nullptr, n = 0;
  }
  void ensure(size_t count) {
    if (count <= n && p) return;
    release();
    void* q = nullptr;
    const size_t bytes = std::max<size_t>(count, 1) * sizeof(T);
    const cudaError_t e = cudaMalloc(&q, bytes);
    if (e != cudaSuccess) {
      cudaGetLastError();
      throw EngineError("out of GPU memory: could not allocate " + mib(static_cast<double>(bytes)) + " (" +
                        cudaGetErrorString(e) + ")");
    }
    p = static_cast<T*>(q);
    n = std::max<size_t>(count, 1);
    countAlloc(bytes);
  }
};

template <typename T>
__global__ void fromFloatKernel(const float* __restrict__ src, T* __restrict__ dst, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] = fromF<T>(src[i]);
}
template <typename T>
__global__ void toFloatKernel(const T* __restrict__ src, float* __restrict__ dst, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] = toF(src[i]);
}
// out[b, j] = mean over rows [start[b], start[b] + count[b]) of xf[., j], summed in double (head.cpp meanRows)
template <typename T>
__global__ void meanRowsKernel(const T* __restrict__ xf, int64_t H, const int32_t* __restrict__ start,
                               const int32_t* __restrict__ count, float* __restrict__ out) {
  const int64_t b = blockIdx.x;
  const int64_t s = start[b], c = count[b];
  for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
    double acc = 0.0;
    for (int64_t r = 0; r < c; ++r) acc += static_cast<double>(toF(xf[(s + r) * H + j]));
    out[b * H + j] = c > 0 ? static_cast<float>(acc / static_cast<double>(c)) : 0.f;
  }
}

// dst[idx[i]] = val[i]: the repetition-penalty tokens new at this step, appended to their sequences' slices
__global__ void scatterIntsKernel(int32_t* __restrict__ dst, const int64_t* __restrict__ idx,
                                  const int32_t* __restrict__ val, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[idx[i]] = val[i];
}

// How a pass attends: inside spans (prefill, scoring, logits; optional writes of k/v into the cache), or one row per
// sequence against the cache (decoding).
struct AttnPlan {
  bool decode = false;
  // spans
  const int32_t *spanStart = nullptr, *spanLen = nullptr;
  int64_t nSpans = 0, maxLen = 0;
  std::vector<const int32_t*> writeSlots;  // each: device int32 [N], -1 skips a row
  // decode
  const int32_t *blockTables = nullptr, *seqLens = nullptr;
  int64_t maxBlocksPerSeq = 0, maxSeqLen = 0;
};

template <typename T>
class CudaModel final : public Engine {
 public:
  CudaModel(const ModelConfig& c, int threads) : cfg_(c), threads_(std::max(1, threads)) {
    validateConfig(c);
    // a CLIPO_CUDA_GEMM setting that cannot be honoured is an error here, before any work
    if (const CudaGemmChoice g = cudaGemmChoice(); !g.error.empty()) throw EngineError("cuda engine: " + g.error);
    lay_ = makeLayout(c);
    rope_.invFreq = ropeInvFreq(c);
    const double bytes = static_cast<double>(lay_.total) * sizeof(T);
    requireFree(bytes * 1.05 + 64.0 * 1024 * 1024, std::string("the weights (") + (sizeof(T) == 2 ? "bf16" : "fp32") + ")");
    check(cudaStreamCreate(&stream_), "cudaStreamCreate");
    w_.ensure(lay_.total);
    check(cudaMemsetAsync(w_.p, 0, lay_.total * sizeof(T), stream_), "cudaMemsetAsync");
    sync();
  }
  CudaModel(const CudaModel& s, bool frozen) : CudaModel(s.cfg_, s.threads_) {
    frozen_ = frozen;
    recompute_ = !frozen && s.recompute_;
    check(cudaMemcpyAsync(w_.p, s.w_.p, lay_.total * sizeof(T), cudaMemcpyDeviceToDevice, stream_), "clone copy");
    sync();
  }
  // bf16 storage: make the fp32 master copy now, before setParameter (which then writes both copies), so that training
  // starts from the exact values given rather than their bf16 rounding
  void keepMaster() {
    if constexpr (sizeof(T) == 2) {
      if (master_.p || bf16Master_) return;
      requireFree(4.0 * static_cast<double>(lay_.total), "the fp32 master weights");
      master_.ensure(lay_.total);
      toFloat(w_.p, master_.p, static_cast<int64_t>(lay_.total));
      sync();
    }
  }
  ~CudaModel() override {
    if (stream_) {
      cudaStreamSynchronize(stream_);
      gemmCudaReleaseStream(stream_);  // cuBLASLt's workspace of this stream
      cudaStreamDestroy(stream_);
    }
  }

  const char* backend() const override { return "cuda"; }
  const ModelConfig& config() const override { return cfg_; }
  const ParamLayout& layout() const override { return lay_; }
  bool frozen() const override { return frozen_; }

  void setParameter(const ParamInfo& p, const float* data) override {
    if (p.size == 0) return;
    if constexpr (sizeof(T) == sizeof(float)) {
      check(cudaMemcpyAsync(w_.p + p.offset, data, p.size * sizeof(float), cudaMemcpyHostToDevice, stream_), "upload");
    } else {
      // one tensor at a time through an fp32 staging buffer, converted on the device
      staging_.ensure(p.size);
      check(cudaMemcpyAsync(staging_.p, data, p.size * sizeof(float), cudaMemcpyHostToDevice, stream_), "upload");
      const int64_t n = static_cast<int64_t>(p.size);
      fromFloatKernel<T><<<gridFor(n, kThreads), kThreads, 0, stream_>>>(staging_.p, w_.p + p.offset, n);
      check(launched("convert weights"));
      // a model being trained: its fp32 master copy takes the exact values too
      if (master_.p)
        check(cudaMemcpyAsync(master_.p + p.offset, staging_.p, p.size * sizeof(float), cudaMemcpyDeviceToDevice,
                              stream_), "upload");
    }
    sync();
    staging_.release();
  }
  std::vector<float> exportWeights() const override {
    std::vector<float> out(lay_.total);
    if (master_.p) {  // bf16 being trained: the fp32 master (the working copy is its rounding)
      check(cudaMemcpy(out.data(), master_.p, lay_.total * sizeof(float), cudaMemcpyDeviceToHost), "download");
    } else if constexpr (sizeof(T) == sizeof(float)) {
      check(cudaMemcpy(out.data(), w_.p, lay_.total * sizeof(float), cudaMemcpyDeviceToHost), "download");
    } else {
      const size_t chunk = size_t{1} << 20;
      std::vector<T> buf(std::min(chunk, lay_.total));
      for (size_t at = 0; at < lay_.total; at += chunk) {
        const size_t c = std::min(chunk, lay_.total - at);
        check(cudaMemcpy(buf.data(), w_.p + at, c * sizeof(T), cudaMemcpyDeviceToHost), "download");
        for (size_t i = 0; i < c; ++i) out[at + i] = toF(buf[i]);
      }
    }
    return out;
  }
  std::vector<float> exportGradients() const override;
  // parameters (T) + the fp32 gradients, Adam moments and (bf16) master copy once training has made them
  double stateBytes() const override {
    double b = static_cast<double>(sizeof(T)) * static_cast<double>(lay_.total);
    for (const DevBuf<float>* f : {&g_, &m_, &v_, &master_})
      if (f->p) b += 4.0 * static_cast<double>(lay_.total);
    return b;
  }
  std::unique_ptr<Engine> clone(bool frozen) const override { return std::make_unique<CudaModel>(*this, frozen); }

  void logits(const int32_t* tokens, int64_t batch, int64_t length, float* out) override;
  ScoreResult score(const std::vector<int32_t>& tokens, const std::vector<Span>& spans, bool entropy,
                    bool pooled) override;
  std::vector<GeneratedSequence> generate(const GenerateRequest& req,
                                          const std::function<void(int64_t, int64_t)>& progress) override;
  std::vector<int64_t> decodeAdd(const DecodeAddRequest& req) override { return addSequences(req, false); }
  std::vector<DecodeStepToken> decodeStep() override {
    std::vector<PoolDone> pools;
    return step(pools);
  }
  bool decodeRemove(int64_t id) override {
    for (size_t i = 0; i < live_.size(); ++i)
      if (live_[i].id == id) {
        releaseSeq(live_[i]);
        live_.erase(live_.begin() + static_cast<std::ptrdiff_t>(i));
        return true;
      }
    return false;
  }
  int64_t decodeActive() const override { return static_cast<int64_t>(live_.size()); }

  // training (cuda_train.cuh)
  ScoreResult forwardTrain(const std::vector<int32_t>& tokens, const std::vector<Span>& spans) override;
  void backward(const float* gradLogp, size_t count, const float* gradEntropy = nullptr,
                size_t entropyCount = 0) override;
  PolicyLossFigures policyLossBackward(const std::vector<int32_t>& tokens, const std::vector<Span>& spans,
                                       const PolicyLossRequest& req) override;
  bool hasActivations() const override { return tr_.N > 0; }
  void releaseActivations() override { tr_ = TrainActs{}; }
  void zeroGrad() override;
  double adamw(double lr, double beta1, double beta2, double eps, double weightDecay, double maxGradNorm) override;
  OptimizerState optimizerState() const override;
  void setOptimizerState(OptimizerState s) override;
  // bf16 master weights (optim.h AdamwHyper::bf16Master): the bf16 working copy is the master, rounded
  // stochastically at every step, and the fp32 master copy is dropped (4 bytes a parameter). bf16 storage only: the
  // fp32 engine is the test mode, whose weights are their own fp32 master.
  void setMasterWeights(bool bf16, uint64_t seed) override {
    if (frozen_) throw EngineError("this engine is a frozen copy: it has no gradients or optimizer");
    if (bf16 && sizeof(T) != 2)
      throw EngineError("cuda engine: bf16 master weights need bf16 storage (precision bf16); the fp32 engine is the test mode");
    if (bf16) master_.release();  // from here the bf16 weights are the master (their values as they are now)
    bf16Master_ = bf16;
    masterSeed_ = seed;
  }
  // per-layer recomputation (engine.h): forwardTrain keeps the layers' inputs and one layer's activations (cuda_train.cuh)
  void setCheckpointing(bool on) override {
    if (frozen_) throw EngineError("this engine is a frozen copy: it has no gradients or optimizer");
    recompute_ = on;
  }
  bool checkpointing() const override { return recompute_; }
  // the process's engine buffers (DevMemCounter) and the device's free/total
  std::optional<DeviceMemory> deviceMemory() const override {
    size_t freeB = 0, totalB = 0;
    check(cudaMemGetInfo(&freeB, &totalB), "cudaMemGetInfo");
    DeviceMemory d;
    d.currentBytes = static_cast<double>(devMem().current.load());
    d.peakBytes = static_cast<double>(std::max(devMem().peak.load(), devMem().current.load()));
    d.freeBytes = static_cast<double>(freeB);
    d.totalBytes = static_cast<double>(totalB);
    return d;
  }
  void resetPeakDeviceMemory() override { devMem().peak.store(devMem().current.load()); }

 private:
  // The activations one forwardTrain keeps for its backward (the CPU engine's TrainState, on the device; storage T,
  // statistics fp32), and the device copies of its index arrays. Freed by releaseActivations. With recomputation the
  // per-layer tensors (xn1 .. lse) hold one layer (Lk = 1, the one being recomputed); else every layer (Lk = L).
  struct TrainActs {
    int64_t N = 0, respLen = 0, R = 0, maxLen = 0, nSeg = 0;  // respLen: the longest response (T of [B*T])
    bool recompute = false;                                  // made with per-layer recomputation (setCheckpointing)
    int64_t slot = -1;                                       // recompute: the layer whose activations the slot holds
    std::vector<Span> spans;
    std::vector<int64_t> headOut;  // per head row: its index in the [B*T] layout
    DevBuf<int32_t> ints;          // tokens | pos | spanStart | spanLen | rows | targets | order | segStart | segToken
    const int32_t *tok = nullptr, *pos = nullptr, *spanStart = nullptr, *spanLen = nullptr, *rows = nullptr,
                  *targets = nullptr, *order = nullptr, *segStart = nullptr, *segToken = nullptr;
    DevBuf<T> res;               // [(L + 1) x N x H]: each layer's input, then the last layer's output
    DevBuf<T> xn1, x1, xn2;      // [Lk x N x H]
    DevBuf<T> qkv, o, gu;        // [Lk x N x qkv] (after RoPE), [Lk x N x qd], [Lk x N x 2I]
    DevBuf<float> rstd1, rstd2;  // [Lk x N]
    DevBuf<float> lse;           // [Lk x N x heads]
    DevBuf<T> xf;                // [N x H] the final norm's output
    DevBuf<float> rstdF;         // [N]
    DevBuf<float> logp, ent;     // [R] the head rows' log-probs and entropies (the head backward's inputs)
  };
  TrainActs tr_;
  DevBuf<float> g_, m_, v_;  // fp32 gradients and Adam moments (made by the first training call)
  DevBuf<float> master_;     // bf16 storage only: the fp32 master weights (fp32 storage: w_ is the master)
  int64_t adamSteps_ = 0;
  bool bf16Master_ = false;  // setMasterWeights: no fp32 master, AdamW rounds into the bf16 weights stochastically
  uint64_t masterSeed_ = 0;
  bool recompute_ = false;   // setCheckpointing
  void ensureGrads();
  // forwardTrain without (download false) the copy of the log-probs and entropies to the host; backward from the
  // device's per-row gradients (fp32 [R]; dge may be null) (cuda_train.cuh)
  ScoreResult forwardTrainOn(const std::vector<int32_t>& tokens, const std::vector<Span>& spans, bool download);
  void backwardRows(const float* dgl, const float* dge);
  float* masterWeights();
  double trainBytes(int64_t N, int64_t R, bool recompute) const;
  double backwardBytes(int64_t N, int64_t R) const;
  // one layer's kept activations in tr_ (slot 0 with recomputation) and the part of its forward after the first norm
  struct LayerActs {
    T *xn1, *x1, *xn2, *qkv, *o, *gu;
    float *r1, *r2, *lse;
  };
  LayerActs layerActs(int64_t l, int64_t N);
  void layerAttentionToGateUp(int64_t l, int64_t N, int64_t B, int64_t maxLen, const T* xin, const LayerActs& a,
                              T* proj);

  // A sequence's repetition-penalty set: the DISTINCT tokens of prompt + output (the penalty applies once per
  // distinct token), kept incrementally. `seen` (host) tells a new token from a repeat in O(1); new ones wait in
  // `pending` until the next step appends them to the sequence's slice [off, off + len) of the device pool (capacity
  // cap, 0 while it has none; moved to a slice twice as large when full). push_back is what recordDecodedToken calls.
  struct PenaltySet {
    std::unordered_set<int32_t> seen;
    std::vector<int32_t> pending;
    int64_t off = 0, len = 0, cap = 0;
    void push_back(int32_t t) {
      if (seen.insert(t).second) pending.push_back(t);
    }
  };
  struct Seq {
    int64_t id = 0, promptIndex = 0, sampleIndex = 0, maxNewTokens = 0;
    uint64_t seed = 0;
    std::shared_ptr<const DecodeAddRequest> req;
    PenaltySet history;            // prompt + generated, distinct (repetition penalty on only)
    std::vector<int32_t> blocks;   // KV-cache block ids, position p in blocks[p / kBlockSize]
    int64_t len = 0;               // positions in the cache
    int64_t generated = 0;
    int32_t lastToken = 0;
    // the prompt's last-row logits (device, fp32 [V]), shared by the n samples of one request until each has drawn
    // its first token; later rows come from the decoding step's forward
    std::shared_ptr<DevBuf<float>> prefillRow;
    bool needsForward = false;
    bool pool = false, poolPending = false;  // generate(returnPooled): sum of the generated rows' final states
    std::vector<double> poolSum;
  };
  struct PoolDone {
    int64_t id;
    std::vector<float> pooled;
  };

  const ModelConfig cfg_;
  int threads_;
  bool frozen_ = false;
  ParamLayout lay_;
  cudaStream_t stream_ = nullptr;
  DevBuf<T> w_;
  DevBuf<float> staging_;
  RopeTable rope_;
  DevBuf<float> cos_, sin_;
  int64_t ropeLen_ = 0;
  // activations of one pass
  DevBuf<T> res_, xn_, qkv_, o_, d_, gu_, act_;
  DevBuf<float> lse_;
  DevBuf<char> ws_;
  DevBuf<int32_t> ints_;
  DevBuf<float> outF_, outF2_;
  // paged KV cache
  std::vector<DevBuf<T>> kc_, vc_;
  int64_t numBlocks_ = 0;
  std::vector<int32_t> refs_, freeBlocks_;
  std::vector<Seq> live_;
  int64_t nextId_ = 1;
  // the device sampler: the repetition-penalty pool (every sequence's distinct-history slice; slices of 8 << c
  // values, released ones reused by class; the buffer grows by doubling with offsets kept), the per-step upload
  // (row settings | penalty append indices | bias tokens | bias values | penalty append tokens) and the results
  // (tokens | log-probs | top tokens | top log-probs)
  DevBuf<int32_t> penPool_;
  int64_t penUsed_ = 0;
  std::vector<std::vector<int64_t>> penFree_;
  DevBuf<char> sampIn_, sampOut_, sampWs_;
  std::vector<char> sampHost_;

  T* W(size_t off) const { return w_.p + off; }
  const T* bias(size_t off) const { return off == kAbsent ? nullptr : w_.p + off; }
  void sync() { check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }
  AttnShape attnShape() const { return AttnShape{cfg_.heads, cfg_.kvHeads, cfg_.headDim, lay_.qkv, lay_.qd}; }
  KvCacheShape kvShape() const { return KvCacheShape{numBlocks_, kBlockSize, cfg_.kvHeads, cfg_.headDim}; }
  double kvBlockBytes() const {
    return 2.0 * static_cast<double>(cfg_.layers * kBlockSize * lay_.kvd) * sizeof(T);
  }

  // The projections: Y = X W^T + b, through gemm.cu (cuBLASLt when clipo_gpulibs loads, else the built-in kernel).
  // cls: GemmClass::Rows for decoding steps, Wide for everything else; each class keeps one cached cuBLASLt
  // algorithm per shape whatever the row count, so a row's result does not depend on the rest of the batch (gemm.h).
  void linear(int64_t M, int64_t N, int64_t K, const T* X, size_t wOff, size_t bOff, T* Y,
              GemmClass cls = GemmClass::Wide) {
    check(gemmNTCuda(M, N, K, X, W(wOff), bias(bOff), Y, stream_, cls));
  }
  // logits rows (fp32 out) of xf under the head, in the class of the forward that made xf
  void headLogits(int64_t M, const T* xf, float* out) {
    check(gemmNTCuda(M, cfg_.vocab, cfg_.hidden, xf, W(lay_.headOff), static_cast<const T*>(nullptr), out, stream_,
                     headClass_));
  }
  GemmClass headClass_ = GemmClass::Wide;

  void ensureRope(int64_t positions) {
    if (positions <= ropeLen_) return;
    rope_.ensure(positions);
    cos_.ensure(rope_.cos.size());
    sin_.ensure(rope_.sin.size());
    check(cudaMemcpyAsync(cos_.p, rope_.cos.data(), rope_.cos.size() * sizeof(float), cudaMemcpyHostToDevice, stream_), "rope upload");
    check(cudaMemcpyAsync(sin_.p, rope_.sin.data(), rope_.sin.size() * sizeof(float), cudaMemcpyHostToDevice, stream_), "rope upload");
    sync();
    ropeLen_ = rope_.len;
  }

  // dst[i] = float(src[i]) on the stream (the bf16 engine's master copy)
  void toFloat(const T* src, float* dst, int64_t n) {
    toFloatKernel<T><<<gridFor(n, kThreads), kThreads, 0, stream_>>>(src, dst, n);
    check(launched("to fp32"));
  }

  // device bytes of one pass over N rows (activations), for the check before the work
  double passBytes(int64_t N) const {
    const double H = cfg_.hidden, I = cfg_.intermediate;
    return static_cast<double>(N) * (sizeof(T) * (4 * H + lay_.qkv + lay_.qd + 3 * I) + 4.0 * cfg_.heads + 64.0);
  }
  void ensureActs(int64_t N) {
    const size_t n = static_cast<size_t>(N), H = static_cast<size_t>(cfg_.hidden), I = static_cast<size_t>(cfg_.intermediate);
    if (res_.n < n * H) requireFree(passBytes(N), "the activations of " + std::to_string(N) + " rows");
    res_.ensure(n * H);
    xn_.ensure(n * H);
    qkv_.ensure(n * static_cast<size_t>(lay_.qkv));
    o_.ensure(n * static_cast<size_t>(lay_.qd));
    d_.ensure(n * H);
    gu_.ensure(n * 2 * I);
    act_.ensure(n * I);
    lse_.ensure(n * static_cast<size_t>(cfg_.heads));
  }
  // uploads host int32 arrays into one device buffer; returns their device addresses
  std::vector<const int32_t*> uploadInts(const std::vector<const std::vector<int32_t>*>& arrays) {
    size_t total = 0;
    for (auto* a : arrays) total += a->size();
    std::vector<int32_t> packed;
    packed.reserve(total);
    std::vector<size_t> at;
    for (auto* a : arrays) {
      at.push_back(packed.size());
      packed.insert(packed.end(), a->begin(), a->end());
    }
    ints_.ensure(total);
    if (total) check(cudaMemcpyAsync(ints_.p, packed.data(), total * sizeof(int32_t), cudaMemcpyHostToDevice, stream_), "upload");
    sync();  // `packed` goes out of scope
    std::vector<const int32_t*> out;
    for (size_t a : at) out.push_back(ints_.p + a);
    return out;
  }

  // The model over N rows -> final normed hidden states in xn_ (the RMSNorm output of the last call).
  void forward(int64_t N, const int32_t* dTok, const int32_t* dPos, const AttnPlan& plan) {
    const int64_t H = cfg_.hidden, I = cfg_.intermediate, QKV = lay_.qkv, qd = lay_.qd;
    const AttnShape as = attnShape();
    check(embedRowsCuda(W(lay_.embOff), cfg_.vocab, H, dTok, N, res_.p, stream_));
    const GemmClass cls = plan.decode ? GemmClass::Rows : GemmClass::Wide;
    headClass_ = cls;
    const T* delta = nullptr;
    if (plan.decode) ws_.ensure(attentionDecodeCudaWorkspace(as, N, plan.maxSeqLen));
    for (int64_t l = 0; l < cfg_.layers; ++l) {
      const LayerOffsets& lo = lay_.layers[l];
      check(rmsnormResidualCuda(res_.p, delta, W(lo.ln1), res_.p, xn_.p, nullptr, N, H, cfg_.rmsEps, stream_));
      linear(N, QKV, H, xn_.p, lo.wqkv, lo.bqkv, qkv_.p, cls);
      check(ropeCuda(qkv_.p, QKV, N, cfg_.heads + cfg_.kvHeads, cfg_.headDim, dPos, cos_.p, sin_.p, false, stream_));
      for (const int32_t* slots : plan.writeSlots)
        check(kvCacheWriteCuda(kvShape(), as, qkv_.p, slots, N, kc_[l].p, vc_[l].p, stream_));
      if (plan.decode)
        check(attentionDecodeCuda(kvShape(), as, qkv_.p, N, plan.blockTables, plan.maxBlocksPerSeq, plan.seqLens,
                                  plan.maxSeqLen, kc_[l].p, vc_[l].p, o_.p, ws_.p, stream_));
      else
        check(attentionSpansCuda(as, plan.spanStart, plan.spanLen, plan.nSpans, plan.maxLen, qkv_.p, o_.p, lse_.p,
                                 stream_));
      linear(N, H, qd, o_.p, lo.wo, lo.bo, d_.p, cls);
      check(rmsnormResidualCuda(res_.p, d_.p, W(lo.ln2), res_.p, xn_.p, nullptr, N, H, cfg_.rmsEps, stream_));
      linear(N, 2 * I, H, xn_.p, lo.wgu, lo.bgu, gu_.p, cls);
      check(swigluCuda(gu_.p, act_.p, N, I, stream_));
      linear(N, H, I, act_.p, lo.wd, lo.bd, d_.p, cls);
      delta = d_.p;
    }
    check(rmsnormResidualCuda(res_.p, delta, W(lay_.normOff), res_.p, xn_.p, nullptr, N, H, cfg_.rmsEps, stream_));
  }

  // spans over a packed token stream: positions restart at each span
  void forwardSpans(const std::vector<int32_t>& tok, const std::vector<Span>& spans,
                    const std::vector<std::vector<int32_t>>& writeSlots) {
    const int64_t N = static_cast<int64_t>(tok.size());
    std::vector<int32_t> pos(N), st, ln;
    int64_t maxLen = 0;
    for (const Span& s : spans) {
      for (int64_t t = 0; t < s.length; ++t) pos[s.start + t] = static_cast<int32_t>(t);
      st.push_back(static_cast<int32_t>(s.start));
      ln.push_back(static_cast<int32_t>(s.length));
      maxLen = std::max(maxLen, s.length);
    }
    ensureRope(maxLen);
    ensureActs(N);
    std::vector<const std::vector<int32_t>*> arrays{&tok, &pos, &st, &ln};
    for (const auto& w : writeSlots) arrays.push_back(&w);
    const auto d = uploadInts(arrays);
    AttnPlan plan;
    plan.spanStart = d[2];
    plan.spanLen = d[3];
    plan.nSpans = static_cast<int64_t>(spans.size());
    plan.maxLen = maxLen;
    for (size_t i = 4; i < d.size(); ++i) plan.writeSlots.push_back(d[i]);
    forward(N, d[0], d[1], plan);
  }

  // ---- KV-cache blocks ----
  void growPool(int64_t need) {
    if (static_cast<int64_t>(freeBlocks_.size()) >= need) return;
    const int64_t newBlocks = std::max<int64_t>({numBlocks_ * 2, numBlocks_ + need, 64});
    const size_t per = static_cast<size_t>(kBlockSize * lay_.kvd);
    requireFree(static_cast<double>(newBlocks) * kvBlockBytes(), "the KV cache (" + std::to_string(newBlocks) + " blocks)");
    if (kc_.empty()) {
      kc_.resize(cfg_.layers);
      vc_.resize(cfg_.layers);
    }
    for (int64_t l = 0; l < cfg_.layers; ++l)
      for (auto* pool : {&kc_[l], &vc_[l]}) {
        DevBuf<T> bigger;
        bigger.ensure(static_cast<size_t>(newBlocks) * per);
        if (numBlocks_ > 0)
          check(cudaMemcpyAsync(bigger.p, pool->p, static_cast<size_t>(numBlocks_) * per * sizeof(T),
                                cudaMemcpyDeviceToDevice, stream_), "KV cache copy");
        sync();
        *pool = std::move(bigger);
      }
    for (int64_t b = newBlocks - 1; b >= numBlocks_; --b) freeBlocks_.push_back(static_cast<int32_t>(b));
    refs_.resize(newBlocks, 0);
    numBlocks_ = newBlocks;
  }
  int32_t takeBlock() {
    growPool(1);
    const int32_t b = freeBlocks_.back();
    freeBlocks_.pop_back();
    refs_[b] = 1;
    return b;
  }
  void releaseBlocks(std::vector<int32_t>& blocks) {
    for (int32_t b : blocks)
      if (--refs_[b] == 0) freeBlocks_.push_back(b);
    blocks.clear();
  }

  // ---- repetition-penalty slices ----
  static int penClass(int64_t n) {
    int c = 0;
    while ((int64_t{8} << c) < n) ++c;
    return c;
  }
  // a slice of 8 << c values: a released one of that class, else fresh from the end (growing the pool)
  int64_t penTake(int c) {
    if (static_cast<size_t>(c) < penFree_.size() && !penFree_[c].empty()) {
      const int64_t off = penFree_[c].back();
      penFree_[c].pop_back();
      return off;
    }
    const int64_t cap = int64_t{8} << c;
    if (penUsed_ + cap > static_cast<int64_t>(penPool_.n) || !penPool_.p) {
      const int64_t n = std::max<int64_t>({2 * static_cast<int64_t>(penPool_.n), penUsed_ + cap, 1024});
      requireFree(4.0 * static_cast<double>(n), "the repetition-penalty tokens");
      DevBuf<int32_t> bigger;
      bigger.ensure(static_cast<size_t>(n));
      if (penUsed_ > 0)
        check(cudaMemcpyAsync(bigger.p, penPool_.p, static_cast<size_t>(penUsed_) * sizeof(int32_t),
                              cudaMemcpyDeviceToDevice, stream_), "penalty pool copy");
      sync();
      penPool_ = std::move(bigger);
    }
    const int64_t off = penUsed_;
    penUsed_ += cap;
    return off;
  }
  void penGive(int64_t off, int64_t cap) {
    const int c = penClass(cap);
    if (penFree_.size() <= static_cast<size_t>(c)) penFree_.resize(c + 1);
    penFree_[c].push_back(off);
  }
  // everything a sequence holds on the device: its KV-cache blocks, its penalty slice, its share of the prefill row
  void releaseSeq(Seq& q) {
    releaseBlocks(q.blocks);
    if (q.history.cap > 0) penGive(q.history.off, q.history.cap);
    q.history.cap = q.history.len = 0;
    q.prefillRow.reset();
  }

  std::vector<int64_t> addSequences(const DecodeAddRequest& r, bool pool);
  std::vector<DecodeStepToken> step(std::vector<PoolDone>& pools);
  // the sampler (device, sampling.cu): out[i] for live_[i] from row rowOf[i] of the fp32 logits z [R x V] (rows
  // no sequence takes are drawn greedily and ignored); z is processed in place
  void sampleRows(std::vector<DecodeStepToken>& out, float* z, int64_t R, const std::vector<int64_t>& rowOf);
};

template <typename T>
void CudaModel<T>::logits(const int32_t* tokens, int64_t batch, int64_t length, float* out) {
  const int64_t N = batch * length, V = cfg_.vocab;
  if (N <= 0) return;
  std::vector<int32_t> tok(tokens, tokens + N);
  std::vector<Span> spans(batch);
  for (int64_t b = 0; b < batch; ++b) spans[b] = Span{b * length, length, length};
  requireFree(passBytes(N) + 4.0 * std::min<double>(static_cast<double>(N), std::max<double>(1.0, (1 << 24) / V)) * V,
              "logits of " + std::to_string(N) + " rows");
  forwardSpans(tok, spans, {});
  // rows a chunk at a time (at most 2^24 fp32 logits on the device at once)
  const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 24) / V);
  outF_.ensure(static_cast<size_t>(std::min(N, chunk) * V));
  for (int64_t r0 = 0; r0 < N; r0 += chunk) {
    const int64_t m = std::min(chunk, N - r0);
    headLogits(m, xn_.p + r0 * cfg_.hidden, outF_.p);
    check(cudaMemcpyAsync(out + r0 * V, outF_.p, static_cast<size_t>(m * V) * sizeof(float), cudaMemcpyDeviceToHost,
                          stream_), "download");
    sync();
  }
}

template <typename T>
ScoreResult CudaModel<T>::score(const std::vector<int32_t>& tokens, const std::vector<Span>& spans, bool entropy,
                                bool pooled) {
  const int64_t H = cfg_.hidden, V = cfg_.vocab, B = static_cast<int64_t>(spans.size());
  ScoreResult res;
  for (const Span& s : spans) res.T = std::max(res.T, s.length - s.promptLength);
  res.logprobs.assign(B * res.T, 0.f);
  res.mask.assign(B * res.T, 0);
  if (entropy) res.entropy.assign(B * res.T, 0.f);
  if (pooled) res.pooled.assign(B * H, 0.f);
  for (int64_t b0 = 0; b0 < B;) {
    int64_t b1 = b0, total = 0;
    while (b1 < B && (b1 == b0 || total + spans[b1].length <= kGroupTokens)) total += spans[b1++].length;
    std::vector<int32_t> tok(total), rows, targets, pStart, pCount;
    std::vector<Span> local;
    std::vector<int64_t> outIdx;
    int64_t at = 0;
    for (int64_t b = b0; b < b1; ++b) {
      const Span& s = spans[b];
      std::copy(tokens.begin() + s.start, tokens.begin() + s.start + s.length, tok.begin() + at);
      local.push_back(Span{at, s.length, s.promptLength});
      for (int64_t t = 0; t < s.length - s.promptLength; ++t) {
        rows.push_back(static_cast<int32_t>(at + s.promptLength - 1 + t));
        targets.push_back(tok[at + s.promptLength + t]);
        outIdx.push_back(b * res.T + t);
      }
      pStart.push_back(static_cast<int32_t>(at + s.promptLength));
      pCount.push_back(static_cast<int32_t>(s.length - s.promptLength));
      at += s.length;
    }
    const int64_t R = static_cast<int64_t>(rows.size());
    requireFree(passBytes(total) + static_cast<double>(headLogprobsCudaWorkspace(R, V, H, 0)) + 8.0 * R + 4.0 * (b1 - b0) * H,
                "scoring " + std::to_string(total) + " tokens");
    forwardSpans(tok, local, {});
    if (R > 0) {
      const auto d = uploadInts({&rows, &targets});
      ws_.ensure(headLogprobsCudaWorkspace(R, V, H, 0));
      outF_.ensure(static_cast<size_t>(R));
      outF2_.ensure(static_cast<size_t>(R));
      check(headLogprobsCuda(xn_.p, H, W(lay_.headOff), V, d[0], d[1], R, outF_.p, entropy ? outF2_.p : nullptr, 0,
                             ws_.p, stream_));
      std::vector<float> lp(R), ent(entropy ? R : 0);
      check(cudaMemcpyAsync(lp.data(), outF_.p, R * sizeof(float), cudaMemcpyDeviceToHost, stream_), "download");
      if (entropy)
        check(cudaMemcpyAsync(ent.data(), outF2_.p, R * sizeof(float), cudaMemcpyDeviceToHost, stream_), "download");
      sync();
      for (int64_t r = 0; r < R; ++r) {
        res.logprobs[outIdx[r]] = lp[r];
        res.mask[outIdx[r]] = 1;
        if (entropy) res.entropy[outIdx[r]] = ent[r];
      }
    }
    if (pooled) {
      const auto d = uploadInts({&pStart, &pCount});
      const int64_t nb = b1 - b0;
      outF_.ensure(static_cast<size_t>(nb * H));
      meanRowsKernel<T><<<static_cast<unsigned>(nb), kRowThreads, 0, stream_>>>(xn_.p, H, d[0], d[1], outF_.p);
      check(launched("pooled mean"));
      check(cudaMemcpyAsync(res.pooled.data() + b0 * H, outF_.p, static_cast<size_t>(nb * H) * sizeof(float),
                            cudaMemcpyDeviceToHost, stream_), "download");
      sync();
    }
    b0 = b1;
  }
  return res;
}

template <typename T>
std::vector<int64_t> CudaModel<T>::addSequences(const DecodeAddRequest& r, bool pool) {
  const int64_t H = cfg_.hidden, V = cfg_.vocab, L = static_cast<int64_t>(r.prompt.size());
  if (L < 1) throw EngineError("decodeAdd: empty prompt");
  if (r.n < 1 || r.maxNewTokens < 1) throw EngineError("decodeAdd: n and maxNewTokens must be >= 1");
  const int64_t full = L / kBlockSize, partial = L % kBlockSize ? 1 : 0;
  const int64_t perSeq = (L + r.maxNewTokens + kBlockSize - 1) / kBlockSize;
  // worst case: the shared full blocks once, every sample's own blocks up to its last position
  const int64_t worst = full + r.n * (perSeq - full);
  const int64_t missing = std::max<int64_t>(0, worst - static_cast<int64_t>(freeBlocks_.size()));
  requireFree(static_cast<double>(missing) * kvBlockBytes() + passBytes(L),
              "a request of " + std::to_string(r.n) + " x (" + std::to_string(L) + " prompt + " +
                  std::to_string(r.maxNewTokens) + " new) tokens (KV cache and prefill)");
  ensureRope(L + r.maxNewTokens + 1);
  auto shared = std::make_shared<const DecodeAddRequest>(r);
  std::vector<Seq> seqs(r.n);
  try {
    // sample 0 owns the prompt's blocks; the others share its full blocks and own a copy of the partial one
    for (int64_t b = 0; b < full + partial; ++b) seqs[0].blocks.push_back(takeBlock());
    for (int64_t k = 1; k < r.n; ++k) {
      for (int64_t b = 0; b < full; ++b) {
        seqs[k].blocks.push_back(seqs[0].blocks[b]);
        ++refs_[seqs[0].blocks[b]];
      }
      if (partial) seqs[k].blocks.push_back(takeBlock());
    }
    std::vector<std::vector<int32_t>> writes;
    for (int64_t k = 0; k < r.n; ++k) {
      if (k > 0 && !partial) break;
      std::vector<int32_t> slots(L, -1);
      for (int64_t t = k == 0 ? 0 : full * kBlockSize; t < L; ++t)
        slots[t] = static_cast<int32_t>(seqs[k].blocks[t / kBlockSize] * kBlockSize + t % kBlockSize);
      writes.push_back(std::move(slots));
    }
    forwardSpans(r.prompt, {Span{0, L, L}}, writes);
    // the prompt's last-row logits stay on the device until the samples draw their first tokens
    auto row = std::make_shared<DevBuf<float>>();
    row->ensure(static_cast<size_t>(V));
    headLogits(1, xn_.p + (L - 1) * H, row->p);
    std::vector<int64_t> ids;
    for (int64_t k = 0; k < r.n; ++k) {
      Seq& q = seqs[k];
      q.id = nextId_++;
      q.promptIndex = r.promptIndex;
      q.sampleIndex = k;
      q.maxNewTokens = r.maxNewTokens;
      q.seed = r.seed;
      q.req = shared;
      q.len = L;
      if (r.sampler.repetitionPenalty != 1.0)
        for (const int32_t t : r.prompt) q.history.push_back(t);  // the prompt's distinct tokens, uploaded at the step
      q.prefillRow = row;
      q.pool = pool;
      if (pool) q.poolSum.assign(H, 0.0);
      ids.push_back(q.id);
    }
    for (auto& q : seqs) live_.push_back(std::move(q));
    return ids;
  } catch (...) {
    // nothing half-added stays behind
    for (auto& q : seqs) releaseSeq(q);
    throw;
  }
}

template <typename T>
void CudaModel<T>::sampleRows(std::vector<DecodeStepToken>& out, float* z, int64_t R, const std::vector<int64_t>& rowOf) {
  const int64_t V = cfg_.vocab, S = static_cast<int64_t>(live_.size());
  if (S == 0) return;
  // every row's settings; rows no sequence takes (a finished sequence's last forward row): greedy, results ignored
  std::vector<SampleRowParams> params(R);
  for (auto& p : params) p.temperature = 0.0;
  std::vector<int64_t> appendIdx;
  std::vector<int32_t> appendTok, biasTok;
  std::vector<float> biasVal;
  std::vector<std::pair<const DecodeAddRequest*, int64_t>> biasAt;  // a request's bias slice, once per request
  int64_t maxTop = 0;
  // every allocation first (each may throw: out of memory), so that a failure leaves every penalty set whole: the
  // upload and result buffers at their largest, room in each slice for its new penalty tokens
  int64_t nAmax = 0, nBmax = 0;
  for (int64_t i = 0; i < S; ++i) {
    const SamplerSettings& ss = live_[i].req->sampler;
    if (ss.repetitionPenalty != 1.0) nAmax += static_cast<int64_t>(live_[i].history.pending.size());
    nBmax += static_cast<int64_t>(ss.logitBias.size());
    maxTop = std::max(maxTop, std::min<int64_t>(ss.topLogprobs, V));
  }
  auto up = [](size_t x) { return (x + 15) & ~static_cast<size_t>(15); };
  sampIn_.ensure(up(sizeof(SampleRowParams) * R) + up(8 * nAmax) + 2 * up(4 * nBmax) + up(4 * nAmax));
  const size_t rT = 0, rL = up(4 * R), rTT = rL + up(4 * R), rTL = rTT + up(4 * R * maxTop), outBytes = rTL + up(4 * R * maxTop);
  sampOut_.ensure(outBytes);
  sampWs_.ensure(sampleRowsCudaWorkspace(R, V));
  for (int64_t i = 0; i < S; ++i) {
    PenaltySet& h = live_[i].history;
    const int64_t need = h.len + static_cast<int64_t>(h.pending.size());
    if (live_[i].req->sampler.repetitionPenalty == 1.0 || need <= h.cap) continue;
    // a slice twice as large (or more): the values so far move along on the stream
    const int c = penClass(need);
    const int64_t off = penTake(c);  // may grow the pool: offsets stay valid
    if (h.len > 0)
      check(cudaMemcpyAsync(penPool_.p + off, penPool_.p + h.off, static_cast<size_t>(h.len) * sizeof(int32_t),
                            cudaMemcpyDeviceToDevice, stream_), "penalty slice copy");
    if (h.cap > 0) penGive(h.off, h.cap);
    h.off = off;
    h.cap = int64_t{8} << c;
  }
  for (int64_t i = 0; i < S; ++i) {
    Seq& q = live_[i];
    const SamplerSettings& ss = q.req->sampler;
    SampleRowParams& p = params[rowOf[i]];
    p.temperature = ss.temperature;
    p.topP = ss.topP;
    p.minP = ss.minP;
    p.repetitionPenalty = ss.repetitionPenalty;
    p.topK = ss.topK;
    p.topLogprobs = std::min<int64_t>(ss.topLogprobs, V);
    p.u = uniformAt(q.seed, q.promptIndex, q.sampleIndex, q.generated);
    if (ss.repetitionPenalty != 1.0) {
      PenaltySet& h = q.history;
      for (const int32_t t : h.pending) {  // appended on the device below, before the sampler runs
        appendIdx.push_back(h.off + h.len++);
        appendTok.push_back(t);
      }
      h.pending.clear();
      p.penaltyBegin = h.off;
      p.penaltyEnd = h.off + h.len;
    }
    if (!ss.logitBias.empty()) {
      auto it = std::find_if(biasAt.begin(), biasAt.end(), [&](const auto& b) { return b.first == q.req.get(); });
      if (it == biasAt.end()) {
        biasAt.emplace_back(q.req.get(), static_cast<int64_t>(biasTok.size()));
        for (const auto& [t, v] : ss.logitBias) {
          biasTok.push_back(t);
          biasVal.push_back(v);
        }
        it = biasAt.end() - 1;
      }
      p.biasBegin = it->second;
      p.biasEnd = it->second + static_cast<int64_t>(ss.logitBias.size());
    }
  }
  // one upload: params | append indices | bias tokens | bias values | append tokens (each 16-byte aligned)
  const int64_t nA = static_cast<int64_t>(appendIdx.size()), nB = static_cast<int64_t>(biasTok.size());
  const size_t oP = 0, oA = up(sizeof(SampleRowParams) * R), oBt = oA + up(8 * nA), oBv = oBt + up(4 * nB),
               oAt = oBv + up(4 * nB), inBytes = oAt + up(4 * nA);
  sampHost_.assign(inBytes, 0);
  std::memcpy(sampHost_.data() + oP, params.data(), sizeof(SampleRowParams) * R);
  if (nA) std::memcpy(sampHost_.data() + oA, appendIdx.data(), 8 * nA);
  if (nB) std::memcpy(sampHost_.data() + oBt, biasTok.data(), 4 * nB);
  if (nB) std::memcpy(sampHost_.data() + oBv, biasVal.data(), 4 * nB);
  if (nA) std::memcpy(sampHost_.data() + oAt, appendTok.data(), 4 * nA);
  check(cudaMemcpyAsync(sampIn_.p, sampHost_.data(), inBytes, cudaMemcpyHostToDevice, stream_), "upload");
  char* in = sampIn_.p;
  if (nA) {
    scatterIntsKernel<<<gridFor(nA, kThreads), kThreads, 0, stream_>>>(
        penPool_.p, reinterpret_cast<const int64_t*>(in + oA), reinterpret_cast<const int32_t*>(in + oAt), nA);
    check(launched("penalty tokens"));
  }
  // results: tokens | log-probs | top tokens | top log-probs
  char* o = sampOut_.p;
  check(sampleRowsCuda(z, R, V, reinterpret_cast<const SampleRowParams*>(in + oP), penPool_.p,
                       reinterpret_cast<const int32_t*>(in + oBt), reinterpret_cast<const float*>(in + oBv), maxTop,
                       reinterpret_cast<int32_t*>(o + rT), reinterpret_cast<float*>(o + rL),
                       maxTop ? reinterpret_cast<int32_t*>(o + rTT) : nullptr,
                       maxTop ? reinterpret_cast<float*>(o + rTL) : nullptr, sampWs_.p, stream_));
  std::vector<char> res(outBytes);
  check(cudaMemcpyAsync(res.data(), o, outBytes, cudaMemcpyDeviceToHost, stream_), "download");
  sync();
  std::vector<int32_t> tokens(R), topTokens(R * maxTop);
  std::vector<float> logprobs(R), topLps(R * maxTop);
  std::memcpy(tokens.data(), res.data() + rT, 4 * R);
  std::memcpy(logprobs.data(), res.data() + rL, 4 * R);
  if (maxTop) std::memcpy(topTokens.data(), res.data() + rTT, 4 * R * maxTop);
  if (maxTop) std::memcpy(topLps.data(), res.data() + rTL, 4 * R * maxTop);
  for (int64_t i = 0; i < S; ++i) {
    const int64_t r = rowOf[i];
    out[i].id = live_[i].id;
    out[i].t.token = tokens[r];
    out[i].t.logprob = logprobs[r];
    out[i].t.top.clear();
    for (int64_t j = 0; j < params[r].topLogprobs && topTokens[r * maxTop + j] >= 0; ++j)  // -1: fewer (NaN logits)
      out[i].t.top.emplace_back(topTokens[r * maxTop + j], topLps[r * maxTop + j]);
  }
}

template <typename T>
std::vector<DecodeStepToken> CudaModel<T>::step(std::vector<PoolDone>& pools) {
  const int64_t H = cfg_.hidden, V = cfg_.vocab;
  // 1. the rows whose last token has not been through the model yet: one row per sequence, against its cache;
  // the others are fresh (their row is the prompt's last, made by addSequences)
  std::vector<size_t> rowSeq;
  int64_t fresh = 0;
  for (size_t i = 0; i < live_.size(); ++i) {
    if (live_[i].needsForward) rowSeq.push_back(i);
    else if (live_[i].prefillRow) ++fresh;
    else throw EngineError("cuda engine: internal error: a live sequence has no logits to sample from");
  }
  const int64_t M = static_cast<int64_t>(rowSeq.size()), R = M + fresh;
  // the logits rows the sampler reads, fp32 [R x V] in outF_: the forwarded rows first, then the fresh ones
  if (outF_.n < static_cast<size_t>(R * V))
    requireFree(4.0 * static_cast<double>(R * V), "the logits of a decoding step of " + std::to_string(R) + " sequences");
  outF_.ensure(static_cast<size_t>(std::max<int64_t>(R, 1) * V));
  std::vector<int64_t> rowOfSeq(live_.size(), -1);  // by index in live_ before finished sequences leave
  if (M > 0) {
    int64_t need = 0, maxBlocks = 0, maxSeqLen = 0;
    for (size_t i : rowSeq)
      if (live_[i].len / kBlockSize >= static_cast<int64_t>(live_[i].blocks.size())) ++need;
    requireFree(passBytes(M) + static_cast<double>(std::max<int64_t>(0, need - static_cast<int64_t>(freeBlocks_.size()))) * kvBlockBytes(),
                "a decoding step of " + std::to_string(M) + " sequences");
    std::vector<int32_t> tok(M), pos(M), slots(M), lens(M);
    for (int64_t m = 0; m < M; ++m) {
      Seq& q = live_[rowSeq[m]];
      if (q.len / kBlockSize >= static_cast<int64_t>(q.blocks.size())) q.blocks.push_back(takeBlock());
      tok[m] = q.lastToken;
      pos[m] = static_cast<int32_t>(q.len);
      slots[m] = static_cast<int32_t>(q.blocks[q.len / kBlockSize] * kBlockSize + q.len % kBlockSize);
      lens[m] = static_cast<int32_t>(q.len + 1);
      maxBlocks = std::max<int64_t>(maxBlocks, static_cast<int64_t>(q.blocks.size()));
      maxSeqLen = std::max<int64_t>(maxSeqLen, q.len + 1);
    }
    std::vector<int32_t> tables(M * maxBlocks, 0);
    for (int64_t m = 0; m < M; ++m) {
      const auto& bl = live_[rowSeq[m]].blocks;
      std::copy(bl.begin(), bl.end(), tables.begin() + m * maxBlocks);
    }
    ensureRope(maxSeqLen);
    ensureActs(M);
    const auto d = uploadInts({&tok, &pos, &slots, &lens, &tables});
    AttnPlan plan;
    plan.decode = true;
    plan.writeSlots = {d[2]};
    plan.seqLens = d[3];
    plan.blockTables = d[4];
    plan.maxBlocksPerSeq = maxBlocks;
    plan.maxSeqLen = maxSeqLen;
    forward(M, d[0], d[1], plan);
    headLogits(M, xn_.p, outF_.p);
    bool anyPool = false;
    for (size_t i : rowSeq) anyPool = anyPool || live_[i].pool;
    std::vector<float> xf;
    if (anyPool) {
      outF2_.ensure(static_cast<size_t>(M * H));
      toFloatKernel<T><<<gridFor(M * H, kThreads), kThreads, 0, stream_>>>(xn_.p, outF2_.p, M * H);
      check(launched("final states"));
      xf.resize(M * H);
      check(cudaMemcpyAsync(xf.data(), outF2_.p, static_cast<size_t>(M * H) * sizeof(float), cudaMemcpyDeviceToHost,
                            stream_), "download");
      sync();
    }
    for (int64_t m = 0; m < M; ++m) {
      Seq& q = live_[rowSeq[m]];
      rowOfSeq[rowSeq[m]] = m;
      ++q.len;
      q.needsForward = false;
      if (q.pool)
        for (int64_t j = 0; j < H; ++j) q.poolSum[j] += xf[m * H + j];
    }
  }
  {
    int64_t j = M;
    for (size_t i = 0; i < live_.size(); ++i)
      if (rowOfSeq[i] < 0) {
        rowOfSeq[i] = j;
        check(cudaMemcpyAsync(outF_.p + j * V, live_[i].prefillRow->p, static_cast<size_t>(V) * sizeof(float),
                              cudaMemcpyDeviceToDevice, stream_), "logits copy");
        ++j;
      }
  }
  // sequences that only owed their last row's final state: done
  std::vector<int64_t> rowOf;
  {
    std::vector<Seq> keep;
    keep.reserve(live_.size());
    for (size_t i = 0; i < live_.size(); ++i) {
      Seq& q = live_[i];
      if (q.poolPending) {
        PoolDone pd{q.id, std::vector<float>(H)};
        const double cnt = static_cast<double>(q.generated);
        for (int64_t j = 0; j < H; ++j) pd.pooled[j] = static_cast<float>(q.poolSum[j] / cnt);
        pools.push_back(std::move(pd));
        releaseSeq(q);
      } else {
        rowOf.push_back(rowOfSeq[i]);
        keep.push_back(std::move(q));
      }
    }
    live_ = std::move(keep);
  }
  // 2. one token for every live sequence, from its own random stream
  std::vector<DecodeStepToken> out(live_.size());
  sampleRows(out, outF_.p, R, rowOf);
  std::vector<Seq> keep;
  keep.reserve(live_.size());
  for (size_t i = 0; i < live_.size(); ++i) {
    Seq& q = live_[i];
    q.prefillRow.reset();  // the prompt's row is used once
    recordDecodedToken(q, out[i]);
    q.needsForward = true;
    if (out[i].finished) {
      if (q.pool) {
        q.poolPending = true;  // one more row through the model for its final state
        keep.push_back(std::move(q));
      } else {
        releaseSeq(q);
      }
    } else {
      keep.push_back(std::move(q));
    }
  }
  live_ = std::move(keep);
  return out;
}

template <typename T>
std::vector<GeneratedSequence> CudaModel<T>::generate(const GenerateRequest& req,
                                                      const std::function<void(int64_t, int64_t)>& progress) {
  const int64_t P0 = static_cast<int64_t>(req.prompts.size()), n = req.n, total = P0 * n;
  std::vector<GeneratedSequence> out(total);
  for (int64_t p = 0; p < P0; ++p)
    for (int64_t k = 0; k < n; ++k) {
      out[p * n + k].promptIndex = p;
      out[p * n + k].sampleIndex = k;
    }
  if (req.maxNewTokens == 0 || total == 0) return out;
  // generate() runs its own batch; sequences of the step-wise decoder wait aside (their cache blocks stay held)
  std::vector<Seq> aside;
  std::swap(aside, live_);
  std::vector<int64_t> idOut;  // id -> index in out, offset by firstId
  const int64_t firstId = nextId_;
  auto slotOf = [&](int64_t id) { return idOut[static_cast<size_t>(id - firstId)]; };
  try {
    DecodeAddRequest base;
    base.n = n;
    base.maxNewTokens = req.maxNewTokens;
    base.seed = req.seed;
    base.sampler.temperature = req.temperature;
    base.sampler.topP = req.topP;
    base.stopTokens = req.stopTokens;
    const int64_t cap = std::max(req.maxBatch, n);
    int64_t next = 0, done = 0;
    // continuous batching: a prompt's n samples join whenever there is room; finished sequences leave at once
    for (;;) {
      while (next < P0 && static_cast<int64_t>(live_.size()) + n <= cap) {
        DecodeAddRequest r = base;
        r.prompt = req.prompts[next];
        r.promptIndex = next;
        const auto ids = addSequences(r, req.returnPooled);
        for (int64_t k = 0; k < n; ++k) {
          idOut.resize(static_cast<size_t>(ids[k] - firstId + 1), -1);
          idOut[static_cast<size_t>(ids[k] - firstId)] = next * n + k;
        }
        ++next;
      }
      if (live_.empty()) break;
      std::vector<PoolDone> pools;
      const auto toks = step(pools);
      for (const auto& t : toks) {
        GeneratedSequence& sq = out[slotOf(t.id)];
        sq.tokens.push_back(t.t.token);
        sq.logprobs.push_back(t.t.logprob);
        if (t.finished) {
          sq.stopped = t.stopped;
          if (!req.returnPooled) ++done;
        }
      }
      for (auto& pd : pools) {
        out[slotOf(pd.id)].pooled = std::move(pd.pooled);
        ++done;
      }
      if (progress) progress(done, total);
    }
  } catch (...) {
    for (auto& q : live_) releaseSeq(q);
    live_ = std::move(aside);
    throw;
  }
  live_ = std::move(aside);
  return out;
}

}  // namespace
}  // namespace clipo::engine

#include "engine/cuda_train.cuh"
// the policy-loss micro-batch on the device (policyLossBackward)
#include "engine/cuda_policy_loss.cuh"

namespace clipo::engine {

std::string cudaEngineUnavailable() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    const std::string why = cudaGetErrorString(e);
    cudaGetLastError();
    return "no usable CUDA device (cudaGetDeviceCount: " + why + ")";
  }
  if (n <= 0) return "no CUDA device is visible";
  return "";
}

std::unique_ptr<Engine> createCudaEngine(const ModelConfig& cfg, int threads, const std::string& precision,
                                         bool training) {
  if (precision != "bf16" && precision != "fp32")
    throw EngineError("unknown precision '" + precision + "' (expected 'bf16' or 'fp32')");
  const std::string why = cudaEngineUnavailable();
  if (!why.empty()) throw EngineError("the cuda backend cannot run: " + why);
  if (precision == "fp32") return std::make_unique<CudaModel<float>>(cfg, threads);
  auto m = std::make_unique<CudaModel<uint16_t>>(cfg, threads);
  if (training) m->keepMaster();
  return m;
}

}  // namespace clipo::engine
