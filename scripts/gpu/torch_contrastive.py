#!/usr/bin/env python3
"""PyTorch eager version of clipo's contrastive kernel, timed on the GPU: the side-by-side for `clipo bench
contrastive --backend cuda`.

The same math as native/kernels/contrastive (CLIPO-SPEC section 2) written the way the paper's implementation
does it: masked mean pooling of the last hidden states, a linear head (nn.Linear, no bias), F.normalize, a B x B
similarity, the row-max shift, masked log-softmax terms, InfoNCE with one drawn positive, then backward to the head
weight. Same sizes as the native benchmark (Track II: hidden 3584, head output 2048, responses up to 4096 tokens,
micro-batches of 16..64), full masks, timed with CUDA events after warm-up; the median is reported.

Usage: python3 scripts/gpu/torch_contrastive.py [--quick] [--repeats N] [--out FILE]   (prints JSON)
"""
import argparse
import json
import statistics

import torch
import torch.nn.functional as F


def contrastive_eager(hidden, mask, weight, correct, group, tau=0.05, eps=1e-8):
    """Forward and the loss; the caller runs backward. InfoNCE, cosine, group level, correct anchors, skip trivial."""
    B = hidden.shape[0]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    n = mask.sum(dim=1, keepdim=True).float()
    pooled = (hidden * m).sum(dim=1, dtype=torch.float32) / n  # mean over response tokens, fp32 accumulate
    z = F.normalize(pooled @ weight.t(), dim=-1)
    logits = (z @ z.t()) / tau
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    eye = torch.eye(B, dtype=torch.bool, device=hidden.device)
    all_mask = (group[:, None] == group[None, :]) & ~eye
    pos_mask = all_mask & (correct[:, None] == correct[None, :])
    n_pos = pos_mask.sum(1)
    n_neg = all_mask.sum(1) - n_pos
    anchor = (correct > 0) & (n_pos >= 1) & (n_neg >= 1)
    log_denom = torch.log((torch.exp(logits) * all_mask).sum(1) + eps)
    probs = pos_mask.float()
    probs[n_pos == 0] = 1.0
    pos = torch.multinomial(probs, 1).squeeze(1)
    per = -(logits.gather(1, pos[:, None]).squeeze(1) - log_denom) * anchor
    valid = anchor.sum()
    return per.sum() / (valid + eps)


def bench_one(B, L, H, D, dtype, repeats, device):
    g = torch.Generator(device=device).manual_seed(0)
    hidden = torch.randn(B, L, H, device=device, dtype=dtype, generator=g)
    mask = torch.ones(B, L, device=device, dtype=torch.uint8)
    weight = (torch.randn(D, H, device=device, generator=g) / H**0.5).requires_grad_(True)
    correct = torch.randint(0, 2, (B,), device=device, generator=g)
    group = torch.arange(B, device=device) // 16
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for r in range(repeats + 3):
        weight.grad = None
        start.record()
        loss = contrastive_eager(hidden, mask, weight, correct, group)
        loss.backward()
        end.record()
        torch.cuda.synchronize()
        if r >= 3:
            times.append(start.elapsed_time(end))
    ms = statistics.median(times)
    elem = 2 if dtype == torch.bfloat16 else 4
    bytes_ = B * L * H * elem + B * L + 2 * D * H * 4  # same byte count as the native benchmark
    del hidden
    torch.cuda.empty_cache()
    return {"B": B, "L": L, "H": H, "D": D, "dtype": "bf16" if dtype == torch.bfloat16 else "f32",
            "ms": round(ms, 4), "GBs": round(bytes_ / (ms / 1e3) / 1e9, 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out")
    a = ap.parse_args()
    device = "cuda"
    sizes = [(16, 1024)] if a.quick else [(16, 4096), (32, 2048), (64, 4096)]
    rows = []
    for B, L in sizes:
        for dtype in (torch.bfloat16, torch.float32):
            rows.append(bench_one(B, L, 3584, 2048, dtype, a.repeats, device))
    doc = {"suite": "torch_contrastive", "device": torch.cuda.get_device_name(0), "torch": torch.__version__,
           "note": "PyTorch eager: masked mean pool, x @ W.T, normalize, similarity, InfoNCE, backward to W", "rows": rows}
    text = json.dumps(doc, indent=2)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
