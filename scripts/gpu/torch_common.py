"""Shared by the PyTorch side-by-side scripts (torch_surrogate.py, torch_contrastive.py, torch_gemm.py): device
choice, timing (CUDA events after warm-up on a GPU, perf_counter on the CPU), the torch.compile time budget, and the
JSON output. The CPU path exists so the scripts can be checked on a machine without a GPU (small sizes, --quick);
the figures that matter come from the GPU.
"""
import json
import statistics
import time

import torch


def pick_device(name):
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch.cuda.is_available() is False")
    return name


def device_name(device):
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return "cpu"


def l2_bytes(device):
    """The GPU's L2 cache size (0 on the CPU, where the scripts make no cache claim)."""
    if device != "cuda":
        return 0
    return int(getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 50 << 20))


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def time_calls(fn, device, repeats, warmup):
    """Milliseconds of each of `repeats` calls of fn(i) (i counts from 0 across warm-up and timed calls)."""
    i = 0
    for _ in range(warmup):
        fn(i)
        i += 1
    sync(device)
    out = []
    if device == "cuda":
        # back to back, as clipo's own CUDA timings: the calls are queued without waiting, an event between
        # consecutive calls, so each interval is one call's device time (or the host's, where launching is slower)
        events = [torch.cuda.Event(enable_timing=True) for _ in range(repeats + 1)]
        events[0].record()
        for r in range(repeats):
            fn(i)
            events[r + 1].record()
            i += 1
        torch.cuda.synchronize()
        out = [events[r].elapsed_time(events[r + 1]) for r in range(repeats)]
    else:
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(i)
            out.append((time.perf_counter() - t0) * 1e3)
            i += 1
    return out


def summary(samples):
    return {"ms": round(statistics.median(samples), 4), "bestMs": round(min(samples), 4)}


class CompileBudget:
    """torch.compile where it works, within a time budget: compiling costs tens of seconds per graph on a GPU and
    the whole GPU check must fit in a few minutes. A failure or an exhausted budget is recorded, never fatal."""

    def __init__(self, seconds, enabled=True):
        self.left = seconds
        self.enabled = enabled
        self.notes = []

    def run(self, label, build):
        """build() compiles and warms a function and returns it; returns (fn or None, note)."""
        if not self.enabled:
            return None, "torch.compile off (--no-compile)"
        if self.left <= 0:
            note = f"{label}: torch.compile skipped (compile budget spent)"
            self.notes.append(note)
            return None, note
        t0 = time.perf_counter()
        try:
            fn = build()
        except Exception as e:  # noqa: BLE001 - any compiler failure means "not where it works"
            note = f"{label}: torch.compile failed: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            self.notes.append(note)
            self.left -= time.perf_counter() - t0
            return None, note
        spent = time.perf_counter() - t0
        self.left -= spent
        return fn, f"compiled in {spent:.1f} s"


def emit(doc, out_path, quiet=False):
    """Writes doc to out_path atomically (and prints it unless quiet)."""
    text = json.dumps(doc, indent=2)
    if not quiet:
        print(text)
    if out_path:
        with open(out_path + ".tmp", "w") as f:
            f.write(text + "\n")
        import os

        os.replace(out_path + ".tmp", out_path)


def max_rel_diff(a, b):
    """max |a - b| / max(|b|) over all elements (a scale-aware comparison for losses and gradients)."""
    a = a.detach().double().flatten()
    b = b.detach().double().flatten()
    scale = b.abs().max().clamp(min=1e-30)
    return float(((a - b).abs().max() / scale).item())
