"""TensorFlow: generate / forward / load speed of ``gpt2_multi.tf`` against HF transformers' TF classes, same run.

GPT-2 small shapes (124M parameters, random fp32 weights written once as a safetensors checkpoint in a
temporary directory). Measured, each the best of ``repeats``:

* greedy decode tokens/s, decode only: ``B * (new - 2) / (t(new) - t(2))`` (prefill and first two tokens
  subtracted: HF's XLA generate fails for a single new token), for our default ``model.generate`` (XLA-compiled loop, static cache), our eager path
  (``jit_compile=False``), HF's eager ``generate`` and HF's ``tf.function(model.generate, jit_compile=True)``;
* compile time of the compiled generate (first call minus a steady call, same shapes);
* forward latency ``model(ids)`` for batch 1 and 8 x 128 tokens (eager call, as a user gets it);
* time and peak RSS growth to load the checkpoint, each in a fresh subprocess;
* the memory-bandwidth bound: a large numpy copy's bandwidth / bytes of weights read per decode step.

HF's TF classes need Keras 2 (``TF_USE_LEGACY_KERAS=1`` + tf-keras), so every HF measurement runs in its
own subprocess and Keras 2 and Keras 3 never share a process. Usage::

    python benchmarks/generate_tf.py [--batch 1,8] [--prompt 32] [--new 128] [--repeats 3] [--quick] [--no-hf]

``measure(batch_sizes, prompt, new, quick)`` returns the rows (dicts) the table is printed from.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
from generate import memory_bandwidth, param_count, run_child, weight_bytes_per_step  # the shared parts

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]

SMALL = dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12)
TINY = dict(vocab_size=1000, n_positions=256, n_embd=64, n_layer=2, n_head=4)
FORWARD_TOKENS = 128
EAGER_NEW = 16  # HF's eager generate runs ~6 tok/s: its per-token cost is measured on fewer tokens

GEN_KW = dict(do_sample=False, eos_token_id=None, pad_token_id=0)


# ------------------------------------------------------------------------------------ shared parts
def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def best_of(fn, repeats: int) -> float:
    return min(_timed(fn) for _ in range(repeats))


def prompts(batch: int, prompt: int, vocab: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(batch)
    return rng.integers(1, vocab, size=(batch, prompt)).astype(np.int32), np.ones((batch, prompt), np.int32)


def write_checkpoint(directory: Path, shapes: dict) -> None:
    """Random GPT2LMHeadModel weights (HF's init), through our TF stack: ``st/`` model.safetensors, ``h5/`` tf_model.h5.

    HF's TF classes (4.57 with the installed safetensors) fail to read a PyTorch safetensors file
    (``'builtins.safe_open' object is not iterable``), so the HF reference loads the same weights from
    its native tf_model.h5."""
    code = textwrap.dedent(f"""
        import os; os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        from gpt2_multi.config import GPT2Config
        from gpt2_multi.tf import TFGPT2LMHeadModel
        model = TFGPT2LMHeadModel(GPT2Config(**{shapes!r}))
        model.save_pretrained({str(directory / "st")!r})
        model.save_pretrained({str(directory / "h5")!r}, format="tf")
    """)
    subprocess.run([sys.executable, "-c", code], check=True)


LOAD_CHILD = textwrap.dedent("""
    import gc, json, os, sys, time
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    import tensorflow as tf
    {imports}
    tf.constant(1.0) + 1.0
    gc.collect()
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    baseline = status("VmRSS")
    start = time.perf_counter()
    model = {load}
    seconds = time.perf_counter() - start
    print(json.dumps({{"seconds": seconds, "peak_mb": (status("VmHWM") - baseline) / 2**20}}))
""")


def load_in_subprocess(directory: Path, hf: bool) -> dict:
    if hf:
        imports = "from transformers import TFGPT2LMHeadModel"
        load = f"TFGPT2LMHeadModel.from_pretrained({str(directory)!r})"
        env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "USE_TORCH": "0", "USE_FLAX": "0"}
    else:
        imports = "from gpt2_multi.tf import TFGPT2LMHeadModel"
        load = f"TFGPT2LMHeadModel.from_pretrained({str(directory)!r})"
        env = dict(os.environ)
    return run_child(LOAD_CHILD.format(imports=imports, load=load), env=env)


# ------------------------------------------------------------------------------------ ours
def measure_ours(directory: Path, shapes: dict, batch_sizes, prompt: int, new: int, repeats: int) -> dict:
    from gpt2_multi.tf import TFGPT2LMHeadModel

    model = TFGPT2LMHeadModel.from_pretrained(directory)
    out: dict = {"decode": {}, "decode_eager": {}, "compile_s": {}, "forward_ms": {}}
    for batch in batch_sizes:
        ids, mask = prompts(batch, prompt, shapes["vocab_size"])
        def gen(n, ids=ids, mask=mask, **kw):
            return model.generate(ids, attention_mask=mask, max_new_tokens=n, **GEN_KW, **kw).numpy()

        first = _timed(lambda: gen(new))  # noqa: B023 - called right here
        t_new = best_of(lambda: gen(new), repeats)  # noqa: B023
        out["compile_s"][batch] = first - t_new
        gen(2)
        t_one = best_of(lambda: gen(2), repeats)  # noqa: B023
        out["decode"][batch] = batch * (new - 2) / (t_new - t_one)
        few = min(new, EAGER_NEW)
        e_few = best_of(lambda: gen(few, jit_compile=False), max(1, repeats - 1))  # noqa: B023
        e_one = best_of(lambda: gen(2, jit_compile=False), max(1, repeats - 1))  # noqa: B023
        out["decode_eager"][batch] = batch * (few - 2) / (e_few - e_one)
        print(f"ours, batch {batch}: {out['decode'][batch]:.1f} tok/s compiled, {out['decode_eager'][batch]:.1f} eager, "
              f"compile {out['compile_s'][batch]:.1f} s", file=sys.stderr, flush=True)
    for batch in (1, 8):
        ids, mask = prompts(batch, FORWARD_TOKENS, shapes["vocab_size"])
        model(ids, use_cache=False)
        out["forward_ms"][batch] = 1e3 * best_of(lambda: model(ids, use_cache=False).logits.numpy(), repeats)  # noqa: B023
    return out


# ------------------------------------------------------------------------------------ HF (Keras 2, own process)
HF_CHILD = textwrap.dedent("""
    import json, os, sys, time
    import numpy as np
    import tensorflow as tf
    from transformers import TFGPT2LMHeadModel
    from transformers.utils import logging
    logging.set_verbosity_error()
    job = json.loads(sys.argv[1])
    def timed(fn):
        s = time.perf_counter(); fn(); return time.perf_counter() - s
    def best(fn, n):
        return min(timed(fn) for _ in range(n))
    model = TFGPT2LMHeadModel.from_pretrained(job["dir"])
    xla_generate = tf.function(model.generate, jit_compile=True)
    kw = dict(do_sample=False, eos_token_id=None, pad_token_id=0)
    out = {"decode": {}, "decode_eager": {}, "compile_s": {}, "forward_ms": {}}
    for batch in job["batches"]:
        rng = np.random.default_rng(batch)
        ids = tf.constant(rng.integers(1, job["vocab"], size=(batch, job["prompt"])).astype(np.int32))
        mask = tf.ones_like(ids)
        new, few, reps = job["new"], job["few"], job["repeats"]
        gen = lambda n: xla_generate(ids, attention_mask=mask, max_new_tokens=n, **kw).numpy()
        first = timed(lambda: gen(new))
        t_new = best(lambda: gen(new), reps)
        out["compile_s"][batch] = first - t_new
        gen(2)
        t_one = best(lambda: gen(2), reps)
        out["decode"][batch] = batch * (new - 2) / (t_new - t_one)
        eager = lambda n: model.generate(ids, attention_mask=mask, max_new_tokens=n, **kw).numpy()
        eager(2)
        e_few = best(lambda: eager(few), max(1, reps - 1))
        e_one = best(lambda: eager(2), max(1, reps - 1))
        out["decode_eager"][batch] = batch * (few - 2) / (e_few - e_one)
    for batch in (1, 8):
        rng = np.random.default_rng(batch)
        ids = tf.constant(rng.integers(1, job["vocab"], size=(batch, job["forward"])).astype(np.int32))
        model(ids, use_cache=False)
        out["forward_ms"][batch] = 1e3 * best(lambda: model(ids, use_cache=False).logits.numpy(), job["repeats"])
    print("RESULT " + json.dumps(out))
""")


def measure_hf(directory: Path, shapes: dict, batch_sizes, prompt: int, new: int, repeats: int) -> dict | None:
    job = dict(dir=str(directory), batches=list(batch_sizes), prompt=prompt, new=new, few=min(new, EAGER_NEW),
               repeats=repeats, vocab=shapes["vocab_size"], forward=FORWARD_TOKENS)
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "USE_TORCH": "0", "USE_FLAX": "0"}
    out = subprocess.run([sys.executable, "-c", HF_CHILD, json.dumps(job)], capture_output=True, text=True, env=env)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        print(f"HF TF reference failed: {out.stderr[-1500:]}", file=sys.stderr)
        return None
    return {k: {int(b): v for b, v in d.items()} for k, d in json.loads(lines[-1][7:]).items()}


def hf_available() -> bool:
    code = "import tf_keras, transformers"
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


# ------------------------------------------------------------------------------------ the table
def measure(batch_sizes=(1, 8), prompt: int = 32, new: int = 128, quick: bool = False, repeats: int = 3,
            hf: bool = True) -> list[dict]:
    """All rows: ``{"metric", "ours", "hf", "ratio", "unit", "better"}`` (``hf``/``ratio`` None when not measured)."""
    shapes = TINY if quick else SMALL
    if quick:
        prompt, new, repeats = min(prompt, 8), min(new, 8), 1
    rows: list[dict] = []

    def row(metric, ours, theirs, unit, better):
        ratio = None if theirs in (None, 0) or ours is None else ours / theirs
        rows.append(dict(metric=metric, ours=ours, hf=theirs, ratio=ratio, unit=unit, better=better))

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        write_checkpoint(directory, shapes)
        use_hf = hf and hf_available()
        ours = measure_ours(directory / "st", shapes, batch_sizes, prompt, new, repeats)
        theirs = measure_hf(directory / "h5", shapes, batch_sizes, prompt, new, repeats) if use_hf else None
        our_load = min((load_in_subprocess(directory / "st", hf=False) for _ in range(repeats)), key=lambda r: r["seconds"])
        hf_load = min((load_in_subprocess(directory / "h5", hf=True) for _ in range(repeats)), key=lambda r: r["seconds"]) if use_hf else None

    get = lambda part, key: None if theirs is None else theirs[part].get(key)  # noqa: E731
    for b in batch_sizes:
        row(f"greedy decode, batch {b}: ours default (XLA) vs HF XLA", ours["decode"][b], get("decode", b), "tok/s", "higher")
        row(f"greedy decode, batch {b}: ours default (XLA) vs HF eager", ours["decode"][b], get("decode_eager", b), "tok/s", "higher")
        row(f"greedy decode, batch {b}: ours eager vs HF eager", ours["decode_eager"][b], get("decode_eager", b), "tok/s", "higher")
        row(f"compile time of generate, batch {b}", ours["compile_s"][b], get("compile_s", b), "s", "lower")
    for b in (1, 8):
        row(f"forward {b} x {FORWARD_TOKENS} tokens", ours["forward_ms"][b], get("forward_ms", b), "ms", "lower")
    row("load checkpoint (ours: safetensors; HF: tf_model.h5)", our_load["seconds"], hf_load and hf_load["seconds"], "s", "lower")
    row("load: peak RSS growth", our_load["peak_mb"], hf_load and hf_load["peak_mb"], "MB", "lower")
    bw = memory_bandwidth(64 if quick else 512) / 1e9
    weights = weight_bytes_per_step(shapes, param_count(shapes))
    row(f"bandwidth bound, batch 1 ({bw:.1f} GB/s / {weights / 1e6:.0f} MB)", bw * 1e9 / weights, None, "tok/s", "higher")
    return rows


def print_table(rows: list[dict]) -> None:
    fmt = lambda v: "-" if v is None else (f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}")  # noqa: E731
    print(f"{'metric':<62} {'ours':>9} {'HF TF':>9} {'ours/HF':>8}  unit")
    for r in rows:
        print(f"{r['metric']:<62} {fmt(r['ours']):>9} {fmt(r['hf']):>9} {fmt(r['ratio']):>8}  {r['unit']} ({r['better']} is better)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", default="1,8", help="comma-separated batch sizes for decoding")
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny shapes: a smoke run of the script")
    parser.add_argument("--no-hf", action="store_true", help="skip the HF transformers reference")
    args = parser.parse_args(argv)
    load = os.getloadavg()
    rows = measure(tuple(int(b) for b in args.batch.split(",")), args.prompt, args.new, args.quick, args.repeats,
                   hf=not args.no_hf)
    print(f"load average before: {load[0]:.2f}, after: {os.getloadavg()[0]:.2f}; {os.cpu_count()} cpus")
    print_table(rows)


if __name__ == "__main__":
    main()
