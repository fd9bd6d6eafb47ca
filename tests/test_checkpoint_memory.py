"""Peak memory of conversions and loads at GPT-2 XL's widths (issue 16), each measured in a fresh process.

The checkpoint: n_embd 1600, 25 heads, vocab 50257, 1024 positions, 2 layers (~0.57 GB float32) as
HF-sharded safetensors. A child process imports what it needs, then for each operation collects garbage,
resets the kernel's high-water mark (``/proc/self/clear_refs``) and takes its resident set as the baseline;
the cost of the operation is ``VmHWM`` - baseline, compared with the float32 weight bytes.

At 2 layers the word embedding is 56% of the weights, so "one tensor" of overhead is large here; the bounds
below say where they allow for it. ``benchmarks/xl_memory.py`` measures the full 48-layer XL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
XL = dict(n_embd=1600, n_head=25, vocab_size=50257, n_positions=1024)

pytestmark = pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")

PRELUDE = r"""
import gc, json, os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
def measure(fn):
    gc.collect()
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    base = status("VmRSS")
    out = fn()
    peak = status("VmHWM") - base
    del out
    gc.collect()
    return peak
results = {}
"""


def run_child(code: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", PRELUDE + code + "\nprint(json.dumps(results))"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def xl(tmp_path_factory):
    """(directory of the sharded float32 safetensors checkpoint, weight bytes, largest tensor's bytes)."""
    from gpt2_multi import GPT2Config
    from gpt2_multi.checkpoint import expected_shapes, save_checkpoint

    directory = tmp_path_factory.mktemp("xl2")
    config = GPT2Config(n_layer=2, **XL)
    rng = np.random.default_rng(0)
    tensors = {name: rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
               for name, shape in expected_shapes(config, "GPT2LMHeadModel").items()}
    save_checkpoint(directory / "st", tensors, config, max_shard_size="200MB")
    weights = sum(t.nbytes for t in tensors.values())
    largest = max(t.nbytes for t in tensors.values())
    return directory, weights, largest


def test_conversions_stream_with_bounded_memory(xl):
    """Every format from sharded safetensors and back, and a bfloat16 conversion: at most 1.5x (aim 1.2x)."""
    directory, weights, largest = xl
    code = f"""
import torch, h5py, msgpack
from gpt2_multi.checkpoint import convert
d = {str(directory)!r}
for to in ("pt-bin", "tf", "flax", "safetensors"):
    results["st->" + to] = measure(lambda: convert(d + "/st", d + "/" + to, to))
for fmt in ("pt-bin", "tf", "flax"):
    results[fmt + "->st"] = measure(lambda: convert(d + "/" + fmt, d + "/back-" + fmt, "safetensors", max_shard_size="200MB"))
for fmt in ("tf", "flax"):  # sources whose tensors are transposed views: the .bin writer holds converted copies
    results[fmt + "->pt-bin"] = measure(lambda: convert(d + "/" + fmt, d + "/" + fmt + "-to-bin", "pt-bin"))
results["st->pt-bin sharded"] = measure(lambda: convert(d + "/st", d + "/bin-sharded", "pt-bin", max_shard_size="200MB"))
results["st->st bf16"] = measure(lambda: convert(d + "/st", d + "/bf16", "safetensors", dtype="bf16"))
results["st->flax bf16"] = measure(lambda: convert(d + "/st", d + "/flax-bf16", "flax", dtype="bf16"))
"""
    peaks = run_child(code)
    ratios = {k: v / weights for k, v in peaks.items()}
    print(json.dumps({k: round(v, 3) for k, v in ratios.items()}))
    for what, ratio in ratios.items():
        assert ratio <= 1.5, f"{what}: peak {ratio:.2f}x the weights"
    # streamed tensor by tensor: far below one copy, except a .bin target (torch.save holds a shard)
    for what in ("st->tf", "st->flax", "st->safetensors", "tf->st", "flax->st", "pt-bin->st"):
        assert ratios[what] <= 0.25, f"{what}: peak {ratios[what]:.2f}x the weights, expected streaming"
    # a converted copy replaces its source: the copies of one shard (here the whole model), not copies + sources
    for what in ("tf->pt-bin", "flax->pt-bin"):
        assert ratios[what] <= 1.15, f"{what}: peak {ratios[what]:.2f}x the weights (copies and their sources both held?)"
    # one shard at a time: the largest is the 321 MB embedding alone (a tensor is never split)
    assert peaks["st->pt-bin sharded"] <= max(largest, 200e6) + 0.05 * weights
    for what in ("st->st bf16", "st->flax bf16"):
        assert ratios[what] <= 0.55, f"{what}: peak {ratios[what]:.2f}x the float32 weights"
    from gpt2_multi.checkpoint import find_weights, load_checkpoint

    fmt, files = find_weights(directory / "bin-sharded")
    assert fmt == "pt-bin" and len(files) > 1 and all(f.name.startswith("pytorch_model-0000") for f in files)
    assert (directory / "bin-sharded" / "pytorch_model.bin.index.json").is_file()
    bf16 = load_checkpoint(directory / "bf16")
    assert {str(v.dtype) for v in bf16.tensors.values()} == {"bfloat16"}
    assert bf16.config.torch_dtype == "bfloat16"


@pytest.mark.parametrize("backend", ["pt", "tf", "flax"])
def test_loads_float32_and_bfloat16(xl, backend):
    """float32 loads at most 1.3x the weights; bfloat16 loads near the bfloat16 weights (0.5x) plus one tensor."""
    directory, weights, largest = xl
    src = str(directory / "st")
    code = {
        "pt": f"""
import torch
from gpt2_multi.pt import GPT2LMHeadModel
def load(dtype):
    model = GPT2LMHeadModel.from_pretrained({src!r}, torch_dtype=dtype)
    for p in model.parameters():  # float32 parameters share the file's map: page them all in
        float(p.detach().reshape(-1)[::512].float().sum())
    return model
results["fp32"] = measure(lambda: load(None))
results["bf16"] = measure(lambda: load(torch.bfloat16))
""",
        "tf": f"""
import tensorflow as tf
from gpt2_multi.tf import TFGPT2LMHeadModel
tf.constant(1.0) + 1.0
results["fp32"] = measure(lambda: TFGPT2LMHeadModel.from_pretrained({src!r}))
results["bf16"] = measure(lambda: TFGPT2LMHeadModel.from_pretrained({src!r}, dtype="bfloat16"))
""",
        "flax": f"""
import jax.numpy as jnp
from gpt2_multi.flax import FlaxGPT2LMHeadModel
jnp.zeros(1).block_until_ready()
results["fp32"] = measure(lambda: FlaxGPT2LMHeadModel.from_pretrained({src!r}))
results["bf16"] = measure(lambda: FlaxGPT2LMHeadModel.from_pretrained({src!r}, param_dtype=jnp.bfloat16))
""",
    }[backend]
    peaks = run_child(code)
    print(backend, {k: round(v / weights, 3) for k, v in peaks.items()})
    if backend == "tf":
        # Keras makes its variable from the initialiser's tensor with a transient copy: two copies of the
        # tensor being created on top of the variables made so far (at 48 layers: 1.1x; here wte is 56%).
        assert peaks["fp32"] <= weights + 2 * largest
        assert peaks["bf16"] <= weights / 2 + 2 * largest / 2 + 0.05 * weights
    else:
        assert peaks["fp32"] <= 1.3 * weights
        assert peaks["bf16"] <= 0.55 * weights + largest / 2 * 0.2
