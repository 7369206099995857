#!/usr/bin/env python3
"""Reference fixtures for clipo's CPU engine, computed by Hugging Face transformers.

Builds tiny random Qwen2ForCausalLM and LlamaForCausalLM models covering what the engine must match (q/k/v biases,
tied and untied embeddings, grouped-query attention, Llama-3 RoPE scaling, an explicit head_dim, o/MLP biases, and
weights stored as BF16, F16 and F32), saves each as a Hugging Face directory with clipo's byte-level tokenizer, and
records in float64:

  logits        [B, T, V]   the model's logits for fixed token ids
  logprobs      [B, T-1]    log p(x[t+1] | x[<=t])
  hidden        [B, T, H]   last_hidden_state (after the final RMSNorm)
  grad_weights  [B, T-1]    fixed random weights w of the loss L = sum w * logprobs
  grad.<name>               dL/d<name> for the 1-D tensors and two matrices

plus the byte tokenizer's ids for a text and a chat (transformers' own tokenizer, so the TypeScript side is checked
against it). Usage (needs torch, transformers, safetensors, numpy; CPU is enough, a GPU is not needed):

    python scripts/reference/make_hf_fixtures.py [--out test/fixtures/hf]

The output is small (< 1 MB) and meant to be committed; test/hf-fixtures.test.ts reads it.
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

REPO = Path(__file__).resolve().parents[2]
BYTE_TOKENIZER = REPO / "assets" / "tokenizers" / "byte"
BATCH, LENGTH = 2, 20

# Weights are drawn larger than HF's 0.02 init so that attention is far from uniform and logits are O(1): a wrong
# RoPE, mask or bias then moves the logits by far more than the tolerance.
WEIGHT_STD, NORM_JITTER, BIAS_STD = 0.15, 0.1, 0.1

MODELS = [
    dict(
        name="qwen2-tied-bf16", cls=Qwen2ForCausalLM, config_cls=Qwen2Config, dtype=torch.bfloat16, seed=1,
        config=dict(vocab_size=272, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1e6, max_position_embeddings=256,
                    tie_word_embeddings=True, use_sliding_window=False, bos_token_id=None, eos_token_id=257,
                    pad_token_id=258),
    ),
    dict(
        name="qwen2-untied-f32", cls=Qwen2ForCausalLM, config_cls=Qwen2Config, dtype=torch.float32, seed=2,
        config=dict(vocab_size=260, hidden_size=24, intermediate_size=40, num_hidden_layers=1, num_attention_heads=2,
                    num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=10000.0, max_position_embeddings=128,
                    tie_word_embeddings=False, use_sliding_window=False, bos_token_id=None, eos_token_id=257),
    ),
    dict(
        name="llama3-scaled-bf16", cls=LlamaForCausalLM, config_cls=LlamaConfig, dtype=torch.bfloat16, seed=3,
        config=dict(vocab_size=272, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, rms_norm_eps=1e-5, rope_theta=10000.0, max_position_embeddings=512,
                    # original_max_position_embeddings 64 puts the head_dim-8 frequencies in all three llama3 bands
                    rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                      original_max_position_embeddings=64),
                    tie_word_embeddings=False, attention_bias=False, mlp_bias=False, bos_token_id=256,
                    eos_token_id=[257, 258]),
    ),
    dict(
        name="llama-bias-headdim-f16", cls=LlamaForCausalLM, config_cls=LlamaConfig, dtype=torch.float16, seed=4,
        config=dict(vocab_size=264, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=1, head_dim=12, rms_norm_eps=1e-6, rope_theta=500000.0,
                    max_position_embeddings=256, tie_word_embeddings=True, attention_bias=True, mlp_bias=True,
                    bos_token_id=None, eos_token_id=257),
    ),
]

TEXT = "Natalia sold clips to 48 of her friends. ¿Cuántos? 答案是72 🙂"
CHAT = [{"role": "system", "content": "Reason step by step."}, {"role": "user", "content": "What is 6*7?"}]


def init_weights(model, gen):
    """Random weights: matrices/embeddings N(0, WEIGHT_STD^2), norm weights 1 + N(0, NORM_JITTER^2), biases N(0, BIAS_STD^2)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            if name.endswith("norm.weight"):
                p.copy_(1 + NORM_JITTER * noise)
            elif name.endswith(".bias"):
                p.copy_(BIAS_STD * noise)
            else:
                p.copy_(WEIGHT_STD * noise)


def load_float64(cls, model_dir):
    try:
        model = cls.from_pretrained(model_dir, dtype=torch.float64, attn_implementation="eager")
    except TypeError:  # transformers < 4.56 names it torch_dtype
        model = cls.from_pretrained(model_dir, torch_dtype=torch.float64, attn_implementation="eager")
    return model.eval()


def tokenizer_check(model_dir):
    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = tok.encode(TEXT, add_special_tokens=False)
    chat_text = tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    chat_ids = tok.apply_chat_template(CHAT, tokenize=True, add_generation_prompt=True)
    if isinstance(chat_ids, dict) or hasattr(chat_ids, "keys"):  # transformers 5 returns a BatchEncoding
        chat_ids = chat_ids["input_ids"]
    assert list(ids) == list(TEXT.encode("utf-8")), "byte tokenizer: ids must be the UTF-8 bytes"
    return dict(text=TEXT, ids=list(ids), decoded=tok.decode(ids), chat=CHAT, chat_text=chat_text,
                chat_ids=[int(i) for i in chat_ids])


def build(spec, out_root):
    name = spec["name"]
    out = out_root / name
    if out.exists():
        shutil.rmtree(out)
    model_dir = out / "model"
    torch.manual_seed(spec["seed"])
    config = spec["config_cls"](**spec["config"], attn_implementation="eager")
    model = spec["cls"](config).eval()
    gen = torch.Generator().manual_seed(spec["seed"])
    init_weights(model, gen)

    # Round every weight to the storage dtype first, so the reference is computed from exactly the stored values.
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(spec["dtype"]).to(p.dtype))
    model.to(spec["dtype"]).save_pretrained(model_dir, safe_serialization=True)
    del model
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(BYTE_TOKENIZER / f, model_dir / f)
    tokcheck = tokenizer_check(model_dir)

    # Inputs: a real chat prompt (truncated) and random ids over the whole vocabulary.
    rng = np.random.default_rng(spec["seed"])
    V = config.vocab_size
    seq0 = (tokcheck["chat_ids"] + list(rng.integers(0, 256, LENGTH)))[:LENGTH]
    seq1 = list(rng.integers(0, V, LENGTH))
    tokens = torch.tensor([seq0, seq1], dtype=torch.long)

    # The reference model is the saved directory as transformers loads it (this also checks that it loads), in
    # float64. Not the model above converted back: its RoPE inv_freq buffer went through the storage dtype too.
    model = load_float64(spec["cls"], model_dir)
    logits = model(input_ids=tokens).logits  # [B, T, V]
    logp_all = torch.log_softmax(logits[:, :-1, :], dim=-1)
    logprobs = logp_all.gather(-1, tokens[:, 1:, None])[..., 0]  # [B, T-1]
    w = torch.tensor(rng.standard_normal((BATCH, LENGTH - 1)), dtype=torch.float64)
    (w * logprobs).sum().backward()
    with torch.no_grad():
        hidden = model.model(input_ids=tokens).last_hidden_state  # after the final norm

    params = dict(model.named_parameters())
    last = config.num_hidden_layers - 1
    grad_names = [n for n, p in params.items() if p.dim() == 1] + [
        "model.layers.0.self_attn.k_proj.weight",
        f"model.layers.{last}.self_attn.o_proj.weight",
    ]
    ref = {
        "logits": logits.detach(),
        "logprobs": logprobs.detach(),
        "hidden": hidden,
        "grad_weights": w,
        **{f"grad.{n}": params[n].grad for n in grad_names},
    }
    save_file({k: v.to(torch.float32).contiguous() for k, v in ref.items()}, str(out / "reference.safetensors"),
              metadata={"format": "pt"})
    meta = {
        "name": name,
        "architecture": spec["cls"].__name__,
        "storage_dtype": str(spec["dtype"]).replace("torch.", ""),
        "tokens": tokens.tolist(),
        "grad_tensors": grad_names,
        "tokenizer": tokcheck,
        "generator": {
            "script": "scripts/reference/make_hf_fixtures.py",
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "compute": "float64 (eager attention), weights rounded to the storage dtype",
        },
    }
    (out / "reference.json").write_text(json.dumps(meta, ensure_ascii=False) + "\n", encoding="utf-8")
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters, {size / 1024:.0f} KiB", file=sys.stderr)
    return size


# A byte-level BPE tokenizer in the Qwen2 layout (its pre-tokenizer regex, NFC, ByteLevel, ChatML specials), trained
# by the Rust `tokenizers` library on a synthetic corpus, with the Rust encodings of awkward strings as reference.
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN25_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) "
    "or (message.role == \"assistant\" and not message.tool_calls) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
TOKENIZER_PROBES = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "I'll say it's DON'T  and   they'RE\n\n\tdone.\r\nNext line   ",
    "Let $x^2 + 2x + 1 = 0$. Then \\boxed{-1}; 3.14159 * 1000000 = 3141590",
    "答案是 72。Ünïcödé façade — naïve café 🙂👍🏽 Приве́т мир",
    "  leading spaces and trailing   ",
    "a<|im_end|>b<|im_start|>user\nhi",
    "e\u0301 (decomposed) vs \u00e9 (composed)",
]


def corpus(rng, n):
    words = ("the a of to and in is was for on that with as by at from it an be are this which or have one had not but "
             "what all were when we there can more if no out so said she he they her his about many then them these "
             "clips sold friends april may half altogether how apples oranges total cost dollars each price step "
             "answer therefore number sum product divide multiply equals").split()
    extra = ["答案", "café", "naïve", "Привет", "🙂", "x^2", "\\frac{1}{2}", "I'll", "don't", "WE'RE", "3.14", "1000"]
    lines = []
    for _ in range(n):
        k = int(rng.integers(5, 25))
        toks = [words[int(i)] if rng.random() < 0.9 else extra[int(rng.integers(len(extra)))] for i in rng.integers(0, len(words), k)]
        lines.append(" ".join(toks) + rng.choice([".", "?", "!", ":\n", "\n\n"]) + str(int(rng.integers(0, 10 ** int(rng.integers(1, 6))))))
    return lines


def build_bpe_tokenizer(out_root):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    out = out_root / "tokenizer-bpe"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus(np.random.default_rng(0), 3000), trainer=trainer)
    tok.save(str(out / "tokenizer.json"))
    config = {"tokenizer_class": "Qwen2TokenizerFast", "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
              "unk_token": None, "clean_up_tokenization_spaces": False, "model_max_length": 32768, "chat_template": QWEN25_TEMPLATE}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    hf = AutoTokenizer.from_pretrained(out)
    probes = []
    for text in TOKENIZER_PROBES:
        ids = tok.encode(text, add_special_tokens=False).ids
        assert ids == hf.encode(text, add_special_tokens=False), "tokenizers and transformers disagree"
        probes.append({"text": text, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
    chat = [{"role": "user", "content": TOKENIZER_PROBES[0]}]
    chat_text = hf.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    ref = {"probes": probes, "chat": chat, "chat_text": chat_text, "chat_ids": hf.encode(chat_text, add_special_tokens=False),
           "vocab_size": tok.get_vocab_size(with_added_tokens=True),
           "generator": {"tokenizers": __import__("tokenizers").__version__, "transformers": transformers.__version__}}
    (out / "reference.json").write_text(json.dumps(ref, ensure_ascii=False) + "\n", encoding="utf-8")
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"tokenizer-bpe: {ref['vocab_size']} tokens, {size / 1024:.0f} KiB", file=sys.stderr)
    return size


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(REPO / "test" / "fixtures" / "hf"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.use_deterministic_algorithms(True)
    total = sum(build(spec, out) for spec in MODELS) + build_bpe_tokenizer(out.parent)
    print(f"wrote {out} ({total / 1024:.0f} KiB)", file=sys.stderr)
    if total > 1024 * 1024:
        sys.exit("fixtures exceed 1 MiB; shrink the models")


if __name__ == "__main__":
    main()
