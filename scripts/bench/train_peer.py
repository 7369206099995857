"""The PyTorch side of `clipo bench train --backend cuda --compare torch`: one training step of the same Qwen2-shaped
model as clipo's CUDA engine, on the same GPU, the way a careful PyTorch user writes it, driven one call at a time by
scripts/bench/torch_peer.py:

  model      AutoModelForCausalLM from the HF directory clipo wrote (fp32 weights), sdpa attention, on the GPU;
             fp32 master weights with bf16 autocast: the usual mixed-precision recipe, and the one that matches
             clipo's engine (fp32 master weights and moments, bf16 compute). Pure bf16 weights would make the update
             itself lossy (updates below half a bf16 ulp vanish), which is no fair comparison.
  step       zero_grad(set_to_none=True); under torch.autocast("cuda", bfloat16): the forward over the micro-batch
             (B sequences of T tokens), the token log-probs of every token after the first (logits.float() minus
             logsumexp, gathered: verl's logprobs_from_logits without flash-attn's fused kernel), a PPO-clip
             surrogate with old log-probs = the detached log-probs (ratio 1, as in the first epoch of an RL step) and
             one advantage per sequence, mean over the tokens; backward; clip_grad_norm_(1.0);
             torch.optim.AdamW(lr 1e-6, weight decay 0.01, fused=True).step(). Every timed call ends with
             torch.cuda.synchronize(), so the bench's wall clock covers the device work.
  check      the same step on the first `checkRows` sequences: writes their log-probs and returns the gradient norm
             before clipping; clipo compares both with its own before anything is timed.
  memory     torch.cuda.max_memory_allocated since the last reset (reset before the timed steps).
  park       the model and the optimizer's state to the host while clipo's engine is timed; unpark brings them back.
"""
import torch

state = {}

CLIP_LOW, CLIP_HIGH = 0.2, 0.28  # DAPO's clip-higher; at ratio 1 neither bound is active


def load(path, n, dtype):
    return torch.from_file(path, shared=False, size=n, dtype=dtype)


def setup(a):
    from transformers import AutoModelForCausalLM

    # "cuda" (the bench); "cpu" runs the same code without a GPU (the test suite's small end-to-end check)
    device = torch.device(a.get("device", "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train peer: torch sees no CUDA device")
    kw = dict(attn_implementation="sdpa")
    try:
        model = AutoModelForCausalLM.from_pretrained(a["model"], dtype=torch.float32, **kw)
    except TypeError:  # transformers < 4.56 names it torch_dtype
        model = AutoModelForCausalLM.from_pretrained(a["model"], torch_dtype=torch.float32, **kw)
    model.to(device)
    model.train()  # the Qwen2 configs have no dropout; train() is what a training loop runs in
    B, T = a["B"], a["T"]
    state.update(
        model=model, device=device,
        ids=load(a["tokens"], B * T, torch.int32).view(B, T).long().to(device),
        adv=load(a["advantages"], B, torch.float32).to(device),
        check_rows=a["checkRows"],
        opt=torch.optim.AdamW(model.parameters(), lr=a.get("lr", 1e-6), weight_decay=a.get("weightDecay", 0.01), fused=True),
    )
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"parameters": sum(p.numel() for p in model.parameters()), "device": name,
            "weights": "fp32", "autocast": "bfloat16"}


def token_logprobs(logits, ids):
    """log p(ids[t+1] | ids[..t]) in fp32: the logit of the taken token minus the logsumexp over the vocabulary."""
    logits = logits[:, :-1].float()
    taken = logits.gather(-1, ids[:, 1:, None]).squeeze(-1)
    return taken - torch.logsumexp(logits, dim=-1)


def step(rows=None):
    """One training step on the first `rows` sequences (all when None); returns (log-probs, gradient norm)."""
    model, opt = state["model"], state["opt"]
    ids = state["ids"] if rows is None else state["ids"][:rows]
    adv = state["adv"] if rows is None else state["adv"][:rows]
    opt.zero_grad(set_to_none=True)
    with torch.autocast(state["device"].type, dtype=torch.bfloat16):
        logits = model(input_ids=ids, use_cache=False).logits
        lp = token_logprobs(logits, ids)
        old = lp.detach()
        ratio = torch.exp(lp - old)
        a = adv[:, None]
        pg = torch.maximum(-a * ratio, -a * ratio.clamp(1 - CLIP_LOW, 1 + CLIP_HIGH))
        loss = pg.mean()  # every position after the first is a response token: token-mean over all of them
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return lp.detach(), norm


def sync():
    if state["device"].type == "cuda":
        torch.cuda.synchronize()  # the bench times calls on the wall clock: the device work must be done


def run(op, a=None):
    if op != "step":
        raise ValueError(f"unknown train op {op!r}")
    out = step()
    sync()
    return out


def check(a):
    """The check step: the log-probs of the first checkRows sequences (float32) and the gradient norm."""
    lp, norm = step(state["check_rows"])
    sync()
    state["opt"].zero_grad(set_to_none=True)  # the gradients are not needed until the next step makes them anew
    return lp.flatten(), {"gradNorm": float(norm)}


def _move(device):
    model, opt = state["model"], state["opt"]
    model.to(device)
    for st in opt.state.values():
        for k, v in st.items():
            if torch.is_tensor(v):
                st[k] = v.to(device)


def park():
    """Moves the model and the optimizer's state to the host and returns the cached blocks to the driver, so that
    clipo's engine has the GPU to itself while its steps are timed (at 1.5B and beyond both do not fit at once)."""
    if state["device"].type == "cuda":
        _move(torch.device("cpu"))
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    return {}


def unpark():
    if state["device"].type == "cuda":
        _move(state["device"])
        torch.cuda.synchronize()
    return {}


def reset_peak():
    if state["device"].type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    return {}


def memory():
    if state["device"].type != "cuda":
        return {"maxAllocated": None, "maxReserved": None}
    torch.cuda.synchronize()
    return {"maxAllocated": torch.cuda.max_memory_allocated(), "maxReserved": torch.cuda.max_memory_reserved()}


def release():
    state.clear()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {}
