"""Decode and prefill speed of every backend at float32 and bfloat16, beside HF transformers and the machine's bound.

One table for issue 15: for each backend (pt, tf, flax) and dtype (fp32, bf16), in one run,

* **decode tokens/s** of the default ``generate()`` path, greedy, decode only:
  ``B * (new - 2) / (t(new) - t(2))`` (the prefill and the first tokens cancel out; HF's TF ``generate``
  fails under XLA for one new token), batch 1 and 8;
* **prefill**: a ``B x 128`` forward without cache (``use_cache=False``), in ms and in GFLOP/s, and that as a
  fraction of the machine's matmul peak in the same dtype;
* HF transformers' same figures from the same run, for its best path in that framework: PyTorch (its default
  attention), TF's ``generate`` under ``tf.function(jit_compile=True)`` (fp32 only: HF's TF classes have no
  bfloat16 loading), Flax's jitted ``generate`` (bf16: ``dtype=bfloat16`` and ``to_bf16`` params);
* **the bounds**: batch-1 decode reads every weight once per token (the tied head reads ``wte``; the position
  table is not read), so it cannot beat ``read bandwidth / weight bytes``. The read bandwidth is the best of a
  reduction (read only) over 512 MB by numpy (one thread) and torch (every thread); the matmul peak is the
  best ``2048^3`` product in each dtype of torch's ``mm`` and jax's jitted ``dot``.

Every (backend, implementation, dtype) runs in its own subprocess, so neither compile caches nor memory leak
between them; each timing is the best of ``--repeats``. The machine is shared: the load average is printed.

Usage::

    python benchmarks/speed.py                          # every installed backend, fp32 and bf16, GPT-2 small
    python benchmarks/speed.py --backends flax --dtypes bf16 --no-hf
    python benchmarks/speed.py --quick                  # tiny shapes: a smoke run (also in the test suite)
    python benchmarks/speed.py --json out.json          # also write the rows
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import best_of, write_checkpoint  # noqa: E402 - the shared timer and checkpoint writer

SMALL = dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12)
TINY = dict(vocab_size=1000, n_positions=256, n_embd=64, n_layer=2, n_head=4)
PREFILL_TOKENS = 128
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_USE_LEGACY_KERAS": "0"}

# ------------------------------------------------------------------------------------------ children
# Each child reads a job (JSON) and prints "RESULT {decode: {b: tok/s}, prefill_ms: {b: ms}}".
COMMON = r"""
import json, sys, time
import numpy as np
job = json.loads(sys.argv[1])
bf16 = job["dtype"] == "bf16"
def best(fn):
    fn()
    times = []
    for _ in range(job["repeats"]):
        t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
    return min(times)
def measure(generate, forward):
    rng = np.random.default_rng(0)
    out = {"decode": {}, "prefill_ms": {}}
    for b in job["batches"]:
        ids = rng.integers(0, job["vocab"], (b, job["prompt"]))
        t_new, t_two = best(lambda: generate(ids, job["new"])), best(lambda: generate(ids, 2))
        out["decode"][b] = b * (job["new"] - 2) / (t_new - t_two)
    for b in job["prefill"]:
        ids = rng.integers(0, job["vocab"], (b, job["prefill_tokens"]))
        out["prefill_ms"][b] = 1e3 * best(lambda: forward(ids))
    print("RESULT " + json.dumps(out))
"""

CHILDREN = {
    ("pt", "ours"): r"""
import torch
from gpt2_multi.pt import GPT2LMHeadModel as Model
model = Model.from_pretrained(job["path"], torch_dtype=torch.bfloat16 if bf16 else torch.float32).eval()
""",
    ("pt", "hf"): r"""
import torch, transformers
transformers.logging.set_verbosity_error()
model = transformers.GPT2LMHeadModel.from_pretrained(job["path"], torch_dtype=torch.bfloat16 if bf16 else torch.float32).eval()
""",
    ("tf", "ours"): r"""
from gpt2_multi.tf import TFGPT2LMHeadModel as Model
model = Model.from_pretrained(job["path"], dtype="bfloat16" if bf16 else "float32")
""",
    ("tf", "hf"): r"""
import tensorflow as tf, transformers
transformers.logging.set_verbosity_error()
model = transformers.TFGPT2LMHeadModel.from_pretrained(job["path"])
xla_generate = tf.function(model.generate, jit_compile=True)
""",
    ("flax", "ours"): r"""
import jax, jax.numpy as jnp
from gpt2_multi.flax import FlaxGPT2LMHeadModel as Model
kw = dict(dtype=jnp.bfloat16, param_dtype=jnp.bfloat16) if bf16 else {}
model = Model.from_pretrained(job["path"], **kw)
""",
    ("flax", "hf"): r"""
import jax, jax.numpy as jnp, transformers
transformers.logging.set_verbosity_error()
model = transformers.FlaxGPT2LMHeadModel.from_pretrained(job["path"], dtype=jnp.bfloat16 if bf16 else jnp.float32)
if bf16:
    model.params = model.to_bf16(model.params)
# HF's Flax generate runs its while loop op by op unless jitted, recompiling the loop on every call (its figures
# then moved 4-7x between runs); jitted as HF's docs advise, with the weights an argument, not constants
import functools
@functools.partial(jax.jit, static_argnums=2)
def jit_generate(params, ids, n):
    return model.generate(ids, params=params, max_new_tokens=n, min_new_tokens=n, pad_token_id=0,
                          eos_token_id=job["vocab"]).sequences
""",
}

RUN = {
    "pt": r"""
def generate(ids, n):
    ids = torch.as_tensor(ids)
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                             do_sample=False, eos_token_id=None, pad_token_id=0)
    assert out.shape[1] == ids.shape[1] + n
def forward(ids):
    with torch.inference_mode():
        model(torch.as_tensor(ids), use_cache=False).logits
measure(generate, forward)
""",
    "tf": r"""
import tensorflow as tf
gen = globals().get("xla_generate", model.generate)
def generate(ids, n):
    ids = tf.constant(ids, tf.int32)
    out = gen(ids, attention_mask=tf.ones_like(ids), max_new_tokens=n, do_sample=False, eos_token_id=None,
              pad_token_id=0).numpy()
    assert out.shape[1] == ids.shape[1] + n
def forward(ids):
    model(tf.constant(ids, tf.int32), use_cache=False).logits.numpy()
measure(generate, forward)
""",
    "flax": r"""
def generate(ids, n):
    ids = jnp.asarray(ids, jnp.int32)
    if "jit_generate" in globals():  # HF's, compiled once per length (the warm-up call in best())
        sequences = jit_generate(model.params, ids, n)
    else:  # ours; an eos no random-weight model can emit, as HF's call (which needs one): every run makes n tokens
        sequences = model.generate(ids, max_new_tokens=n, min_new_tokens=n, pad_token_id=0,
                                   eos_token_id=job["vocab"]).sequences
    assert jax.block_until_ready(sequences).shape[1] == ids.shape[1] + n
def forward(ids):
    jax.block_until_ready(model(jnp.asarray(ids, jnp.int32)).logits)
measure(generate, forward)
""",
}


def run_child(backend: str, impl: str, job: dict, timeout: float | None = None) -> dict | str:
    """The child's result, or why it failed (one line): also when it runs past ``timeout`` seconds."""
    code = COMMON + CHILDREN[backend, impl] + RUN[backend]
    env = dict(ENV)
    if impl == "hf":  # HF transformers must not import the other frameworks (or Keras 3 for its TF classes)
        env.update(USE_TORCH="1" if backend == "pt" else "0", USE_TF="1" if backend == "tf" else "0",
                   USE_FLAX="1" if backend == "flax" else "0", TF_USE_LEGACY_KERAS="1")
    try:
        out = subprocess.run([sys.executable, "-c", code, json.dumps(job)], capture_output=True, text=True, env=env,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:.0f} s"
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return f"failed: {tail[:200]}"
    data = json.loads(lines[-1][len("RESULT "):])
    return {k: {int(b): v for b, v in d.items()} for k, d in data.items()}


# ------------------------------------------------------------------------------------------ bounds
def best_seconds(fn, repeats: int = 5) -> float:
    """The best of ``repeats`` timed calls after a warm-up; a warm-up of over 2 s is the answer (a bfloat16
    matmul without hardware support runs at about 1 GFLOP/s: the peak is then plain without repeats)."""
    start = time.perf_counter()
    fn()
    if (first := time.perf_counter() - start) > 2.0:
        return first
    return best_of(fn, repeats)


def read_bandwidth(megabytes: int = 512) -> float:
    """Bytes per second that a reduction reads (a decode step only reads its weights): the best of numpy's
    (one thread) and, where installed, torch's (every thread): one core alone does not saturate the memory."""
    data = np.ones(megabytes * 2**20 // 4, dtype=np.float32)
    seconds = best_seconds(lambda: data.sum())
    if importlib.util.find_spec("torch") is not None:
        import torch

        tensor = torch.from_numpy(data)
        seconds = min(seconds, best_seconds(lambda: tensor.sum()))
    return data.nbytes / seconds


def matmul_peak(dtype: str, n: int = 2048) -> float | None:
    """FLOP/s of the best n^3 matmul in ``dtype``: torch's ``mm`` and jax's jitted ``dot``, where installed."""
    rates = []
    if importlib.util.find_spec("torch") is not None:
        import torch

        t = torch.bfloat16 if dtype == "bf16" else torch.float32
        a, b = torch.randn(n, n, dtype=t), torch.randn(n, n, dtype=t)
        rates.append(2 * n**3 / best_seconds(lambda: torch.mm(a, b)))
    if importlib.util.find_spec("jax") is not None:
        import jax
        import jax.numpy as jnp

        t = jnp.bfloat16 if dtype == "bf16" else jnp.float32
        a = jnp.ones((n, n), t)
        dot = jax.jit(jnp.dot)
        rates.append(2 * n**3 / best_seconds(lambda: dot(a, a).block_until_ready()))
    return max(rates) if rates else None


def forward_flops(shapes: dict, batch: int, tokens: int) -> float:
    """FLOPs of a no-cache LM forward: 2 per weight per token (every position's logits), plus attention."""
    d, layers, t = shapes["n_embd"], shapes["n_layer"], tokens
    weights = layers * 12 * d * d + shapes["vocab_size"] * d  # the blocks' matrices and the tied head
    attention = layers * 2 * 2 * t * t * d  # q.k and p.v, all positions (the causal half is not skipped)
    return batch * (2 * weights * t + attention)


# ------------------------------------------------------------------------------------------ table
def installed(backend: str) -> bool:
    module = {"pt": "torch", "tf": "tensorflow", "flax": "flax"}[backend]
    return importlib.util.find_spec(module) is not None


def measure(backends, dtypes, batches, prompt: int, new: int, repeats: int, quick: bool, hf: bool,
            child_timeout: float | None = None) -> dict:
    shapes = TINY if quick else SMALL
    bandwidth = read_bandwidth(64 if quick else 512)
    peaks = {dt: matmul_peak(dt, 256 if quick else 2048) for dt in dtypes}
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpt2-multi-speed-") as tmp:
        params = write_checkpoint(Path(tmp), shapes)
        # HF's TF classes (4.57) cannot read a PyTorch safetensors file with the installed safetensors
        # ('builtins.safe_open' object is not iterable): they read the same weights from tf_model.h5
        h5 = str(Path(tmp) / "h5")
        if "tf" in backends and hf:
            from gpt2_multi.checkpoint import convert

            convert(tmp, h5, "tf")
        weights = params - shapes["n_positions"] * shapes["n_embd"]
        for backend in backends:
            for dtype in dtypes:
                job = dict(dtype=dtype, batches=batches, prompt=prompt, new=new, repeats=repeats,
                           vocab=shapes["vocab_size"], prefill=[1, 8], prefill_tokens=PREFILL_TOKENS)
                impls = ["ours"] + (["hf"] if hf and not (backend == "tf" and dtype == "bf16") else [])
                got = {impl: run_child(backend, impl, {**job, "path": h5 if (backend, impl) == ("tf", "hf") else tmp},
                                 child_timeout)
                       for impl in impls}
                for impl, result in got.items():
                    print(f"  {backend} {dtype} {impl}: {result}", file=sys.stderr, flush=True)
                bytes_per_token = weights * (2 if dtype == "bf16" else 4)
                rows.append(dict(backend=backend, dtype=dtype, ours=got["ours"], hf=got.get("hf"),
                                 bound=bandwidth / bytes_per_token, peak=peaks[dtype],
                                 flops={b: forward_flops(shapes, b, PREFILL_TOKENS) for b in (1, 8)}))
    return dict(shapes="tiny" if quick else "GPT-2 small", bandwidth=bandwidth, peaks=peaks, rows=rows,
                load=os.getloadavg(), batches=batches, prompt=prompt, new=new)


def _num(result, key, b):
    return result[key].get(b) if isinstance(result, dict) else None


def _ratio(a, b) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def format_table(report: dict) -> str:
    peaks = ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in report["peaks"].items() if v)
    lines = [f"speed: {report['shapes']}, prompt {report['prompt']}, {report['new']} new tokens, greedy; read bandwidth "
             f"{report['bandwidth'] / 1e9:.1f} GB/s; matmul peak {peaks}; load average "
             + ", ".join(f"{x:.2f}" for x in report["load"]), ""]
    lines += ["| backend | dtype | decode batch | ours tok/s | HF tok/s | ours / HF | bound tok/s | ours / bound |",
              "|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        for b in report["batches"]:
            ours, hf = _num(row["ours"], "decode", b), _num(row["hf"], "decode", b)
            bound = row["bound"] * b if b == 1 else None  # batch > 1 reads the same weights for b tokens
            lines.append(f"| {row['backend']} | {row['dtype']} | {b} | {_f(ours)} | {_f(hf)} | {_ratio(ours, hf)} | "
                         f"{_f(bound)} | {_ratio(ours, bound) if bound else '-'} |")
    lines += ["", "| backend | dtype | prefill | ours ms | HF ms | HF / ours | ours GFLOP/s | of matmul peak |",
              "|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        for b in (1, 8):
            ours, hf = _num(row["ours"], "prefill_ms", b), _num(row["hf"], "prefill_ms", b)
            rate = row["flops"][b] / (ours / 1e3) if ours else None
            frac = f"{rate / row['peak']:.0%}" if rate and row["peak"] else "-"
            lines.append(f"| {row['backend']} | {row['dtype']} | {b} x {PREFILL_TOKENS} | {_f(ours)} | {_f(hf)} | "
                         f"{_ratio(hf, ours)} | {_f(rate and rate / 1e9)} | {frac} |")
    failed = [f"{row['backend']} {row['dtype']} {impl}: {row[impl]}" for row in report["rows"]
              for impl in ("ours", "hf") if isinstance(row[impl], str)]
    if failed:
        lines += ["", *failed]
    bf16 = {row["backend"]: row for row in report["rows"] if row["dtype"] == "bf16"}
    fp32 = {row["backend"]: row for row in report["rows"] if row["dtype"] == "fp32"}
    speedups = [f"{b} {_ratio(_num(bf16[b]['ours'], 'decode', 1), _num(fp32[b]['ours'], 'decode', 1))}"
                for b in bf16 if b in fp32]
    if speedups:
        lines += ["", "batch-1 decode, bf16 / fp32 (ours): " + ", ".join(speedups)]
    return "\n".join(lines)


def _f(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="pt,tf,flax")
    parser.add_argument("--dtypes", default="fp32,bf16")
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-hf", action="store_true")
    parser.add_argument("--child-timeout", type=float, default=900,
                        help="seconds one (backend, implementation, dtype) may run (default 900): a bfloat16 run "
                             "on a CPU without bfloat16 instructions may take hours in a library that lacks a "
                             "fallback")
    parser.add_argument("--quick", action="store_true", help="tiny shapes, few tokens: a smoke run")
    parser.add_argument("--json", type=Path, help="also write the report as JSON")
    args = parser.parse_args(argv)
    backends = [b for b in args.backends.split(",") if installed(b)]
    dtypes = [d for d in args.dtypes.split(",") if d]
    if unknown := set(dtypes) - {"fp32", "bf16"}:
        parser.error(f"unknown dtypes {sorted(unknown)}: choose from fp32, bf16")
    new = 32 if args.quick else args.new  # enough tiny steps that t(new) - t(2) stands above timer noise
    report = measure(backends, dtypes, [int(b) for b in args.batch.split(",")], 8 if args.quick else args.prompt,
                     new, 3 if args.quick else args.repeats, args.quick,
                     hf=not args.no_hf and importlib.util.find_spec("transformers") is not None,
                     child_timeout=args.child_timeout)
    print(format_table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
