"""Generation, forward and loading speed of each backend against HF transformers, measured in the same run.

For GPT-2 small shapes (124M parameters, random fp32 weights, written once as a safetensors checkpoint
in a temporary directory) and one backend at a time, it prints:

* greedy decode tokens/s (decode only: ``B * (new - 1) / (t(new) - t(1))``, i.e. the prefill and the first
  token are subtracted) for each ``--batch``, with a ``--prompt``-token prompt and ``--new`` new tokens;
* forward latency for batch 1 and 8 x 128 tokens;
* time and peak RSS growth to load the safetensors checkpoint (each in a fresh subprocess);
* the memory-bandwidth bound: bandwidth measured with a large numpy copy, divided by the bytes of weights
  read per decode step (every parameter but the position table, once per step, whatever the batch);

with HF transformers' number for the same backend (when ``transformers`` is importable) and the ratio
ours / HF (> 1 is better for speeds, < 1 is better for times and memory). Every timing is the best of
``--repeats`` runs. The machine is shared: the load average is printed with the table.

Usage::

    python benchmarks/generate.py --backend pt [--batch 1,8] [--prompt 32] [--new 128] [--compile] [--quick]

``--quick`` runs tiny shapes (a smoke test of the script, seconds). Structure: one ``bench_<backend>``
function per backend returns a :class:`Result`; ``main`` does the shared parts (checkpoint, bandwidth,
table). To add a backend, write its function and its load snippets and register them in ``BACKENDS``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SMALL = dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12)
TINY = dict(vocab_size=1000, n_positions=128, n_embd=64, n_layer=2, n_head=4)


@dataclass
class Result:
    """One backend's measurements; every value is ``(ours, hf)`` with ``hf`` None when not measured."""

    decode: dict[int, tuple[float, float | None]] = field(default_factory=dict)  # batch -> tokens/s
    decode_compiled: dict[int, tuple[float, float | None]] = field(default_factory=dict)
    compile_seconds: dict[str, float] = field(default_factory=dict)  # see measure_compile
    forward_ms: dict[int, tuple[float, float | None]] = field(default_factory=dict)  # batch -> ms per 128 tokens
    load_seconds: tuple[float, float | None] | None = None
    load_peak_mb: tuple[float, float | None] | None = None
    notes: list[str] = field(default_factory=list)


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def hf_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("transformers") is not None


# ------------------------------------------------------------------------------------- shared parts
def write_checkpoint(directory: Path, shapes: dict) -> int:
    """A random GPT2LMHeadModel checkpoint (model.safetensors + config.json); returns the parameter count."""
    from gpt2_multi.checkpoint import expected_shapes, save_checkpoint
    from gpt2_multi.config import GPT2Config

    config = GPT2Config(**shapes, eos_token_id=None, bos_token_id=None)
    rng = np.random.default_rng(0)
    tensors = {}
    for name, shape in expected_shapes(config, "GPT2LMHeadModel").items():
        if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
            tensors[name] = np.ones(shape, np.float32)
        else:
            tensors[name] = (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)
    tensors.pop("lm_head.weight", None)  # tied
    save_checkpoint(directory, tensors, config, format="safetensors", architecture="GPT2LMHeadModel")
    return param_count(shapes)


def param_count(shapes: dict) -> int:
    """Parameters of a tied GPT2LMHeadModel of these shapes (the LM head is wte)."""
    from gpt2_multi.checkpoint import expected_shapes
    from gpt2_multi.config import GPT2Config

    config = GPT2Config(**shapes)
    return sum(int(np.prod(s)) for n, s in expected_shapes(config, "GPT2LMHeadModel").items() if n != "lm_head.weight")


def weight_bytes_per_step(shapes: dict, params: int) -> int:
    """fp32 bytes read per decode step: every weight once (the tied LM head reads wte), the position table not."""
    return 4 * (params - shapes["n_positions"] * shapes["n_embd"])


def memory_bandwidth(megabytes: int = 512, repeats: int = 5) -> float:
    """Bytes per second of a large numpy copy (read + write counted)."""
    src = np.ones(megabytes * 2**20 // 8, dtype=np.float64)
    dst = np.empty_like(src)
    seconds = best_of(lambda: np.copyto(dst, src), repeats)
    return 2 * src.nbytes / seconds


LOAD_CHILD = r"""
import json, sys, time
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
def reset_peak():
    try:
        open("/proc/self/clear_refs", "w").write("5")
    except OSError:
        pass
path = sys.argv[1]
{imports}
reset_peak()
base = status("VmRSS")
start = time.perf_counter()
{load}
seconds = time.perf_counter() - start
print(json.dumps(dict(seconds=seconds, peak_mb=status("VmHWM") - base)))
"""


def run_child(code: str, *argv: str, env: dict | None = None) -> dict:
    """Run ``python -c code argv...`` and return the JSON its last stdout line holds; a failure shows the child's stderr."""
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child process failed (exit {out.returncode}):\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_load(imports: str, load: str, path: Path, repeats: int) -> tuple[float, float]:
    """(best seconds, smallest peak RSS growth in MB) over ``repeats`` fresh subprocesses."""
    code = LOAD_CHILD.replace("{imports}", imports).replace("{load}", load)
    runs = [run_child(code, str(path)) for _ in range(repeats)]
    return min(r["seconds"] for r in runs), min(r["peak_mb"] for r in runs)


COMPILE_CHILD = r"""
import json, sys, time
import torch
from gpt2_multi.pt import GPT2LMHeadModel
if int(sys.argv[3]):
    torch.set_num_threads(int(sys.argv[3]))
def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
# torch.compile's own start-up in a process: Dynamo and Inductor imports, Inductor's CPU ISA probe, one kernel
startup = timed(lambda: torch.compile(lambda x: x * 2 + 1)(torch.ones(4)))
if sys.argv[1] == "startup-only":
    print(json.dumps(dict(startup=startup)))
    raise SystemExit
model = GPT2LMHeadModel.from_pretrained(sys.argv[1]).eval()
ids = torch.randint(1, model.config.vocab_size, (1, int(sys.argv[2])), generator=torch.Generator().manual_seed(0))
def short():
    with torch.inference_mode():
        model.generate(ids, max_new_tokens=4, min_new_tokens=4, eos_token_id=None, compile=True)
first = timed(short)
steady = min(timed(short) for _ in range(2))
print(json.dumps(dict(startup=startup, graph=first - steady)))
"""


def measure_compile(path: Path, prompt: int, threads: int = 0) -> dict[str, float]:
    """Compile time of ``generate(compile=True)`` split into what it is made of, each in a fresh process
    with its own empty Inductor cache directory (the numbers depend on what Inductor has on disk):

    * ``machine``: the first ``torch.compile`` with an empty Inductor cache (it builds its CPU ISA probes;
      once per machine and torch version);
    * ``startup``: ``torch.compile``'s start-up in every new process after that (imports, ISA probe);
    * ``graph``: then our decode step's graph, not in the cache (first generate minus a steady one);
    * ``cached``: the same graph again in a new process, from Inductor's on-disk cache.
    """
    def child(*argv: str) -> dict:
        return run_child(COMPILE_CHILD, *argv, str(threads), env=dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache))

    with tempfile.TemporaryDirectory() as cache:
        machine = child("startup-only", "0")["startup"]
        cold = child(str(path), str(prompt))
        warm = child(str(path), str(prompt))
    return dict(machine=machine, startup=cold["startup"], graph=cold["graph"], cached=warm["graph"])


# ------------------------------------------------------------------------------------- PyTorch
PT_LOAD = ("import torch\nfrom gpt2_multi.pt import GPT2LMHeadModel",
           "model = GPT2LMHeadModel.from_pretrained(path)")
HF_PT_LOAD = ("import os; os.environ['USE_TF'] = '0'; os.environ['USE_FLAX'] = '0'\n"
              "import torch\nfrom transformers import GPT2LMHeadModel",
              "model = GPT2LMHeadModel.from_pretrained(path)")


def bench_pt(path: Path, args) -> Result:
    import torch

    from gpt2_multi.pt import GPT2LMHeadModel

    if args.threads:
        torch.set_num_threads(args.threads)
    result = Result()
    ours = GPT2LMHeadModel.from_pretrained(path).eval()
    hf = None
    if args.hf:
        # Keep HF transformers from importing the other frameworks, here only: the other backends'
        # scripts (and their children) import this module and need HF's TF / Flax classes.
        os.environ.setdefault("USE_TF", "0")
        os.environ.setdefault("USE_FLAX", "0")
        import transformers

        hf = transformers.GPT2LMHeadModel.from_pretrained(path).eval()
        result.notes.append(f"HF transformers {transformers.__version__}, attn {hf.config._attn_implementation}")
    result.notes.append(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    vocab = ours.config.vocab_size
    gen = torch.Generator().manual_seed(0)

    def decode_rate(model, batch, **kw) -> float:
        ids = torch.randint(0, vocab, (batch, args.prompt), generator=gen)
        mask = torch.ones_like(ids)
        common = dict(attention_mask=mask, do_sample=False, eos_token_id=None, pad_token_id=0, **kw)

        def run(n):
            out = model.generate(ids, max_new_tokens=n, min_new_tokens=n, **common)
            assert out.shape == (batch, args.prompt + n), out.shape

        with torch.inference_mode():
            run(2)  # warm-up
            if kw.get("compile"):
                run(args.new)  # a compiled static cache is sized by prompt + new: compile that shape first
            first = best_of(lambda: run(1), args.repeats)
            full = best_of(lambda: run(args.new), args.repeats)
        return batch * (args.new - 1) / (full - first)

    for batch in args.batch:
        mine = decode_rate(ours, batch)
        theirs = decode_rate(hf, batch) if hf is not None else None
        result.decode[batch] = (mine, theirs)
        print(f"  pt decode batch {batch}: ours {mine:.1f} tok/s, HF {theirs or float('nan'):.1f}", flush=True)
    if args.compile:
        result.compile_seconds = measure_compile(path, args.prompt, args.threads)
        print("  pt compile (s): " + ", ".join(f"{k} {v:.1f}" for k, v in result.compile_seconds.items()), flush=True)
        for batch in args.batch:
            result.decode_compiled[batch] = (decode_rate(ours, batch, compile=True), None)
            print(f"  pt compiled decode batch {batch}: {result.decode_compiled[batch][0]:.1f} tok/s", flush=True)

    def forward_ms(model, ids) -> float:
        def forward():
            with torch.inference_mode():
                model(ids, use_cache=False)

        forward()  # warm-up
        return best_of(forward, args.repeats) * 1e3

    for batch in (1, 8):
        ids = torch.randint(0, vocab, (batch, 128), generator=gen)
        result.forward_ms[batch] = (forward_ms(ours, ids), forward_ms(hf, ids) if hf is not None else None)

    ours = hf = None  # free the weights before the load measurements
    mine = measure_load(*PT_LOAD, path, args.repeats)
    theirs = measure_load(*HF_PT_LOAD, path, args.repeats) if args.hf else (None, None)
    result.load_seconds = (mine[0], theirs[0])
    result.load_peak_mb = (mine[1], theirs[1])
    return result


# ------------------------------------------------------------------------------------- registry and table
BACKENDS = {"pt": bench_pt}  # "tf": bench_tf, "flax": bench_flax are added by their stacks


def delegate(backend: str, args) -> bool:
    """A backend without a function here but with its own ``benchmarks/generate_<backend>.py``: run that
    script with the same flags (it prints its own table). Returns whether it ran."""
    script = Path(__file__).with_name(f"generate_{backend}.py")
    if not script.is_file():
        return False
    flags = ["--batch", ",".join(map(str, args.batch)), "--prompt", str(args.prompt), "--new", str(args.new),
             "--repeats", str(args.repeats)] + (["--quick"] if args.quick else []) + ([] if args.hf else ["--no-hf"])
    print(f"\n## {backend} (benchmarks/{script.name})", flush=True)
    subprocess.run([sys.executable, str(script), *flags], check=True)
    return True


def _ratio(pair, higher_is_better=True) -> str:
    ours, hf = pair
    if hf is None or not hf:
        return "-"
    return f"{ours / hf:.2f}"


def _fmt(value, spec=".1f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(backend: str, result: Result, bound: float, shapes_name: str, load: str) -> None:
    print(f"\n## {backend} ({shapes_name}; load average {load})")
    print("| measurement | ours | HF | ours / HF |")
    print("| --- | --- | --- | --- |")
    for batch, pair in result.decode.items():
        print(f"| greedy decode tokens/s, batch {batch} | {_fmt(pair[0])} | {_fmt(pair[1])} | {_ratio(pair)} |")
    for batch, pair in result.decode_compiled.items():
        print(f"| compiled decode tokens/s, batch {batch} | {_fmt(pair[0])} | - | - |")
    if result.compile_seconds:
        c = result.compile_seconds
        print(f"| compile (s), first in a process: torch.compile start-up + our graph | "
              f"{c['startup']:.1f} + {c['graph']:.1f} = {c['startup'] + c['graph']:.1f} | - | - |")
        print(f"| compile (s), our graph from Inductor's on-disk cache | {c['cached']:.1f} | - | - |")
        print(f"| first torch.compile on a machine (Inductor's one-time set-up) (s) | {c['machine']:.1f} | - | - |")
    for batch, pair in result.forward_ms.items():
        print(f"| forward ms, batch {batch} x 128 | {_fmt(pair[0])} | {_fmt(pair[1])} | {_ratio(pair)} |")
    if result.load_seconds:
        print(f"| load safetensors (s) | {_fmt(result.load_seconds[0], '.2f')} | {_fmt(result.load_seconds[1], '.2f')} | {_ratio(result.load_seconds)} |")
        print(f"| load peak RSS growth (MB) | {_fmt(result.load_peak_mb[0], '.0f')} | {_fmt(result.load_peak_mb[1], '.0f')} | {_ratio(result.load_peak_mb)} |")
    print(f"| bandwidth bound, batch 1 tokens/s | {bound:.1f} | | |")
    for note in result.notes:
        print(f"\n{note}", end="")
    print()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="pt", help="comma-separated: pt, tf, flax (tf and flax run generate_<backend>.py)")
    parser.add_argument("--batch", default="1,8", help="comma-separated batch sizes for decode")
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also measure the compiled path and its compile time")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (default: the framework's)")
    parser.add_argument("--no-hf", dest="hf", action="store_false", help="skip HF transformers")
    parser.add_argument("--quick", action="store_true", help="tiny shapes, few tokens: a smoke run")
    args = parser.parse_args(argv)
    args.batch = [int(b) for b in args.batch.split(",")]
    shapes, shapes_name = (TINY, "tiny shapes (--quick)") if args.quick else (SMALL, "GPT-2 small, fp32, random weights")
    if args.quick:
        args.prompt, args.new, args.repeats = min(args.prompt, 8), min(args.new, 8), 2
    args.hf = args.hf and hf_available()

    bandwidth = memory_bandwidth(64 if args.quick else 512)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        params = write_checkpoint(path, shapes)
        per_step = weight_bytes_per_step(shapes, params)
        bound = bandwidth / per_step
        print(f"memory bandwidth {bandwidth / 1e9:.1f} GB/s, {per_step / 1e6:.0f} MB of weights per step: "
              f"bound {bound:.1f} tokens/s at batch 1 ({params / 1e6:.1f}M parameters)", flush=True)
        for backend in args.backend.split(","):
            if backend not in BACKENDS:
                if delegate(backend, args):
                    continue
                parser.error(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
            result = BACKENDS[backend](path, args)
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
            print_table(backend, result, bound, shapes_name, load)


if __name__ == "__main__":
    main()
