"""verl's surrogate policy loss in PyTorch, written once for every script that compares clipo with it: after
verl's trainer/ppo/core_algos.py (compute_policy_loss vanilla / gspo / geo_mean, agg_loss, kl_penalty('low_var_kl')),
with the aggregation over non-empty responses as clipo defines it (docs/kernels.md, "The math").

Used by scripts/bench/torch_peer.py (`clipo bench --compare torch`, CPU) and scripts/gpu/torch_surrogate.py (the
GPU side-by-side). A config is a dict with mode ('token' | 'sequence' | 'geo_mean'), clipLow, clipHigh, agg
('token-mean' | 'seq-mean-token-mean' | 'seq-mean-token-sum'), and optionally dualClip (None: off), klCoef and ref
(False: no KL term even with a klCoef; absent: the KL term is on whenever klCoef is nonzero).
"""
import torch


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
    """token mode (GRPO, DAPO): the clipped ratio, and for negative advantages verl's dual clip at c (None: off)."""
    ratio = torch.exp(torch.clamp(logp - old, -20.0, 20.0))
    pg1 = -adv * ratio
    pg2 = -adv * torch.clamp(ratio, 1 - cl, 1 + ch)
    c1 = torch.maximum(pg1, pg2)
    if c is None:
        return agg_loss(c1, mask, agg)
    c2 = torch.min(-adv * c, c1)
    return agg_loss(torch.where(adv < 0, c2, c1), mask, agg)


def gspo(old, logp, adv, mask, cl, ch, agg):
    """sequence mode (GSPO): the sequence's mean log-ratio, applied per token through sg(s) * pi / sg(pi)."""
    n = mask.sum(-1).clamp(min=1)
    seq = ((logp - old) * mask).sum(-1) / n
    log_s = logp - logp.detach() + seq.detach().unsqueeze(-1)
    s = torch.exp(torch.clamp(log_s, max=10.0))
    return agg_loss(torch.maximum(-adv * s, -adv * torch.clamp(s, 1 - cl, 1 + ch)), mask, agg)


def geo_mean(old, logp, adv, mask, cl, ch):
    """geo_mean mode (GMPO): sign-aware clip in log space, the geometric mean of the ratios per response."""
    nkl = logp - old
    sgn = torch.sign(adv)
    dmin = sgn * torch.min(sgn * nkl, sgn * torch.clamp(nkl, -cl, ch))
    n = mask.sum(-1)
    ratio = torch.exp((dmin * mask).sum(-1) / (n + 1e-8))
    a = (adv * mask).sum(-1) / (n + 1e-8)
    valid = (n > 0).to(logp.dtype)
    return (-a * ratio * valid).sum() / (valid.sum() + 1e-8)


def low_var_kl(logp, ref):
    kl = torch.clamp(ref - logp, -20, 20)
    return torch.clamp(torch.exp(kl) - kl - 1, -10, 10)


def policy_loss(cfg, logp, old, ref, adv, mask):
    """The whole loss of one config: the surrogate of its mode, plus klCoef * the low-variance KL to `ref`."""
    a = adv.unsqueeze(-1)
    if cfg["mode"] == "token":
        loss = vanilla(old, logp, a, mask, cfg["clipLow"], cfg["clipHigh"], cfg.get("dualClip"), cfg["agg"])
    elif cfg["mode"] == "sequence":
        loss = gspo(old, logp, a, mask, cfg["clipLow"], cfg["clipHigh"], cfg["agg"])
    else:
        loss = geo_mean(old, logp, a, mask, cfg["clipLow"], cfg["clipHigh"])
    if cfg.get("ref", True) and cfg.get("klCoef"):
        loss = loss + cfg["klCoef"] * agg_loss(low_var_kl(logp, ref), mask, cfg["agg"])
    return loss
