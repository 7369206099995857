#!/usr/bin/env python3
"""PyTorch versions of clipo's contrastive step (pool -> head -> normalize -> similarity -> loss, forward and backward
to the head weight), timed on the same GPU as `clipo bench contrastive --backend cuda`, at the same sizes (Track II:
hidden 3584, head output 2048, responses up to 4096 tokens, micro-batches of 16..64 of the 2048 responses a step).

Three ways, each checked against the others on the timed inputs before it is timed:
  official  the way the authors' implementation writes it: masked mean pooling as (hidden * mask).sum(1) / n (the
            product is materialized: a second B x L x H tensor), nn.Linear-style head, F.normalize, B x B
            similarity, row-max shift, masked log-sum-exp terms, then backward;
  careful   what a careful PyTorch user would write: pooling as one bmm of the mask row with the hidden states (the
            hidden states are read once, nothing B x L x H is written), the rest as above;
  compiled  the careful way under torch.compile, where it compiles within the time budget.
A small float64 case ("check") is written too, for scripts/gpu/merge-results.mjs to run clipo's kernel on and compare
(supcon_out and soft_nn: no random positive draw, so both sides must agree exactly up to rounding).

Usage: python3 scripts/gpu/torch_contrastive.py [--quick] [--device auto|cuda|cpu] [--repeats N] [--out FILE]
       [--compile-budget SECONDS] [--no-compile]
"""
import argparse
import time

import torch
import torch.nn.functional as F

from torch_common import CompileBudget, device_name, emit, max_rel_diff, pick_device, summary, time_calls

EPS = 1e-8
STEP_RESPONSES = 2048  # responses per RL step on Track II


def pool_official(hidden, mask):
    m = mask.unsqueeze(-1).to(hidden.dtype)
    n = mask.sum(dim=1, keepdim=True).float()
    return (hidden * m).sum(dim=1, dtype=torch.float32) / n


def pool_careful(hidden, mask):
    n = mask.sum(dim=1, keepdim=True).float()
    # one (1 x L) . (L x H) product per response: fp32 accumulation inside the bmm, the hidden states read once
    return torch.bmm(mask.to(hidden.dtype).unsqueeze(1), hidden).squeeze(1).float() / n


def loss_from_pooled(pooled, weight, correct, group, tau, loss_type, pos=None):
    """Group level, cosine, correct anchors, skip trivial anchors (docs/algorithm.md §2)."""
    B = pooled.shape[0]
    z = F.normalize(pooled @ weight.t(), dim=-1, eps=1e-12)
    logits = (z @ z.t()) / tau
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    eye = torch.eye(B, dtype=torch.bool, device=pooled.device)
    all_mask = (group[:, None] == group[None, :]) & ~eye
    pos_mask = all_mask & (correct[:, None] == correct[None, :])
    n_pos = pos_mask.sum(1)
    n_neg = all_mask.sum(1) - n_pos
    anchor = (correct > 0) & (n_pos >= 1) & (n_neg >= 1)
    log_denom = torch.log((torch.exp(logits) * all_mask).sum(1) + EPS)
    if loss_type == "infonce":
        if pos is None:
            probs = pos_mask.to(logits.dtype)
            probs[n_pos == 0] = 1.0
            pos = torch.multinomial(probs, 1).squeeze(1)
        per = -(logits.gather(1, pos[:, None]).squeeze(1) - log_denom)
    elif loss_type == "supcon_out":
        per = -((logits - log_denom[:, None]) * pos_mask).sum(1) / (n_pos + EPS)
    elif loss_type == "soft_nn":
        per = -(torch.log((torch.exp(logits) * pos_mask).sum(1) + EPS) - log_denom)
    else:
        raise ValueError(loss_type)
    per = per * anchor
    return per.sum() / (anchor.sum() + EPS), per


def step(pool, hidden, mask, weight, correct, group, tau=0.05, loss_type="infonce", pos=None):
    """Forward and backward to the head weight; returns (loss, grad)."""
    weight.grad = None
    loss, _ = loss_from_pooled(pool(hidden, mask), weight, correct, group, tau, loss_type, pos)
    loss.backward()
    return loss, weight.grad


def inputs(B, L, H, D, dtype, device, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    hidden = torch.randn(B, L, H, device=device, dtype=dtype, generator=g)
    mask = torch.ones(B, L, device=device, dtype=torch.uint8)
    weight = (torch.randn(D, H, device=device, generator=g) / H**0.5).requires_grad_(True)
    correct = torch.randint(0, 2, (B,), device=device, generator=g)
    group = torch.arange(B, device=device) // 16
    return hidden, mask, weight, correct, group


def fixed_positives(correct, group, seed):
    """One positive per anchor drawn once (so the ways can be compared on the same InfoNCE terms)."""
    B = correct.shape[0]
    eye = torch.eye(B, dtype=torch.bool, device=correct.device)
    pm = (group[:, None] == group[None, :]) & ~eye & (correct[:, None] == correct[None, :])
    probs = pm.float()
    probs[pm.sum(1) == 0] = 1.0
    g = torch.Generator(device=correct.device).manual_seed(seed)
    return torch.multinomial(probs, 1, generator=g).squeeze(1)


def bench_one(B, L, H, D, dtype, repeats, device, tol):
    """The eager ways: checked against official on the timed inputs, then timed."""
    hidden, mask, weight, correct, group = inputs(B, L, H, D, dtype, device)
    elem = 2 if dtype == torch.bfloat16 else 4
    nbytes = B * L * H * elem + B * L + 2 * D * H * 4  # same byte count as `clipo bench contrastive`
    row = {"B": B, "L": L, "H": H, "D": D, "dtype": "bf16" if dtype == torch.bfloat16 else "f32", "MB": round(nbytes / 1e6, 3), "tol": tol}

    # values first: every way on the same inputs and the same positives, against the official way
    pos = fixed_positives(correct, group, 7)
    ref_loss, ref_grad = step(pool_official, hidden, mask, weight, correct, group, pos=pos)
    ref_loss, ref_grad = ref_loss.detach().clone(), ref_grad.clone()
    ways = {"official": pool_official, "careful": pool_careful}
    checks = {}
    for name, pool in ways.items():
        loss, grad = step(pool, hidden, mask, weight, correct, group, pos=pos)
        checks[name] = {"loss": max_rel_diff(loss, ref_loss), "grad": max_rel_diff(grad, ref_grad)}
    row["check"] = checks
    row["checkOk"] = all(v["loss"] <= tol and v["grad"] <= tol for v in checks.values())
    row["loss"] = float(ref_loss)

    # then timing (the draw of the positive is part of each timed call, as in training)
    for name, pool in ways.items():
        s = summary(time_calls(lambda i: step(pool, hidden, mask, weight, correct, group), device, repeats, 3))
        row[f"{name}Ms"] = s["ms"]
        row[f"{name}BestMs"] = s["bestMs"]
    row["ms"] = row["officialMs"]  # the key scripts/gpu/merge-results.mjs compares with clipo's row
    row["GBs"] = round(nbytes / (row["officialMs"] / 1e3) / 1e9, 1)
    row["stepMsOfficial"] = round(row["officialMs"] * STEP_RESPONSES / B, 2)
    row["stepMsCareful"] = round(row["carefulMs"] * STEP_RESPONSES / B, 2)
    del hidden
    if device == "cuda":
        torch.cuda.empty_cache()
    return row


def compile_one(row, repeats, device, budget):
    """The careful way under torch.compile, on the same inputs (same seed), checked against official, then timed."""
    dtype = torch.bfloat16 if row["dtype"] == "bf16" else torch.float32
    hidden, mask, weight, correct, group = inputs(row["B"], row["L"], row["H"], row["D"], dtype, device)
    pos = fixed_positives(correct, group, 7)
    ref_loss, ref_grad = step(pool_official, hidden, mask, weight, correct, group, pos=pos)
    ref_loss, ref_grad = ref_loss.detach().clone(), ref_grad.clone()

    def build():
        fn = torch.compile(lambda h, m, w, c, gr: loss_from_pooled(pool_careful(h, m), w, c, gr, 0.05, "infonce", pos)[0])

        def run(h, m, w, c, gr):
            w.grad = None
            loss = fn(h, m, w, c, gr)
            loss.backward()
            return loss, w.grad

        run(hidden, mask, weight, correct, group)  # compiles the forward and the backward graphs
        run(hidden, mask, weight, correct, group)
        return run

    compiled, row["compileNote"] = budget.run(f"contrastive {row['dtype']} B={row['B']} L={row['L']}", build)
    if compiled is not None:
        loss, grad = compiled(hidden, mask, weight, correct, group)
        row["check"]["compiled"] = {"loss": max_rel_diff(loss, ref_loss), "grad": max_rel_diff(grad, ref_grad)}
        row["checkOk"] = row["checkOk"] and all(v <= row["tol"] for v in row["check"]["compiled"].values())
        # the compiled graph holds the fixed positives; drawing them costs microseconds and is not the point here
        s = summary(time_calls(lambda i: compiled(hidden, mask, weight, correct, group), device, repeats, 2))
        row["compiledMs"] = s["ms"]
        row["compiledBestMs"] = s["bestMs"]
        row["stepMsCareful"] = round(min(row["carefulMs"], s["ms"]) * STEP_RESPONSES / row["B"], 2)
    del hidden
    if device == "cuda":
        torch.cuda.empty_cache()


def check_case():
    """Small float64 case (CPU): pooled vectors in, the official way's loss and gradient out, per loss type."""
    g = torch.Generator().manual_seed(11)
    B, H, D = 32, 24, 16
    pooled = torch.randn(B, H, dtype=torch.float64, generator=g).float().double()
    weight = (torch.randn(D, H, dtype=torch.float64, generator=g) / H**0.5).float().double()
    correct = torch.randint(0, 2, (B,), generator=g)
    group = torch.arange(B) // 8
    results = []
    for loss_type in ("supcon_out", "soft_nn"):
        w = weight.clone().requires_grad_(True)
        loss, per = loss_from_pooled(pooled, w, correct, group, 0.05, loss_type)
        loss.backward()
        results.append({"lossType": loss_type, "loss": loss.item(), "perSample": per.tolist(), "gradWeight": w.grad.flatten().tolist()})
    return {"batch": B, "hiddenSize": H, "outSize": D, "temperature": 0.05, "pooled": pooled.flatten().tolist(),
            "weight": weight.flatten().tolist(), "correct": correct.tolist(), "group": group.tolist(), "results": results}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke test, e.g. on the CPU)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--compile-budget", type=float, default=60.0, help="seconds torch.compile may spend in all")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--out")
    a = ap.parse_args()
    device = pick_device(a.device)
    t0 = time.perf_counter()
    budget = CompileBudget(a.compile_budget, not a.no_compile)
    if a.quick:
        sizes, H, D = [(16, 64), (32, 32)], 64, 32
    else:
        sizes, H, D = [(16, 4096), (32, 2048), (64, 4096)], 3584, 2048
    rows = []
    doc = {
        "suite": "torch_contrastive", "device": device_name(device), "torch": torch.__version__, "quick": a.quick,
        "note": "official: (hidden*mask).sum(1)/n pooling; careful: one bmm pooling; compiled: careful under torch.compile. "
                "Each checked against official on the timed inputs (relative to the largest value; tolerance 5e-2 bf16, 1e-4 f32).",
        "rows": rows, "check": check_case(),
    }
    # eager first and written out, so that a compile that runs past the step's time limit loses nothing measured
    for B, L in sizes:
        for dtype in (torch.bfloat16, torch.float32):
            rows.append(bench_one(B, L, H, D, dtype, a.repeats, device, 5e-2 if dtype == torch.bfloat16 else 1e-4))
    doc.update(allChecksOk=all(r["checkOk"] for r in rows), compileNotes=["eager only so far"], seconds=round(time.perf_counter() - t0, 1))
    emit(doc, a.out, quiet=True)
    # torch.compile on the bf16 rows (the dtype training runs in), largest first, within the compile budget
    for row in sorted((r for r in rows if r["dtype"] == "bf16"), key=lambda r: -r["B"] * r["L"]):
        compile_one(row, a.repeats, device, budget)
        doc.update(allChecksOk=all(r["checkOk"] for r in rows), compileNotes=budget.notes, seconds=round(time.perf_counter() - t0, 1))
        emit(doc, a.out, quiet=True)
    emit(doc, a.out)
    if not doc["allChecksOk"]:
        raise SystemExit("torch_contrastive: the ways disagree (see rows[].check)")


if __name__ == "__main__":
    main()
