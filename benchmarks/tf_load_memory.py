"""Peak memory of ``TFGPT2LMHeadModel.from_pretrained`` relative to the size of the weights.

Writes a random checkpoint of the requested size (default: GPT-2 small, 124M parameters,
~0.5 GB in float32) in a temporary directory, then loads it in a fresh subprocess and
reports the growth of the resident set during the load::

    python benchmarks/tf_load_memory.py                 # gpt2-small, safetensors
    python benchmarks/tf_load_memory.py --format tf     # through tf_model.h5
    python benchmarks/tf_load_memory.py --n-layer 2     # smaller, faster

The peak is the kernel's high-water mark (``VmHWM``), reset right before the load
(``/proc/self/clear_refs``), so import-time spikes are not counted; the baseline is the
resident set at that moment (TensorFlow, Keras and the package imported, the TF runtime
initialised). Memory-mapped file pages count as resident while they are mapped.
Prints weights MB, peak RSS delta MB and their ratio; exits 1 when ``--max-ratio`` is exceeded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import gc, json, os, sys, time
import numpy as np
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)

import tensorflow as tf
from gpt2_multi.tf import TFGPT2LMHeadModel
tf.constant(1.0) + 1.0  # initialise the TF runtime before the baseline
gc.collect()
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")  # reset VmHWM to the current RSS
baseline = status("VmRSS")
start = time.perf_counter()
model = TFGPT2LMHeadModel.from_pretrained(sys.argv[1], format=sys.argv[2])
seconds = time.perf_counter() - start
peak, after = status("VmHWM"), status("VmRSS")
weights = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in model.weights)
print(json.dumps({"baseline": baseline, "peak": peak, "after": after, "weights": weights, "seconds": seconds}))
"""


def write_checkpoint(directory: Path, n_layer: int, n_embd: int, n_head: int, vocab_size: int, fmt: str) -> int:
    from gpt2_multi.checkpoint import expected_shapes, save_checkpoint
    from gpt2_multi.config import GPT2Config

    config = GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_head, vocab_size=vocab_size, architectures=["GPT2LMHeadModel"])
    rng = np.random.default_rng(0)
    tensors = {name: (rng.standard_normal(shape, dtype=np.float32) * 0.02) for name, shape in expected_shapes(config, "GPT2LMHeadModel").items()}
    save_checkpoint(directory, tensors, config, format=fmt, architecture="GPT2LMHeadModel")
    return sum(t.nbytes for t in tensors.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-layer", type=int, default=12)
    parser.add_argument("--n-embd", type=int, default=768)
    parser.add_argument("--n-head", type=int, default=12)
    parser.add_argument("--vocab-size", type=int, default=50257)
    parser.add_argument("--format", default="safetensors", choices=["safetensors", "tf", "flax", "pt-bin"])
    parser.add_argument("--max-ratio", type=float, default=None, help="exit 1 if peak delta / weights exceeds this")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of text")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="gpt2_tf_mem_") as tmp:
        size = write_checkpoint(Path(tmp), args.n_layer, args.n_embd, args.n_head, args.vocab_size, args.format)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.run([sys.executable, "-c", CHILD, tmp, args.format], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            return 2
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    delta = result["peak"] - result["baseline"]
    ratio = delta / result["weights"]
    report = {
        "format": args.format, "weights_mb": result["weights"] / 1e6, "file_weights_mb": size / 1e6,
        "peak_rss_delta_mb": delta / 1e6, "rss_after_delta_mb": (result["after"] - result["baseline"]) / 1e6,
        "ratio": ratio, "load_seconds": result["seconds"],
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(f"format              {report['format']}")
        print(f"weights             {report['weights_mb']:.1f} MB")
        print(f"peak RSS delta      {report['peak_rss_delta_mb']:.1f} MB")
        print(f"RSS delta after     {report['rss_after_delta_mb']:.1f} MB")
        print(f"ratio (peak/weights) {ratio:.2f}x")
        print(f"load time           {report['load_seconds']:.2f} s")
    if args.max_ratio is not None and ratio > args.max_ratio:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
