"""Peak memory and time of loading and converting a GPT-2 XL-sized checkpoint (issue 16).

Writes a random float32 checkpoint with GPT-2 XL's shapes (n_embd 1600, 25 heads, vocab 50257,
1024 positions; 48 layers by default, ~6.2 GB) as HF-sharded safetensors under ``--dir``, then runs
every measurement in a fresh process and prints a markdown table::

    python benchmarks/xl_memory.py                       # the full XL: about an hour on 2 cores
    python benchmarks/xl_memory.py --layers 2 --max-shard-size 200MB    # XL widths, 2 layers (0.57 GB): quick
    python benchmarks/xl_memory.py --layers 2 --max-shard-size 200MB --only convert --pairs safetensors

Measured:

* loads: ``from_pretrained`` in PyTorch, TensorFlow and Flax, float32 and bfloat16
  (``torch_dtype=torch.bfloat16`` / Keras ``dtype="bfloat16"`` / Flax ``param_dtype=jnp.bfloat16``), from the
  sharded safetensors; with ``--pairs all`` also each framework's own format (PyTorch from sharded and single
  ``pytorch_model.bin``, TensorFlow from ``tf_model.h5``, Flax from ``flax_model.msgpack``);
* conversions (``gpt2_multi.checkpoint.convert``) between the six layouts: sharded and single-file safetensors,
  sharded and single-file ``pytorch_model.bin`` (``--max-shard-size``, and a size no checkpoint reaches for
  "single"), ``tf_model.h5`` and ``flax_model.msgpack``. ``--pairs all`` (the default): every ordered pair
  (30); ``--pairs safetensors``: sharded safetensors -> each other layout and back. Plus sharded safetensors
  ``--dtype bf16``. Each source is made by the measured conversion from the sharded safetensors, used for
  its conversions to every other layout, then deleted, so at most three checkpoints are on disk at a time.

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


SINGLE = "100000GB"  # a --max-shard-size no checkpoint reaches: one file
#: the six layouts: name -> (convert's ``to`` / ``src_format``, sharded)
LAYOUTS = {"safetensors-sharded": ("safetensors", True), "safetensors-single": ("safetensors", False),
           "bin-sharded": ("pt-bin", True), "bin-single": ("pt-bin", False), "h5": ("tf", False),
           "msgpack": ("flax", False)}
#: the framework that loads each layout natively (``--pairs all`` measures these loads too)
NATIVE = {"bin-sharded": "pt", "bin-single": "pt", "h5": "tf", "msgpack": "flax"}
LIMITS = {"load": 1.3, "convert": 1.5}


def weight_files(directory: Path, fmt: str) -> int:
    from gpt2_multi.checkpoint import find_weights

    return len(find_weights(directory, fmt)[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=48)
    parser.add_argument("--dir", default="/tmp/gpt2_xl_memory", help="scratch directory (deleted at the end)")
    parser.add_argument("--only", choices=["load", "convert"], help="run only the loads or only the conversions")
    parser.add_argument("--max-shard-size", default="5GB", help="--max-shard-size of the sharded layouts")
    parser.add_argument("--pairs", choices=["all", "safetensors"], default="all",
                        help="all: every ordered pair of the six layouts (and native-format loads); safetensors: "
                             "sharded safetensors to each layout and back")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)

    root = Path(args.dir)
    shutil.rmtree(root, ignore_errors=True)
    src = root / "safetensors-sharded"
    start = time.perf_counter()
    weights = write_random_xl(src, args.layers)
    print(f"wrote {weights / 1e9:.2f} GB of float32 weights ({args.layers} layers) in {time.perf_counter() - start:.0f} s\n",
          file=sys.stderr)
    rows: list[tuple[str, str, dict, str]] = []  # (kind, what, result, weight files written)

    def record(kind: str, what: str, result: dict, files: str = "") -> None:
        rows.append((kind, what, result, files))
        if "error" in result:
            print(f"{what}: ERROR {result['error']}", file=sys.stderr)
        else:
            ratio = (result["peak"] - result["baseline"]) / weights
            print(f"{what}: {ratio:.2f}x in {result['seconds']:.1f} s {files}", file=sys.stderr, flush=True)

    def load(backend: str, directory: Path, layout: str) -> None:
        for bf16 in (False, True):
            code = f"SRC = {str(directory)!r}; BF16 = {bf16}\n" + LOAD[backend]
            record("load", f"load {backend} {'bf16' if bf16 else 'fp32'} from {layout}", run_child(code))

    def convert(source: Path, src_layout: str, dst: Path, dst_layout: str, dtype: str | None = None) -> None:
        shutil.rmtree(dst, ignore_errors=True)
        to, sharded = LAYOUTS[dst_layout]
        shard = args.max_shard_size if sharded else SINGLE
        code = (f"SRC, DST, TO, FROM, SHARD, DTYPE = {str(source)!r}, {str(dst)!r}, {to!r}, "
                f"{LAYOUTS[src_layout][0]!r}, {shard!r}, {dtype!r}; "
                f"NEEDS_TORCH = {'pt-bin' in (to, LAYOUTS[src_layout][0])}\n" + CONVERT)
        result = run_child(code)
        files = ""
        if "error" not in result:
            count = weight_files(dst, to)
            if sharded and dtype is None and count == 1:
                result = {"error": f"{dst_layout}: one file written; --max-shard-size {shard} does not shard"}
            elif not sharded and count != 1:
                result = {"error": f"{dst_layout}: {count} files written, not one"}
            files = f"{count} file{'s' if count > 1 else ''}, {dir_bytes(dst) / 1e9:.2f} GB"
        label = f"{src_layout} -> {dst_layout}" + (f" --dtype {dtype}" if dtype else "")
        record("convert", label, result, files)

    try:
        if args.only in (None, "load"):
            for backend in ("pt", "tf", "flax"):
                load(backend, src, "safetensors-sharded")
        if args.only in (None, "convert"):
            convert(src, "safetensors-sharded", root / "bf16", "safetensors-sharded", dtype="bf16")
            shutil.rmtree(root / "bf16", ignore_errors=True)
        for layout in LAYOUTS:
            if layout == "safetensors-sharded" or args.only == "load" and (args.pairs != "all" or layout not in NATIVE):
                continue
            source = root / layout
            convert(src, "safetensors-sharded", source, layout)  # the pair safetensors-sharded -> layout
            if args.pairs == "all" and args.only in (None, "load") and layout in NATIVE:
                load(NATIVE[layout], source, layout)
            if args.only in (None, "convert"):
                targets = [t for t in LAYOUTS if t != layout] if args.pairs == "all" else ["safetensors-sharded"]
                for target in targets:
                    convert(source, layout, root / "dst", target)
                    shutil.rmtree(root / "dst", ignore_errors=True)
            shutil.rmtree(source, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    print(f"\nGPT-2 XL shapes, {args.layers} layers, {weights / 1e9:.2f} GB float32 weights (sources: sharded "
          f"safetensors with 2 GB shards, and the conversions' outputs; sharded layouts --max-shard-size "
          f"{args.max_shard_size})\n")
    over = []
    print("| what | peak RSS - baseline (GB) | peak / weights | seconds | GB/s | written |")
    print("| --- | --- | --- | --- | --- | --- |")
    order = list(LAYOUTS)

    def position(row: tuple[str, str, dict, str]) -> tuple:
        kind, what = row[0], row[1]
        if kind == "load":
            return (0, order.index(what.rsplit(" from ", 1)[1]))
        pair = what.split(" --dtype")[0].split(" -> ")
        return (1, order.index(pair[0]), "--dtype" in what, order.index(pair[1]))

    for kind, what, result, files in sorted(rows, key=position):
        if "error" in result:
            print(f"| {what} | error: {result['error']} | | | | |")
            continue
        delta = result["peak"] - result["baseline"]
        ratio = delta / weights
        flag = ""
        if ratio > LIMITS[kind]:
            flag = f" **over {LIMITS[kind]}x**"
            over.append(f"{what}: {ratio:.2f}x")
        print(f"| {what} | {delta / 1e9:.2f} | {ratio:.2f}x{flag} | {result['seconds']:.1f} | "
              f"{weights / 1e9 / result['seconds']:.2f} | {files} |")
    errors = [what for _, what, result, _ in rows if "error" in result]
    print(f"\n{len(rows)} rows; above the bounds (loads {LIMITS['load']}x, conversions {LIMITS['convert']}x): "
          f"{', '.join(over) or 'none'}; errors: {', '.join(errors) or 'none'}")
    return 1 if over or errors else 0


if __name__ == "__main__":
    sys.exit(main())
