"""``from_pretrained`` / ``save_pretrained`` for the Keras models: a thin adapter over the shared checkpoint layer.

Loading: :func:`gpt2_multi.checkpoint.load_checkpoint` (any format: safetensors,
pytorch_model.bin, tf_model.h5, flax_model.msgpack) -> :func:`match_state_dict` (HF's
semantics and report) -> numpy arrays under HF PyTorch names -> the model is
constructed with every variable *initialised from its array* (see
``PretrainedOr``): no random weights are drawn, and each array is dropped
(and its memory-mapped pages released) as soon as its variable exists, so a load
peaks near one copy of the weights. A load in another dtype (``dtype="bfloat16"``) converts each tensor in
row blocks, dropping the float32 pages as it goes: it peaks near the bfloat16 weights.

The one transform between a PyTorch array and a Keras variable is
:func:`to_variable_value` / :func:`from_variable_value` (``layout.pt_to_tf_array`` and
its inverse: Conv1D bias ``(nf,) <-> (1, nf)``, ``nn.Linear`` weight transposed).
"""

from __future__ import annotations

import contextvars
import logging
import os
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from gpt2_multi.checkpoint import (
    CheckpointError,
    layout,
    load_checkpoint,
    match_state_dict,
    safetensors_io,
    save_checkpoint,
)
from gpt2_multi.checkpoint.pages import row_blocks
from gpt2_multi.config import GPT2Config
from gpt2_multi.generation import GenerationConfig

logger = logging.getLogger(__name__)


# While ``from_pretrained`` builds a model this holds the checkpoint (an object with
# ``take(pt_name, shape, dtype) -> tensor | None``); otherwise None.
PRETRAINED_SOURCE: contextvars.ContextVar[Any] = contextvars.ContextVar("gpt2_multi_tf_pretrained", default=None)


@keras.saving.register_keras_serializable(package="gpt2_multi")
class PretrainedOr(keras.initializers.Initializer):
    """Initialiser of the weight with HF PyTorch name ``pt_name``: the checkpoint's value, else ``fallback``."""

    def __init__(self, pt_name: str, fallback: Any):
        self.pt_name = pt_name
        self.fallback = keras.initializers.get(fallback)

    def __call__(self, shape, dtype=None):
        source = PRETRAINED_SOURCE.get()
        if source is not None:
            value = source.take(self.pt_name, tuple(shape), dtype)
            if value is not None:
                return value
        return self.fallback(shape, dtype=dtype)

    def get_config(self):
        return {"pt_name": self.pt_name, "fallback": keras.initializers.serialize(self.fallback)}


# ------------------------------------------------------------------------------------ the one transform
def to_variable_value(pt_name: str, array: np.ndarray) -> np.ndarray:
    """A PyTorch-layout array -> the value of the Keras variable that holds it (HF TF layout)."""
    return layout.pt_to_tf_array(pt_name, array)


def from_variable_value(pt_name: str, value: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_variable_value`."""
    return layout.tf_to_pt_array(pt_name, value)


def variable_pt_name(variable: Any) -> str:
    """``tfgpt2lm_head_model/transformer/h_._0/attn/c_attn/weight`` -> ``transformer.h.0.attn.c_attn.weight``."""
    path = variable.path
    scoped = path.split("/", 1)
    if len(scoped) != 2:
        raise ValueError(f"variable path {path!r} has no model scope")
    return layout.tf_to_pt_name(scoped[1])


def state_dict(model: keras.Model) -> dict[str, np.ndarray]:
    """The model's weights as numpy arrays under canonical HF PyTorch names (body under ``transformer.``)."""
    out: dict[str, np.ndarray] = {}
    for variable in model.weights:
        name = variable_pt_name(variable)
        if name in out:
            raise RuntimeError(f"two variables map to {name!r}; the variable naming is broken")
        out[name] = from_variable_value(name, np.asarray(keras.ops.convert_to_numpy(variable)))
    return out


# ------------------------------------------------------------------------------------ loading
class _CheckpointSource:
    """Hands each variable initialiser its array once, then forgets the array (see ``PretrainedOr``)."""

    def __init__(self, values: dict[str, np.ndarray]):
        self.values = values
        self.used: list[str] = []

    def take(self, pt_name: str, shape: tuple[int, ...], dtype: Any) -> tf.Tensor | None:
        array = self.values.pop(pt_name, None)
        if array is None:
            return None  # a head the checkpoint lacks (reported by match_state_dict): HF's fresh init
        value = layout.pt_to_tf_array(pt_name, array, contiguous=False)  # to_variable_value, as a view
        if tuple(value.shape) != tuple(shape):
            raise CheckpointError(f"{pt_name!r}: the checkpoint gives shape {tuple(value.shape)} for a variable of shape {tuple(shape)}")
        target = tf.as_dtype(keras.backend.standardize_dtype(dtype or "float32"))
        # Converted (dtype, layout) into a host copy in row blocks, dropping the mapped pages as it goes; TF copies
        # that once more into the tensor, which the variable then takes: at most two copies of one tensor at a time.
        host = _converted(value, np.dtype(target.as_numpy_dtype))
        tensor = tf.constant(host)
        del host
        safetensors_io.release(array)
        self.used.append(pt_name)
        return tensor


def _converted(value: np.ndarray, dtype: np.dtype, block_bytes: int = 16 * 2**20) -> np.ndarray:
    """``value`` as a new C-contiguous array of ``dtype``, filled in row blocks; the mapped pages of each block of a
    contiguous ``value`` are dropped once copied, so the source and the copy are never both resident."""
    out = np.empty(value.shape, dtype)
    if value.ndim == 0 or value.nbytes <= block_bytes:
        out[...] = value
        return out
    for start, stop, block in row_blocks(value, block_bytes, release_pages=True):
        out[start:stop] = block
    return out


def from_pretrained(
    cls: type,
    pretrained_model_name_or_path: str | os.PathLike,
    *,
    config: GPT2Config | str | os.PathLike | None = None,
    format: str | None = None,
    ignore_mismatched_sizes: bool = False,
    output_loading_info: bool = False,
    dtype: Any = None,
    name: str | None = None,
    **config_overrides: Any,
):
    """Build ``cls`` with the weights of a checkpoint (a directory, a weights file, or a hub name in the HF cache).

    Args:
        pretrained_model_name_or_path: what :func:`gpt2_multi.checkpoint.load_checkpoint` accepts.
        config: a :class:`GPT2Config` (or a path to a config.json) to use instead of the checkpoint's.
        format: force a weights format (``safetensors``, ``pt-bin``, ``tf``, ``flax``) when several exist.
        ignore_mismatched_sizes: re-initialise head weights whose shape differs (e.g. another ``num_labels``).
        output_loading_info: also return HF's dict of ``missing_keys``, ``unexpected_keys``, ``mismatched_keys``.
        dtype: a Keras dtype policy for the model (``"float32"``, ``"bfloat16"``, ``"mixed_float16"`` ...).
        **config_overrides: config fields to replace (``num_labels=5``, ``use_cache=False`` ...).
    """
    if config is not None and not isinstance(config, GPT2Config):
        config = GPT2Config.from_pretrained(config)
    ckpt = load_checkpoint(pretrained_model_name_or_path, format=format, config=config)
    model_config = ckpt.config.copy(**config_overrides) if config_overrides else ckpt.config
    tensors, ckpt.tensors = ckpt.tensors, {}
    matched, report = match_state_dict(tensors, model_config, cls.architecture, ignore_mismatched_sizes=ignore_mismatched_sizes)
    del tensors
    values = layout.canonical_names(matched)
    del matched
    source = _CheckpointSource(values)
    kwargs: dict[str, Any] = {}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if name is not None:
        kwargs["name"] = name
    token = PRETRAINED_SOURCE.set(source)
    try:
        model = cls(model_config, **kwargs)
    finally:
        PRETRAINED_SOURCE.reset(token)
    if source.values:  # every matched array must have found its variable
        raise CheckpointError(f"{cls.__name__} has no variable for checkpoint weight(s): {', '.join(sorted(source.values))}")
    if report.missing_keys or report.unexpected_keys or report.mismatched_keys:
        logger.warning("loading %s from %s:\n%s", cls.__name__, ckpt.source, report.summary())
    if hasattr(model, "generate"):  # the LM and DoubleHeads models
        model.generation_config = GenerationConfig.for_model(model_config, ckpt.directory)
    if output_loading_info:
        return model, report.as_dict()
    return model


def save_pretrained(
    model: keras.Model,
    save_directory: str | os.PathLike,
    *,
    format: str = "safetensors",
    max_shard_size: int | str = "5GB",
    saved_model: bool = False,
    version: int = 1,
) -> list[Path]:
    """Write ``config.json``, the weights (``format``: safetensors, pt-bin, tf, flax) and, for the models that
    can generate, ``generation_config.json`` (as HF); return the files written. ``saved_model=True`` also writes
    a TensorFlow SavedModel to ``saved_model/<version>/``, as HF's TF classes do (its ``serving_default``
    signature: int32 ``input_ids`` -> the output tensors), built in a temporary directory and renamed into place."""
    written = save_checkpoint(save_directory, state_dict(model), model.config, format=format,
                              architecture=model.architecture, max_shard_size=max_shard_size,
                              generation_config=getattr(model, "generation_config", None))
    if saved_model:
        import shutil
        import tempfile

        import tensorflow as tf

        target = Path(save_directory) / "saved_model" / str(int(version))
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            tf.saved_model.save(model, str(tmp))
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        written.append(target)
    return written
