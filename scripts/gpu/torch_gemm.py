#!/usr/bin/env python3
"""torch.matmul at the shapes of `clipo bench gpulibs` (cuBLASLt bf16 GEMM, Y[M x N] = X[M x K] W[N x K]^T: the
projections of Qwen2.5-0.5B/1.5B/7B over a few thousand tokens), on the same GPU, for the side-by-side. Each product
is checked against an fp32 matmul of the same bf16 inputs before it is timed.

Usage: python3 scripts/gpu/torch_gemm.py [--shapes BENCH_JSON] [--quick] [--device auto|cuda|cpu] [--repeats N]
       [--out FILE]
--shapes reads the rows of `clipo bench gpulibs --json` (model, proj, M, N, K), so both sides time the same list;
without it, the projections of the three models at 4096 tokens (--quick: Qwen2.5-0.5B at 64 tokens).
"""
import argparse
import json
import time

import torch

from torch_common import device_name, emit, pick_device, summary, time_calls

MODELS = [("Qwen2.5-0.5B", 896, 4864, 14, 2, 151936), ("Qwen2.5-1.5B", 1536, 8960, 12, 2, 151936),
          ("Qwen2.5-7B", 3584, 18944, 28, 4, 152064)]  # as src/bench/gpulibs.ts


def default_shapes(tokens, models):
    out = []
    for name, h, inter, heads, kv, vocab in models:
        hd = h // heads
        for proj, n, k in (("qkv", h + 2 * kv * hd, h), ("o", h, h), ("gate_up", 2 * inter, h), ("down", h, inter), ("lm_head", vocab, h)):
            out.append({"model": name, "proj": proj, "M": tokens, "N": n, "K": k})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out")
    a = ap.parse_args()
    device = pick_device(a.device)
    t0 = time.perf_counter()
    if a.shapes:
        with open(a.shapes) as f:
            doc = json.load(f)
        rows = [r for rep in doc.get("reports", []) for r in rep.get("rows", []) if r.get("kind") == "gemm"]
        shapes = [{k: r[k] for k in ("model", "proj", "M", "N", "K")} for r in rows]
    else:
        shapes = default_shapes(64, MODELS[:1]) if a.quick else default_shapes(4096, MODELS)
    g = torch.Generator(device=device).manual_seed(1)
    out = []
    for s in shapes:
        M, N, K = s["M"], s["N"], s["K"]
        x = (torch.rand(M, K, device=device, generator=g) * 2 - 1).to(torch.bfloat16)
        w = ((torch.rand(N, K, device=device, generator=g) * 2 - 1) / K**0.5).to(torch.bfloat16)
        y = torch.matmul(x, w.t())
        ref = torch.matmul(x.float(), w.float().t())
        scale = torch.sqrt(torch.matmul(x.float() ** 2, (w.float() ** 2).t()))  # sqrt(sum_k (x_k w_k)^2)
        err = float(((y.float() - ref).abs() / (ref.abs() + scale + 1e-30)).max())
        del ref, scale
        samples = time_calls(lambda i: torch.matmul(x, w.t()), device, a.repeats, 5)
        sm = summary(samples)
        out.append({**s, **sm, "TFLOPs": round(2 * M * N * K / (sm["ms"] / 1e3) / 1e12, 2), "maxScaledError": float(f"{err:.3g}"),
                    "ok": err <= 1e-2})
        del x, w, y
    if device == "cuda":
        torch.cuda.empty_cache()
    res = {"suite": "torch_gemm", "device": device_name(device), "torch": torch.__version__, "quick": a.quick,
           "note": "torch.matmul(x, w.t()) in bf16, checked against an fp32 matmul of the same inputs (scaled error <= 1e-2)",
           "allChecksOk": all(r["ok"] for r in out), "rows": out, "seconds": round(time.perf_counter() - t0, 1)}
    emit(res, a.out)
    if not res["allChecksOk"]:
        raise SystemExit("torch_gemm: a product is off (see rows[].maxScaledError)")


if __name__ == "__main__":
    main()
