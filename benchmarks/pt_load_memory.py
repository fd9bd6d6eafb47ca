"""Peak memory of loading a gpt2-small-sized safetensors checkpoint into the PyTorch stack.

Writes a random gpt2-small-shaped ``GPT2LMHeadModel`` checkpoint (124M float32 parameters, ~498 MB)
to a temporary directory, then measures in a fresh subprocess for each mode:

* ``from_pretrained``: ``GPT2LMHeadModel.from_pretrained(dir)`` (meta-device build, copy-on-write mapping);
* ``naive``: the usual alternative for comparison: build the model with random init, then
  ``load_state_dict`` from tensors copied out of the checkpoint (two copies at the peak).

After a warm-up on a tiny model (PyTorch's first meta-device build and first forward load a fixed
~80 MB of code whatever the model size), for each mode it prints the weights' size, the peak RSS growth during the load (``VmHWM`` reset
just before loading), the RSS after a forward pass that touches every weight, and their ratios
to the weights' size. Usage: ``python benchmarks/pt_load_memory.py [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = r"""
import json, sys, time
import numpy as np
import torch

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # MB
    raise KeyError(field)

def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False

torch.set_num_threads(1)
from gpt2_multi.pt import GPT2LMHeadModel
from gpt2_multi.config import GPT2Config
path, mode = sys.argv[1], sys.argv[2]
cold = status("VmRSS")
# Warm-up on a tiny model: the first meta-device build and the first forward import/initialise
# a fixed amount of PyTorch code (~80 MB) whatever the model size; keep it out of the measurement.
tiny = GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=10, n_positions=8)
with torch.device("meta"):
    GPT2LMHeadModel(tiny)
with torch.no_grad():
    GPT2LMHeadModel(tiny).eval()(torch.zeros(1, 8, dtype=torch.long))
base = status("VmRSS")
reset_ok = reset_peak()
start = time.perf_counter()
if mode == "from_pretrained":
    model = GPT2LMHeadModel.from_pretrained(path)
else:
    from gpt2_multi.checkpoint import load_checkpoint, match_state_dict
    ckpt = load_checkpoint(path)
    model = GPT2LMHeadModel(ckpt.config)
    tensors, _ = match_state_dict(ckpt.tensors, ckpt.config, "GPT2LMHeadModel")
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in tensors.items()}, strict=False)
    del ckpt, tensors
seconds = time.perf_counter() - start
after_load = status("VmRSS")
peak_load = status("VmHWM")
with torch.no_grad():
    model(torch.zeros(1, 8, dtype=torch.long))  # touches every weight (wte through the tied head)
after_forward = status("VmRSS")
peak_total = status("VmHWM")
print(json.dumps(dict(warmup=base - cold, base=base, after_load=after_load, peak_load=peak_load, after_forward=after_forward,
                      peak_total=peak_total, seconds=seconds, reset_ok=reset_ok,
                      params=model.num_parameters())))
"""


def write_checkpoint(directory: Path) -> float:
    """A random gpt2-small LM checkpoint (tied head, float32) via the shared writer; returns its weights' MB."""
    from gpt2_multi.checkpoint import expected_shapes, save_checkpoint
    from gpt2_multi.config import GPT2Config

    config = GPT2Config(architectures=["GPT2LMHeadModel"])
    rng = np.random.default_rng(0)
    tensors = {name: (rng.standard_normal(shape, dtype=np.float32) * 0.02) for name, shape in
               expected_shapes(config, "GPT2LMHeadModel").items()}
    save_checkpoint(directory, tensors, config, architecture="GPT2LMHeadModel")
    return sum(t.nbytes for t in tensors.values()) / 2**20


def measure(directory: Path, mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(directory), mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="write the checkpoint here and keep it")
    parser.add_argument("--modes", default="from_pretrained,naive")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = args.keep or Path(tmp)
        weights_mb = write_checkpoint(directory)
        print(f"checkpoint: {directory} ({weights_mb:.1f} MiB of float32 weights)")
        for mode in args.modes.split(","):
            r = measure(directory, mode)
            load_delta = r["peak_load"] - r["base"]
            total_delta = r["peak_total"] - r["base"]
            print(f"{mode:16s} weights {weights_mb:7.1f} MiB | load {r['seconds']:.2f} s | "
                  f"peak RSS delta during load {load_delta:7.1f} MiB (ratio {load_delta / weights_mb:.2f}) | "
                  f"RSS delta after a forward {r['after_forward'] - r['base']:7.1f} MiB | "
                  f"peak delta overall {total_delta:7.1f} MiB (ratio {total_delta / weights_mb:.2f}) | "
                  f"fixed warm-up {r['warmup']:.1f} MiB"
                  + ("" if r["reset_ok"] else " [VmHWM could not be reset: peaks include the imports]"))


if __name__ == "__main__":
    main()
