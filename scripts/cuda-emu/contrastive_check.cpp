// CUDA-on-CPU logic check of the contrastive kernel (scripts/cuda-emu/run.sh): contrastiveCudaHost, run through
// the host emulation of cuda_emu.h, against contrastiveCpu on random inputs. Exit status 1 on any mismatch.
#include <cstdio>
#include <cstring>
#include <string>
#include <random>
#include <vector>
#include <cmath>
#include "contrastive_loss.h"
using namespace clipo::contrastive;
int fails = 0;
double maxdiff(const std::vector<float>& a, const std::vector<float>& b, double& scale) {
  double m = 0; scale = 0;
  for (size_t k = 0; k < a.size(); ++k) { m = std::max(m, (double)std::fabs(a[k] - b[k])); if (!std::isfinite(a[k])) m = INFINITY; scale = std::max(scale, (double)std::fabs(b[k])); }
  return m;
}
void run(int B, int H, int D, int L, Head head, LossType lt, Level lv, Distance dist, int ml, bool skip, int input, std::mt19937& rng) {
  std::normal_distribution<float> nd;
  Params p; p.batch = B; p.hidden = H; p.out = D; p.length = input ? L : 0; p.head = head; p.loss = lt; p.level = lv; p.distance = dist;
  p.temperature = 0.1f; p.maskedLabel = ml; p.skipTrivial = skip; p.seed = rng();
  std::vector<float> pooled(B * H), tok((size_t)B * L * H), W(D * H), W1(H * H);
  std::vector<uint16_t> tb((size_t)B * L * H);
  std::vector<uint8_t> mask(B * L), corr(B); std::vector<int32_t> grp(B);
  for (auto& v : pooled) v = nd(rng);
  for (size_t k = 0; k < tok.size(); ++k) { tok[k] = nd(rng); uint32_t u; memcpy(&u, &tok[k], 4); tb[k] = u >> 16; }
  for (auto& v : W) v = nd(rng) / std::sqrt((float)H);
  for (auto& v : W1) v = nd(rng) / std::sqrt((float)H);
  for (int i = 0; i < B; ++i) { int n = 1 + rng() % L; for (int t = 0; t < n; ++t) mask[i * L + t] = 1; corr[i] = rng() % 2; grp[i] = i / 5; }
  Inputs in; in.weightOut = W.data(); in.weightIn = head == Head::Mlp ? W1.data() : nullptr; in.correct = corr.data(); in.group = grp.data(); in.mask = mask.data();
  if (input == 0) in.pooled = pooled.data(); else if (input == 1) { in.tokens = tok.data(); in.tokenType = DType::F32; } else { in.tokens = tb.data(); in.tokenType = DType::BF16; }
  auto mk = [&](std::vector<float>& ps, std::vector<float>& e, std::vector<float>& g, std::vector<float>& g1, std::vector<int32_t>& pos, float& loss, int32_t& va) {
    ps.assign(B, 0); e.assign(B * D, 0); g.assign(D * H, 0); g1.assign(H * H, 0); pos.assign(B, 0);
    Outputs o; o.perSample = ps.data(); o.embeddings = e.data(); o.gradWeightOut = g.data(); o.gradWeightIn = head == Head::Mlp ? g1.data() : nullptr; o.positives = pos.data(); o.loss = &loss; o.validAnchors = &va; return o; };
  std::vector<float> ps1, e1, g1, h1, ps2, e2, g2, h2; std::vector<int32_t> pos1, pos2; float l1, l2; int32_t v1, v2;
  contrastiveCpu(p, in, mk(ps1, e1, g1, h1, pos1, l1, v1));
  const char* err = contrastiveCudaHost(p, in, mk(ps2, e2, g2, h2, pos2, l2, v2));
  double s; bool bad = *err;
  double de = maxdiff(e2, e1, s); bad |= de > 1e-4 * (1 + s);
  double dp = maxdiff(ps2, ps1, s); bad |= dp > 1e-3 * (1 + s);
  double dg = maxdiff(g2, g1, s); bad |= dg > 1e-3 * (1 + s);
  double dg1 = maxdiff(h2, h1, s); bad |= dg1 > 1e-3 * (1 + s);
  bad |= pos1 != pos2 || v1 != v2 || std::fabs(l1 - l2) > 1e-3 * (1 + std::fabs(l1));
  if (bad || getenv("VERBOSE")) printf("%s B=%d H=%d D=%d L=%d head=%d loss=%d level=%d dist=%d ml=%d skip=%d input=%d: err='%s' de=%.2g dp=%.2g dg=%.2g dg1=%.2g pos %s valid %d/%d loss %g/%g\n", bad ? "FAIL" : "ok", B, H, D, L, (int)head, (int)lt, (int)lv, (int)dist, ml, skip, input, err, de, dp, dg, dg1, pos1 == pos2 ? "same" : "DIFF", v1, v2, l1, l2);
  fails += bad;
}
int main(int argc, char** argv) {
  std::mt19937 rng(7);
  int n = 0;
  if (argc > 1 && std::string(argv[1]) == "split") {
    for (int input = 1; input < 3; ++input) { run(16, 1024, 64, 64, Head::Linear, LossType::InfoNCE, Level::Group, Distance::Cosine, 0, true, input, rng); n++; }
    run(32, 512, 40, 33, Head::Mlp, LossType::SupConIn, Level::Cross, Distance::Cosine, -1, true, 1, rng); n++;
  } else if (argc > 1) {  // big shapes
    for (int input = 0; input < 3; ++input) { run(70, 96, 72, 40, Head::Linear, LossType::InfoNCE, Level::Group, Distance::Cosine, 0, true, input, rng); n++; }
    run(33, 37, 19, 21, Head::Mlp, LossType::SupConOut, Level::Cross, Distance::L2, -1, true, 2, rng); n++;
    run(16, 264, 40, 64, Head::Linear, LossType::SoftNN, Level::Batch, Distance::Cosine, -1, true, 2, rng); n++;
    run(20, 200, 130, 50, Head::Mlp, LossType::SupConIn, Level::Group, Distance::L2, 1, false, 1, rng); n++;
  } else {
    // skipTrivial off: anchors without a positive or a negative stay valid (groups of 5 with random labels have them)
    for (int lv = 0; lv < 3; ++lv) for (int ml = -1; ml <= 1; ++ml) {
      run(15, 24, 16, 5, Head::Linear, LossType::InfoNCE, (Level)lv, Distance::Cosine, ml, false, 0, rng); n++;
    }
    for (int lt = 0; lt < 4; ++lt) for (int lv = 0; lv < 3; ++lv) for (int input = 0; input < 3; ++input) {
      run(12, 40, 24, 7, (lt + lv) % 2 ? Head::Mlp : Head::Linear, (LossType)lt, (Level)lv, (Distance)((lt + input) % 2), (int)(rng() % 3) - 1, rng() % 2, input, rng); n++;
    }
  }
  printf("%d cases, %d failures\n", n, fails);
  return fails != 0;
}
