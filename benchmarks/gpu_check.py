"""One prepared command for a lent GPU: PyTorch / Flax parity at fp32 and bf16, and decode / prefill speed.

Accelerator machines are lent only sometimes, and briefly. This script is the whole check, in one command
that finishes inside ``--budget-s`` (default 270 s, start-up and compiles included)::

    python benchmarks/gpu_check.py --out "$OUT"          # on the GPU machine
    python benchmarks/gpu_check.py --device cpu --quick   # tiny shapes on CPU: a smoke run (what the test runs)

What it does:

1. Writes a random GPT-2 small checkpoint (124M shapes, seeded numpy weights, HF names, ``model.safetensors``)
   into a temporary directory with our own checkpoint writer (``generate.write_checkpoint``); no hub.
2. **Parity.** Each stack loads it at float32 and at bfloat16 (PyTorch ``torch_dtype=torch.bfloat16``; Flax
   ``dtype=jnp.bfloat16, param_dtype=jnp.bfloat16``: bf16 weights and compute in both stacks) on the device,
   runs one forward of a fixed batch (2 x 64 tokens) and greedy-generates 32 tokens from it. The parent
   compares the logits: fp32 PT vs Flax vs a float64 numpy forward, max abs difference <= 1e-3; bf16 each
   stack vs its own fp32 run and PT vs Flax, max abs difference / max |fp32 logits| <= 5e-2. Greedy tokens
   must be identical at fp32; at bf16 identity is reported, not required (near-ties may flip).
   fp32 here is full fp32: TF32 matmuls are off (torch ``set_float32_matmul_precision("highest")``,
   ``allow_tf32 = False``; jax ``jax_default_matmul_precision = "highest"``), in parity and, unless ``--tf32``,
   in the speed runs too.
3. **Speed**, both dtypes, each stack's default ``generate`` path, greedy, every run exactly ``new`` tokens:
   decode tokens/s ``B * (new - 1) / (t(new) - t(1))`` (prefill and first token cancel; as ``generate.py``)
   at batch 1 and 8, prompt 32, 128 new tokens; prefill tokens/s of one forward (logits included) at 1 x 128
   and 8 x 512. One warm-up call (for Flax: the compile), then the best of ``repeats``.
4. **Device peaks**, measured in the same run by each framework: a 1 GiB device-to-device copy (read + write
   bytes / s) and an 8192^3 matmul (fp32 and bf16 TFLOP/s). Decode is shown as a fraction of the bandwidth
   bound ``B * copy bandwidth / weight bytes per step`` (every weight read once per step, the position table
   not; KV cache reads ignored, so at batch 8 it is looser), prefill as a fraction of the matmul peak of its
   dtype (FLOPs: ``2 * matmul weights`` per token plus ``4 * n_layer * T * n_embd`` for attention). The peaks
   used are the higher of the two frameworks' measurements.

Each stack runs in its own child process, parity first for both, then speed (PyTorch and JAX never share a
process: their CUDA libraries cannot conflict, and one crashing leaves the other's results). A child writes
its results after every step, so a child stopped at its deadline still reports what it measured. The budget
guard does not start a measurement it expects to overrun the budget (its estimate: the longest of that
kind so far, or a default) and lists it as skipped; the speed phase splits the time left between the stacks.

Output: a table on stdout, and ``gpu_check.json`` + ``gpu_check.md`` (+ the children's stderr in ``logs/``)
in ``--out``, else ``$OUT``, else ``./gpu_check_out``. Exit status: 0 every check ran and passed; 1 a check
failed or a stack raised; 2 a package needed at import time is missing (one line names them) or bad usage;
3 nothing failed but something was skipped (a framework missing or without a GPU, or the budget). A skipped
part is never reported as passed.

What it assumes of the machine: run from a copy of the repository (``src/`` is put on ``sys.path`` here;
the package need not be installed; ``conformance/`` is not used); numpy, h5py and msgpack (imported by
``gpt2_multi.checkpoint`` at import time); torch with CUDA for the PyTorch part and jax with a GPU backend
plus flax for the Flax part (either may be missing: that part is skipped). No network. TensorFlow is never
imported: an import hook refuses it, in every process, and the JSON records any attempt.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # the GPU machine runs a copy of the repository; nothing is installed
sys.path.insert(1, str(Path(__file__).resolve().parent))  # generate.py's helpers, also when imported


class _RefuseTensorFlow(importlib.abc.MetaPathFinder):
    """Makes ``import tensorflow`` fail as it does on the GPU machine (which has none), and records who tried."""

    attempts: list[str] = []

    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            self.attempts.append(name)
            raise ModuleNotFoundError(f"gpu_check refuses to import {name} (the GPU machine has no TensorFlow)",
                                      name=name)
        return None


if not any(isinstance(f, _RefuseTensorFlow) for f in sys.meta_path):
    sys.meta_path.insert(0, _RefuseTensorFlow())

# What each part imports: the parent needs gpt2_multi.checkpoint (numpy; h5py and msgpack through its tf_h5 and
# flax_msgpack modules, imported with the package); each stack needs its framework. safetensors, ml_dtypes,
# tokenizers, regex, tiktoken, tqdm and jinja2 are not imported on these paths.
CORE_MODULES = ("numpy", "h5py", "msgpack")
STACK_MODULES = {"pt": ("torch",), "flax": ("jax", "flax")}
STACK_LABELS = {"pt": "PyTorch", "flax": "JAX/Flax"}
DTYPES = ("float32", "bfloat16")
SHORT = {"float32": "fp32", "bfloat16": "bf16"}

SMALL = dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12)
TINY = dict(vocab_size=1000, n_positions=128, n_embd=64, n_layer=2, n_head=4)
PLANS = {
    "full": dict(shapes=SMALL, parity_batch=[2, 64], generate_new=32, decode_batches=[1, 8], prompt=32, new=128,
                 prefill=[[1, 128], [8, 512]], repeats=3, copy_mb=1024, matmul_n=8192),
    # quick: one decode batch and one prefill shape (each Flax one is two or one compiles), enough new tokens
    # that t(new) - t(1) is not all noise
    "quick": dict(shapes=TINY, parity_batch=[2, 16], generate_new=8, decode_batches=[2], prompt=8, new=16,
                  prefill=[[2, 32]], repeats=2, copy_mb=16, matmul_n=256),
}
# Logits tolerances: fp32 as max |a - b|; bf16 as max |a - b| / max |fp32 logits|.
TOLERANCE = {"float32": ("abs", 1e-3), "bfloat16": ("rel", 5e-2)}
# Seconds a measurement is assumed to take before one of its kind has been timed (the guard's estimate).
FIRST_ESTIMATE_S = {"full": dict(load=5, parity=20, peaks=5, decode=15, prefill=8),
                    "quick": dict(load=1, parity=3, peaks=1, decode=3, prefill=2)}
CHILD_MIN_S = {"full": 15.0, "quick": 3.0}  # do not start a child with less time than this left
CHILD_GRACE_S = 20.0  # a child still running this long after its deadline is stopped
RESERVE_S = 3.0  # kept back for writing the summary


def missing_modules(modules) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def log(start: float, who: str, message: str) -> None:
    print(f"[{time.time() - start:6.1f} s] {who}: {message}", flush=True)


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


# ================================================================================================ child side
class Unavailable(Exception):
    """The stack cannot run here (framework without a GPU, import failure): a skip, not a failure."""


class Guard:
    """Refuses to start a measurement expected to end after the deadline; remembers what it refused."""

    def __init__(self, deadline: float, first_estimates: dict[str, float], skipped: list[str]):
        self.deadline, self.estimates, self.skipped = deadline, dict(first_estimates), skipped
        self.seen: dict[str, float] = {}

    def allow(self, label: str, kind: str) -> bool:
        expected = self.seen.get(kind, self.estimates[kind])
        left = self.deadline - time.time()
        if left < expected:
            self.skipped.append(f"{label}: skipped by the budget ({left:.0f} s left, ~{expected:.0f} s expected)")
            return False
        return True

    def took(self, kind: str, seconds: float) -> None:
        self.seen[kind] = max(self.seen.get(kind, 0.0), seconds)


def best_of(fn, repeats: int) -> float:
    from generate import best_of as shared_best_of  # the helper the other benchmarks use

    return shared_best_of(fn, repeats)


class TorchStack:
    """gpt2_multi.pt on ``device``. Every callable it returns synchronises the device before returning."""

    name = "pt"

    def __init__(self, device: str, tf32: bool):
        import torch

        if device == "cuda" and not torch.cuda.is_available():
            raise Unavailable(f"torch {torch.__version__} sees no CUDA device (built for CUDA {torch.version.cuda})")
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.set_float32_matmul_precision("high" if tf32 else "highest")
        from gpt2_multi.pt import GPT2LMHeadModel

        self.torch, self.model_class, self.device = torch, GPT2LMHeadModel, torch.device(device)

    def environment(self) -> dict:
        torch = self.torch
        env = dict(torch=torch.__version__, cuda=torch.version.cuda, device=str(self.device),
                   fp32_matmul_precision=torch.get_float32_matmul_precision(),
                   allow_tf32=torch.backends.cuda.matmul.allow_tf32, threads=torch.get_num_threads())
        if self.device.type == "cuda":
            env["device_name"] = torch.cuda.get_device_name(self.device)
        return env

    def sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def load(self, path: Path, dtype: str):
        model = self.model_class.from_pretrained(path, torch_dtype=getattr(self.torch, dtype)).to(self.device)
        self.sync()
        return model.eval()

    def forward_fn(self, model, ids):
        torch = self.torch
        ids = torch.as_tensor(ids, dtype=torch.long, device=self.device)

        def run():
            with torch.inference_mode():
                logits = model(ids, use_cache=False).logits
            self.sync()
            return logits

        return run

    def generate_fn(self, model, ids, new: int):
        torch = self.torch
        ids = torch.as_tensor(ids, dtype=torch.long, device=self.device)
        mask = torch.ones_like(ids)

        def run():
            with torch.inference_mode():
                out = model.generate(ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new,
                                     do_sample=False, eos_token_id=None, pad_token_id=0)
            self.sync()
            return out

        return run

    def to_numpy(self, tensor):
        tensor = tensor.detach()
        return (tensor.float() if tensor.is_floating_point() else tensor).cpu().numpy()

    def peaks(self, copy_mb: int, matmul_n: int, repeats: int) -> dict:
        torch = self.torch
        result = dict(copy_gb_s=self._copy_gb_s(copy_mb, repeats), matmul_tflops={})
        gen = torch.Generator(device=self.device).manual_seed(0)
        for dtype in DTYPES:
            a = torch.randn(matmul_n, matmul_n, generator=gen, device=self.device).to(getattr(torch, dtype))
            b = torch.randn(matmul_n, matmul_n, generator=gen, device=self.device).to(getattr(torch, dtype))

            def matmul(a=a, b=b):
                a @ b
                self.sync()

            matmul()
            result["matmul_tflops"][dtype] = 2 * matmul_n**3 / best_of(matmul, repeats + 2) / 1e12
        return result

    def _copy_gb_s(self, megabytes: int, repeats: int) -> float:
        """Device-to-device copy bandwidth, read + write bytes per second."""
        src = self.torch.ones(megabytes * 2**20 // 4, dtype=self.torch.float32, device=self.device)
        dst = self.torch.empty_like(src)

        def copy():
            dst.copy_(src)
            self.sync()

        copy()
        return 2 * src.numel() * 4 / best_of(copy, repeats + 2) / 1e9


class FlaxStack:
    """gpt2_multi.flax on jax's default device (the GPU, or the CPU with ``--device cpu``)."""

    name = "flax"

    def __init__(self, device: str, tf32: bool):
        import jax

        jax.config.update("jax_default_matmul_precision", "tensorfloat32" if tf32 else "highest")
        backend = jax.default_backend()
        if device == "cuda" and backend != "gpu":
            raise Unavailable(f"jax {jax.__version__} has no GPU backend (default backend {backend!r}: "
                              "a CPU-only jaxlib, or the CUDA plugin failed to start)")
        import jax.numpy as jnp

        from gpt2_multi.flax import FlaxGPT2LMHeadModel

        self.jax, self.jnp, self.model_class = jax, jnp, FlaxGPT2LMHeadModel

    def environment(self) -> dict:
        import flax

        jax = self.jax
        device = jax.devices()[0]
        return dict(jax=jax.__version__, flax=flax.__version__, backend=jax.default_backend(),
                    device=str(device), device_name=getattr(device, "device_kind", "?"),
                    default_matmul_precision=str(jax.config.jax_default_matmul_precision),
                    preallocate=os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", "(jax default)"))

    def load(self, path: Path, dtype: str):
        jdtype = getattr(self.jnp, dtype)
        model = self.model_class.from_pretrained(path, dtype=jdtype, param_dtype=jdtype)
        self.jax.block_until_ready(model.params)
        return model

    def forward_fn(self, model, ids):
        jax = self.jax
        ids = jax.device_put(ids.astype("int32"))
        return lambda: jax.block_until_ready(model(ids).logits)

    def generate_fn(self, model, ids, new: int):
        jax = self.jax
        ids = jax.device_put(ids.astype("int32"))

        def run():
            out = model.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                                 eos_token_id=None, pad_token_id=0)
            return jax.block_until_ready(out.sequences)

        return run

    def to_numpy(self, array):
        import numpy as np

        array = np.asarray(array)
        return array.astype(np.float32) if array.dtype.kind not in "iub" else array

    def peaks(self, copy_mb: int, matmul_n: int, repeats: int) -> dict:
        jax, jnp = self.jax, self.jnp
        result = dict(copy_gb_s=self._copy_gb_s(copy_mb, repeats), matmul_tflops={})
        keys = jax.random.split(jax.random.PRNGKey(0))
        matmul = jax.jit(lambda a, b: a @ b)  # precision: jax_default_matmul_precision, set above
        for dtype in DTYPES:
            a, b = (jax.random.normal(k, (matmul_n, matmul_n), getattr(jnp, dtype)) for k in keys)
            jax.block_until_ready(matmul(a, b))
            seconds = best_of(lambda a=a, b=b: jax.block_until_ready(matmul(a, b)), repeats + 2)
            result["matmul_tflops"][dtype] = 2 * matmul_n**3 / seconds / 1e12
        return result

    def _copy_gb_s(self, megabytes: int, repeats: int) -> float:
        """Read + write bytes per second of an elementwise pass over a large array (a device-side copy)."""
        jax = self.jax
        src = self.jnp.ones(megabytes * 2**20 // 4, self.jnp.float32)
        copy = jax.jit(lambda x: x + 1)  # one read and one write of every element
        jax.block_until_ready(copy(src))
        return 2 * src.size * 4 / best_of(lambda: jax.block_until_ready(copy(src)), repeats + 2) / 1e9


STACKS = {"pt": TorchStack, "flax": FlaxStack}


def child_main(stack_name: str, phase: str, work: Path) -> int:
    """Run one stack's phase (``parity`` or ``speed``) as the plan in ``work/plan.json`` says; results go to
    ``work/<stack>-<phase>.json`` after every step (and the parity logits to ``.npy`` files)."""
    import numpy as np

    plan = json.loads((work / "plan.json").read_text())
    settings, start = plan["settings"], plan["start"]
    deadline = plan["deadlines"][f"{stack_name}-{phase}"]
    result: dict = dict(stack=stack_name, phase=phase, environment={}, rows=[], skipped=[], errors=[],
                        unavailable=None, finished=False)
    out_file = work / f"{stack_name}-{phase}.json"

    def save() -> None:
        result["tensorflow_import_attempts"] = list(_RefuseTensorFlow.attempts)
        write_json(out_file, result)

    def say(message: str) -> None:
        log(start, f"{stack_name} {phase}", message)

    def failed(what: str, err: BaseException) -> None:
        line = f"{what}: {type(err).__name__}: {err}".splitlines()[0][:500]
        result["errors"].append(line)
        say("ERROR " + line)
        traceback.print_exc()  # to stderr: the parent keeps it in logs/
        save()

    try:
        stack = STACKS[stack_name](plan["device"], tf32=plan["tf32"] and phase == "speed")
    except Unavailable as err:
        result["unavailable"] = str(err)
    except ImportError as err:
        result["unavailable"] = f"import failed: {type(err).__name__}: {err}"
        traceback.print_exc()
    if result["unavailable"]:
        say("SKIPPED: " + result["unavailable"])
        result["finished"] = True
        save()
        return 0
    result["environment"] = stack.environment()
    say(", ".join(f"{k} {v}" for k, v in result["environment"].items()))
    save()
    guard = Guard(deadline, FIRST_ESTIMATE_S[plan["mode"]], result["skipped"])
    label = STACK_LABELS[stack_name]
    path = Path(plan["checkpoint"])
    rng = np.random.default_rng(1)

    def timed(kind: str, fn):
        t = time.perf_counter()
        value = fn()
        seconds = time.perf_counter() - t
        guard.took(kind, seconds)
        return value, seconds

    if phase == "parity":
        ids = np.load(work / "parity_ids.npy")
        for dtype in DTYPES:
            if not guard.allow(f"{label} parity {dtype}", "parity"):
                continue
            try:
                t = time.perf_counter()
                model = stack.load(path, dtype)
                load_s = time.perf_counter() - t
                logits = stack.to_numpy(stack.forward_fn(model, ids)())
                np.save(work / f"{stack_name}-{dtype}-logits.npy", logits)
                tokens = stack.to_numpy(stack.generate_fn(model, ids, settings["generate_new"])())
                seconds = time.perf_counter() - t
                guard.took("parity", seconds)
                result["rows"].append(dict(dtype=dtype, load_s=load_s, seconds=seconds,
                                           tokens=tokens[:, ids.shape[1]:].tolist()))
                say(f"{dtype}: loaded in {load_s:.1f} s, forward {ids.shape[0]} x {ids.shape[1]} and generate "
                    f"{settings['generate_new']} tokens done in {seconds:.1f} s")
                del model
            except Exception as err:  # noqa: BLE001 - recorded and reported: the check fails
                failed(f"{label} parity {dtype}", err)
            save()
    else:
        if guard.allow(f"{label} device peaks", "peaks"):
            try:
                result["peaks"], seconds = timed("peaks", lambda: stack.peaks(
                    settings["copy_mb"], settings["matmul_n"], settings["repeats"]))
                p = result["peaks"]
                say(f"copy {p['copy_gb_s']:.0f} GB/s, matmul " + ", ".join(
                    f"{SHORT[d]} {v:.1f} TFLOP/s" for d, v in p["matmul_tflops"].items()) + f" ({seconds:.1f} s)")
            except Exception as err:  # noqa: BLE001
                failed(f"{label} device peaks", err)
            save()
        models = {}
        for dtype in DTYPES:
            if guard.allow(f"{label} speed: load {dtype}", "load"):
                try:
                    models[dtype], seconds = timed("load", lambda dtype=dtype: stack.load(path, dtype))
                except Exception as err:  # noqa: BLE001
                    failed(f"{label} speed: load {dtype}", err)
        vocab, prompt, new, repeats = settings["shapes"]["vocab_size"], settings["prompt"], settings["new"], settings["repeats"]
        # The most telling measurement first, in both dtypes, so that a short budget still compares them.
        work_items = [("decode", b, prompt) for b in settings["decode_batches"]]
        work_items += [("prefill", b, t) for b, t in settings["prefill"]]
        for kind, batch, length in work_items:
            for dtype in ("bfloat16", "float32"):
                what = (f"{label} {SHORT[dtype]} decode batch {batch}" if kind == "decode"
                        else f"{label} {SHORT[dtype]} prefill {batch} x {length}")
                if dtype not in models:
                    result["skipped"].append(f"{what}: skipped (the {dtype} model did not load)")
                    continue
                if not guard.allow(what, kind):
                    continue
                ids = rng.integers(0, vocab, (batch, length))
                try:
                    t = time.perf_counter()
                    if kind == "decode":
                        row = measure_decode(stack, models[dtype], ids, new, repeats)
                    else:
                        row = measure_prefill(stack, models[dtype], ids, repeats)
                    guard.took(kind, time.perf_counter() - t)
                    result["rows"].append(dict(kind=kind, dtype=dtype, batch=batch, length=length, **row))
                    rate = row["tokens_per_s"]
                    say(f"{what}: {'-' if rate is None else f'{rate:,.0f}'} tokens/s "
                        f"(first call {row['first_call_s']:.2f} s, {time.perf_counter() - t:.1f} s in all)")
                except Exception as err:  # noqa: BLE001
                    failed(what, err)
                save()
    result["finished"] = True
    save()
    return 0


def measure_decode(stack, model, ids, new: int, repeats: int) -> dict:
    """Decode-only tokens/s of the default generate: ``B * (new - 1) / (t(new) - t(1))``."""
    run_new, run_one = stack.generate_fn(model, ids, new), stack.generate_fn(model, ids, 1)
    t = time.perf_counter()
    out = run_new()  # the warm-up (Flax: compiles this length's program)
    first = time.perf_counter() - t
    if tuple(out.shape) != (ids.shape[0], ids.shape[1] + new):
        raise RuntimeError(f"generate returned shape {tuple(out.shape)}, expected {(ids.shape[0], ids.shape[1] + new)}")
    run_one()
    t_new, t_one = best_of(run_new, repeats), best_of(run_one, repeats)
    rate = ids.shape[0] * (new - 1) / (t_new - t_one) if t_new > t_one else None
    return dict(tokens_per_s=rate, new=new, first_call_s=first, seconds_new=t_new, seconds_one=t_one)


def measure_prefill(stack, model, ids, repeats: int) -> dict:
    """Tokens/s of one forward of (B, T) ids, logits included."""
    run = stack.forward_fn(model, ids)
    t = time.perf_counter()
    run()  # the warm-up (Flax: compiles this shape)
    first = time.perf_counter() - t
    seconds = best_of(run, repeats)
    return dict(tokens_per_s=ids.size / seconds, seconds=seconds, first_call_s=first)


# ================================================================================================ parent side
class Reference:
    """GPT-2 forward in float64 numpy, the oracle of the fp32 rows: pre-LN blocks, gelu_new, causal attention
    scaled by 1/sqrt(head_dim), tied LM head (the default config only: see :func:`reference_supported`).
    The weights are converted to float64 once (1 GB for GPT-2 small)."""

    def __init__(self, tensors: dict, config):
        import numpy as np

        self.np, self.config = np, config
        self.w = {name.removeprefix("transformer."): np.asarray(t, dtype=np.float64) for name, t in tensors.items()}

    def logits(self, ids):
        """(B, T) int ids -> (B, T, vocab) float64 logits."""
        np, config, w = self.np, self.config, self.w

        def layer_norm(x, prefix):
            mean = x.mean(-1, keepdims=True)
            var = ((x - mean) ** 2).mean(-1, keepdims=True)
            return (x - mean) / np.sqrt(var + config.layer_norm_epsilon) * w[prefix + ".weight"] + w[prefix + ".bias"]

        def gelu_new(x):
            return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))

        batch, length = ids.shape
        heads, width = config.n_head, config.n_embd
        head_dim = width // heads
        causal = np.tril(np.ones((length, length), dtype=bool))
        x = w["wte.weight"][ids] + w["wpe.weight"][:length]
        for i in range(config.n_layer):
            p = f"h.{i}."
            qkv = layer_norm(x, p + "ln_1") @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
            q, k, v = (t.reshape(batch, length, heads, head_dim).transpose(0, 2, 1, 3) for t in np.split(qkv, 3, -1))
            scores = np.where(causal, q @ k.transpose(0, 1, 3, 2) / np.sqrt(head_dim), -np.inf)
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            attn = ((scores / scores.sum(-1, keepdims=True)) @ v).transpose(0, 2, 1, 3).reshape(batch, length, width)
            x = x + attn @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
            h = gelu_new(layer_norm(x, p + "ln_2") @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"])
            x = x + h @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
        return layer_norm(x, "ln_f") @ w["wte.weight"].T


def reference_supported(config) -> str | None:
    """Why the numpy reference does not apply to ``config`` (None when it does)."""
    wanted = dict(activation_function="gelu_new", scale_attn_weights=True, scale_attn_by_inverse_layer_idx=False)
    wrong = [f"{k}={getattr(config, k)!r}" for k, v in wanted.items() if getattr(config, k) != v]
    return f"the numpy reference covers the default config only, not {', '.join(wrong)}" if wrong else None


def matmul_weights(shapes: dict) -> int:
    """Weights that take part in a matmul per token: the blocks' four projections and the tied LM head."""
    e = shapes["n_embd"]
    return shapes["n_layer"] * (3 * e * e + e * e + 2 * 4 * e * e) + e * shapes["vocab_size"]


def prefill_flops(shapes: dict, batch: int, length: int) -> float:
    """FLOPs of one forward of (batch, length) tokens: 2 per matmul weight per token, plus attention's two
    (length x length x n_embd) products per layer, counted in full (no causal discount)."""
    per_row = 2 * matmul_weights(shapes) * length + 4 * shapes["n_layer"] * length * length * shapes["n_embd"]
    return float(batch * per_row)


class Summary:
    """Everything the run found, as the JSON it writes; the markdown and the stdout table are views of it."""

    def __init__(self, args, settings: dict, start: float):
        self.start = start
        self.data: dict = dict(
            schema=1, status="running", exit_code=None, command=" ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            mode="quick" if args.quick else "full", device=args.device, budget_s=args.budget_s,
            started=time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(start)), elapsed_s=None,
            tf32_in_speed_runs=args.tf32, settings=settings,
            environment=dict(python=platform.python_version(), platform=platform.platform(),
                             cpu_count=os.cpu_count()),
            checkpoint={}, tolerances={k: dict(metric=m, max=v) for k, (m, v) in TOLERANCE.items()},
            parity=[], generate=[], peaks={}, speed=[], skipped=[], errors=[], tensorflow_import_attempts=[])

    def finish(self) -> int:
        d = self.data
        rows = d["parity"] + d["generate"]
        d["tensorflow_import_attempts"] = sorted(set(d["tensorflow_import_attempts"] + _RefuseTensorFlow.attempts))
        if d["errors"] or any(r["status"] == "fail" for r in rows):
            d["status"], code = "fail", 1
        elif d["skipped"] or any(r["status"] == "skipped" for r in rows) or not d["speed"]:
            d["status"], code = "incomplete", 3
        else:
            d["status"], code = "pass", 0
        d["exit_code"] = code
        d["elapsed_s"] = round(time.time() - self.start, 1)
        return code

    def write(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        if self.data["elapsed_s"] is None or self.data["status"] == "running":
            self.data["elapsed_s"] = round(time.time() - self.start, 1)
        write_json(out_dir / "gpu_check.json", self.data)
        (out_dir / "gpu_check.md").write_text(self.markdown() + "\n")

    def markdown(self) -> str:
        d = self.data
        env = d["environment"]
        lines = [f"# gpu_check: {d['status'].upper()} ({d['mode']} plan, device {d['device']}, "
                 f"{d['elapsed_s']} s of a {d['budget_s']:.0f} s budget)", "",
                 f"`{d['command']}`, started {d['started']}; python {env['python']}, numpy {env.get('numpy', '?')}, "
                 f"{env['cpu_count']} CPUs."]
        for stack in STACK_LABELS:
            if stack in env:
                lines.append(f"{STACK_LABELS[stack]}: " + ", ".join(f"{k} {v}" for k, v in env[stack].items()))
        ck = d["checkpoint"]
        if ck:
            lines.append(f"Checkpoint: {ck['parameters'] / 1e6:.1f}M parameters, {ck['shapes']}, random weights "
                         f"(seed 0), written in {ck['write_s']:.1f} s.")
        lines.append(f"TensorFlow imported: no (refused attempts: {d['tensorflow_import_attempts'] or 'none'}).")
        batch, length = d["settings"]["parity_batch"]
        lines += ["", f"## Parity (logits of one forward of {batch} x {length} tokens)", "",
                  "fp32 is full fp32, TF32 off in both stacks (torch `set_float32_matmul_precision('highest')`, "
                  "`allow_tf32 = False`; jax `jax_default_matmul_precision = 'highest'`). bf16: bf16 weights and "
                  "compute in both. `rel` = max |a - b| / max |fp32 logits|.", "",
                  "| check | max abs diff | rel | tolerance | result |", "| --- | --- | --- | --- | --- |"]
        for r in d["parity"]:
            tol = f"{r['metric']} <= {r['tolerance']:g}"
            lines.append(f"| {r['check']} | {_num(r.get('max_abs'), '.2e')} | {_num(r.get('rel'), '.2e')} | {tol} | "
                         f"{_status(r)} |")
        lines += ["", f"## Greedy generate ({d['settings']['generate_new']} new tokens from the parity batch)", "",
                  "Teacher-forced: the float64 forward over prompt + generated tokens must pick each generated token "
                  "(this checks the decode path, KV cache included).", "",
                  "| check | identical | tokens agreeing | first difference (new-token index) | result |",
                  "| --- | --- | --- | --- | --- |"]
        for r in d["generate"]:
            same = "-" if r.get("identical") is None else ("yes" if r["identical"] else "no")
            lines.append(f"| {r['check']} | {same} | {r.get('agree') or '-'} | {_num(r.get('first_difference'), 'd')} | "
                         f"{_status(r)} |")
        lines += ["", "## Device peaks (measured in this run)", "",
                  "| by | copy GB/s (read + write) | fp32 matmul TFLOP/s | bf16 matmul TFLOP/s |",
                  "| --- | --- | --- | --- |"]
        for who, p in d["peaks"].items():
            lines.append(f"| {who} | {_sig(p.get('copy_gb_s'))} | {_sig(p['matmul_tflops'].get('float32'))} | "
                         f"{_sig(p['matmul_tflops'].get('bfloat16'))} |")
        s = d["settings"]
        precision = "TF32 allowed in fp32 (--tf32)" if d["tf32_in_speed_runs"] else "fp32 without TF32"
        lines += ["", f"## Speed (default generate, greedy, prompt {s['prompt']}, {s['new']} new tokens; "
                      "decode = B (new - 1) / (t(new) - t(1)); prefill = one forward, logits included; "
                      f"{precision}; best of {s['repeats']})", "",
                  "| stack | dtype | measurement | tokens/s | share of bound | bound | first call s |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in d["speed"]:
            lines.append(f"| {STACK_LABELS[r['stack']]} | {SHORT[r['dtype']]} | {r['what']} | {_sig(r['tokens_per_s'])} | "
                         f"{_num(r.get('fraction'), '.0%')} | {r.get('of', '-')} | {_num(r.get('first_call_s'), '.2f')} |")
        if d["mode"] == "quick":
            lines += ["", "Quick plan: tiny shapes whose weights sit in the CPU caches and steps that take microseconds; "
                          "the bounds and shares above are not meaningful there (a smoke run of the script)."]
        if d["skipped"]:
            lines += ["", "## Skipped (not measured, not passed)", ""] + [f"- {x}" for x in d["skipped"]]
        if d["errors"]:
            lines += ["", "## Errors", ""] + [f"- {x}" for x in d["errors"]]
        return "\n".join(lines)


def _num(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _sig(value) -> str:
    """About three significant digits, thousands separated: 2,431 / 98.1 / 3.27 / 0.0412."""
    if value is None:
        return "-"
    size = abs(value)
    return f"{value:,.0f}" if size >= 100 else f"{value:.1f}" if size >= 10 else f"{value:.2f}" if size >= 1 else f"{value:.3g}"


def _status(row: dict) -> str:
    status = row["status"]
    note = row.get("note")
    return f"**{status.upper()}**" + (f" ({note})" if note else "") if status in ("fail", "skipped") else (
        status + (f" ({note})" if note else ""))


def run_child(stack: str, phase: str, work: Path, out_dir: Path, deadline: float, summary: Summary) -> dict | None:
    """Run one child to its deadline (plus a grace period); returns what it wrote (``unavailable`` says why a
    stack could not run here), None if it wrote nothing."""
    plan_file = work / "plan.json"
    plan = json.loads(plan_file.read_text())
    plan["deadlines"][f"{stack}-{phase}"] = deadline
    write_json(plan_file, plan)
    logs = out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stderr_file = logs / f"{stack}-{phase}.stderr.txt"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # jax takes what it needs, not 75 % of the GPU
    if plan["device"] == "cpu":
        env["JAX_PLATFORMS"] = "cpu"
    timeout = max(1.0, deadline - time.time() + CHILD_GRACE_S)
    with open(stderr_file, "w") as err:
        try:
            proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", stack, phase, str(work)],
                                  stderr=err, env=env, timeout=timeout, cwd=str(REPO))
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = None
    result_file = work / f"{stack}-{phase}.json"
    result = json.loads(result_file.read_text()) if result_file.is_file() else None
    label = f"{STACK_LABELS[stack]} {phase}"
    if code is None:
        summary.data["errors"].append(f"{label}: stopped after {timeout:.0f} s (deadline + {CHILD_GRACE_S:.0f} s); "
                                      f"its results so far are kept")
    elif code != 0 or result is None or not result.get("finished"):
        tail = [line for line in stderr_file.read_text().splitlines() if line.strip()][-1:] or ["(no stderr)"]
        summary.data["errors"].append(f"{label}: child exited with status {code}: {tail[0][:300]} "
                                      f"(logs/{stderr_file.name})")
    if result:
        summary.data["skipped"] += result["skipped"]
        summary.data["errors"] += result["errors"]
        summary.data["tensorflow_import_attempts"] += result.get("tensorflow_import_attempts", [])
        if result["environment"]:
            summary.data["environment"][stack] = result["environment"]
        if result["unavailable"]:
            summary.data["skipped"].append(f"{STACK_LABELS[stack]} ({phase}): {result['unavailable']}")
    return result


def parity_rows(work: Path, parity: dict[str, dict], prompt, reference: Reference | None, can_spend,
                tolerance=TOLERANCE) -> tuple[list, list]:
    """Compare the logits and tokens the parity children wrote, with each other and with the float64 reference
    (``can_spend()`` says whether the budget allows one more reference forward); every row says pass, fail,
    info (bf16 tokens) or skipped (why)."""
    import numpy as np

    logits: dict[tuple[str, str], np.ndarray] = {}
    tokens: dict[tuple[str, str], np.ndarray] = {}
    for stack, result in parity.items():
        for row in (result or {}).get("rows", []):
            logits[stack, row["dtype"]] = np.load(work / f"{stack}-{row['dtype']}-logits.npy")
            tokens[stack, row["dtype"]] = np.asarray(row["tokens"])
    if reference is not None:
        logits["numpy", "float64"] = reference.logits(prompt)

    def compare(check, a, b, dtype, scale_key):
        metric, limit = tolerance[dtype]
        row = dict(check=check, dtype=dtype, metric=metric, tolerance=limit, max_abs=None, rel=None)
        missing = [f"{k[0]} {k[1]}" for k in (a, b, scale_key) if k not in logits]
        if missing:
            return dict(row, status="skipped", note=f"no {', '.join(sorted(set(missing)))} logits")
        x, y, scale = logits[a], logits[b], float(np.max(np.abs(logits[scale_key])))
        if x.shape != y.shape:
            return dict(row, status="fail", note=f"shapes {x.shape} vs {y.shape}")
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            return dict(row, status="fail", note="non-finite logits")
        max_abs = float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64))))
        rel = max_abs / scale if scale else float("inf")
        value = max_abs if metric == "abs" else rel
        return dict(row, max_abs=max_abs, rel=rel, status="pass" if value <= limit else "fail")

    f32, b16 = "float32", "bfloat16"
    rows = [
        compare("PyTorch fp32 vs numpy float64", ("pt", f32), ("numpy", "float64"), f32, ("numpy", "float64")),
        compare("JAX/Flax fp32 vs numpy float64", ("flax", f32), ("numpy", "float64"), f32, ("numpy", "float64")),
        compare("PyTorch fp32 vs JAX/Flax fp32", ("pt", f32), ("flax", f32), f32, ("pt", f32)),
        compare("PyTorch bf16 vs PyTorch fp32", ("pt", b16), ("pt", f32), b16, ("pt", f32)),
        compare("JAX/Flax bf16 vs JAX/Flax fp32", ("flax", b16), ("flax", f32), b16, ("flax", f32)),
        compare("PyTorch bf16 vs JAX/Flax bf16", ("pt", b16), ("flax", b16), b16, ("pt", f32)),
    ]
    generate = []
    sequences: dict[bytes, np.ndarray] = {}  # float64 logits of each distinct generated sequence

    def reference_of(stack, dtype):
        """Float64 logits over prompt + the tokens ``stack`` generated at ``dtype`` (None: no reference or budget)."""
        seq = np.concatenate([prompt, tokens[stack, dtype]], axis=1)
        key = seq.tobytes()
        if key not in sequences:
            if reference is None or not can_spend():
                return None
            sequences[key] = reference.logits(seq)
        return sequences[key]

    length = prompt.shape[1]
    for dtype in DTYPES:
        required = dtype == f32  # bf16 near-ties may flip a token: reported, not required
        status_of = (lambda ok: "pass" if ok else "fail") if required else (lambda ok: "info")
        bf16_note = None if required else "reported, not required: bf16 near-ties may flip"
        # each stack's greedy tokens against float64's argmax given the same prefix: checks the decode path
        for stack in ("pt", "flax"):
            check = f"{STACK_LABELS[stack]} {SHORT[dtype]} greedy tokens vs float64 argmax (teacher-forced)"
            ref = reference_of(stack, dtype) if (stack, dtype) in tokens else None
            if ref is None:
                why = "no float64 reference" if (stack, dtype) in tokens else f"no {STACK_LABELS[stack]} {SHORT[dtype]} tokens"
                generate.append(dict(check=check, dtype=dtype, identical=None, agree=None, first_difference=None,
                                     status="skipped", note=why))
                continue
            got = tokens[stack, dtype]
            scores = ref[:, length - 1:length - 1 + got.shape[1]]
            best = scores.argmax(-1)
            wrong = np.nonzero((best != got).any(axis=0))[0]
            note = bf16_note
            if wrong.size:
                j = int(wrong[0])
                r = int(np.nonzero(best[:, j] != got[:, j])[0][0])
                gap = float(scores[r, j, best[r, j]] - scores[r, j, got[r, j]])
                note = f"first at row {r}: its float64 logit is {gap:.2e} below the best" + (
                    "" if required else "; " + bf16_note)
            generate.append(dict(check=check, dtype=dtype, identical=not wrong.size,
                                 agree=f"{int((best == got).sum())}/{got.size}",
                                 first_difference=int(wrong[0]) if wrong.size else None,
                                 status=status_of(not wrong.size), note=note))
        check = f"PyTorch {SHORT[dtype]} vs JAX/Flax {SHORT[dtype]} tokens"
        a, b = tokens.get(("pt", dtype)), tokens.get(("flax", dtype))
        if a is None or b is None:
            which = " and ".join(STACK_LABELS[s] for s in ("pt", "flax") if (s, dtype) not in tokens)
            generate.append(dict(check=check, dtype=dtype, identical=None, agree=None, first_difference=None,
                                 status="skipped", note=f"no {which} {SHORT[dtype]} tokens"))
            continue
        differ = np.nonzero((a != b).any(axis=0))[0] if a.shape == b.shape else np.array([0])
        note = bf16_note
        if differ.size and a.shape == b.shape:
            j = int(differ[0])  # every row agrees before column j: the prefixes there are the same
            r = int(np.nonzero(a[:, j] != b[:, j])[0][0])
            ref = sequences.get(np.concatenate([prompt, a], axis=1).tobytes())
            if ref is not None:
                gap = abs(float(ref[r, length - 1 + j, a[r, j]] - ref[r, length - 1 + j, b[r, j]]))
                note = f"row {r}: the two tokens' float64 logits differ by {gap:.2e}" + (
                    "" if required else "; " + bf16_note)
        generate.append(dict(check=check, dtype=dtype, identical=not differ.size,
                             agree=f"{int((a == b).sum())}/{a.size}" if a.shape == b.shape else "0",
                             first_difference=int(differ[0]) if differ.size else None,
                             status=status_of(not differ.size), note=note))
    return rows, generate


def speed_rows(speed: dict[str, dict], shapes: dict, weight_bytes: dict[str, int], peaks: dict) -> list[dict]:
    """The children's speed rows with the bound each is a fraction of."""
    rows = []
    for stack, result in speed.items():
        for r in (result or {}).get("rows", []):
            row = dict(stack=stack, dtype=r["dtype"], kind=r["kind"], batch=r["batch"],
                       tokens_per_s=r["tokens_per_s"], first_call_s=r["first_call_s"], fraction=None, of="-")
            if r["kind"] == "decode":
                row["what"] = f"decode batch {r['batch']}"
                bandwidth = peaks.get("copy_gb_s")
                if bandwidth and r["tokens_per_s"]:
                    bound = r["batch"] * bandwidth * 1e9 / weight_bytes[r["dtype"]]
                    row.update(bound_tokens_per_s=bound, fraction=r["tokens_per_s"] / bound,
                               of=f"{_sig(bound)} tok/s = {r['batch']} x {_sig(bandwidth)} GB/s / "
                                  f"{_sig(weight_bytes[r['dtype']] / 1e6)} MB of weights")
            else:
                row["what"] = f"prefill {r['batch']} x {r['length']}"
                peak = peaks.get("matmul_tflops", {}).get(r["dtype"])
                achieved = prefill_flops(shapes, r["batch"], r["length"]) / r["seconds"] / 1e12
                row["tflops"] = achieved
                if peak:
                    row.update(fraction=achieved / peak, of=f"{_sig(achieved)} of {_sig(peak)} TFLOP/s "
                                                           f"({SHORT[r['dtype']]} matmul peak)")
            rows.append(row)
    return rows


def print_tables(summary: Summary) -> None:
    """The summary (the markdown it writes) on stdout."""
    print()
    print(summary.markdown())
    print()


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cuda (default: both stacks on the GPU) or cpu (with --quick: a smoke run)")
    parser.add_argument("--quick", action="store_true", help="tiny shapes (n_embd 64, 2 layers, vocab 1000), few tokens")
    parser.add_argument("--budget-s", type=float, default=270.0,
                        help="seconds for the whole run; no measurement starts that is expected to end later")
    parser.add_argument("--out", default=None, help="output folder (default $OUT, else ./gpu_check_out)")
    parser.add_argument("--stacks", default="pt,flax", help="comma-separated subset of pt,flax")
    parser.add_argument("--parts", default="parity,speed", help="comma-separated subset of parity,speed")
    parser.add_argument("--tf32", action="store_true",
                        help="allow TF32 matmuls in the fp32 speed runs (parity is always full fp32)")
    parser.add_argument("--child", nargs=3, metavar=("STACK", "PHASE", "WORKDIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.stacks = [s for s in args.stacks.split(",") if s]
    args.parts = [p for p in args.parts.split(",") if p]
    bad = [s for s in args.stacks if s not in STACKS] + [p for p in args.parts if p not in ("parity", "speed")]
    if bad:
        parser.error(f"unknown stack or part: {', '.join(bad)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args.child[0], args.child[1], Path(args.child[2]))
    start = time.time()
    deadline = start + args.budget_s
    out_dir = Path(args.out or os.environ.get("OUT") or "gpu_check_out").resolve()
    missing = missing_modules(CORE_MODULES)
    if missing:
        print(f"gpu_check: missing Python packages: {', '.join(missing)} (gpt2_multi.checkpoint imports "
              f"{', '.join(CORE_MODULES)} at import time); nothing was run", flush=True)
        return 2
    import numpy as np
    from generate import param_count, weight_bytes_per_step, write_checkpoint  # the shared benchmark helpers

    from gpt2_multi.checkpoint import load_checkpoint

    mode = "quick" if args.quick else "full"
    settings = PLANS[mode]
    summary = Summary(args, settings, start)
    summary.data["environment"]["numpy"] = np.__version__
    stacks = []
    for stack in args.stacks:
        absent = missing_modules(STACK_MODULES[stack])
        if absent:
            summary.data["skipped"].append(f"{STACK_LABELS[stack]}: skipped entirely: {', '.join(absent)} not installed")
        else:
            stacks.append(stack)
    for line in summary.data["skipped"]:
        log(start, "gpu_check", line)
    log(start, "gpu_check", f"{mode} plan on {args.device}, budget {args.budget_s:.0f} s, stacks "
                            f"{', '.join(stacks) or 'none'}, output {out_dir}")

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        checkpoint = work / "checkpoint"
        t = time.time()
        params = write_checkpoint(checkpoint, dict(settings["shapes"]))
        fp32_bytes = weight_bytes_per_step(settings["shapes"], param_count(settings["shapes"]))
        weight_bytes = {"float32": fp32_bytes, "bfloat16": fp32_bytes // 2}
        summary.data["checkpoint"] = dict(shapes=settings["shapes"], parameters=params, write_s=time.time() - t,
                                          weight_bytes_per_decode_step=weight_bytes)
        log(start, "gpu_check", f"wrote a random {params / 1e6:.1f}M-parameter checkpoint in {time.time() - t:.1f} s")
        batch, length = settings["parity_batch"]
        ids = np.random.default_rng(1).integers(0, settings["shapes"]["vocab_size"], (batch, length))
        np.save(work / "parity_ids.npy", ids)
        write_json(work / "plan.json", dict(settings=settings, mode=mode, device=args.device, tf32=args.tf32,
                                            start=start, checkpoint=str(checkpoint), deadlines={}))
        min_s = CHILD_MIN_S[mode]

        def time_left() -> float:
            return deadline - RESERVE_S - time.time()

        parity: dict[str, dict] = {}
        reference = None
        if "parity" in args.parts:
            for stack in stacks:
                if time_left() < min_s:
                    summary.data["skipped"].append(f"{STACK_LABELS[stack]} parity: skipped by the budget "
                                                   f"({max(time_left(), 0):.0f} s left)")
                    continue
                parity[stack] = run_child(stack, "parity", work, out_dir, deadline - RESERVE_S, summary)
            ckpt = load_checkpoint(checkpoint)
            why_not = reference_supported(ckpt.config)
            if why_not:
                summary.data["skipped"].append(f"numpy float64 reference: {why_not}")
            elif time_left() < min_s:
                summary.data["skipped"].append("numpy float64 reference: skipped by the budget")
            else:
                reference = Reference(ckpt.tensors, ckpt.config)
            del ckpt
            t = time.time()
            summary.data["parity"], summary.data["generate"] = parity_rows(
                work, parity, ids, reference, lambda: time_left() > min_s)
            if reference is not None:
                log(start, "gpu_check", f"compared, float64 reference forwards included, in {time.time() - t:.1f} s")
            reference = None  # its float64 weights
            summary.write(out_dir)
        else:
            summary.data["skipped"].append("parity: not asked for (--parts)")

        speed: dict[str, dict] = {}
        if "speed" in args.parts:
            unavailable = [s for s in stacks if (parity.get(s) or {}).get("unavailable")]  # said in the parity phase
            for s in unavailable:
                summary.data["skipped"].append(f"{STACK_LABELS[s]} speed: skipped (unavailable, see its parity line)")
            stacks = [s for s in stacks if s not in unavailable]
            for i, stack in enumerate(stacks):
                share = time_left() / (len(stacks) - i)  # what one stack leaves unused goes to the next
                if share < min_s:
                    summary.data["skipped"].append(f"{STACK_LABELS[stack]} speed: skipped by the budget "
                                                   f"({max(time_left(), 0):.0f} s left)")
                    continue
                speed[stack] = run_child(stack, "speed", work, out_dir, time.time() + share, summary)
            peaks: dict = {}
            for stack, result in speed.items():
                if result and result.get("peaks"):
                    summary.data["peaks"][STACK_LABELS[stack]] = result["peaks"]
            measured = list(summary.data["peaks"].values())
            if measured:  # the bound is the best the device showed, whichever framework showed it
                peaks = dict(copy_gb_s=max(p["copy_gb_s"] for p in measured),
                             matmul_tflops={d: max(p["matmul_tflops"].get(d, 0.0) for p in measured) for d in DTYPES})
                summary.data["peaks"]["used (the higher of each)"] = peaks
            summary.data["speed"] = speed_rows(speed, settings["shapes"], weight_bytes, peaks)
        else:
            summary.data["skipped"].append("speed: not asked for (--parts)")

    code = summary.finish()
    summary.write(out_dir)
    print_tables(summary)
    print(f"gpu_check: {summary.data['status']} (exit {code}) in {summary.data['elapsed_s']} s; "
          f"wrote {out_dir / 'gpu_check.json'} and gpu_check.md", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
