#!/usr/bin/env python3
"""PyTorch eager reference and timing of the surrogate policy loss (what verl's actor runs: compute_policy_loss
vanilla / gspo / geo_mean, agg_loss, kl_penalty('low_var_kl'), then autograd), at the sizes `clipo bench --backend
cuda` uses. Prints one JSON document:
  { "device", "torch", "timings": [{config, B, T, ms, msSamples}], "check": {inputs and float64 outputs of a small case} }
The "check" part lets scripts/gpu/merge-results.mjs run clipo's kernel on the same inputs and compare.
Usage: python3 scripts/gpu/torch_surrogate.py [--quick] [--repeats N]
"""
import argparse
import json
import statistics

import torch

# ---- the math, after verl (trainer/ppo/core_algos.py); aggregation over non-empty responses as clipo defines it ----


def masked_mean(x, m):
    return (x * m).sum() / (m.sum() + 1e-8)


def agg_loss(loss_mat, mask, agg):
    if agg == "token-mean":
        return masked_mean(loss_mat, mask)
    n = mask.sum(-1)
    valid = (n > 0).to(loss_mat.dtype)
    seq = (loss_mat * mask).sum(-1)
    if agg == "seq-mean-token-mean":
        seq = seq / (n + 1e-8)
    return (seq * valid).sum() / (valid.sum() + 1e-8)


def vanilla(old, logp, adv, mask, cl, ch, c, agg):
    nkl = torch.clamp(logp - old, -20.0, 20.0)
    ratio = torch.exp(nkl)
    pg1 = -adv * ratio
    pg2 = -adv * torch.clamp(ratio, 1 - cl, 1 + ch)
    c1 = torch.maximum(pg1, pg2)
    if c is None:
        return agg_loss(c1, mask, agg)
    pg3 = -adv * c
    c2 = torch.min(pg3, c1)
    return agg_loss(torch.where(adv < 0, c2, c1), mask, agg)


def gspo(old, logp, adv, mask, cl, ch, agg):
    nkl = logp - old
    n = mask.sum(-1).clamp(min=1)
    seq = (nkl * mask).sum(-1) / n
    log_s = logp - logp.detach() + seq.detach().unsqueeze(-1)
    s = torch.exp(torch.clamp(log_s, max=10.0))
    pg1 = -adv * s
    pg2 = -adv * torch.clamp(s, 1 - cl, 1 + ch)
    return agg_loss(torch.maximum(pg1, pg2), mask, agg)


def geo_mean(old, logp, adv, mask, cl, ch):
    nkl = logp - old
    sgn = torch.sign(adv)
    clamp = torch.clamp(nkl, -cl, ch)
    dmin = sgn * torch.min(sgn * nkl, sgn * clamp)
    n = mask.sum(-1)
    ratio = torch.exp((dmin * mask).sum(-1) / (n + 1e-8))
    a = (adv * mask).sum(-1) / (n + 1e-8)
    valid = (n > 0).to(logp.dtype)
    return (-a * ratio * valid).sum() / (valid.sum() + 1e-8)


def low_var_kl(logp, ref):
    kl = torch.clamp(ref - logp, -20, 20)
    return torch.clamp(torch.exp(kl) - kl - 1, -10, 10)


CONFIGS = [
    dict(name="GRPO (token, dual clip, KL)", mode="token", ref=True, clipLow=0.2, clipHigh=0.2, dualClip=3.0, agg="token-mean", klCoef=0.001),
    dict(name="DAPO (token, no KL)", mode="token", ref=False, clipLow=0.2, clipHigh=0.28, dualClip=None, agg="token-mean", klCoef=0.0),
    dict(name="GSPO (sequence)", mode="sequence", ref=False, clipLow=3e-4, clipHigh=4e-4, dualClip=None, agg="seq-mean-token-mean", klCoef=0.0),
    dict(name="GMPO (geo_mean)", mode="geo_mean", ref=False, clipLow=0.4, clipHigh=0.4, dualClip=None, agg="token-mean", klCoef=0.0),
]


def loss_fn(cfg, logp, old, ref, adv, mask):
    a = adv.unsqueeze(-1)
    if cfg["mode"] == "token":
        loss = vanilla(old, logp, a, mask, cfg["clipLow"], cfg["clipHigh"], cfg["dualClip"], cfg["agg"])
    elif cfg["mode"] == "sequence":
        loss = gspo(old, logp, a, mask, cfg["clipLow"], cfg["clipHigh"], cfg["agg"])
    else:
        loss = geo_mean(old, logp, a, mask, cfg["clipLow"], cfg["clipHigh"])
    if cfg["ref"]:
        loss = loss + cfg["klCoef"] * agg_loss(low_var_kl(logp, ref), mask, cfg["agg"])
    return loss


def make_inputs(B, T, device, dtype, gen):
    lp = -3 * torch.rand(B, T, device=device, dtype=dtype, generator=gen)
    old = lp + 0.4 * (torch.rand(B, T, device=device, dtype=dtype, generator=gen) - 0.5)
    ref = lp + 0.4 * (torch.rand(B, T, device=device, dtype=dtype, generator=gen) - 0.5)
    adv = torch.randn(B, device=device, dtype=dtype, generator=gen)
    lens = (T * (0.5 + 0.5 * torch.rand(B, device=device, generator=gen))).long()
    mask = (torch.arange(T, device=device)[None, :] < lens[:, None]).to(dtype)
    return lp, old, ref, adv, mask


def time_config(cfg, B, T, repeats):
    gen = torch.Generator(device="cuda").manual_seed(1)
    lp, old, ref, adv, mask = make_inputs(B, T, "cuda", torch.float32, gen)
    logp = lp.clone().requires_grad_(True)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    samples = []
    for r in range(repeats + 5):
        logp.grad = None
        start.record()
        loss = loss_fn(cfg, logp, old, ref, adv, mask)
        loss.backward()
        end.record()
        torch.cuda.synchronize()
        if r >= 5:
            samples.append(start.elapsed_time(end))
    return statistics.median(samples), samples


def check_case():
    """A small float64 case on the CPU: inputs, loss and d loss / d logp for every config."""
    gen = torch.Generator().manual_seed(7)
    B, T = 8, 64
    lp, old, ref, adv, mask = make_inputs(B, T, "cpu", torch.float64, gen)
    old = lp + 0.6 * torch.randn(B, T, dtype=torch.float64, generator=gen)  # wide ratios: both clips and the dual clip fire
    mask[3] = 0  # an all-masked response
    # round the inputs to float32 so both sides start from identical values
    lp, old, ref, adv = (x.float().double() for x in (lp, old, ref, adv))
    out = []
    for cfg in CONFIGS:
        logp = lp.clone().requires_grad_(True)
        loss = loss_fn(cfg, logp, old, ref, adv, mask)
        loss.backward()
        out.append(dict(config=cfg, loss=loss.item(), grad=logp.grad.flatten().tolist()))
    return dict(batch=B, length=T, logp=lp.flatten().tolist(), oldLogp=old.flatten().tolist(), refLogp=ref.flatten().tolist(),
                advantages=adv.tolist(), mask=[int(x) for x in mask.flatten().tolist()], results=out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    doc = dict(torch=torch.__version__, device=None, timings=[], check=check_case())
    if torch.cuda.is_available():
        doc["device"] = torch.cuda.get_device_name(0)
        T = 1024 if args.quick else 4096
        for B in ([256] if args.quick else [2048, 256]):
            for cfg in CONFIGS:
                ms, samples = time_config(cfg, B, T, args.repeats)
                doc["timings"].append(dict(config=cfg["name"], B=B, T=T, ms=ms, msSamples=samples))
    print(json.dumps(doc))


if __name__ == "__main__":
    main()
