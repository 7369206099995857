#!/usr/bin/env python3
"""The PyTorch side of `clipo bench --compare torch`: the same math as clipo's kernels, in PyTorch on the CPU,
driven by the bench one call at a time so that its repeats interleave with clipo's in the same run.

Protocol: one JSON object per line on stdin, one JSON answer per line on stdout ({"ok": true, ...} or
{"ok": false, "error": "..."}). Inputs arrive as raw little-endian files written by the bench (the token states as
a file both processes map, so no second copy exists); outputs that are checked go back the same way.

Implementations ("impl"):
  contrastive official  masked mean pooling as the paper's code writes it: (hidden * mask[..., None]).sum(1) / n
                        (a B x L x H temporary), nn.Linear-style x @ W.T, F.normalize, similarity, InfoNCE, backward
  contrastive careful   the pooling as one batched matrix product, bmm(mask[:, None, :], hidden) / n (no temporary)
  surrogate verl        verl's compute_policy_loss / agg_loss / kl_penalty('low_var_kl'), then autograd
  surrogate careful     token modes: the loss and its gradient in closed form under no_grad (one fused pass's worth
                        of elementwise ops, no autograd graph)
  engine                the same Qwen2-shaped model in transformers: scoring, forward+backward+AdamW, sampling
                        (engine_peer.py; needs transformers)
  train                 one training step of that model on the GPU: bf16 autocast, a PPO-clip surrogate,
                        torch.optim.AdamW(fused=True) (train_peer.py; needs transformers and CUDA)
  grad                  the exact fp32 gradient of a weighted log-prob loss by autograd, returned at sampled
                        indices: the reference of clipo's bf16 gradient check (grad_peer.py; needs transformers)
Both sides take the same InfoNCE positives (clipo's draw), so the values can be compared. verl's surrogate code is
in verl_surrogate.py (shared with scripts/gpu/torch_surrogate.py).
"""
import json
import sys
import time

import torch
import torch.nn.functional as F

import engine_peer
import grad_peer
import train_peer
from verl_surrogate import policy_loss

state = {}


def load(path, n, dtype):
    return torch.from_file(path, shared=False, size=n, dtype=dtype)


def write_out(path, t):
    out = torch.from_file(path, shared=True, size=t.numel(), dtype=torch.float32)
    out.copy_(t.detach().flatten().float())


# ---------------------------------------------------------------- contrastive


def contrastive_setup(a):
    B, L, H, D = a["B"], a["L"], a["H"], a["D"]
    hidden = torch.from_file(a["tokens"], shared=True, size=B * L * H, dtype=torch.float32).view(B, L, H)
    mask = load(a["mask"], B * L, torch.uint8).view(B, L)
    state["c"] = dict(
        hidden=hidden, mask=mask, maskf=mask.float(), n=mask.sum(1, keepdim=True).float(),
        weight=load(a["weight"], D * H, torch.float32).view(D, H).clone().requires_grad_(True),
        correct=load(a["correct"], B, torch.uint8).long(), group=load(a["group"], B, torch.int32).long(),
        pos=load(a["positives"], B, torch.int32).long(), tau=a["temperature"])
    return {}


def contrastive_loss(c, impl):
    hidden, weight = c["hidden"], c["weight"]
    if impl == "official":
        pooled = (hidden * c["mask"].unsqueeze(-1).to(hidden.dtype)).sum(dim=1) / c["n"]
    else:
        pooled = torch.bmm(c["maskf"].unsqueeze(1), hidden).squeeze(1) / c["n"]
    z = F.normalize(pooled @ weight.t(), dim=-1)
    logits = (z @ z.t()) / c["tau"]
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    B = hidden.shape[0]
    correct, group = c["correct"], c["group"]
    eye = torch.eye(B, dtype=torch.bool)
    all_mask = (group[:, None] == group[None, :]) & ~eye
    pos_mask = all_mask & (correct[:, None] == correct[None, :])
    n_pos = pos_mask.sum(1)
    n_neg = all_mask.sum(1) - n_pos
    anchor = (correct > 0) & (n_pos >= 1) & (n_neg >= 1) & (c["pos"] >= 0)
    log_denom = torch.log((torch.exp(logits) * all_mask).sum(1) + 1e-8)
    pos = c["pos"].clamp(min=0)
    per = -(logits.gather(1, pos[:, None]).squeeze(1) - log_denom) * anchor
    return per.sum() / (anchor.sum() + 1e-8)


def contrastive_step(impl):
    c = state["c"]
    c["weight"].grad = None
    loss = contrastive_loss(c, impl)
    loss.backward()
    return loss


# ---------------------------------------------------------------- surrogate (verl's code: verl_surrogate.py)


def careful_token(cfg, logp, old, ref, adv, mask):
    """Token mode, token-mean: loss and d loss / d logp in closed form (what autograd computes, without the graph)."""
    with torch.no_grad():
        inv_n = 1.0 / mask.sum()
        a = adv.unsqueeze(-1)
        d = logp - old
        ratio = torch.exp(d.clamp(-20.0, 20.0))
        lo, hi = 1 - cfg["clipLow"], 1 + cfg["clipHigh"]
        clipped = ratio.clamp(lo, hi)
        pg = torch.maximum(-a * ratio, -a * clipped)
        live = (-a * ratio >= -a * clipped) & (d.abs() < 20)  # the unclipped branch carries the gradient
        c = cfg.get("dualClip")
        if c is not None:
            dual = (a < 0) & (pg > -a * c)
            pg = torch.where(dual, -a * c, pg)
            live = live & ~dual
        grad = torch.where(live, -a * ratio, torch.zeros_like(ratio))
        loss = (pg * mask).sum() * inv_n
        k = cfg.get("klCoef")
        if k:
            x = ref - logp
            xc = x.clamp(-20, 20)
            kv = torch.exp(xc) - xc - 1
            loss = loss + k * (kv.clamp(-10, 10) * mask).sum() * inv_n
            kl_live = (x.abs() < 20) & (kv.abs() < 10)
            grad = grad + k * torch.where(kl_live, 1 - torch.exp(xc), torch.zeros_like(xc))
        grad = grad * mask * inv_n
    return loss, grad


def surrogate_setup(a):
    B, T = a["B"], a["T"]
    f = lambda k: load(a[k], B * T, torch.float32).view(B, T)
    state["s"] = dict(logp=f("logp"), old=f("oldLogp"), ref=f("refLogp"), adv=load(a["advantages"], B, torch.float32),
                      mask=load(a["mask"], B * T, torch.uint8).view(B, T).float())
    return {}


def surrogate_step(cfg, impl):
    s = state["s"]
    if impl == "careful":
        return careful_token(cfg, s["logp"], s["old"], s["ref"], s["adv"], s["mask"])
    logp = s["logp"].clone().requires_grad_(True)
    loss = policy_loss(cfg, logp, s["old"], s["ref"], s["adv"], s["mask"])
    loss.backward()
    return loss, logp.grad


# ---------------------------------------------------------------- driver


def run(a, threads):
    torch.set_num_threads(threads)
    if a["kernel"] == "engine":
        return engine_peer.run(a["op"], a), None
    if a["kernel"] == "train":
        return train_peer.run(a["op"], a), None
    if a["kernel"] == "contrastive":
        return contrastive_step(a["impl"]), None
    return surrogate_step(a["config"], a["impl"])


def handle(a):
    cmd = a["cmd"]
    if cmd == "hello":
        try:
            import transformers  # noqa: F401
            tv = transformers.__version__
        except Exception:
            tv = None
        return {"torch": torch.__version__, "transformers": tv, "threads": torch.get_num_threads(),
                "mkl": torch.backends.mkl.is_available()}
    if cmd == "contrastive_setup":
        return contrastive_setup(a)
    if cmd == "surrogate_setup":
        return surrogate_setup(a)
    if cmd == "engine_setup":
        torch.set_num_threads(a.get("threads", 1))
        return engine_peer.setup(a)
    if cmd == "engine_check":
        torch.set_num_threads(a.get("threads", 1))
        values, extra = engine_peer.check(a)
        write_out(a["out"], values)
        return {"length": values.numel(), **extra}
    if cmd == "train_setup":
        return train_peer.setup(a)
    if cmd == "train_check":
        values, extra = train_peer.check(a)
        write_out(a["out"], values)
        return {"length": values.numel(), **extra}
    if cmd == "train_park":
        return train_peer.park()
    if cmd == "train_unpark":
        return train_peer.unpark()
    if cmd == "train_reset_peak":
        return train_peer.reset_peak()
    if cmd == "train_memory":
        return train_peer.memory()
    if cmd == "train_release":
        return train_peer.release()
    if cmd == "grad_setup":
        torch.set_num_threads(a.get("threads", 1))
        return grad_peer.setup(a)
    if cmd == "grad_run":
        lp, loss = grad_peer.run(a)
        write_out(a["out"], lp)
        return {"length": lp.numel(), "loss": loss}
    if cmd == "grad_sample":
        values = grad_peer.sample(a)
        write_out(a["out"], values)
        return {"length": values.numel()}
    if cmd == "grad_release":
        return grad_peer.release()
    if cmd == "check":
        loss, grad = run(a, a.get("threads", 1))
        if grad is None:
            grad = state["c"]["weight"].grad
        write_out(a["out"], grad)
        return {"loss": float(loss)}
    if cmd == "time":
        threads = a.get("threads", 1)
        torch.set_num_threads(threads)
        c0, t0 = time.thread_time(), time.perf_counter()
        run(a, threads)
        t1, c1 = time.perf_counter(), time.thread_time()
        return {"wall": t1 - t0, "cpu": c1 - c0}
    if cmd == "release":
        state.clear()
        engine_peer.state.clear()
        train_peer.release()
        grad_peer.release()
        return {}
    raise ValueError(f"unknown command {cmd!r}")


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            out = {"ok": True, **handle(json.loads(line))}
        except Exception as e:  # report, keep serving: the bench decides what to skip
            out = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
