"""TensorFlow's entry in the backend registry (:mod:`gpt2_multi.backends`): numpy in, numpy out.

Caches are one tensor (2, B, H, S, D) per layer: ``[0]`` is the key, ``[1]`` the value.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

import gpt2_multi.tf as stack
from gpt2_multi.backends import Step, call_kwargs, chunk_calls, collect_outputs

if TYPE_CHECKING:
    from gpt2_multi.backends import KV


def load(path: Path, architecture: str, dtype: str = "float32") -> keras.Model:
    kwargs = {"dtype": "bfloat16"} if dtype == "bfloat16" else {}
    return getattr(stack, "TF" + architecture).from_pretrained(str(path), **kwargs)


def to_numpy(t: Any) -> np.ndarray:
    array = np.asarray(t)
    return array.astype(np.float32) if np.issubdtype(array.dtype, np.floating) or array.dtype.name == "bfloat16" else array


def cache_to_bhsd(past: Any, length: int | None = None) -> KV:
    return [(to_numpy(layer[0])[:, :, :length], to_numpy(layer[1])[:, :, :length]) for layer in past]


def forward(model: keras.Model, inputs: dict[str, np.ndarray], flags: dict[str, bool],
            past_chunks: list[np.ndarray]) -> dict[str, np.ndarray]:
    past = None
    for call in chunk_calls(inputs, past_chunks):
        past = model(**call, past_key_values=past, use_cache=True, training=False).past_key_values
    out = model(**inputs, **call_kwargs(flags, past), training=False)
    # the cache is an output when the call asked for one (Flax has one only then: its cache is init_cache's)
    cached = flags.get("use_cache", False) or bool(past_chunks)
    kv = cache_to_bhsd(out.past_key_values) if cached and getattr(out, "past_key_values", None) is not None else None
    return collect_outputs(out, kv, to_numpy)


def step(model: keras.Model, input_ids: np.ndarray, state: Any, max_length: int | None = None) -> tuple[Step, Any]:
    out = model(input_ids=input_ids, past_key_values=state, use_cache=True, training=False)
    return Step(to_numpy(out.logits), cache_to_bhsd(out.past_key_values)), out.past_key_values


def generate(model: keras.Model, input_ids: np.ndarray, attention_mask: np.ndarray | None, **kwargs) -> Any:
    return model.generate(input_ids, attention_mask=attention_mask, **kwargs)


# --- training
def _tape(model: keras.Model, inputs: dict[str, np.ndarray], checkpointing: bool) -> tuple[dict[str, float], list, list]:
    """Losses, the trainable variables and the gradient of :func:`gpt2_multi.training.objective` (dense tensors).

    TensorFlow (like HF's TF GPT-2) has no gradient-checkpointing switch: ``checkpointing=True`` takes the
    Keras training path (``training=True``, what ``fit`` calls); otherwise ``training=False``.
    """
    import tensorflow as tf

    from gpt2_multi.training import objective, reported_losses

    variables = list(model.trainable_variables)
    with tf.GradientTape() as tape:
        out = model(**inputs, training=bool(checkpointing))
        mc_loss = getattr(out, "mc_loss", None)
        total = tf.cast(objective(out.loss, mc_loss), tf.float32)
    grads = tape.gradient(total, variables)
    # Embedding gradients come as IndexedSlices (plus a dense part when tied): densify, so that every
    # optimizer update is the dense one PyTorch and optax make.
    grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, variables)]
    return reported_losses(out.loss, mc_loss), variables, grads


def loss_and_grads(model: keras.Model, inputs: dict[str, np.ndarray],
                   checkpointing: bool = False) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Losses and the gradient of their sum (:mod:`gpt2_multi.training`) per HF PyTorch name, in PyTorch's layout."""
    from gpt2_multi.tf.loading import from_variable_value, variable_pt_name

    losses, variables, grads = _tape(model, inputs, checkpointing)
    out: dict[str, np.ndarray] = {}
    for variable, grad in zip(variables, grads):
        name = variable_pt_name(variable)
        if name in out:
            raise RuntimeError(f"two variables map to {name!r}")
        out[name] = from_variable_value(name, to_numpy(grad))
    return losses, out


def adamw_step(model: keras.Model, inputs: dict[str, np.ndarray], hyper: Any) -> dict[str, np.ndarray]:
    """One ``keras.optimizers.AdamW`` step on the loss of ``inputs``: the model's variables are updated in place,
    the new weights returned (HF PyTorch names and layout). Keras' epsilon is corrected to PyTorch's placement
    (:func:`gpt2_multi.training.keras_epsilon`); the variables :func:`~gpt2_multi.training.decays` rejects are
    excluded from weight decay."""
    from gpt2_multi.tf.loading import from_variable_value, variable_pt_name
    from gpt2_multi.training import decays, keras_epsilon

    _, variables, grads = _tape(model, inputs, False)
    optimizer = keras.optimizers.AdamW(learning_rate=hyper.lr, weight_decay=hyper.weight_decay,
                                       beta_1=hyper.betas[0], beta_2=hyper.betas[1],
                                       epsilon=keras_epsilon(hyper, step=1))
    optimizer.exclude_from_weight_decay(var_list=[v for v in variables if not decays(variable_pt_name(v))])
    optimizer.apply_gradients(zip(grads, variables))
    return {variable_pt_name(v): from_variable_value(variable_pt_name(v), to_numpy(keras.ops.convert_to_numpy(v)))
            for v in variables}
