"""Peak memory and time of loading and converting a GPT-2 XL-sized checkpoint (issue 16).

Writes a random float32 checkpoint with GPT-2 XL's shapes (n_embd 1600, 25 heads, vocab 50257,
1024 positions; 48 layers by default, ~6.2 GB) as HF-sharded safetensors under ``--dir``, then runs
every measurement in a fresh process and prints a markdown table::

    python benchmarks/xl_memory.py                       # the full XL: 20-30 minutes on 2 cores
    python benchmarks/xl_memory.py --layers 2            # XL widths, 2 layers (~0.6 GB): a quick run
    python benchmarks/xl_memory.py --layers 2 --only convert

Measured:

* loads: ``from_pretrained`` in PyTorch, TensorFlow and Flax, float32 and bfloat16
  (``torch_dtype=torch.bfloat16`` / Keras ``dtype="bfloat16"`` / Flax ``param_dtype=jnp.bfloat16``);
* conversions: safetensors -> every format (``pt-bin``, ``tf``, ``flax``, single-file safetensors,
  ``--dtype bf16``), and every format -> sharded safetensors.

Each child imports what it needs, initialises its framework, resets the kernel's high-water mark
(``/proc/self/clear_refs``) and takes its resident set as the baseline; the peak is ``VmHWM`` at the end.
PyTorch's float32 parameters share the file's copy-on-write map and are paged in on first use, so the
PyTorch load child reads every page of every parameter before taking the peak.
"peak / weights" is (peak - baseline) / the float32 bytes of the weights. Memory-mapped file pages count as
resident while they are mapped and touched; pages written to a file (the page cache) do not.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
XL = dict(n_embd=1600, n_head=25, vocab_size=50257, n_positions=1024)

PRELUDE = r"""
import gc, json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)
def reset():
    gc.collect()
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    return status("VmRSS")
"""

LOAD = {
    "pt": """
import torch
from gpt2_multi.pt import GPT2LMHeadModel
base = reset(); start = time.perf_counter()
model = GPT2LMHeadModel.from_pretrained(SRC, torch_dtype=torch.bfloat16 if BF16 else None)
def touch():  # parameters shared with the file's map are paged in on first use: count them
    for p in model.parameters():
        float(p.detach().reshape(-1)[::512].float().sum())
""",
    "tf": """
import tensorflow as tf
from gpt2_multi.tf import TFGPT2LMHeadModel
tf.constant(1.0) + 1.0
base = reset(); start = time.perf_counter()
model = TFGPT2LMHeadModel.from_pretrained(SRC, dtype="bfloat16" if BF16 else None)
""",
    "flax": """
import jax, jax.numpy as jnp
from gpt2_multi.flax import FlaxGPT2LMHeadModel
jnp.zeros(1).block_until_ready()
base = reset(); start = time.perf_counter()
model = FlaxGPT2LMHeadModel.from_pretrained(SRC, param_dtype=jnp.bfloat16 if BF16 else jnp.float32)
""",
}

CONVERT = """
import h5py, msgpack
if NEEDS_TORCH:
    import torch
from gpt2_multi.checkpoint import convert
base = reset(); start = time.perf_counter()
convert(SRC, DST, TO, src_format=FROM, max_shard_size=SHARD, **({'dtype': DTYPE} if DTYPE else {}))
"""

EPILOGUE = """
seconds = time.perf_counter() - start
if "touch" in globals():
    touch()
print(json.dumps({"baseline": base, "peak": status("VmHWM"), "seconds": seconds}))
"""


def write_random_xl(directory: Path, layers: int, shard_bytes: int = 2 * 10**9) -> int:
    """A random float32 GPT-2 XL-shaped checkpoint as sharded safetensors, one shard in memory at a time."""
    from gpt2_multi.checkpoint import expected_shapes, safetensors_io
    from gpt2_multi.config import GPT2Config

    config = GPT2Config(n_layer=layers, architectures=["GPT2LMHeadModel"], **XL)
    shapes = sorted(expected_shapes(config, "GPT2LMHeadModel").items())
    rng = np.random.default_rng(0)
    groups: list[list[tuple[str, tuple]]] = [[]]
    size = 0
    for name, shape in shapes:
        nbytes = int(np.prod(shape)) * 4
        if groups[-1] and size + nbytes > shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append((name, shape))
        size += nbytes
    directory.mkdir(parents=True, exist_ok=True)
    weight_map, total = {}, 0
    for i, group in enumerate(groups, start=1):
        name = f"model-{i:05d}-of-{len(groups):05d}.safetensors"
        tensors = {k: rng.standard_normal(s, dtype=np.float32) * np.float32(0.02) for k, s in group}
        safetensors_io.save(directory / name, tensors, {"format": "pt"})
        total += sum(t.nbytes for t in tensors.values())
        weight_map.update(dict.fromkeys(tensors, name))
        del tensors
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    config.save_pretrained(directory)
    return total


def run_child(code: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", PRELUDE + code + EPILOGUE], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def dir_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=48)
    parser.add_argument("--dir", default="/tmp/gpt2_xl_memory", help="scratch directory (deleted at the end)")
    parser.add_argument("--only", choices=["load", "convert"], help="run only the loads or only the conversions")
    parser.add_argument("--max-shard-size", default="5GB", help="--max-shard-size of the conversions")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)

    root = Path(args.dir)
    shutil.rmtree(root, ignore_errors=True)
    src = root / "safetensors-sharded"
    start = time.perf_counter()
    weights = write_random_xl(src, args.layers)
    print(f"wrote {weights / 1e9:.2f} GB of float32 weights ({args.layers} layers) in {time.perf_counter() - start:.0f} s\n",
          file=sys.stderr)
    rows: list[tuple[str, dict, int]] = []

    def record(what: str, result: dict, out_bytes: int = 0) -> None:
        rows.append((what, result, out_bytes))
        if "error" in result:
            print(f"{what}: ERROR {result['error']}", file=sys.stderr)
        else:
            ratio = (result["peak"] - result["baseline"]) / weights
            print(f"{what}: {ratio:.2f}x in {result['seconds']:.1f} s", file=sys.stderr)

    try:
        if args.only in (None, "load"):
            for backend in ("pt", "tf", "flax"):
                for bf16 in (False, True):
                    code = f"SRC = {str(src)!r}; BF16 = {bf16}\n" + LOAD[backend]
                    record(f"load {backend} {'bf16' if bf16 else 'fp32'}", run_child(code))
        if args.only in (None, "convert"):
            for to, dtype, label in (("pt-bin", None, "safetensors -> pt-bin"), ("tf", None, "safetensors -> tf"),
                                     ("flax", None, "safetensors -> flax"),
                                     ("safetensors", None, "safetensors -> safetensors (resharded)"),
                                     ("safetensors", "bf16", "safetensors -> safetensors --dtype bf16")):
                dst = root / f"to-{to}-{dtype or 'same'}"
                code = (f"SRC, DST, TO, FROM, SHARD, DTYPE = {str(src)!r}, {str(dst)!r}, {to!r}, None, "
                        f"{args.max_shard_size!r}, {dtype!r}; NEEDS_TORCH = {to == 'pt-bin'}\n" + CONVERT)
                result = run_child(code)
                record(label, result, dir_bytes(dst) if dst.is_dir() else 0)
                if dtype is not None:
                    shutil.rmtree(dst, ignore_errors=True)
            for fmt in ("pt-bin", "tf", "flax"):
                back = root / f"back-from-{fmt}"
                code = (f"SRC, DST, TO, FROM, SHARD, DTYPE = {str(root / f'to-{fmt}-same')!r}, {str(back)!r}, 'safetensors', "
                        f"{fmt!r}, {args.max_shard_size!r}, None; NEEDS_TORCH = {fmt == 'pt-bin'}\n" + CONVERT)
                record(f"{fmt} -> safetensors", run_child(code), dir_bytes(back) if back.is_dir() else 0)
                shutil.rmtree(back, ignore_errors=True)
                shutil.rmtree(root / f"to-{fmt}-same", ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    print(f"\nGPT-2 XL shapes, {args.layers} layers, {weights / 1e9:.2f} GB float32 weights "
          f"(sharded safetensors source, --max-shard-size {args.max_shard_size})\n")
    print("| what | peak RSS - baseline (GB) | peak / weights | seconds | GB/s |")
    print("| --- | --- | --- | --- | --- |")
    for what, result, _ in rows:
        if "error" in result:
            print(f"| {what} | error: {result['error']} | | | |")
            continue
        delta = result["peak"] - result["baseline"]
        print(f"| {what} | {delta / 1e9:.2f} | {delta / weights:.2f}x | {result['seconds']:.1f} | "
              f"{weights / 1e9 / result['seconds']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
