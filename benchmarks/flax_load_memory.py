"""Peak memory of ``FlaxGPT2LMHeadModel.from_pretrained`` on a random gpt2-small-sized safetensors checkpoint.

Usage: python benchmarks/flax_load_memory.py [--n-layer 12] [--dir DIR] [--json]

The checkpoint is written first (with the shared ``save_checkpoint``) by this process; the load is
measured in a fresh child process: its resident set after importing JAX/Flax and our package is the
baseline, the peak (VmHWM, reset just before loading) minus that baseline is the load's cost.
Prints the weights' size, the peak RSS delta and their ratio. HF's Flax ``from_pretrained`` random-
initialises the model first and peaks far higher; ours never initialises and releases each memory-
mapped tensor's pages once it is on the device.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, sys, time
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
import jax, jax.numpy as jnp, numpy as np
from gpt2_multi.flax import FlaxGPT2LMHeadModel
import gpt2_multi.flax.loading as loading
if "--no-release" in sys.argv:  # for comparison: keep every memory-mapped page resident
    loading._release_pages = lambda array: None
jax.device_put(np.zeros(4, np.float32)).block_until_ready()  # start the CPU client before measuring
path = sys.argv[1]
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current RSS
base = status("VmRSS")
t0 = time.perf_counter()
model = FlaxGPT2LMHeadModel.from_pretrained(path)
jax.block_until_ready(model.params)
seconds = time.perf_counter() - t0
peak = status("VmHWM")
nbytes = sum(x.nbytes for x in jax.tree_util.tree_leaves(model.params))
print(json.dumps({"param_bytes": nbytes, "baseline_bytes": base, "peak_bytes": peak, "seconds": seconds}))
"""


def write_checkpoint(directory: Path, n_layer: int) -> int:
    import numpy as np

    from gpt2_multi import GPT2Config
    from gpt2_multi.checkpoint import expected_shapes, save_checkpoint

    config = GPT2Config(n_layer=n_layer, architectures=["GPT2LMHeadModel"])
    rng = np.random.default_rng(0)
    tensors = {name: (rng.standard_normal(shape, dtype=np.float32) * 0.02) for name, shape in
               expected_shapes(config, "GPT2LMHeadModel").items()}
    save_checkpoint(directory, tensors, config, architecture="GPT2LMHeadModel")
    return int(sum(v.nbytes for v in tensors.values()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-layer", type=int, default=12, help="blocks (12 = gpt2-small, 124M parameters)")
    parser.add_argument("--dir", type=Path, default=None, help="where to write the checkpoint (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="also print one JSON line with the numbers")
    parser.add_argument("--no-release", action="store_true",
                        help="for comparison: do not release the file pages of converted tensors")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = (args.dir or Path(tmp)) / "gpt2-random"
        weights = write_checkpoint(directory, args.n_layer)
        child_args = [str(directory)] + (["--no-release"] if args.no_release else [])
        res = subprocess.run([sys.executable, "-c", CHILD, *child_args], capture_output=True, text=True, check=False)
        if res.returncode != 0:
            sys.stderr.write(res.stderr)
            raise SystemExit(res.returncode)
        child = json.loads(res.stdout.strip().splitlines()[-1])
    delta = child["peak_bytes"] - child["baseline_bytes"]
    result = {
        "n_layer": args.n_layer,
        "weights_mb": round(weights / 1e6, 1),
        "params_mb": round(child["param_bytes"] / 1e6, 1),
        "peak_rss_delta_mb": round(delta / 1e6, 1),
        "ratio": round(delta / weights, 3),
        "seconds": round(child["seconds"], 2),
    }
    print(f"weights {result['weights_mb']} MB, peak RSS delta {result['peak_rss_delta_mb']} MB, "
          f"ratio {result['ratio']}x, load {result['seconds']} s")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
