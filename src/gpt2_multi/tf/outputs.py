"""Outputs of the TensorFlow models, under HF's ``TF*`` names.

Each class is the shared framework-free output (:mod:`gpt2_multi.outputs`) with
HF's TensorFlow name, so ``out.logits``, ``out["logits"]``, ``out[0]`` and
``out.to_tuple()`` work as in HF. Fields hold ``tf.Tensor``; ``past_key_values``
is a tuple over layers of one ``(2, batch, n_head, seq, head_dim)`` tensor each.

One addition over the shared base: the constructor also accepts a single iterable
of ``(key, value)`` pairs. ``tf.nest`` rebuilds a mapping that way
(``type(out)((k, v) for k in out)``), which happens whenever an output leaves a
``tf.function`` (for example ``tf.function(model.call, jit_compile=True)``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import fields
from typing import Any

from gpt2_multi import outputs as _shared

__all__ = [
    "TFBaseModelOutputWithPastAndCrossAttentions",
    "TFCausalLMOutputWithCrossAttentions",
    "TFCausalLMOutputWithPast",
    "TFGPT2DoubleHeadsModelOutput",
    "TFQuestionAnsweringModelOutput",
    "TFSequenceClassifierOutputWithPast",
    "TFTokenClassifierOutput",
]


class _TFOutput:
    """Mixin: accept ``cls(pairs)`` as well as ``cls(field=..., ...)`` (what ``tf.nest`` needs)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) == 1 and not kwargs and isinstance(args[0], (Mapping, Iterator)):
            pairs = dict(args[0].items() if isinstance(args[0], Mapping) else args[0])
            names = {f.name for f in fields(self)}
            unknown = set(pairs) - names
            if unknown:
                raise TypeError(f"{type(self).__name__} has no field(s) {', '.join(sorted(unknown))}")
            args, kwargs = (), pairs
        super().__init__(*args, **kwargs)

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={_short(v)}" for k, v in self.items())
        return f"{type(self).__name__}({items})"


def _short(value: Any) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"<{getattr(getattr(value, 'dtype', None), 'name', '?')} {tuple(shape)}>"
    if isinstance(value, tuple):
        return f"({len(value)} items)"
    return repr(value)


class TFBaseModelOutputWithPastAndCrossAttentions(_TFOutput, _shared.BaseModelOutputWithPastAndCrossAttentions):
    """``TFGPT2Model``: ``last_hidden_state`` (B, T, E), ``past_key_values``, ``hidden_states``, ``attentions``."""


class TFCausalLMOutputWithCrossAttentions(_TFOutput, _shared.CausalLMOutputWithCrossAttentions):
    """``TFGPT2LMHeadModel``: ``loss`` (scalar, mean over labelled tokens), ``logits`` (B, T, V), ..."""


TFCausalLMOutputWithPast = TFCausalLMOutputWithCrossAttentions


class TFGPT2DoubleHeadsModelOutput(_TFOutput, _shared.GPT2DoubleHeadsModelOutput):
    """``TFGPT2DoubleHeadsModel``: ``loss``, ``mc_loss``, ``logits`` (B, C, T, V), ``mc_logits`` (B, C), ..."""


class TFSequenceClassifierOutputWithPast(_TFOutput, _shared.SequenceClassifierOutputWithPast):
    """``TFGPT2ForSequenceClassification``: ``loss``, ``logits`` (B, num_labels), ``past_key_values``, ..."""


class TFTokenClassifierOutput(_TFOutput, _shared.TokenClassifierOutput):
    """``TFGPT2ForTokenClassification``: ``loss``, ``logits`` (B, T, num_labels), ..."""


class TFQuestionAnsweringModelOutput(_TFOutput, _shared.QuestionAnsweringModelOutput):
    """``TFGPT2ForQuestionAnswering``: ``loss``, ``start_logits`` (B, T), ``end_logits`` (B, T), ..."""
