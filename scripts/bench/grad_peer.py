"""The PyTorch reference of clipo's gradient check (test/engine-cuda-torch-grad.test.ts on the GPU,
test/grad-peer.test.ts on the CPU): the exact fp32 gradient of the same loss on the same model, by autograd, driven
by scripts/bench/torch_peer.py one call at a time.

  grad_setup   AutoModelForCausalLM from the HF directory clipo wrote (fp32 weights), eager fp32 (no autocast, TF32
               off), on "cuda" or "cpu".
  grad_run     the loss  sum over response tokens of w[b, t] * log p(response[b, t] | prompt[b], response[b, :t])
               for clipo's fixed random weights w (d loss / d logp = w: every token counts, with its own sign), in the
               layout of clipo's forwardTrain: B rows of Tmax response positions, padding weighted 0. Sequences of
               different lengths are right-padded: under the causal mask padding never changes an earlier position.
               Writes the response log-probs (B x Tmax, 0 at padding) and keeps the gradient.
  grad_sample  the kept gradient at the given flat (row-major, HF shape) indices of the named tensors, in order:
               the comparison needs a sample, not the 2 GB of a 0.5B model's full fp32 gradient.
"""
import torch

state = {}


def load(path, n, dtype):
    return torch.from_file(path, shared=False, size=n, dtype=dtype)


def setup(a):
    from transformers import AutoModelForCausalLM

    device = torch.device(a.get("device", "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("grad peer: torch sees no CUDA device")
    # the reference is exact fp32: TF32 products would add errors of the size being measured
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    kw = dict(attn_implementation="eager")
    try:
        model = AutoModelForCausalLM.from_pretrained(a["model"], dtype=torch.float32, **kw)
    except TypeError:  # transformers < 4.56 names it torch_dtype
        model = AutoModelForCausalLM.from_pretrained(a["model"], torch_dtype=torch.float32, **kw)
    model.to(device)
    model.train()  # the Qwen2 configs have no dropout
    state.clear()
    state.update(model=model, device=device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"parameters": sum(p.numel() for p in model.parameters()), "device": name}


def run(a):
    """Forward and backward of the weighted log-prob loss; returns (response log-probs B x Tmax, loss)."""
    model, device = state["model"], state["device"]
    B, Tmax = a["B"], a["Tmax"]
    prompt_len, resp_len = a["promptLengths"], a["responseLengths"]
    if len(prompt_len) != B or len(resp_len) != B:
        raise ValueError("grad peer: promptLengths and responseLengths must have B entries")
    total = [p + r for p, r in zip(prompt_len, resp_len)]
    flat = load(a["tokens"], sum(total), torch.int32).long()
    w = load(a["weights"], B * Tmax, torch.float32).view(B, Tmax).to(device)
    L = max(total)
    ids = torch.zeros(B, L, dtype=torch.long)
    at = 0
    for b, n in enumerate(total):
        ids[b, :n] = flat[at:at + n]
        at += n
    ids = ids.to(device)
    model.zero_grad(set_to_none=True)
    logits = model(input_ids=ids, use_cache=False).logits.float()
    logp_all = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)  # B x (L-1)
    # response token t of row b is ids[b, P_b + t], predicted at position P_b + t - 1
    pos = torch.zeros(B, Tmax, dtype=torch.long)
    mask = torch.zeros(B, Tmax, dtype=torch.bool)
    for b in range(B):
        r = resp_len[b]
        if r > Tmax:
            raise ValueError(f"grad peer: response {b} has {r} tokens, more than Tmax {Tmax}")
        pos[b, :r] = torch.arange(prompt_len[b] - 1, prompt_len[b] - 1 + r)
        mask[b, :r] = True
    pos, mask = pos.to(device), mask.to(device)
    lp = torch.where(mask, logp_all.gather(1, pos), torch.zeros((), device=device))
    loss = (lp * w).sum()
    loss.backward()
    params = dict(model.named_parameters())
    state["grads"] = params
    if device.type == "cuda":
        torch.cuda.synchronize()
    return lp.detach(), float(loss.detach())


def sample(a):
    """The gradient at the given indices: names[k] takes counts[k] int64 indices from the file, in order."""
    params = state.get("grads")
    if params is None:
        raise RuntimeError("grad peer: grad_sample before grad_run")
    names, counts = a["names"], a["counts"]
    idx = load(a["indices"], sum(counts), torch.int64)
    out, at = [], 0
    for name, n in zip(names, counts):
        p = params.get(name)
        if p is None and name == "lm_head.weight":
            raise KeyError("grad peer: no lm_head.weight (tied embeddings)")
        if p is None:
            raise KeyError(f"grad peer: the model has no parameter {name!r}")
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        i = idx[at:at + n].to(g.device)
        if n and (int(i.min()) < 0 or int(i.max()) >= g.numel()):
            raise IndexError(f"grad peer: an index of {name} is outside its {g.numel()} entries")
        out.append(g.detach().reshape(-1).index_select(0, i).float().cpu())
        at += n
    return torch.cat(out) if out else torch.zeros(0)


def release():
    state.clear()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {}
