#!/usr/bin/env python3
"""PyTorch eager reference and timing of the surrogate policy loss (what verl's actor runs: compute_policy_loss
vanilla / gspo / geo_mean, agg_loss, kl_penalty('low_var_kl'), then autograd), at the sizes `clipo bench --backend
cuda` uses (Track II: 2048 responses of up to 4096 tokens a step, and a 256-response micro-batch). Two ways:
  official  verl's code in eager mode (what the paper ran);
  compiled  the same code under torch.compile (what a careful user would try: it fuses the elementwise chain),
            where it compiles within the time budget, checked against official on the timed inputs first.
Prints one JSON document:
  { "device", "torch", "timings": [{config, B, T, ms (official), compiledMs, sets, check}], "check": {small case} }
The "check" part lets scripts/gpu/merge-results.mjs run clipo's kernel on the same inputs and compare.
Usage: python3 scripts/gpu/torch_surrogate.py [--quick] [--device auto|cuda|cpu] [--repeats N] [--out FILE]
       [--compile-budget SECONDS] [--no-compile]
"""
import argparse
import sys
import time
from pathlib import Path

import torch

from torch_common import CompileBudget, device_name, emit, l2_bytes, max_rel_diff, pick_device, summary, time_calls

# the math, after verl (trainer/ppo/core_algos.py): one copy, shared with `clipo bench --compare torch`
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from verl_surrogate import policy_loss as loss_fn  # noqa: E402

CONFIGS = [
    dict(name="GRPO (token, dual clip, KL)", mode="token", ref=True, clipLow=0.2, clipHigh=0.2, dualClip=3.0, agg="token-mean", klCoef=0.001),
    dict(name="DAPO (token, no KL)", mode="token", ref=False, clipLow=0.2, clipHigh=0.28, dualClip=None, agg="token-mean", klCoef=0.0),
    dict(name="GSPO (sequence)", mode="sequence", ref=False, clipLow=3e-4, clipHigh=4e-4, dualClip=None, agg="seq-mean-token-mean", klCoef=0.0),
    dict(name="GMPO (geo_mean)", mode="geo_mean", ref=False, clipLow=0.4, clipHigh=0.4, dualClip=None, agg="token-mean", klCoef=0.0),
]


def make_inputs(B, T, device, dtype, gen):
    lp = -3 * torch.rand(B, T, device=device, dtype=dtype, generator=gen)
    old = lp + 0.4 * (torch.rand(B, T, device=device, dtype=dtype, generator=gen) - 0.5)
    ref = lp + 0.4 * (torch.rand(B, T, device=device, dtype=dtype, generator=gen) - 0.5)
    adv = torch.randn(B, device=device, dtype=dtype, generator=gen)
    lens = (T * (0.5 + 0.5 * torch.rand(B, device=device, generator=gen))).long()
    mask = (torch.arange(T, device=device)[None, :] < lens[:, None]).to(dtype)
    return lp, old, ref, adv, mask


def traffic_bytes(B, T, ref):
    """What one pass must move, counted as `clipo bench surrogate` counts it (float32 in and out, uint8 mask)."""
    return B * T * (4 + 4 + (4 if ref else 0) + 1) + B * 4 + B * T * 4


def loss_and_grad(fn, cfg, logp, old, ref, adv, mask):
    logp.grad = None
    loss = fn(cfg, logp, old, ref, adv, mask)
    loss.backward()
    return loss, logp.grad


def config_inputs(cfg, B, T, device):
    """The timed inputs, rotated: enough copies that together they exceed 3x the L2 cache (as `clipo bench` does)."""
    gen = torch.Generator(device=device).manual_seed(1)
    lp, old, ref, adv, mask = make_inputs(B, T, device, torch.float32, gen)
    per_set = traffic_bytes(B, T, cfg["ref"])
    sets = max(1, -(-3 * l2_bytes(device) // per_set))
    return [(lp.clone().requires_grad_(True), old.clone(), ref.clone(), adv.clone(), mask.clone()) for _ in range(sets)], per_set


def time_config(cfg, B, T, repeats, device):
    """official: verl's code eager, timed over the rotated input sets."""
    data, per_set = config_inputs(cfg, B, T, device)
    sets = len(data)
    row = dict(config=cfg["name"], B=B, T=T, sets=sets, MB=round(per_set / 1e6, 2), check={}, checkOk=True)
    samples = time_calls(lambda i: loss_and_grad(loss_fn, cfg, *data[i % sets]), device, repeats, max(5, sets))
    s = summary(samples)
    row.update(ms=s["ms"], bestMs=s["bestMs"], officialMs=s["ms"], msSamples=[round(x, 4) for x in samples])
    row["GBs"] = round(per_set / (row["ms"] / 1e3) / 1e9, 1)
    del data
    if device == "cuda":
        torch.cuda.empty_cache()
    return row


def compile_config(row, cfg, repeats, device, budget, tol):
    """compiled: the same code under torch.compile, checked against eager on the timed inputs, then timed."""
    data, _ = config_inputs(cfg, row["B"], row["T"], device)
    sets = len(data)
    ref_loss, ref_grad = loss_and_grad(loss_fn, cfg, *data[0])
    ref_loss, ref_grad = ref_loss.detach().clone(), ref_grad.clone()

    def build():
        fn = torch.compile(loss_fn)
        loss_and_grad(fn, cfg, *data[0])
        loss_and_grad(fn, cfg, *data[0])
        return fn

    compiled, row["compileNote"] = budget.run(f"{cfg['name']} B={row['B']}", build)
    if compiled is not None:
        loss, grad = loss_and_grad(compiled, cfg, *data[0])
        row["check"]["compiled"] = dict(loss=max_rel_diff(loss, ref_loss), grad=max_rel_diff(grad, ref_grad))
        row["checkOk"] = all(v <= tol for v in row["check"]["compiled"].values())
        s = summary(time_calls(lambda i: loss_and_grad(compiled, cfg, *data[i % sets]), device, repeats, max(5, sets)))
        row.update(compiledMs=s["ms"], compiledBestMs=s["bestMs"])
    del data
    if device == "cuda":
        torch.cuda.empty_cache()


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
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke test, e.g. on the CPU)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--compile-budget", type=float, default=60.0, help="seconds torch.compile may spend in all")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args()
    device = pick_device(args.device)
    t0 = time.perf_counter()
    budget = CompileBudget(args.compile_budget, not args.no_compile)
    doc = dict(suite="torch_surrogate", torch=torch.__version__, device=device_name(device), quick=args.quick, timings=[], check=check_case())
    T = 256 if args.quick else 4096
    sizes = [16] if args.quick else [2048, 256]
    doc["note"] = ("official: verl's compute_policy_loss / agg_loss / kl_penalty eager, then autograd; compiled: the same "
                   "under torch.compile (checked against official on the timed inputs, tolerance 1e-4 relative). "
                   "Input sets rotate through more than 3x the L2 cache.")
    # eager first and written out, so that a compile that runs past the step's time limit loses nothing measured
    for B in sizes:
        for cfg in CONFIGS:
            doc["timings"].append(time_config(cfg, B, T, args.repeats, device))
    doc.update(allChecksOk=True, compileNotes=["eager only so far"], seconds=round(time.perf_counter() - t0, 1))
    emit(doc, args.out, quiet=True)
    for row in doc["timings"]:  # largest size first, within the compile budget
        compile_config(row, next(c for c in CONFIGS if c["name"] == row["config"]), args.repeats, device, budget, 1e-4)
        doc.update(allChecksOk=all(r["checkOk"] for r in doc["timings"]), compileNotes=budget.notes, seconds=round(time.perf_counter() - t0, 1))
        emit(doc, args.out, quiet=True)
    emit(doc, args.out)
    if not doc["allChecksOk"]:
        raise SystemExit("torch_surrogate: compiled and eager disagree (see timings[].check)")


if __name__ == "__main__":
    main()
