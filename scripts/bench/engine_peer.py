"""The transformers side of `clipo bench engine --compare torch`: the same Qwen2-shaped model (clipo writes it as a
Hugging Face model directory, the peer loads it with AutoModelForCausalLM in fp32, sdpa attention) doing the same
three jobs as clipo's engine, driven one call at a time by scripts/bench/torch_peer.py:

  score     forward over the batch, log-probs of every token after the first (log_softmax + gather, as verl's
            logprobs_from_logits does), and the mean final hidden state over them (what clipo's scoring pass pools)
  train     zero_grad, the same forward, loss = sum of the log-probs / (B * T) (clipo's bench feeds d loss / d logp =
            1 / (B * T)), backward, clip_grad_norm_(1.0), torch.optim.AdamW step (lr 1e-6, weight decay 0.01)
  generate  model.generate: the prompts, `samples` each, temperature 1, top-p 0.95 (top-k off), exactly
            `new_tokens` new tokens (no stop token), KV cache

Value checks (before anything is timed) write float32 arrays for the bench to compare: the scoring log-probs, the
gradients of named parameters after one backward, and the log-probs of clipo's sampled tokens under this model.

On a GPU (`clipo bench engine --backend cuda --compare torch`: setup with device "cuda", dtype "bfloat16") the
model runs in bf16 with sdpa attention on the same GPU as clipo's CUDA engine; every timed call ends with
torch.cuda.synchronize(), so the bench's wall clock covers the device work. There `generate` takes the decoding
configuration of the call (prompts, samples each, new tokens: `decode`), top-p off (1.0), and no training is timed.
"""
import torch
import torch.nn.functional as F

state = {}


def load(path, n, dtype):
    return torch.from_file(path, shared=False, size=n, dtype=dtype)


def setup(a):
    from transformers import AutoModelForCausalLM

    device = torch.device(a.get("device", "cpu"))
    dtype = getattr(torch, a.get("dtype", "float32"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("engine peer: device cuda asked for, but torch sees no CUDA device")
    kw = dict(attn_implementation="sdpa")
    try:
        model = AutoModelForCausalLM.from_pretrained(a["model"], dtype=dtype, **kw)
    except TypeError:  # transformers < 4.56 names it torch_dtype
        model = AutoModelForCausalLM.from_pretrained(a["model"], torch_dtype=dtype, **kw)
    model.to(device)
    model.eval()  # no dropout in these configs either way; eval() keeps generate() quiet
    B, T = a["B"], a["T"]
    P, L = a["prompts"], a["promptLen"]
    state.update(
        model=model, device=device,
        ids=load(a["tokens"], B * T, torch.int32).view(B, T).long().to(device),
        prompts=load(a["promptTokens"], P * L, torch.int32).view(P, L).long().to(device),
        samples=a["samples"], new_tokens=a["newTokens"], scale=1.0 / (B * T), top_p=a.get("topP", 0.95),
        opt=torch.optim.AdamW(model.parameters(), lr=1e-6, weight_decay=0.01) if device.type == "cpu" else None,
    )
    return {"parameters": sum(p.numel() for p in model.parameters()), "device": str(device), "dtype": str(dtype)}


def logprobs(model, ids, hidden=False):
    out = model(input_ids=ids, use_cache=False, output_hidden_states=hidden)
    lp = F.log_softmax(out.logits[:, :-1].float(), dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return lp, (out.hidden_states[-1] if hidden else None)


def score():
    with torch.no_grad():
        lp, h = logprobs(state["model"], state["ids"], hidden=True)
        pooled = h[:, 1:].mean(dim=1)
    return lp, pooled


def forward_backward():
    model = state["model"]
    model.zero_grad(set_to_none=False)
    lp, _ = logprobs(model, state["ids"])
    loss = lp.sum() * state["scale"]
    loss.backward()
    return loss


def train():
    loss = forward_backward()
    norm = torch.nn.utils.clip_grad_norm_(state["model"].parameters(), 1.0)
    state["opt"].step()
    return loss, norm


def generate(decode=None):
    """decode: {"prompts": the first this many prompts, "samples": each, "newTokens"} (default: the setup's)."""
    from transformers import GenerationConfig

    d = decode or {}
    n = d.get("newTokens", state["new_tokens"])
    cfg = GenerationConfig(do_sample=True, temperature=1.0, top_p=state["top_p"], top_k=0, max_new_tokens=n,
                           pad_token_id=0, eos_token_id=None, bos_token_id=None)
    prompts = state["prompts"][: d.get("prompts", state["prompts"].shape[0])]
    ids = prompts.repeat_interleave(d.get("samples", state["samples"]), dim=0)
    with torch.no_grad():
        out = state["model"].generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=cfg)
    made = out.shape[1] - ids.shape[1]
    if made != n:
        raise RuntimeError(f"generate made {made} new tokens, expected {n}")
    return out


def run(op, a=None):
    a = a or {}
    if op == "score":
        out = score()
    elif op == "train":
        if state["opt"] is None:
            raise ValueError("engine peer: training is timed on the CPU only")
        out = train()
    elif op == "generate":
        out = generate(a.get("decode"))
    else:
        raise ValueError(f"unknown engine op {op!r}")
    if state["device"].type == "cuda":
        torch.cuda.synchronize()  # the bench times the call on the wall clock: the device work must be done
    return out


def check(a):
    """Writes the values the bench compares with clipo's into a["out"] (float32) and returns a summary."""
    what = a["what"]
    if what == "score":
        lp, _ = score()
        return lp.flatten(), {}
    if what == "grads":
        loss = forward_backward()
        params = dict(state["model"].named_parameters())
        # a tied head has no parameter of its own: its gradient is in the embedding's
        grads = [params[name].grad.flatten() for name in a["names"]]
        total = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in state["model"].parameters() if p.grad is not None))
        return torch.cat(grads), {"loss": float(loss), "gradNorm": float(total)}
    if what == "sequences":
        n, length = a["count"], a["length"]
        ids = load(a["sequences"], n * length, torch.int32).view(n, length).long().to(state["device"])
        with torch.no_grad():
            lp, _ = logprobs(state["model"], ids)
        return lp[:, a["promptLen"] - 1:].flatten(), {}
    raise ValueError(f"unknown engine check {what!r}")
