// N-API surface of the engine: the EngineModel class (one native engine of any backend, through the interface of
// engine.h; explicit dispose()), engineBackends(), and the benchmark probes (fmaPeak, gemm timing). A binding only:
// every value from JS is validated here; engine errors become JS Errors.
#include <napi.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "common/napi_args.h"
#include "common/registry.h"
#include "engine/engine.h"
#include "engine/gemm.h"
#include "engine/sampling.h"
#include "kernels/surrogate/surrogate_args.h"

namespace {

using clipo::engine::EngineError;
using clipo::engine::Engine;
using clipo::engine::Span;

const napi_type_tag kEngineTag = {0x5c1a0e4f2b7d4c11ULL, 0x9a3e6b8d0f214a77ULL};

// Runs f, turning engine and allocation errors into JS Errors (Napi::Error passes through).
template <typename F>
auto guarded(Napi::Env env, const char* what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Napi::Error&) {
    throw;
  } catch (const EngineError& e) {
    throw Napi::Error::New(env, std::string(what) + ": " + e.what());
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, std::string(what) + ": out of memory");
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string(what) + ": " + e.what());
  }
}

clipo::engine::ModelConfig parseConfig(const Napi::Object& c) {
  clipo::engine::ModelConfig cfg;
  cfg.vocab = clipo::getInt(c, "vocabSize", 1);
  cfg.hidden = clipo::getInt(c, "hiddenSize", 1);
  cfg.intermediate = clipo::getInt(c, "intermediateSize", 1);
  cfg.layers = clipo::getInt(c, "numLayers", 1);
  cfg.heads = clipo::getInt(c, "numHeads", 1);
  cfg.kvHeads = clipo::getInt(c, "numKvHeads", 1);
  cfg.headDim = clipo::getInt(c, "headDim", 2);
  cfg.rmsEps = clipo::getNumber(c, "rmsNormEps");
  cfg.ropeTheta = clipo::getNumber(c, "ropeTheta");
  cfg.tieEmbeddings = clipo::getBoolOr(c, "tieWordEmbeddings", false);
  cfg.attentionBias = clipo::getBoolOr(c, "attentionBias", false);
  cfg.mlpBias = clipo::getBoolOr(c, "mlpBias", false);
  if (clipo::hasField(c, "ropeScaling")) {
    if (!c.Get("ropeScaling").IsObject()) clipo::throwError(c.Env(), "ropeScaling: expected an object or null");
    Napi::Object rs = c.Get("ropeScaling").As<Napi::Object>();
    const int type = clipo::getEnum(rs, "type", {"default", "llama3"});
    if (type == 1) {
      cfg.llama3Scaling = true;
      cfg.ropeFactor = clipo::getNumber(rs, "factor");
      cfg.lowFreqFactor = clipo::getNumber(rs, "lowFreqFactor");
      cfg.highFreqFactor = clipo::getNumber(rs, "highFreqFactor");
      cfg.originalMaxPositions = clipo::getNumber(rs, "originalMaxPositionEmbeddings");
    }
  }
  return cfg;
}

// Sequences as one stream: tokens (all prompt+response tokens), promptLengths, responseLengths.
struct Stream {
  std::vector<int32_t> tokens;
  std::vector<Span> spans;
};

Stream parseStream(const Napi::Object& o, int64_t vocab) {
  Napi::Env env = o.Env();
  auto pl = clipo::getArray<int32_t>(o, "promptLengths");
  auto rl = clipo::getArray<int32_t>(o, "responseLengths", pl.length);
  if (pl.length == 0) clipo::throwError(env, "sequences: the batch is empty");
  Stream s;
  int64_t total = 0;
  for (size_t b = 0; b < pl.length; ++b) {
    if (pl[b] < 1) clipo::throwError(env, "sequences[" + std::to_string(b) + "].prompt: must not be empty");
    if (rl[b] < 0) clipo::throwError(env, "sequences[" + std::to_string(b) + "].response: negative length");
    s.spans.push_back(Span{total, static_cast<int64_t>(pl[b]) + rl[b], pl[b]});
    total += static_cast<int64_t>(pl[b]) + rl[b];
  }
  auto tok = clipo::getArray<int32_t>(o, "tokens", static_cast<size_t>(total));
  for (size_t i = 0; i < tok.length; ++i)
    if (tok[i] < 0 || tok[i] >= vocab)
      clipo::throwError(env, "tokens[" + std::to_string(i) + "]: id " + std::to_string(tok[i]) +
                                 " is out of range [0, " + std::to_string(vocab) + ")");
  s.tokens.assign(tok.data, tok.data + tok.length);
  return s;
}

Napi::Float32Array toF32(Napi::Env env, const std::vector<float>& v) {
  auto a = Napi::Float32Array::New(env, v.size());
  std::copy(v.begin(), v.end(), a.Data());
  return a;
}

Napi::Object scoreToJs(Napi::Env env, const clipo::engine::ScoreResult& r, bool withEntropy, bool withPooled) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("logprobs", toF32(env, r.logprobs));
  if (withEntropy) out.Set("entropy", toF32(env, r.entropy));
  if (withPooled) out.Set("pooled", toF32(env, r.pooled));
  auto mask = Napi::Uint8Array::New(env, r.mask.size());
  std::copy(r.mask.begin(), r.mask.end(), mask.Data());
  out.Set("mask", mask);
  out.Set("length", Napi::Number::New(env, static_cast<double>(r.T)));
  return out;
}

// {temperature, topP?, topK?, minP?, repetitionPenalty?, logitBiasTokens?, logitBiasValues?, topLogprobs?}
clipo::engine::SamplerSettings parseSampler(const Napi::Object& o, int64_t vocab) {
  Napi::Env env = o.Env();
  clipo::engine::SamplerSettings s;
  s.temperature = clipo::getNumber(o, "temperature");
  if (!(s.temperature >= 0) || !std::isfinite(s.temperature)) clipo::throwError(env, "temperature: must be a finite number >= 0");
  s.topP = clipo::getNumberOr(o, "topP", 1.0);
  if (!(s.topP > 0 && s.topP <= 1)) clipo::throwError(env, "topP: must be in (0, 1]");
  s.topK = clipo::getIntOr(o, "topK", 0, 0, int64_t{1} << 31);
  s.minP = clipo::getNumberOr(o, "minP", 0.0);
  if (!(s.minP >= 0 && s.minP <= 1)) clipo::throwError(env, "minP: must be in [0, 1]");
  s.repetitionPenalty = clipo::getNumberOr(o, "repetitionPenalty", 1.0);
  if (!(s.repetitionPenalty > 0) || !std::isfinite(s.repetitionPenalty)) clipo::throwError(env, "repetitionPenalty: must be a finite number > 0");
  s.topLogprobs = clipo::getIntOr(o, "topLogprobs", 0, 0, 1024);
  auto bt = clipo::getOptionalArray<int32_t>(o, "logitBiasTokens");
  auto bv = clipo::getOptionalArray<float>(o, "logitBiasValues", bt.length);
  if (bt.length != bv.length) clipo::throwError(env, "logitBiasValues: expected one value per token of logitBiasTokens");
  for (size_t i = 0; i < bt.length; ++i) {
    if (bt[i] < 0 || bt[i] >= vocab)
      clipo::throwError(env, "logitBiasTokens[" + std::to_string(i) + "]: token id " + std::to_string(bt[i]) +
                                 " is out of range [0, " + std::to_string(vocab) + ")");
    if (!std::isfinite(bv[i])) clipo::throwError(env, "logitBiasValues[" + std::to_string(i) + "]: must be finite");
    s.logitBias.emplace_back(bt[i], bv[i]);
  }
  return s;
}

void setTop(Napi::Env env, Napi::Object out, const std::vector<clipo::engine::DecodeStepToken>& ts, size_t k) {
  auto tt = Napi::Int32Array::New(env, ts.size() * k);
  auto tl = Napi::Float32Array::New(env, ts.size() * k);
  for (size_t i = 0; i < ts.size(); ++i)
    for (size_t j = 0; j < k; ++j) {
      const bool have = j < ts[i].t.top.size();
      tt[i * k + j] = have ? ts[i].t.top[j].first : -1;
      tl[i * k + j] = have ? ts[i].t.top[j].second : 0.f;
    }
  out.Set("topTokens", tt);
  out.Set("topLogprobs", tl);
  out.Set("topCount", Napi::Number::New(env, static_cast<double>(k)));
}

uint64_t parseSeed(const Napi::Object& o) {
  const double seed = clipo::getNumber(o, "seed");
  if (seed < 0 || seed != std::floor(seed) || seed > 9007199254740991.0)
    clipo::throwError(o.Env(), "seed: expected a non-negative integer");
  return static_cast<uint64_t>(seed);
}

class EngineModel : public Napi::ObjectWrap<EngineModel> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "EngineModel",
                       {InstanceMethod("paramInfo", &EngineModel::ParamInfoJs),
                        InstanceMethod("getWeights", &EngineModel::GetWeights),
                        InstanceMethod("logits", &EngineModel::Logits),
                        InstanceMethod("score", &EngineModel::Score),
                        InstanceMethod("generate", &EngineModel::Generate),
                        InstanceMethod("decodeAdd", &EngineModel::DecodeAdd),
                        InstanceMethod("decodeStep", &EngineModel::DecodeStep),
                        InstanceMethod("decodeRemove", &EngineModel::DecodeRemove),
                        InstanceMethod("decodeActive", &EngineModel::DecodeActive),
                        InstanceMethod("forwardTrain", &EngineModel::ForwardTrain),
                        InstanceMethod("backward", &EngineModel::Backward),
                        InstanceMethod("policyLossBackward", &EngineModel::PolicyLossBackward),
                        InstanceMethod("zeroGrad", &EngineModel::ZeroGrad),
                        InstanceMethod("adamwStep", &EngineModel::AdamwStep),
                        InstanceMethod("setMasterWeights", &EngineModel::SetMasterWeights),
                        InstanceMethod("setCheckpointing", &EngineModel::SetCheckpointing),
                        InstanceMethod("getCheckpointing", &EngineModel::GetCheckpointing),
                        InstanceMethod("getOptimizerState", &EngineModel::GetOptimizerState),
                        InstanceMethod("setOptimizerState", &EngineModel::SetOptimizerState),
                        InstanceMethod("getGradients", &EngineModel::GetGradients),
                        InstanceMethod("memoryBytes", &EngineModel::MemoryBytes),
                        InstanceMethod("deviceMemory", &EngineModel::DeviceMemoryJs),
                        InstanceMethod("resetPeakDeviceMemory", &EngineModel::ResetPeakDeviceMemory),
                        InstanceMethod("dispose", &EngineModel::Dispose)});
  }

  // new EngineModel({ config, weights: [{name, shape, data} | {name, shape, load}], threads? }) or
  // new EngineModel({ source, frozen? })
  explicit EngineModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineModel>(info) {
    Napi::Env env = info.Env();
    Napi::Object opts = clipo::argObject(info, 0, "EngineModel");
    napi_type_tag_object(env, info.This(), &kEngineTag);
    if (clipo::hasField(opts, "source")) {
      Napi::Value src = opts.Get("source");
      bool ok = false;
      if (src.IsObject()) napi_check_object_type_tag(env, src, &kEngineTag, &ok);
      if (!ok) clipo::throwError(env, "source: expected an EngineModel");
      EngineModel* other = Napi::ObjectWrap<EngineModel>::Unwrap(src.As<Napi::Object>());
      Engine& m = other->model(env);
      const bool frozen = clipo::getBoolOr(opts, "frozen", true);
      model_ = guarded(env, "cloneFrozen", [&] { return m.clone(frozen); });
      return;
    }
    if (!clipo::hasField(opts, "config") || !opts.Get("config").IsObject())
      clipo::throwError(env, "config: expected a model config object");
    const auto cfg = parseConfig(opts.Get("config").As<Napi::Object>());
    const int threads = static_cast<int>(clipo::getIntOr(opts, "threads", omp_get_num_procs(), 1, 1024));
    {
      // the parameters this config implies (at least), before the model allocates them
      const double H = static_cast<double>(cfg.hidden), qd = static_cast<double>(cfg.heads) * cfg.headDim,
                   kvd = static_cast<double>(cfg.kvHeads) * cfg.headDim;
      const double perLayer = 2 * qd * H + 2 * kvd * H + 3 * static_cast<double>(cfg.intermediate) * H;
      const double params = static_cast<double>(cfg.layers) * perLayer + static_cast<double>(cfg.vocab) * H;
      clipo::checkAllocatable(env, 4.0 * params, "Engine.create");
    }
    const std::string backend = clipo::hasField(opts, "backend")
                                    ? std::vector<std::string>{"cpu", "cuda"}[clipo::getEnum(opts, "backend", {"cpu", "cuda"})]
                                    : std::string("cpu");
    const std::string precision = clipo::hasField(opts, "precision")
                                      ? std::vector<std::string>{"bf16", "fp32"}[clipo::getEnum(opts, "precision", {"bf16", "fp32"})]
                                      : std::string();
    const bool training = clipo::getBoolOr(opts, "training", false);
    const bool checkpointing = clipo::getBoolOr(opts, "checkpointing", false);
    model_ = guarded(env, "Engine.create",
                     [&] { return clipo::engine::createEngine(backend, cfg, threads, precision, training); });
    if (checkpointing)
      guarded(env, "Engine.create", [&] {
        model_->setCheckpointing(true);
        return 0;
      });
    if (!clipo::hasField(opts, "weights") || !opts.Get("weights").IsArray())
      clipo::throwError(env, "weights: expected an array of {name, shape, data} or {name, shape, load}");
    Napi::Array arr = opts.Get("weights").As<Napi::Array>();
    std::unordered_map<std::string, Napi::Object> byName;
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      Napi::Value e = arr.Get(i);
      if (!e.IsObject()) clipo::throwError(env, "weights[" + std::to_string(i) + "]: expected {name, shape, data}");
      Napi::Object t = e.As<Napi::Object>();
      if (!t.Get("name").IsString()) clipo::throwError(env, "weights[" + std::to_string(i) + "].name: expected a string");
      byName.emplace(t.Get("name").As<Napi::String>().Utf8Value(), t);
    }
    Engine& m = *model_;
    // names first: an unexpected tensor is an error before anything is read (a `load` entry reads from disk)
    std::unordered_set<std::string> params;
    for (const auto& p : m.layout().params) params.insert(p.name);
    for (const auto& kv : byName) {
      if (params.count(kv.first)) continue;
      if (kv.first.find("rotary_emb.inv_freq") != std::string::npos) continue;  // a buffer, not a parameter
      if (kv.first == "lm_head.weight" && cfg.tieEmbeddings) continue;          // tied: the embedding is the head
      clipo::throwError(env, "weights: unexpected tensor " + kv.first +
                                 " (not a parameter of this config; check attentionBias/mlpBias/tieWordEmbeddings)");
    }
    for (const auto& p : m.layout().params) {
      auto it = byName.find(p.name);
      if (it == byName.end()) clipo::throwError(env, "weights: missing tensor " + p.name);
      Napi::Object t = it->second;
      Napi::Value sh = t.Get("shape");
      std::string want = "[", got = "[";
      for (size_t k = 0; k < p.shape.size(); ++k) want += (k ? ", " : "") + std::to_string(p.shape[k]);
      want += "]";
      bool same = sh.IsArray() && sh.As<Napi::Array>().Length() == p.shape.size();
      if (sh.IsArray()) {
        Napi::Array sa = sh.As<Napi::Array>();
        for (uint32_t k = 0; k < sa.Length(); ++k) {
          Napi::Value d = sa.Get(k);
          got += (k ? ", " : "") + (d.IsNumber() ? std::to_string(static_cast<int64_t>(d.As<Napi::Number>().DoubleValue())) : std::string("?"));
          if (same && (!d.IsNumber() || d.As<Napi::Number>().DoubleValue() != static_cast<double>(p.shape[k]))) same = false;
        }
      }
      got += "]";
      if (!same) clipo::throwError(env, "weights: tensor " + p.name + " has shape " + got + ", expected " + want);
      // {data}: the values now; {load}: a function returning them, called here, one tensor at a time, so a model read
      // from disk is never whole on the host (the handle scope lets each tensor's array go once it is uploaded)
      Napi::HandleScope scope(env);
      Napi::Value d = t.Get("data");
      const bool lazy = d.IsUndefined() && t.Get("load").IsFunction();
      if (lazy) d = t.Get("load").As<Napi::Function>().Call(t, {});
      if (!d.IsTypedArray() || d.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
        clipo::throwError(env, "weights: tensor " + p.name + (lazy ? ": load() must return a Float32Array" : ": data must be a Float32Array"));
      auto f = d.As<Napi::Float32Array>();
      if (f.ElementLength() != p.size)
        clipo::throwError(env, "weights: tensor " + p.name + ": data has " + std::to_string(f.ElementLength()) +
                                   " values, expected " + std::to_string(p.size));
      m.setParameter(p, f.Data());
    }
  }

 private:
  std::unique_ptr<Engine> model_;
  // A generate call runs JS (onProgress) while it holds the model: during it, every other use of this engine is
  // refused and dispose() is deferred to the call's end, so the running call never loses what it uses.
  int inFlight_ = 0;
  bool disposePending_ = false;

  struct InFlight {
    EngineModel* self;
    explicit InFlight(EngineModel* s) : self(s) { ++self->inFlight_; }
    ~InFlight() {
      if (--self->inFlight_ == 0 && self->disposePending_) self->model_.reset();
    }
  };

  Engine& model(Napi::Env env) {
    if (!model_ || disposePending_) clipo::throwError(env, "this engine has been disposed");
    if (inFlight_)
      clipo::throwError(env, "this engine is busy: generate is running (an onProgress callback must not use the engine)");
    return *model_;
  }

  Napi::Value ParamInfoJs(const Napi::CallbackInfo& info) {
    const auto& params = model(info.Env()).layout().params;
    Napi::Array out = Napi::Array::New(info.Env(), params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      Napi::Object o = Napi::Object::New(info.Env());
      o.Set("name", params[i].name);
      Napi::Array sh = Napi::Array::New(info.Env(), params[i].shape.size());
      for (size_t k = 0; k < params[i].shape.size(); ++k) sh.Set(k, Napi::Number::New(info.Env(), params[i].shape[k]));
      o.Set("shape", sh);
      o.Set("offset", Napi::Number::New(info.Env(), static_cast<double>(params[i].offset)));
      o.Set("size", Napi::Number::New(info.Env(), static_cast<double>(params[i].size)));
      out.Set(i, o);
    }
    return out;
  }

  Napi::Value GetWeights(const Napi::CallbackInfo& info) { return toF32(info.Env(), model(info.Env()).exportWeights()); }
  Napi::Value GetGradients(const Napi::CallbackInfo& info) {
    const std::vector<float> g = model(info.Env()).exportGradients();
    if (g.empty()) return info.Env().Null();
    return toF32(info.Env(), g);
  }

  Napi::Value MemoryBytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), model(info.Env()).stateBytes());
  }

  // logits({tokens, batch, length}) -> Float32Array [batch*length*vocab]
  Napi::Value Logits(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& m = model(env);
    Napi::Object o = clipo::argObject(info, 0, "logits");
    const int64_t batch = clipo::getInt(o, "batch", 1), length = clipo::getInt(o, "length", 1);
    const size_t n = clipo::checkedSize(env, {batch, length}, "logits");
    auto tok = clipo::getArray<int32_t>(o, "tokens", n);
    for (size_t i = 0; i < n; ++i)
      if (tok[i] < 0 || tok[i] >= m.config().vocab)
        clipo::throwError(env, "tokens[" + std::to_string(i) + "]: id " + std::to_string(tok[i]) +
                                   " is out of range [0, " + std::to_string(m.config().vocab) + ")");
    const size_t outN = clipo::checkedSize(env, {batch, length, m.config().vocab}, "logits");
    auto out = clipo::newArray<float>(env, outN, "logits");
    guarded(env, "logits", [&] { m.logits(tok.data, batch, length, out.Data()); });
    return out;
  }

  Napi::Value Score(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& m = model(env);
    Napi::Object o = clipo::argObject(info, 0, "score");
    Stream s = parseStream(o, m.config().vocab);
    const bool ent = clipo::getBoolOr(o, "entropy", false), pooled = clipo::getBoolOr(o, "pooled", false);
    auto r = guarded(env, "score", [&] { return m.score(s.tokens, s.spans, ent, pooled); });
    return scoreToJs(env, r, ent, pooled);
  }

  // the CPU engine: the activations kept for backward, per token and layer (cpu_forward.cpp, forwardTrain), before any
  // is allocated (the CUDA engine checks its device memory itself)
  static void checkTrainMemory(Napi::Env env, Engine& m, const Stream& s, const char* what) {
    if (std::string(m.backend()) != "cpu") return;
    const double N = static_cast<double>(s.tokens.size()), H = static_cast<double>(m.config().hidden);
    const double hd = static_cast<double>(m.config().headDim), heads = static_cast<double>(m.config().heads);
    const double qkv = (heads + 2.0 * m.config().kvHeads) * hd, qd = heads * hd, I = static_cast<double>(m.config().intermediate);
    const double perToken = static_cast<double>(m.config().layers) * (5 * H + qkv + qd + 2 * I + heads + 2) + 2 * H;
    clipo::checkAllocatable(env, 4.0 * N * perToken, what);
  }

  Napi::Value ForwardTrain(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& m = model(env);
    Napi::Object o = clipo::argObject(info, 0, "forwardTrain");
    Stream s = parseStream(o, m.config().vocab);
    checkTrainMemory(env, m, s, "forwardTrain");
    auto r = guarded(env, "forwardTrain", [&] { return m.forwardTrain(s.tokens, s.spans); });
    return scoreToJs(env, r, true, false);
  }

  // policyLossBackward({tokens, promptLengths, responseLengths, oldLogp, refLogp?, advantages, inLoss?, mode, agg,
  //   clipLow, clipHigh, dualClip?, klCoef?, klType?, weight, entropyCoef?, entropyDenominator?}) -> the figures
  // (engine.h, policy_loss.h). oldLogp / refLogp: [B*T], T the longest response; their values on the in-loss
  // responses' tokens must be finite (elsewhere they are ignored).
  Napi::Value PolicyLossBackward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& m = model(env);
    if (m.frozen()) clipo::throwError(env, "policyLossBackward: this engine is a frozen copy: it has no gradients");
    Napi::Object o = clipo::argObject(info, 0, "policyLossBackward");
    Stream s = parseStream(o, m.config().vocab);
    const size_t B = s.spans.size();
    int64_t T = 0;
    for (const Span& sp : s.spans) T = std::max(T, sp.length - sp.promptLength);
    const size_t n = clipo::checkedSize(env, {static_cast<int64_t>(B), T}, "batch x longest response");
    const std::string shape = " (batch " + std::to_string(B) + " x longest response " + std::to_string(T) + ")";
    clipo::engine::PolicyLossRequest req;
    req.loss = clipo::surrogate::parseSettings(o);
    const auto lenMsg = [&](const char* key, size_t got, size_t want, const std::string& what) {
      if (got != want)
        clipo::throwError(env, std::string(key) + ": expected " + std::to_string(want) + " values" + what + ", got " +
                                   std::to_string(got));
    };
    auto old = clipo::getArray<float>(o, "oldLogp");
    lenMsg("oldLogp", old.length, n, shape);
    auto ref = clipo::getOptionalArray<float>(o, "refLogp");
    if (ref.data) lenMsg("refLogp", ref.length, n, shape);
    if (req.loss.klCoef != 0 && !ref.data) clipo::throwError(env, "klCoef: a KL coefficient needs refLogp");
    auto adv = clipo::getArray<float>(o, "advantages");
    lenMsg("advantages", adv.length, B, " (one per sequence)");
    auto in = clipo::getOptionalArray<uint8_t>(o, "inLoss");
    if (in.data) lenMsg("inLoss", in.length, B, " (one per sequence)");
    for (size_t b = 0; b < B; ++b) {
      if (!std::isfinite(adv[b])) clipo::throwError(env, "advantages[" + std::to_string(b) + "]: must be finite");
      if (in.data && in[b] == 0) continue;
      const int64_t len = s.spans[b].length - s.spans[b].promptLength;
      for (int64_t t = 0; t < len; ++t) {
        const size_t i = b * static_cast<size_t>(T) + static_cast<size_t>(t);
        if (!std::isfinite(old[i]))
          clipo::throwError(env, "oldLogp[" + std::to_string(i) + "] (sequence " + std::to_string(b) + ", token " +
                                     std::to_string(t) + "): must be finite");
        if (ref.data && !std::isfinite(ref[i]))
          clipo::throwError(env, "refLogp[" + std::to_string(i) + "] (sequence " + std::to_string(b) + ", token " +
                                     std::to_string(t) + "): must be finite");
      }
    }
    req.weight = clipo::getNumber(o, "weight");  // finite (a negative weight ascends the loss: tests use it)
    req.entropyCoef = clipo::getNumberOr(o, "entropyCoef", 0.0);
    if (req.entropyCoef < 0) clipo::throwError(env, "entropyCoef: must be >= 0, got " + std::to_string(req.entropyCoef));
    req.entropyDenominator = clipo::getNumberOr(o, "entropyDenominator", 1.0);
    if (!(req.entropyDenominator > 0))
      clipo::throwError(env, "entropyDenominator: must be > 0 (the mini-batch's loss tokens), got " +
                                 std::to_string(req.entropyDenominator));
    req.oldLogp = old.data;
    req.refLogp = ref.data;
    req.advantages = adv.data;
    req.inLoss = in.data;
    checkTrainMemory(env, m, s, "policyLossBackward");
    const auto f = guarded(env, "policyLossBackward", [&] { return m.policyLossBackward(s.tokens, s.spans, req); });
    Napi::Object out = Napi::Object::New(env);
    out.Set("loss", f.loss.loss);
    out.Set("pgLoss", f.loss.pgLoss);
    out.Set("klLoss", f.loss.klLoss);
    out.Set("clipFracHigh", f.loss.clipFracHigh);
    out.Set("clipFracLow", f.loss.clipFracLow);
    out.Set("dualClipFrac", f.loss.dualClipFrac);
    out.Set("approxKl", f.loss.approxKl);
    out.Set("entropySum", f.entropySum);
    out.Set("tokens", static_cast<double>(f.tokens));
    out.Set("sequences", static_cast<double>(f.sequences));
    out.Set("nonFiniteLogp", static_cast<double>(f.nonFiniteLogp));
    out.Set("nonFiniteGrad", static_cast<double>(f.nonFiniteGrad));
    out.Set("accumulated", f.accumulated);
    return out;
  }

  Napi::Value Backward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& m = model(env);
    Napi::Object o = clipo::argObject(info, 0, "backward");
    auto gl = clipo::getArray<float>(o, "gradLogp");
    if (!m.hasActivations()) clipo::throwError(env, "backward: no activations; call forwardTrain first");
    auto ge = clipo::getOptionalArray<float>(o, "gradEntropy");
    guarded(env, "backward", [&] { m.backward(gl.data, gl.length, ge.data, ge.length); });
    if (clipo::getBoolOr(o, "release", true)) m.releaseActivations();
    return env.Undefined();
  }

  Napi::Value ZeroGrad(const Napi::CallbackInfo& info) {
    Engine& m = model(info.Env());
    guarded(info.Env(), "zeroGrad", [&] { m.zeroGrad(); });
    return info.Env().Undefined();
  }

  Napi::Value AdamwStep(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& m = model(env);
    Napi::Object o = clipo::argObject(info, 0, "adamwStep");
    const double lr = clipo::getNumber(o, "lr");
    const double b1 = clipo::getNumberOr(o, "beta1", 0.9), b2 = clipo::getNumberOr(o, "beta2", 0.999);
    const double eps = clipo::getNumberOr(o, "eps", 1e-8), wd = clipo::getNumberOr(o, "weightDecay", 0.0);
    const double clip = clipo::getNumberOr(o, "maxGradNorm", 0.0);
    if (lr < 0) clipo::throwError(env, "lr: must be >= 0");
    if (!(b1 >= 0 && b1 < 1) || !(b2 >= 0 && b2 < 1)) clipo::throwError(env, "beta1/beta2: must be in [0, 1)");
    if (!(eps > 0)) clipo::throwError(env, "eps: must be > 0");
    if (wd < 0 || clip < 0) clipo::throwError(env, "weightDecay/maxGradNorm: must be >= 0");
    double norm = guarded(env, "adamwStep", [&] { return m.adamw(lr, b1, b2, eps, wd, clip); });
    return Napi::Number::New(env, norm);
  }

  // setMasterWeights({ mode: 'fp32' | 'bf16-sr', seed? })
  Napi::Value SetMasterWeights(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& m = model(env);
    Napi::Object o = clipo::argObject(info, 0, "setMasterWeights");
    const bool bf16 = clipo::getEnum(o, "mode", {"fp32", "bf16-sr"}) == 1;
    const uint64_t seed = static_cast<uint64_t>(clipo::getIntOr(o, "seed", 0, 0, (int64_t{1} << 53) - 1));
    guarded(env, "setMasterWeights", [&] {
      m.setMasterWeights(bf16, seed);
      return 0;
    });
    return env.Undefined();
  }

  // setCheckpointing(on: boolean): per-layer recomputation in the training passes (engine.h)
  Napi::Value SetCheckpointing(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& m = model(env);
    if (info.Length() < 1 || !info[0].IsBoolean()) clipo::throwError(env, "setCheckpointing: expected a boolean");
    const bool on = info[0].As<Napi::Boolean>().Value();
    guarded(env, "setCheckpointing", [&] {
      m.setCheckpointing(on);
      return 0;
    });
    return env.Undefined();
  }
  Napi::Value GetCheckpointing(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Napi::Boolean::New(env, model(env).checkpointing());
  }

  // deviceMemory(): { currentBytes, peakBytes, freeBytes, totalBytes } or null (a backend without a device)
  Napi::Value DeviceMemoryJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& m = model(env);
    const auto d = guarded(env, "deviceMemory", [&] { return m.deviceMemory(); });
    if (!d) return env.Null();
    Napi::Object out = Napi::Object::New(env);
    out.Set("currentBytes", Napi::Number::New(env, d->currentBytes));
    out.Set("peakBytes", Napi::Number::New(env, d->peakBytes));
    out.Set("freeBytes", Napi::Number::New(env, d->freeBytes));
    out.Set("totalBytes", Napi::Number::New(env, d->totalBytes));
    return out;
  }
  Napi::Value ResetPeakDeviceMemory(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& m = model(env);
    guarded(env, "resetPeakDeviceMemory", [&] {
      m.resetPeakDeviceMemory();
      return 0;
    });
    return env.Undefined();
  }

  Napi::Value GetOptimizerState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& m = model(env);
    Napi::Object out = Napi::Object::New(env);
    const auto st = m.optimizerState();
    out.Set("step", Napi::Number::New(env, static_cast<double>(st.step)));
    out.Set("m", st.m.empty() ? env.Null() : Napi::Value(toF32(env, st.m)));
    out.Set("v", st.v.empty() ? env.Null() : Napi::Value(toF32(env, st.v)));
    return out;
  }

  Napi::Value SetOptimizerState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& m = model(env);
    if (m.frozen()) clipo::throwError(env, "importOptimizerState: this engine is a frozen copy");
    Napi::Object o = clipo::argObject(info, 0, "importOptimizerState");
    const int64_t step = clipo::getInt(o, "step", 0, int64_t{1} << 40);
    auto mm = clipo::getArray<float>(o, "m", m.layout().total);
    auto vv = clipo::getArray<float>(o, "v", m.layout().total);
    for (size_t i = 0; i < vv.length; ++i)
      if (!std::isfinite(mm[i]) || !std::isfinite(vv[i]) || vv[i] < 0)
        clipo::throwError(env, "importOptimizerState: m/v value " + std::to_string(i) + " is not finite or v < 0");
    clipo::engine::OptimizerState st;
    st.step = step;
    st.m.assign(mm.data, mm.data + mm.length);
    st.v.assign(vv.data, vv.data + vv.length);
    guarded(env, "importOptimizerState", [&] { m.setOptimizerState(std::move(st)); });
    return env.Undefined();
  }

  // generate({tokens, promptLengths, n, maxNewTokens, temperature, topP, seed, stopTokens, returnPooled, maxBatch,
  //           onProgress}) -> {promptIndex, sampleIndex, lengths, tokens, logprobs, stopped, pooled?}
  Napi::Value Generate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& m = model(env);
    InFlight inFlight(this);  // until this function returns: m stays alive whatever onProgress does
    Napi::Object o = clipo::argObject(info, 0, "generate");
    clipo::engine::GenerateRequest req;
    auto pl = clipo::getArray<int32_t>(o, "promptLengths");
    if (pl.length == 0) clipo::throwError(env, "prompts: at least one prompt is required");
    size_t total = 0;
    for (size_t i = 0; i < pl.length; ++i) {
      if (pl[i] < 1) clipo::throwError(env, "prompts[" + std::to_string(i) + "]: empty prompt");
      total += pl[i];
    }
    auto tok = clipo::getArray<int32_t>(o, "tokens", total);
    size_t at = 0;
    for (size_t i = 0; i < pl.length; ++i) {
      for (int32_t k = 0; k < pl[i]; ++k) {
        const int32_t t = tok[at + k];
        if (t < 0 || t >= m.config().vocab)
          clipo::throwError(env, "prompts[" + std::to_string(i) + "][" + std::to_string(k) + "]: token id " +
                                     std::to_string(t) + " is out of range [0, " + std::to_string(m.config().vocab) + ")");
      }
      req.prompts.emplace_back(tok.data + at, tok.data + at + pl[i]);
      at += pl[i];
    }
    req.n = clipo::getIntOr(o, "n", 1, 1, 1 << 20);
    req.maxNewTokens = clipo::getInt(o, "maxNewTokens", 0, 1 << 24);
    req.maxBatch = clipo::getIntOr(o, "maxBatch", 64, 1, 1 << 20);
    req.temperature = clipo::getNumber(o, "temperature");
    // 0 is greedy; a tiny positive temperature would overflow the scaled fp32 logits into NaN log-probs
    if (!(req.temperature == 0 || req.temperature >= 1e-4))
      clipo::throwError(env, "temperature: must be 0 (greedy) or at least 0.0001");
    req.topP = clipo::getNumberOr(o, "topP", 1.0);
    if (!(req.topP > 0 && req.topP <= 1)) clipo::throwError(env, "topP: must be in (0, 1]");
    const double seed = clipo::getNumber(o, "seed");
    if (seed < 0 || seed != std::floor(seed) || seed > 9007199254740991.0)
      clipo::throwError(env, "seed: expected a non-negative integer");
    req.seed = static_cast<uint64_t>(seed);
    auto stops = clipo::getOptionalArray<int32_t>(o, "stopTokens");
    req.stopTokens.assign(stops.data, stops.data + stops.length);
    req.returnPooled = clipo::getBoolOr(o, "returnPooled", false);
    Napi::Function progressFn;
    if (clipo::hasField(o, "onProgress")) {
      if (!o.Get("onProgress").IsFunction()) clipo::throwError(env, "onProgress: expected a function");
      progressFn = o.Get("onProgress").As<Napi::Function>();
    }
    {
      // what one group of sequences holds at once (KV caches, logits) and the outputs, before any work starts
      int64_t longest = 0;
      for (size_t i = 0; i < pl.length; ++i) longest = std::max<int64_t>(longest, pl[i]);
      const double P = static_cast<double>(pl.length), n = static_cast<double>(req.n);
      const double perGroup = std::min(P, std::max(1.0, std::floor(static_cast<double>(req.maxBatch) / n)));
      const double S = perGroup * n, cap = static_cast<double>(longest) + static_cast<double>(req.maxNewTokens) + 1;
      const double kvd = static_cast<double>(m.config().kvHeads) * static_cast<double>(m.config().headDim);
      const double cache = 2.0 * S * static_cast<double>(m.config().layers) * cap * kvd * 4;
      const double logits = S * static_cast<double>(m.config().vocab) * 4;
      const double outputs = P * n * static_cast<double>(req.maxNewTokens) * 8 +
                             (req.returnPooled ? P * n * static_cast<double>(m.config().hidden) * 4 : 0.0);
      clipo::checkAllocatable(env, cache + logits + outputs, "generate");
    }
    std::function<void(int64_t, int64_t)> progress;
    int64_t lastDone = -1;
    if (!progressFn.IsEmpty())
      progress = [&](int64_t done, int64_t tot) {
        if (done == lastDone) return;
        lastDone = done;
        progressFn.Call({Napi::Number::New(env, static_cast<double>(done)), Napi::Number::New(env, static_cast<double>(tot))});
      };
    auto seqs = guarded(env, "generate", [&] { return m.generate(req, progress); });
    const size_t S = seqs.size();
    size_t totalTok = 0;
    for (const auto& s : seqs) totalTok += s.tokens.size();
    auto pIdx = Napi::Int32Array::New(env, S), sIdx = Napi::Int32Array::New(env, S), lens = Napi::Int32Array::New(env, S);
    auto toks = Napi::Int32Array::New(env, totalTok);
    auto lps = Napi::Float32Array::New(env, totalTok);
    auto stopped = Napi::Uint8Array::New(env, S);
    size_t k = 0;
    for (size_t i = 0; i < S; ++i) {
      pIdx[i] = static_cast<int32_t>(seqs[i].promptIndex);
      sIdx[i] = static_cast<int32_t>(seqs[i].sampleIndex);
      lens[i] = static_cast<int32_t>(seqs[i].tokens.size());
      stopped[i] = seqs[i].stopped ? 1 : 0;
      for (size_t j = 0; j < seqs[i].tokens.size(); ++j, ++k) {
        toks[k] = seqs[i].tokens[j];
        lps[k] = seqs[i].logprobs[j];
      }
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("promptIndex", pIdx);
    out.Set("sampleIndex", sIdx);
    out.Set("lengths", lens);
    out.Set("tokens", toks);
    out.Set("logprobs", lps);
    out.Set("stopped", stopped);
    if (req.returnPooled) {
      const size_t H = static_cast<size_t>(m.config().hidden);
      auto pooled = Napi::Float32Array::New(env, S * H);
      for (size_t i = 0; i < S; ++i) std::copy(seqs[i].pooled.begin(), seqs[i].pooled.end(), pooled.Data() + i * H);
      out.Set("pooled", pooled);
    }
    return out;
  }

  // decodeAdd({tokens, n?, maxNewTokens, seed, promptIndex?, stopTokens?, ...sampler}) -> Float64Array of ids
  Napi::Value DecodeAdd(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& m = model(env);
    Napi::Object o = clipo::argObject(info, 0, "decodeAdd");
    clipo::engine::DecodeAddRequest r;
    auto tok = clipo::getArray<int32_t>(o, "tokens");
    if (tok.length == 0) clipo::throwError(env, "tokens: the prompt is empty");
    for (size_t i = 0; i < tok.length; ++i)
      if (tok[i] < 0 || tok[i] >= m.config().vocab)
        clipo::throwError(env, "tokens[" + std::to_string(i) + "]: token id " + std::to_string(tok[i]) +
                                   " is out of range [0, " + std::to_string(m.config().vocab) + ")");
    r.prompt.assign(tok.data, tok.data + tok.length);
    r.n = clipo::getIntOr(o, "n", 1, 1, 4096);
    r.maxNewTokens = clipo::getInt(o, "maxNewTokens", 1, 1 << 24);
    r.promptIndex = clipo::getIntOr(o, "promptIndex", 0, 0, int64_t{1} << 40);
    r.seed = parseSeed(o);
    r.sampler = parseSampler(o, m.config().vocab);
    {
      // this request's KV caches, its logits rows and the prefill's activations, before any work starts
      const double n = static_cast<double>(r.n), L = static_cast<double>(r.prompt.size());
      const double cap = L + static_cast<double>(r.maxNewTokens) + 1;
      const double kvd = static_cast<double>(m.config().kvHeads) * static_cast<double>(m.config().headDim);
      const double cache = 2.0 * n * static_cast<double>(m.config().layers) * cap * kvd * 4;
      const double logits = (n + 1) * static_cast<double>(m.config().vocab) * 4;
      const double prefill = L * (8.0 * static_cast<double>(m.config().hidden) + 3.0 * static_cast<double>(m.config().intermediate)) * 4;
      clipo::checkAllocatable(env, cache + logits + prefill, "decodeAdd");
    }
    auto stops = clipo::getOptionalArray<int32_t>(o, "stopTokens");
    r.stopTokens.assign(stops.data, stops.data + stops.length);
    auto ids = guarded(env, "decodeAdd", [&] { return m.decodeAdd(r); });
    auto out = Napi::Float64Array::New(env, ids.size());
    for (size_t i = 0; i < ids.size(); ++i) out[i] = static_cast<double>(ids[i]);
    return out;
  }

  // decodeStep() -> {ids, tokens, logprobs, finished, stopped, topTokens, topLogprobs, topCount}, one entry per
  // sequence that was live (finished ones have left the batch when this returns)
  Napi::Value DecodeStep(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& m = model(env);
    auto ts = guarded(env, "decodeStep", [&] { return m.decodeStep(); });
    const size_t S = ts.size();
    auto ids = Napi::Float64Array::New(env, S);
    auto toks = Napi::Int32Array::New(env, S);
    auto lps = Napi::Float32Array::New(env, S);
    auto fin = Napi::Uint8Array::New(env, S), stp = Napi::Uint8Array::New(env, S);
    size_t k = 0;
    for (size_t i = 0; i < S; ++i) {
      ids[i] = static_cast<double>(ts[i].id);
      toks[i] = ts[i].t.token;
      lps[i] = ts[i].t.logprob;
      fin[i] = ts[i].finished ? 1 : 0;
      stp[i] = ts[i].stopped ? 1 : 0;
      k = std::max(k, ts[i].t.top.size());
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("ids", ids);
    out.Set("tokens", toks);
    out.Set("logprobs", lps);
    out.Set("finished", fin);
    out.Set("stopped", stp);
    setTop(env, out, ts, k);
    return out;
  }

  Napi::Value DecodeRemove(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& m = model(env);
    if (info.Length() < 1 || !info[0].IsNumber()) clipo::throwError(env, "decodeRemove: expected a sequence id");
    const double id = info[0].As<Napi::Number>().DoubleValue();
    if (id != std::floor(id) || id < 0) clipo::throwError(env, "decodeRemove: expected a sequence id");
    return Napi::Boolean::New(env, m.decodeRemove(static_cast<int64_t>(id)));
  }

  Napi::Value DecodeActive(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(model(info.Env()).decodeActive()));
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    if (inFlight_) disposePending_ = true;  // freed when the running generate returns
    else model_.reset();
    return info.Env().Undefined();
  }
};

// engineFmaPeak({threads?, seconds?}) -> {gflops (wall clock, all threads), gflopsPerCpuSecond (one core)}
Napi::Value FmaPeak(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info.Length() > 0 && info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(env);
  const int threads = static_cast<int>(clipo::getIntOr(o, "threads", omp_get_num_procs(), 1, 1024));
  const double seconds = clipo::getNumberOr(o, "seconds", 0.3);
  if (!(seconds > 0 && seconds <= 60)) clipo::throwError(env, "seconds: must be in (0, 60]");
  const auto p = clipo::engine::measureFmaPeak(threads, seconds);
  Napi::Object out = Napi::Object::New(env);
  out.Set("gflops", p.gflops);
  out.Set("gflopsPerCpuSecond", p.gflopsPerCpuSecond);
  return out;
}

// engineGemm({M, N, K, mode: 'nt'|'nn'|'tn'|'rows', repeats?, threads?})
//   -> {seconds (median), gflops, gflopsPerCpuSecond (CPU time of the thread team), kernel}
Napi::Value GemmBench(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = clipo::argObject(info, 0, "engineGemm");
  const int64_t M = clipo::getInt(o, "M", 1, 1 << 16), N = clipo::getInt(o, "N", 1, 1 << 20), K = clipo::getInt(o, "K", 1, 1 << 16);
  const int mode = clipo::getEnum(o, "mode", {"nt", "nn", "tn", "rows"});
  const int64_t repeats = clipo::getIntOr(o, "repeats", 5, 1, 1000);
  const int threads = static_cast<int>(clipo::getIntOr(o, "threads", omp_get_num_procs(), 1, 1024));
  clipo::checkAllocatable(env, 4.0 * (static_cast<double>(M) * K + static_cast<double>(K) * N + static_cast<double>(M) * N), "engineGemm");
  std::vector<float> A(M * K), B(K * N), C(M * N);
  for (size_t i = 0; i < A.size(); ++i) A[i] = static_cast<float>((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
  for (size_t i = 0; i < B.size(); ++i) B[i] = static_cast<float>((i * 40503u) % 1000) * 1e-3f - 0.5f;
  std::vector<double> times, cpuTimes;
  // The team's CPU time, each thread reading its own clock: CLOCK_PROCESS_CPUTIME_ID accounts a thread running on
  // another core only at its next tick or switch, so on a sub-tick call it misses the other threads' time and
  // reports a rate above one core's peak.
  auto cpuNow = [threads] {
    double s = 0.0;
#pragma omp parallel num_threads(threads) reduction(+ : s)
    {
      timespec t;
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
      s += t.tv_sec + 1e-9 * t.tv_nsec;
    }
    return s;
  };
  for (int64_t r = 0; r <= repeats; ++r) {
    const double c0 = cpuNow();
    auto t0 = std::chrono::steady_clock::now();
    if (mode == 0) clipo::engine::matmulNT(M, N, K, A.data(), B.data(), C.data(), false, threads);
    else if (mode == 1) clipo::engine::matmulNN(M, N, K, A.data(), B.data(), C.data(), false, threads);
    else if (mode == 2) clipo::engine::matmulTN(M, N, K, A.data(), B.data(), C.data(), false, threads);
    else clipo::engine::matmulNTRows(M, N, K, A.data(), B.data(), C.data(), threads);
    auto t1 = std::chrono::steady_clock::now();
    const double c1 = cpuNow();
    if (r > 0) {
      times.push_back(std::chrono::duration<double>(t1 - t0).count());
      cpuTimes.push_back(c1 - c0);
    }
  }
  std::sort(times.begin(), times.end());
  std::sort(cpuTimes.begin(), cpuTimes.end());
  const double t = times[times.size() / 2], tc = cpuTimes[cpuTimes.size() / 2];
  Napi::Object out = Napi::Object::New(env);
  out.Set("seconds", t);
  out.Set("gflops", 2.0 * M * N * K / t / 1e9);
  out.Set("gflopsPerCpuSecond", 2.0 * M * N * K / tc / 1e9);
  out.Set("kernel", clipo::engine::gemmKernelName());
  return out;
}

// engineSample({logits: Float32Array, u, history?: Int32Array, ...sampler}) -> {token, logprob, topTokens, topLogprobs}
// The step-wise decoder's sampler on one row, for tests against an independent reference.
Napi::Value SampleJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = clipo::argObject(info, 0, "engineSample");
  auto z = clipo::getArray<float>(o, "logits");
  if (z.length == 0) clipo::throwError(env, "logits: empty");
  const auto s = parseSampler(o, static_cast<int64_t>(z.length));
  const double u = clipo::getNumber(o, "u");
  if (!(u >= 0 && u < 1)) clipo::throwError(env, "u: must be in [0, 1)");
  auto h = clipo::getOptionalArray<int32_t>(o, "history");
  std::vector<int32_t> hist(h.data, h.data + h.length);
  auto r = guarded(env, "engineSample", [&] { return clipo::engine::sampleLogits(z.data, static_cast<int64_t>(z.length), s, hist, u); });
  Napi::Object out = Napi::Object::New(env);
  out.Set("token", r.token);
  out.Set("logprob", r.logprob);
  auto tt = Napi::Int32Array::New(env, r.top.size());
  auto tl = Napi::Float32Array::New(env, r.top.size());
  for (size_t i = 0; i < r.top.size(); ++i) {
    tt[i] = r.top[i].first;
    tl[i] = r.top[i].second;
  }
  out.Set("topTokens", tt);
  out.Set("topLogprobs", tl);
  return out;
}

// engineBackends() -> {cpu: true, cuda: boolean, cudaReason?: string}: which engine backends this build can run.
Napi::Value EngineBackendsJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto b = clipo::engine::engineBackends();
  Napi::Object out = Napi::Object::New(env);
  out.Set("cpu", b.cpu);
  out.Set("cuda", b.cuda);
  if (!b.cuda) out.Set("cudaReason", b.cudaReason);
  return out;
}

void InitEngine(Napi::Env env, Napi::Object exports) {
  exports.Set("engineBackends", Napi::Function::New(env, EngineBackendsJs));
  exports.Set("engineSample", Napi::Function::New(env, SampleJs));
  exports.Set("EngineModel", EngineModel::Define(env));
  exports.Set("engineFmaPeak", Napi::Function::New(env, FmaPeak));
  exports.Set("engineGemm", Napi::Function::New(env, GemmBench));
}

}  // namespace

CLIPO_REGISTER_MODULE(engine, InitEngine);
