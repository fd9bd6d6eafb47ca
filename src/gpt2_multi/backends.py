"""The backend registry: the one list of model stacks, and a uniform numpy driver over them.

Every place that lists backends reads :data:`REGISTRY`: the CLI's ``--backend`` choices, the conformance
suite, nox's per-backend sessions and the tokenizers' ``return_tensors`` types. A :class:`Backend` record
is data about a stack (its name, label, pip extra, framework modules, class-name prefix, tensor type); its
array code lives in the stack's own ``backend`` module (``gpt2_multi/<name>/backend.py``), imported only
when it is first used. Asking whether a backend is installed imports nothing.

The ``backend`` module of a stack defines (numpy in, numpy out):

======================  ==============================================================================
``load``                ``(path, architecture, dtype="float32") -> model`` (``architecture``: HF's PT class name)
``forward``             ``(model, inputs, flags, past_chunks) -> {output key: array}``: one call after the
                        cached ``past_chunks``; keys as :data:`OUTPUT_KEYS`, caches as ``past.{i}.key`` (B, H, S, D)
``step``                ``(model, input_ids, state, max_length) -> (Step, state)``: one cached LM call
``generate``            ``(model, input_ids, attention_mask, **kwargs) -> Generated``: the stack's ``generate``
``cache_to_bhsd``       ``(past, length) -> [(key, value)]``: the stack's native cache as (B, H, S, D) arrays
``to_numpy``            ``(tensor) -> np.ndarray`` (float32 for floating point)
``loss_and_grads``      ``(model, inputs, checkpointing=False) -> (losses, grads)``: grads keyed by HF PT names
``adamw_step``          ``(model, inputs, hyper) -> {HF PT name: new weight}`` after one AdamW step
======================  ==============================================================================

The cache adapters (each stack's layout -> ``(B, H, S, D)``):

* PyTorch: ``past_key_values`` is already a tuple of ``(k, v)`` per layer, ``(B, H, S, D)``.
* TensorFlow: one tensor ``(2, B, H, S, D)`` per layer; index 0 is the key, 1 the value.
* Flax: the ``cache`` collection holds ``cached_key``/``cached_value`` ``(B, max_length, H, D)``
  and ``cache_index``; the filled part ``[:, :S]`` is transposed to ``(B, H, S, D)``.

``gpt2-multi train`` also imports the stack's ``training`` module (``gpt2_multi/<name>/training.py``) for
its ``Trainer`` class (interface: :mod:`gpt2_multi.training.run`).

Adding a backend: write the stack package (``gpt2_multi/<name>/`` with the HF class names under a prefix,
and its ``backend.py`` with the functions above) and add one :func:`register` call below.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

# This module imports nothing beyond the standard library at import time (numpy only where arrays are
# handled), so that tools without the package's dependencies (nox) can read the registry.
if TYPE_CHECKING:
    import numpy as np

    KV = list[tuple[np.ndarray, np.ndarray]]  # per layer (key, value), each (B, H, S, D)


@dataclass(frozen=True)
class Backend:
    """One model stack, as data. ``ops`` is its array code (``gpt2_multi/<name>/backend.py``)."""

    name: str  # "pt": the CLI's --backend value, the conformance pair names
    label: str  # "PyTorch": what reports print
    extra: str  # pip extra that installs the framework: gpt2-multi[<extra>]
    modules: tuple[str, ...]  # the framework's top-level modules; all importable = installed
    package: str  # the stack's package
    class_prefix: str  # "" / "TF" / "Flax": the stack's class for HF's "GPT2LMHeadModel" is prefix + that name
    tensor_type: str  # the tokenizers' return_tensors value for this framework
    tensor_module: str  # the module that makes those tensors
    int_tensor: tuple[str, str]  # (factory, dtype attribute) in tensor_module: HF's integer tensors
    # Whether the conformance runner may run several models' cases at once on threads. Worth it where each new
    # shape compiles a program outside the GIL (XLA under jax.jit); not for eager PyTorch, and not for Keras
    # models, which are not meant to be called from several threads.
    concurrent_models: bool = False

    def installed(self) -> bool:
        """The framework is importable (nothing is imported to find out)."""
        return all(importlib.util.find_spec(m) is not None for m in self.modules)

    def available(self) -> bool:
        """The framework is installed and the stack imports."""
        if not self.installed():
            return False
        try:
            self.model_class("GPT2LMHeadModel")
        except (ImportError, AttributeError):
            return False
        return True

    @property
    def ops(self) -> ModuleType:
        """The stack's ``backend`` module (imports the framework)."""
        return self._import(f"{self.package}.backend")

    @staticmethod
    def _import(module: str) -> ModuleType:
        from gpt2_multi import logs

        with logs.captured_stderr():  # the command line keeps a framework's import-time C++ log lines off the terminal
            return importlib.import_module(module)

    def model_class(self, architecture: str) -> type:
        """The stack's class for HF's PyTorch class name ``architecture`` (``GPT2LMHeadModel``, ...)."""
        return getattr(self._import(self.package), self.class_prefix + architecture)

    def install_hint(self) -> str:
        return f"pip install 'gpt2-multi[{self.extra}]'"

    def make_int_tensor(self, value: Any) -> Any:
        """``value`` (nested lists of ints) as this framework's integer tensor (int64 in PyTorch, int32 else)."""
        module = importlib.import_module(self.tensor_module)
        factory, dtype = self.int_tensor
        return getattr(module, factory)(value, dtype=getattr(module, dtype))


REGISTRY: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    if backend.name in REGISTRY:
        raise ValueError(f"a backend named {backend.name!r} is already registered")
    REGISTRY[backend.name] = backend
    return backend


register(Backend("pt", "PyTorch", "torch", ("torch",), "gpt2_multi.pt", "", "pt", "torch", ("tensor", "long")))
register(Backend("tf", "TensorFlow/Keras", "tf", ("tensorflow", "keras"), "gpt2_multi.tf", "TF", "tf", "tensorflow",
                 ("constant", "int32")))
register(Backend("flax", "JAX/Flax", "flax", ("jax", "flax"), "gpt2_multi.flax", "Flax", "jax", "jax.numpy",
                 ("array", "int32"), concurrent_models=True))

#: the registered backend names, in registration order
BACKENDS: tuple[str, ...] = tuple(REGISTRY)


def get(name: str) -> Backend:
    """The registered backend ``name``; a ValueError naming the choices otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(REGISTRY)}") from None


def available() -> list[str]:
    """The names of the backends whose stacks can run here."""
    return [name for name, backend in REGISTRY.items() if backend.available()]


def framework_installed(name: str) -> bool:
    return get(name).installed()


def stack_available(name: str) -> bool:
    """True when the framework is installed and the stack's LM model can be imported."""
    return get(name).available()


def parse_backends(text: str) -> list[str]:
    """A comma-separated list of backend names, each checked against the registry."""
    names = [b.strip() for b in text.split(",") if b.strip()]
    unknown = [b for b in names if b not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown backend(s) {', '.join(unknown)}; choose from {', '.join(REGISTRY)}")
    return names


# --------------------------------------------------------------------------------- shared output code
#: single-array outputs, keyed like the golden fixtures
OUTPUT_KEYS = ("loss", "mc_loss", "logits", "mc_logits", "last_hidden_state", "start_logits", "end_logits")
FLAG_NAMES = ("output_attentions", "output_hidden_states")


def collect_outputs(out: Any, kv: KV | None, to_numpy) -> dict[str, np.ndarray]:
    """A model output as numpy arrays under the fixture keys: :data:`OUTPUT_KEYS`, ``hidden_states.{i}``,
    ``attentions.{i}``, ``cross_attentions.{i}`` and ``past.{layer}.key`` / ``.value`` (B, H, S, D).

    Multiple-choice inputs (B, C, T): frameworks differ in whether per-layer hidden states and attentions
    keep the choice axis (HF's TF model reshapes them to (B, C, ...), HF's PyTorch model keeps
    (B * C, ...) except for the last hidden state). They are returned flattened to (B * C, ...).
    """
    import numpy as np

    result = {}
    for key in OUTPUT_KEYS:
        value = getattr(out, key, None)
        if value is not None:
            result[key] = to_numpy(value)
    for key, core in (("hidden_states", 2), ("attentions", 3), ("cross_attentions", 3)):  # (T, E) or (H, T, S)
        values = getattr(out, key, None)
        if values is not None:
            for i, v in enumerate(values):
                array = to_numpy(v)
                result[f"{key}.{i}"] = array.reshape(-1, *array.shape[-core:])
    for layer, (k, v) in enumerate(kv or []):
        result[f"past.{layer}.key"] = np.asarray(k)
        result[f"past.{layer}.value"] = np.asarray(v)
    return result


#: inputs that every call of a cached sequence gets, not only the last one
REPEATED_INPUTS = ("encoder_hidden_states", "encoder_attention_mask")


def chunk_calls(inputs: dict[str, Any], past_chunks: list) -> list[dict[str, Any]]:
    """The keyword arguments of each cached call before the final one (PyTorch/TensorFlow layout).

    ``inputs["attention_mask"]``, when given, covers every position of the sequence (chunks and final call):
    each call gets its prefix, as HF's PyTorch and TensorFlow models take a mask over past + current tokens.
    """
    mask = inputs.get("attention_mask")
    calls, end = [], 0
    for chunk in past_chunks:
        end += chunk.shape[-1]
        call = {"input_ids": chunk, **{k: inputs[k] for k in REPEATED_INPUTS if k in inputs}}
        if mask is not None:
            call["attention_mask"] = mask[..., :end]
        calls.append(call)
    return calls


def call_flags(flags: dict[str, bool]) -> dict[str, bool]:
    """The output flags of a call, each False unless set."""
    return {k: bool(flags.get(k, False)) for k in FLAG_NAMES}


def call_kwargs(flags: dict[str, bool], past: Any) -> dict:
    """Flags and cache arguments for a call: only what is set (HF's QA head takes no ``use_cache``)."""
    kwargs: dict = call_flags(flags)
    if "use_cache" in flags or past is not None:
        kwargs["use_cache"] = bool(flags.get("use_cache", False)) or past is not None
    if past is not None:
        kwargs["past_key_values"] = past
    return kwargs


# ------------------------------------------------------------------------------------------ driver
@dataclass
class Generated:
    sequences: np.ndarray
    sequences_scores: np.ndarray | None = None


@dataclass
class Step:
    logits: np.ndarray
    kv: KV


class Driver:
    """Load an LM checkpoint in one backend and run cached forward steps and ``generate`` on numpy ids."""

    def __init__(self, backend: str, path: str | Path, dtype: str = "float32"):
        """``dtype``: ``"float32"`` or ``"bfloat16"`` (weights and compute, as ``gpt2-multi conform --dtype``)."""
        if dtype not in ("float32", "bfloat16"):
            raise ValueError(f"Driver dtype must be 'float32' or 'bfloat16', got {dtype!r}")
        self.backend, self.dtype = backend, dtype
        self.ops = get(backend).ops
        self.model = self.ops.load(Path(path), "GPT2LMHeadModel", dtype)
        self.config = self.model.config

    def forward(self, input_ids: np.ndarray, state=None, max_length: int | None = None) -> tuple[Step, object]:
        """Run ``input_ids`` (B, T) after ``state`` (None for the first call); return the step and the new state."""
        import numpy as np

        return self.ops.step(self.model, np.asarray(input_ids, dtype=np.int64), state, max_length)

    def lm_loss(self, input_ids: np.ndarray) -> float:
        """The model's own LM loss on ``input_ids`` (B, T) as labels: the mean next-token cross-entropy."""
        import numpy as np

        ids = np.asarray(input_ids, dtype=np.int64)
        return float(self.ops.forward(self.model, {"input_ids": ids, "labels": ids}, {}, [])["loss"])

    def generate(self, input_ids: np.ndarray, attention_mask: np.ndarray | None = None, **kwargs) -> Generated:
        """The backend's own ``model.generate`` on numpy prompts (B, T); numpy results.

        ``kwargs`` go to ``generate`` unchanged (``max_new_tokens``, ``do_sample``, ``seed``, ``num_beams``,
        ``streamer`` ...). ``sequences`` is (rows, T + new) int64 as the backend returned it (Flax pads every
        row to the full length; PyTorch and TensorFlow stop at the longest row).
        """
        import numpy as np

        ids = np.asarray(input_ids, dtype=np.int64)
        mask = None if attention_mask is None else np.asarray(attention_mask, dtype=np.int64)
        out = self.ops.generate(self.model, ids, mask, return_dict_in_generate=True, **kwargs)
        scores = getattr(out, "sequences_scores", None)
        return Generated(np.asarray(out.sequences).astype(np.int64),
                         None if scores is None else np.asarray(scores, dtype=np.float32))


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    import numpy as np

    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) if np.size(a) else 0.0
