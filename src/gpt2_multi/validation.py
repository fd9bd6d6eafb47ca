"""Input checks shared by the three stacks, on concrete (numpy-convertible) values.

Every backend calls these before running the model so that bad input raises the
same clear message everywhere, instead of a framework's gather error (PyTorch's
'index out of range in self') or a silent clamp (JAX). Inside a traced or jitted
function, where values are not concrete, a backend skips what it cannot check.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

import numpy as np

logger = logging.getLogger("gpt2_multi")


class InputError(ValueError):
    """An argument to a model call is invalid; the message names it and what was expected.

    Where HF's PyTorch model raises another built-in exception for the same bad input, a check raises a subclass
    that is also that exception, so an ``except`` written for HF keeps catching ours (checked against HF 4.57 by
    tests/contract/test_errors.py). Plain ``InputError`` (a ValueError) is left where HF raises ValueError, and
    where HF takes the input (an ``attention_mask`` of the wrong length, a cache with too few layers: README,
    "Differences from HF, on purpose").
    """


class InputIndexError(InputError, IndexError):
    """A value that indexes a table lies outside it: a token id, a token type, a position (or a sequence longer than
    the position table), a label's class. HF's embedding lookup and loss raise IndexError there."""


class InputShapeError(InputError, RuntimeError):
    """An argument's shape does not fit the input or the model (``position_ids``, ``inputs_embeds``, ``head_mask``,
    a cache of another batch). HF's tensor ops raise RuntimeError there."""


class InputDtypeError(InputError, RuntimeError):
    """Ids of a floating-point (or bool) dtype; HF's embedding lookup raises RuntimeError there."""


class SequenceIndexError(InputIndexError, RuntimeError):
    """An index into the input's own tokens lies outside them (``mc_token_ids``); HF's ``gather`` raises
    RuntimeError there, and the index is out of range all the same, so this is both."""


def _shape(shape: Sequence[int | None]) -> tuple[int | None, ...]:
    return tuple(None if d is None else int(d) for d in shape)


def _fits(shape: Sequence[int | None], expected: Sequence[int | None]) -> bool:
    """Equal shapes, where an unknown dim (None: a traced, dynamic size) on either side matches anything."""
    return len(shape) == len(expected) and all(a is None or b is None or a == b for a, b in zip(shape, expected))


def check_integer_ids(name: str, is_integer: bool, dtype: object) -> None:
    """Token ids (and token types, positions) must be integers; a float tensor of ids is a common slip."""
    if not is_integer:
        raise InputDtypeError(f"{name} must hold integer token ids, got dtype {dtype}")


def check_input_ids(input_ids: np.ndarray, vocab_size: int, name: str = "input_ids") -> None:
    """Every id must lie in ``[0, vocab_size)``; the message names the first offending id and its position."""
    ids = np.asarray(input_ids)
    if ids.size == 0:
        return
    check_integer_ids(name, np.issubdtype(ids.dtype, np.integer), ids.dtype)
    bad = (ids < 0) | (ids >= vocab_size)
    if bad.any():
        position = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputIndexError(
            f"{name} holds id {int(ids[position])} at position {position}, outside the vocabulary [0, {vocab_size}) "
            f"(vocab_size={vocab_size}); check that the tokenizer and the model match"
        )


def check_sequence_length(past_length: int, seq_length: int, n_positions: int) -> None:
    """Cached plus new tokens must fit the position table."""
    total = past_length + seq_length
    if total > n_positions:
        detail = f"{past_length} cached + {seq_length} new" if past_length else f"{seq_length}"
        raise InputIndexError(
            f"sequence of {total} tokens ({detail}) is longer than the model's n_positions={n_positions}; "
            f"truncate the input (e.g. tokenizer(..., truncation=True, max_length={n_positions}))"
        )


def check_position_ids(position_ids: np.ndarray, n_positions: int) -> None:
    pos = np.asarray(position_ids)
    if pos.size and (pos.min() < 0 or pos.max() >= n_positions):
        raise InputIndexError(f"position_ids must lie in [0, {n_positions}) (n_positions), got values from {int(pos.min())} to {int(pos.max())}")


def check_attention_mask(mask_shape: Sequence[int], batch_size: int, past_length: int, seq_length: int) -> None:
    """The mask is ``(batch, past_length + seq_length)``: it covers the cached tokens and the new ones."""
    expected = (batch_size, past_length + seq_length)
    if tuple(mask_shape) != expected:
        covers = f"{past_length} cached + {seq_length} new tokens" if past_length else f"{seq_length} tokens"
        raise InputError(
            f"attention_mask has shape {tuple(mask_shape)} but must be {expected}: batch {batch_size}, covering {covers}"
        )


def check_same_shape(name: str, shape: Sequence[int], expected: Sequence[int], what: str) -> None:
    if not _fits(_shape(shape), _shape(expected)):
        raise InputError(f"{name} has shape {_shape(shape)} but must be {_shape(expected)} ({what})")


def check_token_shape(name: str, shape: Sequence[int | None], input_shape: Sequence[int | None]) -> None:
    """``token_type_ids`` / ``position_ids`` end in the input's sequence length ``T``, and their leading dims hold one
    row per input row or a single row broadcast over the batch (``(T,)``, ``(1, T)``; HF reshapes them to ``(-1, T)``
    the same way)."""
    shape, input_shape = _shape(shape), _shape(input_shape)
    t = input_shape[-1]

    def rows(dims: tuple[int | None, ...]) -> int | None:
        return None if any(d is None for d in dims) else int(np.prod(dims, dtype=np.int64))

    n, want = rows(shape[:-1]), rows(input_shape[:-1])
    ok = len(shape) >= 1 and (shape[-1] is None or t is None or shape[-1] == t) and (n is None or want is None or n in (1, want))
    if not ok:
        raise InputShapeError(f"{name} has shape {shape} but must be {input_shape} or (1, {t}) (the input's tokens)")


def check_embeds_shape(shape: Sequence[int | None], n_embd: int) -> None:
    """``inputs_embeds`` is ``(batch, sequence, n_embd)`` (or ``(batch, choices, sequence, n_embd)``; HF's PyTorch
    model also takes one sequence ``(T, n_embd)``)."""
    shape = _shape(shape)
    if len(shape) < 2 or shape[-1] not in (None, n_embd):
        raise InputShapeError(f"inputs_embeds has shape {shape} but must be (batch, sequence, {n_embd}) (n_embd)")


def check_input_rank(shape: Sequence[int | None]) -> None:
    """``input_ids`` is ``(batch, sequence)`` (or ``(batch, choices, sequence)``); HF's PyTorch model also takes one
    sequence ``(T,)``, so only a scalar is refused."""
    if len(shape) < 1:
        raise InputError(f"input_ids has shape {_shape(shape)} but must be (batch, sequence)")


def check_labels_shape(shape: Sequence[int | None], input_shape: Sequence[int | None]) -> None:
    """The LM heads' labels (``labels`` of LM and DoubleHeads, shifted inside) are shaped like ``input_ids``; token
    classification takes any shape of B * T labels (HF's ``view(-1)``) and does not call this."""
    check_same_shape("labels", shape, input_shape, "one label per input token")


def check_logits_to_keep(logits_to_keep: object, seq_length: int | None, has_labels: bool = False) -> None:
    """The LM head's ``logits_to_keep`` (HF 4.57's argument) for an input of ``seq_length`` tokens (None: unknown).

    An int ``k >= 0`` keeps the last ``k`` positions (0, or ``k >= T``, keeps all of them, as HF's slice does); a 1-D
    integer array keeps those positions, in its order (negative ones count from the end). The array is numpy, whose
    values are checked, or a traced array, of which only the shape and dtype are. HF's loss pairs the kept logits
    with the ``T`` shifted labels one to one, so with ``labels`` it must keep ``T`` positions (HF: a ValueError).
    """
    if isinstance(logits_to_keep, (int, np.integer)) and not isinstance(logits_to_keep, (bool, np.bool_)):
        if logits_to_keep < 0:
            raise InputError(f"logits_to_keep={int(logits_to_keep)} is negative; pass the number of last positions to "
                             "keep (0 keeps all) or a 1-D array of positions")
        kept = None if seq_length is None else min(int(logits_to_keep) or seq_length, seq_length)
    else:
        shape, dtype = getattr(logits_to_keep, "shape", None), getattr(logits_to_keep, "dtype", None)
        if shape is None or dtype is None:
            raise InputError(f"logits_to_keep must be an int or a 1-D integer array of positions, got "
                             f"{type(logits_to_keep).__name__}")
        if len(shape) != 1:
            raise InputError(f"logits_to_keep has shape {_shape(shape)} but must be (K,): a 1-D array of positions")
        dtype = np.dtype(getattr(dtype, "as_numpy_dtype", dtype))  # TensorFlow's DType names its numpy dtype
        if dtype == np.bool_:  # HF's indexing takes a mask; here positions only, as a traced program needs K
            raise InputError("logits_to_keep is a boolean mask; pass the positions instead (np.flatnonzero(mask))")
        if not np.issubdtype(dtype, np.integer):  # HF's indexing raises IndexError for a float tensor
            raise InputIndexError(f"logits_to_keep has dtype {dtype} but must hold integer positions")
        kept = _shape(shape)[0]
        if isinstance(logits_to_keep, np.ndarray) and seq_length is not None and logits_to_keep.size:
            bad = (logits_to_keep < -seq_length) | (logits_to_keep >= seq_length)
            if bad.any():
                i = int(np.argmax(bad))
                raise InputIndexError(f"logits_to_keep holds position {int(logits_to_keep[i])} at index {i}, outside "
                                      f"the input's {seq_length} positions [-{seq_length}, {seq_length})")
    if has_labels and kept is not None and seq_length is not None and kept != seq_length:
        raise InputError(f"labels need the logits of all {seq_length} positions, but logits_to_keep keeps {kept}: "
                         "pass logits_to_keep=0 (the default) to compute the loss")


def check_cache_layers(count: int, n_layer: int) -> None:
    if count != n_layer:
        raise InputError(f"past_key_values has {count} layers but the model has n_layer={n_layer}")


def check_cache_shape(layer: int, part: str, shape: Sequence[int | None], expected: Sequence[int | None],
                      layout: str) -> None:
    """One layer's cached ``key`` or ``value``: ``expected`` in the stack's native ``layout`` (named in the message)."""
    if not _fits(_shape(shape), _shape(expected)):
        raise InputShapeError(f"past_key_values[{layer}] {part} has shape {_shape(shape)} but must be {_shape(expected)} "
                         f"{layout}; pass the past_key_values of a call on this batch")


def check_cache_room(max_length: int, n_positions: int) -> None:
    """A fixed-size cache (Flax's ``init_cache``) cannot be longer than the position table."""
    if max_length > n_positions:
        raise InputIndexError(f"init_cache(max_length={max_length}) is longer than the model's n_positions={n_positions}")


def check_static_cache_mask(mask_shape: Sequence[int], expected: Sequence[int]) -> None:
    """With a fixed-size cache (Flax's), the mask covers all of its ``max_length`` positions on every call."""
    if not _fits(_shape(mask_shape), _shape(expected)):
        raise InputError(f"attention_mask has shape {_shape(mask_shape)} but must be {_shape(expected)}: with a cache "
                         f"it covers all max_length={expected[-1]} positions (1 for filled and new tokens, 0 after)")


#: HF's own words (its PyTorch and TF sequence classifiers raise this ValueError)
NO_PAD_TOKEN = "Cannot handle batch sizes > 1 if no padding token is defined."


def check_pad_token_for_batch(batch: int | None, pad_token_id: int | None) -> None:
    """Sequence classification reads each row's last non-pad token, so a batch needs ``config.pad_token_id``."""
    if pad_token_id is None and batch is not None and batch != 1:
        raise InputError(f"{NO_PAD_TOKEN} Set config.pad_token_id, or classify one sequence at a time (batch {batch}).")


def check_head_mask(shape: Sequence[int], n_layer: int, n_head: int) -> None:
    """HF accepts ``(n_head,)`` (same for every layer) or ``(n_layer, n_head)``."""
    if tuple(shape) not in ((n_head,), (n_layer, n_head)):
        raise InputShapeError(f"head_mask has shape {tuple(shape)} but must be ({n_head},) or ({n_layer}, {n_head}) (n_layer, n_head)")


def check_exactly_one(input_ids: object, inputs_embeds: object) -> None:
    if input_ids is not None and inputs_embeds is not None:
        raise InputError("pass either input_ids or inputs_embeds, not both")
    if input_ids is None and inputs_embeds is None:
        raise InputError("pass input_ids or inputs_embeds")


def check_labels(labels: np.ndarray, num_classes: int, name: str = "labels", ignore_index: int | None = -100) -> None:
    lab = np.asarray(labels)
    if lab.size == 0 or not np.issubdtype(lab.dtype, np.integer):
        return
    valid = lab != ignore_index if ignore_index is not None else np.ones(lab.shape, bool)
    bad = valid & ((lab < 0) | (lab >= num_classes))
    if bad.any():
        position = tuple(int(i) for i in np.argwhere(bad)[0])
        allowed = f"[0, {num_classes})" + (f" or {ignore_index} (ignored)" if ignore_index is not None else "")
        error = SequenceIndexError if name == "mc_token_ids" else InputIndexError  # HF: gather vs. the loss
        raise error(f"{name} holds {int(lab[position])} at position {position}; expected values in {allowed}")


NO_CROSS_ATTENTION = ("encoder_hidden_states needs cross-attention layers, but this model was built without them: "
                      "build it with add_cross_attention=True (config.add_cross_attention)")


def check_cross_attention(encoder_hidden_states: object, add_cross_attention: bool) -> None:
    """Encoder states need a model built with cross-attention layers (every stack raises this one message)."""
    if encoder_hidden_states is not None and not add_cross_attention:
        raise InputError(NO_CROSS_ATTENTION)


@functools.cache
def _warn_summary_pooling_once(summary_type: str) -> None:
    logger.warning(
        "GPT2DoubleHeadsModel with summary_type=%r pools as HF transformers does: over dim 1 of the (batch, choices, "
        "seq, n_embd) hidden states, which is the choices axis, not the tokens; so mc_logits is (batch, seq) "
        "(before any projection's extra dim), not (batch, choices). summary_type='cls_index' (the default, with "
        "mc_token_ids) is the usual setting for multiple choice.", summary_type)


def warn_summary_pooling(config: object) -> None:
    """Log once per process and summary_type that HF's last/first/mean summary pools the choices axis (its quirk).

    Called by the three stacks' DoubleHeads constructors; ``cls_index`` (and anything else) logs nothing.
    """
    summary_type = getattr(config, "summary_type", None)
    if summary_type in ("last", "first", "mean"):
        _warn_summary_pooling_once(summary_type)


def check_unpruned(config: object, framework: str) -> None:
    """TensorFlow and Flax build every layer with ``n_head`` heads: a config with ``pruned_heads`` (written by
    PyTorch's ``prune_heads``) is refused with this one message, as HF's TF and Flax classes cannot prune either."""
    pruned = getattr(config, "pruned_heads", None)
    if pruned:
        raise NotImplementedError(
            f"this config has pruned attention heads ({pruned}); {framework} models keep every head, as in HF, "
            "so a pruned model runs in PyTorch only (gpt2_multi.pt)"
        )
