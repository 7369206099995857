// The CUDA engine's training path: CudaModel<T>'s forwardTrain, backward, zeroGrad, AdamW and optimizer state (the
// methods of engine.h that cpu_forward.cpp / cpu_train.cpp implement on the CPU), in the same order of passes and with
// the same saved activations, run by the kernels' CUDA twins. Included by cuda_engine.cu after the class (the class
// and its helpers live in that file's anonymous namespace); it launches nothing itself (every launch is in a .cu, so
// the host emulation of scripts/cuda-emu/, which rewrites launches in .cu files, sees them all).
//
// Precision. Gradients, Adam moments and master weights are fp32. With bf16 storage the forward and the activation
// gradients are bf16 (fp32 arithmetic), the weight gradients accumulate in fp32, and AdamW updates an fp32 master copy
// and writes its bf16 rounding back into the working weights (optim.cu). An engine created for training
// (createEngine's `training`, Engine.create's `training: true`) has the master copy from the start, so setParameter
// writes the exact fp32 values into it; otherwise the first training call makes it from the working weights (a model
// loaded from fp32 values then starts from their bf16 rounding). exportWeights returns the master once it exists.
// fp32 storage: the weights are the master.
//
// Memory: by default, as the CPU engine, every layer's activations are kept for the backward pass: per token and
// layer its input, the two normalized inputs and x1 (T, H each), q/k/v after RoPE, the attention output, gate|up (T),
// the two rstd and the attention's log-sum-exp per head (fp32); plus the final norm's output. With per-layer
// recomputation (setCheckpointing; `model.checkpointing`) only the layers' inputs (res) are kept for every layer, the
// rest for one layer (a slot that the forward leaves holding the last layer); backward first re-runs layer l's
// forward from res[l] into the slot (layerAttentionToGateUp, the forward's own code, after the first norm), then runs
// the layer's backward as before. Same bits: the same kernels on the same inputs, and the first norm recomputed
// without the residual add reads the rounded sum that rmsnormResidualKernel stored in res[l] and normalized. The
// backward's scratch is one layer's worth of activation gradients (the recomputed output projection goes to dxn,
// which the layer's backward writes only later). trainBytes / backwardBytes count both cases; src/rl/memory-plan.ts
// (activationsBytes) counts the same.
//
// Determinism: every kernel here sums in a fixed order (no atomics whose order changes results): the GEMMs per output
// element over k ascending, column sums over fixed row parts, the embedding gradient one writer per table row, the
// gradient norm in fixed partials (optim.cu). The same inputs give the same bits.
#pragma once
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/attention.h"
#include "engine/gemm.h"
#include "engine/head.h"
#include "engine/mlp.h"
#include "engine/norm_rope.h"
#include "engine/optim.h"

namespace clipo::engine {

namespace {

using namespace cudatwin;

template <typename T>
void CudaModel<T>::ensureGrads() {
  if (frozen_) throw EngineError("this engine is a frozen copy: it has no gradients or optimizer");
  const bool fp32Master = sizeof(T) == 2 && !bf16Master_;  // bf16 storage keeps an fp32 master unless bf16Master_
  if (g_.p && (!fp32Master || master_.p)) return;
  const size_t n = lay_.total;
  requireFree(4.0 * static_cast<double>(n) * (fp32Master ? 2 : 1),
              std::string("the fp32 gradients") + (fp32Master ? " and master weights" : ""));
  if constexpr (sizeof(T) == 2) {
    if (fp32Master && !master_.p) {
      master_.ensure(n);
      toFloat(w_.p, master_.p, static_cast<int64_t>(n));
    }
  }
  if (!g_.p) {
    g_.ensure(n);
    check(cudaMemsetAsync(g_.p, 0, n * sizeof(float), stream_), "cudaMemsetAsync");
  }
  sync();
}

template <typename T>
float* CudaModel<T>::masterWeights() {
  if constexpr (sizeof(T) == sizeof(float))
    return w_.p;
  else
    return master_.p;
}

// device bytes forwardTrain allocates for N tokens and R scored rows (kept activations, the pass's scratch, indices).
// Kept: every layer's input and the last layer's output (res), per layer the two normalized inputs and x1, q|k|v, the
// attention output, gate|up (T) and the two rstd and the log-sum-exp per head (fp32), for every layer or, with
// recomputation, for one; the final norm's output and rstd; the head rows' log-probs and entropies.
// src/rl/memory-plan.ts counts the same (activationsBytes).
template <typename T>
double CudaModel<T>::trainBytes(int64_t N, int64_t R, bool recompute) const {
  const double t = sizeof(T), H = cfg_.hidden, I = cfg_.intermediate, L = cfg_.layers, nh = cfg_.heads;
  const double qkv = static_cast<double>(lay_.qkv), qd = static_cast<double>(lay_.qd), n = static_cast<double>(N);
  const double perLayer = t * (3 * H + qkv + qd + 2 * I) + 4.0 * (2 + nh);
  const double kept = n * (L + 1) * t * H + n * (recompute ? 1 : L) * perLayer + n * (t * H + 4.0) + 8.0 * R;
  const double scratch = n * t * (I + H) + static_cast<double>(headLogprobsCudaWorkspace(R, cfg_.vocab, cfg_.hidden, 0));
  return kept + scratch + 4.0 * (5.0 * n + 2.0 * R + 2.0) + 4.0 * 1024 * 1024;
}

// device bytes backward allocates: one layer's activation gradients (T) and the kernels' workspace (a layer's
// recomputation writes into the kept one-layer buffers and its projection into dxn: nothing more)
template <typename T>
double CudaModel<T>::backwardBytes(int64_t N, int64_t R) const {
  const double t = sizeof(T), H = cfg_.hidden, I = cfg_.intermediate;
  const double qkv = static_cast<double>(lay_.qkv), qd = static_cast<double>(lay_.qd), n = static_cast<double>(N);
  const int64_t cols = std::max<int64_t>({2 * cfg_.intermediate, lay_.qkv, cfg_.hidden});
  const double ws = static_cast<double>(std::max<size_t>(
      {R > 0 ? headLogprobsBackwardCudaWorkspace(R, cfg_.vocab, cfg_.hidden, 0) : size_t{0},
       rmsnormBackwardCudaWorkspace(N, cfg_.hidden), colSumAccumulateCudaWorkspace(N, cols),
       attentionBackwardCudaWorkspace(attnShape(), N)}));
  return n * t * (3 * H + 4 * I + qd + qkv) + ws + 8.0 * R + 4.0 * 1024 * 1024;
}

// layer l's kept activations: its own slice, or with recomputation the one-layer slot (the layer it holds: tr_.slot)
template <typename T>
typename CudaModel<T>::LayerActs CudaModel<T>::layerActs(int64_t l, int64_t N) {
  TrainActs& st = tr_;
  const int64_t k = st.recompute ? 0 : l, H = cfg_.hidden, nh = cfg_.heads;
  return LayerActs{st.xn1.p + k * N * H,         st.x1.p + k * N * H,           st.xn2.p + k * N * H,
                   st.qkv.p + k * N * lay_.qkv,   st.o.p + k * N * lay_.qd,      st.gu.p + k * N * 2 * cfg_.intermediate,
                   st.rstd1.p + k * N,            st.rstd2.p + k * N,            st.lse.p + k * N * nh};
}

// Layer l's forward from its first norm's output (a.xn1) to gate|up: q|k|v with RoPE, attention (o and the
// log-sum-exp), the output projection into proj, the second norm with the residual (x1 = xin + proj, xn2, rstd2) and
// gate|up. forwardTrain runs it for every layer, and backward again for a layer it recomputes: the same kernels on
// the same inputs, so the same bits.
template <typename T>
void CudaModel<T>::layerAttentionToGateUp(int64_t l, int64_t N, int64_t B, int64_t maxLen, const T* xin,
                                          const LayerActs& a, T* proj) {
  const LayerOffsets& lo = lay_.layers[l];
  const int64_t H = cfg_.hidden, I = cfg_.intermediate, QKV = lay_.qkv, qd = lay_.qd;
  linear(N, QKV, H, a.xn1, lo.wqkv, lo.bqkv, a.qkv);
  check(ropeCuda(a.qkv, QKV, N, cfg_.heads + cfg_.kvHeads, cfg_.headDim, tr_.pos, cos_.p, sin_.p, false, stream_));
  check(attentionSpansCuda(attnShape(), tr_.spanStart, tr_.spanLen, B, maxLen, a.qkv, a.o, a.lse, stream_));
  linear(N, H, qd, a.o, lo.wo, lo.bo, proj);
  check(rmsnormResidualCuda(xin, proj, W(lo.ln2), a.x1, a.xn2, a.r2, N, H, cfg_.rmsEps, stream_));
  linear(N, 2 * I, H, a.xn2, lo.wgu, lo.bgu, a.gu);
}

template <typename T>
ScoreResult CudaModel<T>::forwardTrain(const std::vector<int32_t>& tokens, const std::vector<Span>& spans) {
  return forwardTrainOn(tokens, spans, true);
}

// download false (policyLossBackward): the log-probs and entropies stay in st.logp / st.ent; the result's arrays
// are empty
template <typename T>
ScoreResult CudaModel<T>::forwardTrainOn(const std::vector<int32_t>& tokens, const std::vector<Span>& spans,
                                         bool download) {
  ensureGrads();
  releaseActivations();
  TrainActs& st = tr_;
  const int64_t N = static_cast<int64_t>(tokens.size()), H = cfg_.hidden, I = cfg_.intermediate, L = cfg_.layers,
                V = cfg_.vocab, QKV = lay_.qkv, qd = lay_.qd, nh = cfg_.heads, B = static_cast<int64_t>(spans.size());
  if (N == 0 || B == 0) throw EngineError("forwardTrain: no sequences");
  std::vector<int32_t> pos(N), spanStart, spanLen, rows, targets;
  int64_t T_ = 0, maxLen = 0;
  for (const Span& s : spans) {
    for (int64_t t = 0; t < s.length; ++t) pos[s.start + t] = static_cast<int32_t>(t);
    spanStart.push_back(static_cast<int32_t>(s.start));
    spanLen.push_back(static_cast<int32_t>(s.length));
    maxLen = std::max(maxLen, s.length);
    T_ = std::max(T_, s.length - s.promptLength);
  }
  for (int64_t b = 0; b < B; ++b) {
    const Span& s = spans[b];
    for (int64_t t = 0; t < s.length - s.promptLength; ++t) {
      rows.push_back(static_cast<int32_t>(s.start + s.promptLength - 1 + t));
      targets.push_back(tokens[s.start + s.promptLength + t]);
      st.headOut.push_back(b * T_ + t);
    }
  }
  // the embedding gradient's plan (positions grouped by token; also checks every id)
  EmbedGradPlan plan;
  const std::string bad = embedGradPlan(tokens.data(), N, V, &plan);
  if (!bad.empty()) throw EngineError("forwardTrain: " + bad);
  const int64_t R = static_cast<int64_t>(rows.size());
  st.recompute = recompute_;
  requireFree(trainBytes(N, R, st.recompute), "the training activations of " + std::to_string(N) + " tokens" +
                                                  (st.recompute ? " (recomputed per layer)" : ""));

  // the index arrays, in one device buffer this micro-batch owns until its backward
  {
    std::vector<const std::vector<int32_t>*> arrays{&tokens,  &pos,        &spanStart,    &spanLen,     &rows,
                                                    &targets, &plan.order, &plan.segStart, &plan.segToken};
    std::vector<int32_t> packed;
    std::vector<size_t> at;
    for (auto* a : arrays) {
      at.push_back(packed.size());
      packed.insert(packed.end(), a->begin(), a->end());
    }
    st.ints.ensure(packed.size());
    check(cudaMemcpyAsync(st.ints.p, packed.data(), packed.size() * sizeof(int32_t), cudaMemcpyHostToDevice, stream_),
          "upload");
    sync();  // `packed` goes out of scope
    const int32_t** dst[] = {&st.tok, &st.pos, &st.spanStart, &st.spanLen, &st.rows,
                             &st.targets, &st.order, &st.segStart, &st.segToken};
    for (size_t i = 0; i < at.size(); ++i) *dst[i] = st.ints.p + at[i];
  }
  const size_t n = static_cast<size_t>(N), l_ = static_cast<size_t>(L), h = static_cast<size_t>(H);
  const size_t lk = st.recompute ? 1 : l_;  // layers whose activations are kept (recomputation: a one-layer slot)
  st.res.ensure((l_ + 1) * n * h);
  st.xn1.ensure(lk * n * h);
  st.x1.ensure(lk * n * h);
  st.xn2.ensure(lk * n * h);
  st.qkv.ensure(lk * n * static_cast<size_t>(QKV));
  st.o.ensure(lk * n * static_cast<size_t>(qd));
  st.gu.ensure(lk * n * 2 * static_cast<size_t>(I));
  st.rstd1.ensure(lk * n);
  st.rstd2.ensure(lk * n);
  st.lse.ensure(lk * n * static_cast<size_t>(nh));
  st.xf.ensure(n * h);
  st.rstdF.ensure(n);
  st.logp.ensure(static_cast<size_t>(R));
  st.ent.ensure(static_cast<size_t>(R));
  DevBuf<T> act, proj;  // this pass's scratch: the SwiGLU output and a projection's output
  act.ensure(n * static_cast<size_t>(I));
  proj.ensure(n * h);
  DevBuf<char> ws;
  ws.ensure(headLogprobsCudaWorkspace(R, V, H, 0));
  ensureRope(maxLen);

  const double eps = cfg_.rmsEps;
  check(embedRowsCuda(W(lay_.embOff), V, H, st.tok, N, st.res.p, stream_));
  const T* prevX1 = nullptr;
  for (int64_t l = 0; l < L; ++l) {
    const LayerOffsets& lo = lay_.layers[l];
    const LayerActs a = layerActs(l, N);
    T* xin = st.res.p + l * N * H;
    // the layer's input: the embedding, or the previous layer's x1 + its MLP output (written to xin; with
    // recomputation prevX1 is this layer's slot, read here before the layer writes it)
    if (l == 0)
      check(rmsnormResidualCuda(xin, static_cast<const T*>(nullptr), W(lo.ln1), static_cast<T*>(nullptr), a.xn1, a.r1,
                                N, H, eps, stream_));
    else
      check(rmsnormResidualCuda(prevX1, proj.p, W(lo.ln1), xin, a.xn1, a.r1, N, H, eps, stream_));
    layerAttentionToGateUp(l, N, B, maxLen, xin, a, proj.p);
    check(swigluCuda(a.gu, act.p, N, I, stream_));
    linear(N, H, I, act.p, lo.wd, lo.bd, proj.p);
    prevX1 = a.x1;
  }
  check(rmsnormResidualCuda(prevX1, proj.p, W(lay_.normOff), st.res.p + L * N * H, st.xf.p, st.rstdF.p, N, H, eps,
                            stream_));
  st.slot = L - 1;  // with recomputation the slot holds the last layer's activations

  ScoreResult res;
  res.T = T_;
  if (R > 0)
    check(headLogprobsCuda(st.xf.p, H, W(lay_.headOff), V, st.rows, st.targets, R, st.logp.p, st.ent.p, 0, ws.p,
                           stream_));
  if (download) {
    res.logprobs.assign(B * T_, 0.f);
    res.entropy.assign(B * T_, 0.f);
    res.mask.assign(B * T_, 0);
  }
  if (R > 0 && download) {
    std::vector<float> lp(R), ent(R);
    check(cudaMemcpyAsync(lp.data(), st.logp.p, R * sizeof(float), cudaMemcpyDeviceToHost, stream_), "download");
    check(cudaMemcpyAsync(ent.data(), st.ent.p, R * sizeof(float), cudaMemcpyDeviceToHost, stream_), "download");
    sync();
    for (int64_t r = 0; r < R; ++r) {
      res.logprobs[st.headOut[r]] = lp[r];
      res.entropy[st.headOut[r]] = ent[r];
      res.mask[st.headOut[r]] = 1;
    }
  }
  sync();
  st.spans = spans;
  st.respLen = T_;
  st.R = R;
  st.maxLen = maxLen;
  st.nSeg = static_cast<int64_t>(plan.segToken.size());
  st.N = N;  // last: the activations are complete
  return res;
}

// The backward of forwardTrain (cpu_train.cpp's order): the head and the final norm, then every block in reverse,
// then the embeddings. Weight gradients accumulate into g_ (fp32) until zeroGrad.
template <typename T>
void CudaModel<T>::backward(const float* gradLogp, size_t count, const float* gradEntropy, size_t entropyCount) {
  TrainActs& st = tr_;
  if (st.N == 0) throw EngineError("backward: no activations; call forwardTrain first");
  const size_t expected = st.spans.size() * static_cast<size_t>(st.respLen);
  checkBackwardGradients(gradLogp, count, gradEntropy, entropyCount, expected);
  const int64_t R = st.R;
  std::vector<float> gl(R), ge(gradEntropy ? R : 0);
  for (int64_t r = 0; r < R; ++r) {
    gl[r] = gradLogp[st.headOut[r]];
    if (gradEntropy) ge[r] = gradEntropy[st.headOut[r]];
  }
  DevBuf<float> dgl, dge;
  dgl.ensure(static_cast<size_t>(R));
  if (gradEntropy) dge.ensure(static_cast<size_t>(R));
  if (R > 0) {
    check(cudaMemcpyAsync(dgl.p, gl.data(), R * sizeof(float), cudaMemcpyHostToDevice, stream_), "upload");
    if (gradEntropy)
      check(cudaMemcpyAsync(dge.p, ge.data(), R * sizeof(float), cudaMemcpyHostToDevice, stream_), "upload");
  }
  backwardRows(dgl.p, gradEntropy ? dge.p : nullptr);
}

// backward from per-row gradients already on the device (policyLossBackward's, or backward's upload): dgl [R] and
// dge [R] (null: no entropy term), fp32
template <typename T>
void CudaModel<T>::backwardRows(const float* dgl, const float* dge) {
  TrainActs& st = tr_;
  if (st.N == 0) throw EngineError("backward: no activations; call forwardTrain first");
  const int64_t N = st.N, R = st.R, H = cfg_.hidden, I = cfg_.intermediate, L = cfg_.layers, V = cfg_.vocab,
                QKV = lay_.qkv, qd = lay_.qd, nh = cfg_.heads, B = static_cast<int64_t>(st.spans.size());
  requireFree(backwardBytes(N, R), "the backward pass of " + std::to_string(N) + " tokens");
  const size_t n = static_cast<size_t>(N), h = static_cast<size_t>(H), i_ = static_cast<size_t>(I);
  DevBuf<T> dres, dxf, act, dact, dgu, dxn, dO, dqkv;
  dres.ensure(n * h);
  dxf.ensure(n * h);
  act.ensure(n * i_);
  dact.ensure(n * i_);
  dgu.ensure(n * 2 * i_);
  dxn.ensure(n * h);
  dO.ensure(n * static_cast<size_t>(qd));
  dqkv.ensure(n * static_cast<size_t>(QKV));
  const AttnShape as = attnShape();
  const int64_t cols = std::max<int64_t>({2 * I, QKV, H});
  DevBuf<char> ws;
  ws.ensure(std::max<size_t>({R > 0 ? headLogprobsBackwardCudaWorkspace(R, V, H, 0) : size_t{0},
                              rmsnormBackwardCudaWorkspace(N, H), colSumAccumulateCudaWorkspace(N, cols),
                              attentionBackwardCudaWorkspace(as, N)}));
  check(cudaMemsetAsync(dres.p, 0, n * h * sizeof(T), stream_), "cudaMemsetAsync");
  check(cudaMemsetAsync(dxf.p, 0, n * h * sizeof(T), stream_), "cudaMemsetAsync");
  float* G = g_.p;
  void* s = stream_;

  // LM head and final norm: d logp / d z = onehot - softmax, d H / d z = -p (z - E_p[z]) (head.h)
  if (R > 0)
    check(headLogprobsBackwardCuda(st.xf.p, H, W(lay_.headOff), V, st.rows, st.targets, R, st.logp.p, st.ent.p, dgl,
                                   dge, dxf.p, G + lay_.headOff, 0, ws.p, s));
  check(rmsnormBackwardCuda(dxf.p, st.res.p + L * N * H, st.rstdF.p, W(lay_.normOff), dres.p, G + lay_.normOff, N, H,
                            ws.p, s));

  for (int64_t l = L - 1; l >= 0; --l) {
    const LayerOffsets& o = lay_.layers[l];
    const T* xin = st.res.p + l * N * H;
    const LayerActs a = layerActs(l, N);
    // recomputation: the layer's forward again from its kept input into the one-layer slot (the last layer's
    // activations are there from forwardTrain), its output projection into dxn (written by this layer's backward
    // only later). The first norm without the residual add gives the forward's bits: rmsnormResidualKernel normalizes
    // the bf16-rounded sum that it stored in res[l].
    if (st.recompute && st.slot != l) {
      check(rmsnormResidualCuda(xin, static_cast<const T*>(nullptr), W(o.ln1), static_cast<T*>(nullptr), a.xn1, a.r1,
                                N, H, cfg_.rmsEps, s));
      layerAttentionToGateUp(l, N, B, st.maxLen, xin, a, dxn.p);
      st.slot = l;
    }
    const T *xn1 = a.xn1, *x1 = a.x1, *xn2 = a.xn2, *qkv = a.qkv, *ao = a.o, *gu = a.gu;
    const float *r1 = a.r1, *r2 = a.r2, *lse = a.lse;

    // MLP: out = x1 + down(act), act = silu(gate) * up (act recomputed from the kept gate|up)
    check(swigluCuda(gu, act.p, N, I, s));
    check(gemmNNCuda(N, I, H, static_cast<const T*>(dres.p), static_cast<const T*>(W(o.wd)), dact.p, false, s));
    check(gemmTNCuda(H, I, N, static_cast<const T*>(dres.p), static_cast<const T*>(act.p), G + o.wd, true, s));
    if (o.bd != kAbsent) check(colSumAccumulateCuda(dres.p, N, H, G + o.bd, ws.p, s));
    check(swigluBackwardCuda(gu, dact.p, dgu.p, N, I, s));
    check(gemmTNCuda(2 * I, H, N, static_cast<const T*>(dgu.p), xn2, G + o.wgu, true, s));
    if (o.bgu != kAbsent) check(colSumAccumulateCuda(dgu.p, N, 2 * I, G + o.bgu, ws.p, s));
    check(gemmNNCuda(N, H, 2 * I, static_cast<const T*>(dgu.p), static_cast<const T*>(W(o.wgu)), dxn.p, false, s));
    check(rmsnormBackwardCuda(dxn.p, x1, r2, W(o.ln2), dres.p, G + o.ln2, N, H, ws.p, s));

    // attention: x1 = xin + o_proj(attn(rope(q), rope(k), v)); RoPE's backward is the inverse rotation
    check(gemmTNCuda(H, qd, N, static_cast<const T*>(dres.p), ao, G + o.wo, true, s));
    if (o.bo != kAbsent) check(colSumAccumulateCuda(dres.p, N, H, G + o.bo, ws.p, s));
    check(gemmNNCuda(N, qd, H, static_cast<const T*>(dres.p), static_cast<const T*>(W(o.wo)), dO.p, false, s));
    check(attentionSpansBackwardCuda(as, st.spanStart, st.spanLen, B, st.maxLen, qkv, ao, lse, dO.p, dqkv.p, ws.p, s));
    check(ropeCuda(dqkv.p, QKV, N, nh + cfg_.kvHeads, cfg_.headDim, st.pos, cos_.p, sin_.p, true, s));
    check(gemmTNCuda(QKV, H, N, static_cast<const T*>(dqkv.p), xn1, G + o.wqkv, true, s));
    if (o.bqkv != kAbsent) check(colSumAccumulateCuda(dqkv.p, N, QKV, G + o.bqkv, ws.p, s));
    check(gemmNNCuda(N, H, QKV, static_cast<const T*>(dqkv.p), static_cast<const T*>(W(o.wqkv)), dxn.p, false, s));
    check(rmsnormBackwardCuda(dxn.p, xin, r1, W(o.ln1), dres.p, G + o.ln1, N, H, ws.p, s));
  }

  // embeddings: the rows of one token added in position order, one writer per table row (norm_rope.cu)
  check(embedBackwardCuda(dres.p, H, st.order, st.segStart, st.segToken, st.nSeg, G + lay_.embOff, s));
  sync();
}

template <typename T>
void CudaModel<T>::zeroGrad() {
  if (frozen_) throw EngineError("this engine is a frozen copy: it has no gradients or optimizer");
  if (g_.p) {
    check(cudaMemsetAsync(g_.p, 0, lay_.total * sizeof(float), stream_), "cudaMemsetAsync");
    sync();
  }
}

template <typename T>
std::vector<float> CudaModel<T>::exportGradients() const {
  if (!g_.p) return {};
  std::vector<float> out(lay_.total);
  check(cudaMemcpy(out.data(), g_.p, lay_.total * sizeof(float), cudaMemcpyDeviceToHost), "download");
  return out;
}

// torch.optim.AdamW with clip_grad_norm_ first (optim.cu): decay on matrices only; a tied LM head is the embedding
template <typename T>
double CudaModel<T>::adamw(double lr, double beta1, double beta2, double eps, double weightDecay, double maxGradNorm) {
  ensureGrads();
  const size_t n = lay_.total;
  if (!m_.p) {
    requireFree(8.0 * static_cast<double>(n), "the Adam moments");
    m_.ensure(n);
    v_.ensure(n);
    check(cudaMemsetAsync(m_.p, 0, n * sizeof(float), stream_), "cudaMemsetAsync");
    check(cudaMemsetAsync(v_.p, 0, n * sizeof(float), stream_), "cudaMemsetAsync");
  }
  const std::vector<AdamwSegment> segs = adamwSegments(cfg_, lay_);
  uint16_t* working = nullptr;  // bf16: the working copy, refreshed from the updated master
  if constexpr (sizeof(T) == 2) working = w_.p;
  DevBuf<char> scratch;
  scratch.ensure(adamwCudaScratchBytes());
  AdamwHyper h{lr, beta1, beta2, eps, weightDecay, maxGradNorm};
  h.bf16Master = bf16Master_;  // then the working copy is the master and there is no fp32 one
  h.seed = masterSeed_;
  check(adamwStepCuda(bf16Master_ ? nullptr : masterWeights(), m_.p, v_.p, g_.p, working, static_cast<int64_t>(n),
                      segs.data(), segs.size(), h, adamSteps_ + 1, scratch.p, stream_));
  double norm = NAN;
  check(cudaMemcpyAsync(&norm, scratch.p, sizeof(double), cudaMemcpyDeviceToHost, stream_), "download");
  sync();
  // a non-finite norm: the update kernels wrote nothing
  if (!std::isfinite(norm)) throw EngineError("adamwStep: the gradient is not finite (norm " + std::to_string(norm) + ")");
  adamSteps_ += 1;
  return norm;
}

template <typename T>
OptimizerState CudaModel<T>::optimizerState() const {
  OptimizerState s;
  s.step = adamSteps_;
  if (m_.p) {
    s.m.resize(lay_.total);
    s.v.resize(lay_.total);
    check(cudaMemcpy(s.m.data(), m_.p, lay_.total * sizeof(float), cudaMemcpyDeviceToHost), "download");
    check(cudaMemcpy(s.v.data(), v_.p, lay_.total * sizeof(float), cudaMemcpyDeviceToHost), "download");
  }
  return s;
}

template <typename T>
void CudaModel<T>::setOptimizerState(OptimizerState s) {
  if (frozen_) throw EngineError("this engine is a frozen copy: it has no gradients or optimizer");
  const size_t n = lay_.total;
  if (s.m.size() != n || s.v.size() != n)
    throw EngineError("optimizer state: m and v must hold one value per parameter (" + std::to_string(n) + ")");
  if (!m_.p) {
    requireFree(8.0 * static_cast<double>(n), "the Adam moments");
    m_.ensure(n);
    v_.ensure(n);
  }
  check(cudaMemcpyAsync(m_.p, s.m.data(), n * sizeof(float), cudaMemcpyHostToDevice, stream_), "upload");
  check(cudaMemcpyAsync(v_.p, s.v.data(), n * sizeof(float), cudaMemcpyHostToDevice, stream_), "upload");
  sync();
  adamSteps_ = s.step;
}

}  // namespace

}  // namespace clipo::engine
