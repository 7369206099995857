#!/usr/bin/env python3
"""Checks that transformers loads a model directory written by clipo and agrees with `clipo score` on it.

    python scripts/reference/check_transformers_load.py DIR [--tokens 1,2,3,...]

Loads DIR with AutoModelForCausalLM (float64, eager attention), reports missing/unexpected/mismatched keys, computes
log p(x[t+1] | x[<=t]) for the tokens and compares with `node bin/clipo score --model DIR --tokens ... --json`
(run from the repository root, after `npm run build`). Exits non-zero on any key problem or a difference > 1e-4.
If DIR has a tokenizer, also prints transformers' ids for a sample text and the rendered chat template.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

REPO = Path(__file__).resolve().parents[2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--tokens", default="1,2,3,4,5,6,7,8")
    args = ap.parse_args()
    tokens = [int(t) for t in args.tokens.split(",")]
    try:
        model, info = AutoModelForCausalLM.from_pretrained(args.dir, dtype=torch.float64, attn_implementation="eager", output_loading_info=True)
    except TypeError:  # transformers < 4.56
        model, info = AutoModelForCausalLM.from_pretrained(args.dir, torch_dtype=torch.float64, attn_implementation="eager", output_loading_info=True)
    model.eval()
    problems = {k: sorted(v) for k, v in info.items() if k != "error_msgs" and v}
    print(f"{type(model).__name__}: loading info {problems or 'clean'}")
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([tokens])).logits[0, :-1]
    ref = torch.log_softmax(logits, -1).gather(-1, torch.tensor(tokens[1:])[:, None])[:, 0]
    out = subprocess.run(["node", str(REPO / "bin" / "clipo"), "score", "--model", args.dir, "--tokens", args.tokens, "--json"],
                         capture_output=True, text=True, check=True)
    ours = torch.tensor(json.loads(out.stdout)["logprobs"], dtype=torch.float64)
    diff = (ours - ref).abs().max().item()
    print(f"max |clipo score - transformers| = {diff:.3g}")
    if (Path(args.dir) / "tokenizer.json").exists():
        tok = AutoTokenizer.from_pretrained(args.dir)
        print("tokenizer ids('héllo'):", tok.encode("héllo", add_special_tokens=False))
        if tok.chat_template:
            print("chat:", repr(tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)))
    if problems or diff > 1e-4:
        sys.exit(1)


if __name__ == "__main__":
    main()
