"""Flax generation, forward and loading speed against HF transformers' Flax GPT-2, measured in the same run.

For GPT-2 small shapes (124M parameters, random fp32 weights written once as ``model.safetensors`` in a
temporary directory) it measures, for ``gpt2_multi.flax.FlaxGPT2LMHeadModel`` ("ours") and
``transformers.FlaxGPT2LMHeadModel`` ("hf", when transformers is importable):

* greedy decode tokens/s of the default path, ``model.generate(ids, max_new_tokens=new)`` with no wrapping,
  decode only: ``B * (new - 1) / (t(new) - t(1))`` (the prefill and the first token are subtracted),
  for each batch size, with a ``prompt``-token prompt;
* the compile time of that generate (first call minus a warm call, for ``new`` tokens);
* forward latency, batch 1 and 8 x 128 tokens (the model's jitted ``__call__``);
* time and peak RSS growth to load the safetensors checkpoint, each in a fresh subprocess;
* the memory-bandwidth bound: a large numpy copy's bandwidth over the bytes of weights read per decode
  step (every parameter but the position table, once per step, whatever the batch).

Each implementation runs in its own subprocess (compile caches and memory do not leak between them);
every timing is the best of ``repeats``. The machine is shared: the load average is printed with the table.

Usage::

    python benchmarks/generate_flax.py [--batch 1,8] [--prompt 32] [--new 128] [--repeats 3] [--quick] [--json]

``--quick`` runs tiny shapes (a smoke test of the script, a minute). ``measure(...)`` returns the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from generate import memory_bandwidth, weight_bytes_per_step, write_checkpoint  # the shared parts

SMALL = dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12)
TINY = dict(vocab_size=1000, n_positions=256, n_embd=64, n_layer=2, n_head=4)
FORWARD_TOKENS = 128

# Children must not pull in the other frameworks through HF transformers.
CHILD_ENV = {**os.environ, "USE_TORCH": "0", "USE_TF": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}


def hf_available() -> bool:
    try:
        import importlib.util

        return importlib.util.find_spec("transformers") is not None
    except ImportError:
        return False


# ------------------------------------------------------------------------------------------ speed (child process)
SPEED_CHILD = r"""
import json, sys, time
import numpy as np, jax
impl, path, batches, prompt, new, repeats = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
if impl == "ours":
    from gpt2_multi.flax import FlaxGPT2LMHeadModel
else:
    import transformers
    transformers.logging.set_verbosity_error()
    from transformers import FlaxGPT2LMHeadModel
model = FlaxGPT2LMHeadModel.from_pretrained(path)
vocab = model.config.vocab_size

def best(fn):
    out = []
    for _ in range(repeats):
        t = time.perf_counter(); fn(); out.append(time.perf_counter() - t)
    return min(out)

def gen(ids, n):
    # an eos no random-weight model can emit (HF's Flax generate requires one): every run decodes n tokens
    return lambda: jax.block_until_ready(model.generate(ids, max_new_tokens=n, pad_token_id=0, eos_token_id=vocab).sequences)

result = {"decode": {}, "compile": {}, "first": {}, "forward_ms": {}}
rng = np.random.default_rng(0)
for b in batches:
    ids = rng.integers(0, vocab, (b, prompt)).astype(np.int32)
    t = time.perf_counter(); gen(ids, new)(); first = time.perf_counter() - t
    gen(ids, 1)()
    t_new, t_one = best(gen(ids, new)), best(gen(ids, 1))
    result["decode"][b] = b * (new - 1) / (t_new - t_one)
    result["compile"][b] = first - t_new
    result["first"][b] = first
for b in (1, 8):
    ids = rng.integers(0, vocab, (b, FORWARD_TOKENS)).astype(np.int32)
    fwd = lambda: jax.block_until_ready(model(ids).logits)
    fwd()
    result["forward_ms"][b] = 1000 * best(fwd)
print("RESULT " + json.dumps(result))
""".replace("FORWARD_TOKENS", str(FORWARD_TOKENS))


def run_speed(impl: str, path: Path, batches: list[int], prompt: int, new: int, repeats: int) -> dict:
    out = subprocess.run([sys.executable, "-c", SPEED_CHILD, impl, str(path), json.dumps(batches), str(prompt),
                          str(new), str(repeats)], capture_output=True, text=True, env=CHILD_ENV)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{impl} speed run failed:\n{out.stderr[-3000:]}")
    data = json.loads(lines[-1][len("RESULT "):])
    return {k: {int(b): v for b, v in d.items()} for k, d in data.items()}


# ------------------------------------------------------------------------------------------ load (child process)
LOAD_CHILD = r"""
import json, sys, time
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
import numpy as np, jax
IMPORTS
jax.device_put(np.zeros(4, np.float32)).block_until_ready()  # start the CPU client before measuring
path = sys.argv[1]
try:
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak to the current RSS
except OSError:
    pass
base = status("VmRSS")
start = time.perf_counter()
model = Model.from_pretrained(path)
jax.block_until_ready(model.params)
seconds = time.perf_counter() - start
print("RESULT " + json.dumps(dict(seconds=seconds, peak_mb=status("VmHWM") - base)))
"""
LOAD_IMPORTS = {
    "ours": "from gpt2_multi.flax import FlaxGPT2LMHeadModel as Model",
    "hf": "import transformers; transformers.logging.set_verbosity_error()\n"
          "from transformers import FlaxGPT2LMHeadModel as Model",
}


def run_load(impl: str, path: Path, repeats: int) -> tuple[float, float]:
    """(best seconds, smallest peak RSS growth in MB) over ``repeats`` fresh subprocesses."""
    code = LOAD_CHILD.replace("IMPORTS", LOAD_IMPORTS[impl])
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=CHILD_ENV)
        lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
        if out.returncode != 0 or not lines:
            raise RuntimeError(f"{impl} load failed:\n{out.stderr[-3000:]}")
        runs.append(json.loads(lines[-1][len("RESULT "):]))
    return min(r["seconds"] for r in runs), min(r["peak_mb"] for r in runs)


# ------------------------------------------------------------------------------------------ measure
def _row(metric: str, unit: str, ours: float, hf: float | None, higher_is_better: bool, batch: int | None = None) -> dict:
    ratio = None if hf is None or hf == 0 or ours == 0 else (ours / hf)
    return dict(backend="flax", metric=metric, batch=batch, unit=unit, ours=ours, hf=hf, ratio=ratio,
                higher_is_better=higher_is_better)


def measure(batch_sizes=(1, 8), prompt: int = 32, new: int = 128, quick: bool = False, repeats: int = 3,
            with_hf: bool | None = None) -> list[dict]:
    """Measure ours and HF's Flax GPT-2 (see the module docstring); one dict per metric row.

    Rows: ``backend, metric, batch, unit, ours, hf, ratio (ours / hf), higher_is_better``; ``hf`` and
    ``ratio`` are None when transformers is not importable (or ``with_hf=False``). The last row is the
    bandwidth bound (``ours`` = the bound, ``hf`` None).
    """
    shapes = TINY if quick else SMALL
    batches = [int(b) for b in batch_sizes]
    with_hf = hf_available() if with_hf is None else with_hf
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="gpt2-multi-bench-flax-") as tmp:
        path = Path(tmp)
        params = write_checkpoint(path, shapes)
        ours = run_speed("ours", path, batches, prompt, new, repeats)
        hf = run_speed("hf", path, batches, prompt, new, repeats) if with_hf else None
        for b in batches:
            rows.append(_row("greedy decode (generate)", "tokens/s", ours["decode"][b], hf and hf["decode"][b], True, b))
        for b in batches:  # HF's Flax generate re-traces its loop on every call: its difference is ~0 (noise)
            rows.append(_row("generate compile time (first - warm call)", "s", ours["compile"][b],
                             hf and hf["compile"][b], False, b))
        for b in batches:
            rows.append(_row(f"generate first call ({new} tokens)", "s", ours["first"][b], hf and hf["first"][b], False, b))
        for b in (1, 8):
            rows.append(_row(f"forward {b} x {FORWARD_TOKENS} tokens", "ms", ours["forward_ms"][b],
                             hf and hf["forward_ms"][b], False, b))
        load_ours = run_load("ours", path, repeats)
        load_hf = run_load("hf", path, repeats) if with_hf else (None, None)
        rows.append(_row("load safetensors: time", "s", load_ours[0], load_hf[0], False))
        rows.append(_row("load safetensors: peak RSS growth", "MB", load_ours[1], load_hf[1], False))
    bandwidth = memory_bandwidth(128 if quick else 512)
    bound = bandwidth / weight_bytes_per_step(shapes, params)
    rows.append(dict(backend="flax", metric=f"bandwidth bound ({bandwidth / 1e9:.1f} GB/s / "
                     f"{weight_bytes_per_step(shapes, params) / 1e6:.0f} MB per step)", batch=1, unit="tokens/s",
                     ours=bound, hf=None, ratio=None, higher_is_better=True))
    return rows


def format_table(rows: list[dict], shapes_name: str) -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [f"Flax generate benchmark: {shapes_name}, fp32, greedy; load average {load} "
             f"(ratio = ours / HF; > 1 better for speeds, < 1 better for times and memory)", "",
             "| metric | batch | unit | ours | HF Flax | ratio |", "|---|---|---|---|---|---|"]
    for r in rows:
        hf = "-" if r["hf"] is None else f"{r['hf']:.2f}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        batch = "" if r["batch"] is None else str(r["batch"])
        lines.append(f"| {r['metric']} | {batch} | {r['unit']} | {r['ours']:.2f} | {hf} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", default="1,8", help="comma-separated batch sizes for decode")
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny shapes: a smoke test of the script")
    parser.add_argument("--no-hf", action="store_true", help="skip HF transformers even when installed")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batch.split(",") if b]
    rows = measure(batches, args.prompt, args.new, args.quick, args.repeats, with_hf=False if args.no_hf else None)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(format_table(rows, "tiny shapes (--quick)" if args.quick else "GPT-2 small shapes (124M)"))


if __name__ == "__main__":
    main()
