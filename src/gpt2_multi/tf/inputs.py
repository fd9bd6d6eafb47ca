"""HF's TensorFlow input styles, unpacked into named arguments, and the tensor helpers the models use on them.

A TF model's ``call`` takes its inputs as keyword arguments; as a dict as the first argument (its keys
are argument names: what ``model.fit`` and a tokenizer's ``BatchEncoding`` give); or as a list / tuple in
the order of the model's ``call_order``. A nested list of ints is one batch of token ids, not a list of
inputs. Values may be numpy arrays, lists or tensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from gpt2_multi import validation

#: HF's TF argument order (what a list of inputs is read by)
CALL_ORDER: tuple[str, ...] = (
    "input_ids", "past_key_values", "attention_mask", "token_type_ids", "position_ids", "head_mask",
    "inputs_embeds", "use_cache", "output_attentions", "output_hidden_states", "return_dict",
)
#: HF's TFGPT2Model / TFGPT2LMHeadModel also take encoder states (cross-attention), after inputs_embeds
CALL_ORDER_CROSS: tuple[str, ...] = CALL_ORDER[:7] + ("encoder_hidden_states", "encoder_attention_mask") + CALL_ORDER[7:]


def is_token_list(value: Any) -> bool:
    """A nested list of ints is token ids (one batch), not HF's list-of-inputs style."""
    first = value[0] if len(value) else None
    while isinstance(first, (list, tuple)):
        first = first[0] if len(first) else None
    return isinstance(first, (int, np.integer))


def is_input_container(value: Any) -> bool:
    """A dict, or a list / tuple of inputs (not a nested list of token ids)."""
    return isinstance(value, Mapping) or (isinstance(value, (list, tuple)) and not is_token_list(value))


def unpack_inputs(first: Any, kwargs: dict, names: tuple[str, ...], model_name: str) -> dict:
    """Merge HF's TF input styles into one dict of named arguments.

    ``first``: the first positional argument (ids, a dict of inputs or a list in the order ``names``);
    ``kwargs``: the keyword arguments (None values are dropped). An input given twice is an error.
    """
    if isinstance(first, Mapping):  # a dict or a tokenizer's BatchEncoding
        unknown = set(first) - set(names)
        if unknown:
            raise validation.InputError(f"unknown input(s) {', '.join(sorted(unknown))}; {model_name} takes {', '.join(names)}")
        args = dict(first)
    elif isinstance(first, (list, tuple)) and not is_token_list(first):
        if len(first) > len(names):
            raise validation.InputError(f"got {len(first)} positional inputs but {model_name} takes at most {len(names)}: {', '.join(names)}")
        args = dict(zip(names, first))
    else:
        args = {"input_ids": first} if first is not None else {}
    for key, value in kwargs.items():
        if value is None:
            continue
        if key in args and args[key] is not None:
            raise validation.InputError(f"{key} was given twice (in the inputs and as a keyword)")
        args[key] = value
    return args


def call_arguments(frame_locals: dict) -> dict:
    """A ``call``'s named arguments (from ``locals()``), without ``self``, the first input and ``training``."""
    return {k: v for k, v in frame_locals.items() if k not in ("self", "input_ids", "training", "__class__")}


# ------------------------------------------------------------------------------------ tensor helpers
def concrete(x: Any) -> np.ndarray | None:
    """The value of ``x`` as numpy when it is known now (eager), else None (inside tf.function)."""
    if x is None or not tf.executing_eagerly():
        return None
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "numpy"):
        return x.numpy()
    return np.asarray(x)


def static_shape(x: Any) -> tuple[int | None, ...]:
    return tuple(tf.TensorShape(x.shape).as_list())


def shape_list(x: tf.Tensor) -> list:
    """Static dims where known, dynamic scalars elsewhere (HF's ``shape_list``)."""
    static = x.shape.as_list()
    dynamic = tf.shape(x)
    return [dynamic[i] if s is None else s for i, s in enumerate(static)]


def to_tensor(x: Any, dtype: tf.DType | None = None) -> tf.Tensor | None:
    if x is None:
        return None
    if isinstance(x, (tf.Tensor, tf.Variable)) or keras.ops.is_tensor(x):
        return x if dtype is None else tf.cast(x, dtype)
    return tf.convert_to_tensor(np.asarray(x), dtype=dtype)


def flatten_tokens(name: str, value: Any, seq_length: Any, tokens_shape: tuple[int | None, ...]) -> tf.Tensor | None:
    """``(..., T)`` ids -> ``(N, T)``, after the shared shape check against the input's ``tokens_shape`` (static)."""
    if value is None:
        return None
    value = to_tensor(value)
    if value.shape.rank is not None:
        validation.check_token_shape(name, static_shape(value), tokens_shape)
    return tf.reshape(value, [-1, seq_length])


__all__ = [
    "CALL_ORDER", "CALL_ORDER_CROSS", "call_arguments", "concrete", "flatten_tokens", "is_input_container",
    "is_token_list", "shape_list", "static_shape", "to_tensor", "unpack_inputs",
]
