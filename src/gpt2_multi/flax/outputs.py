"""Model outputs of the Flax stack, under HF's Flax names, registered as JAX pytrees.

The classes subclass the framework-free dataclasses of :mod:`gpt2_multi.outputs`, so
``out.logits``, ``out["logits"]``, ``out[0]`` and ``out.to_tuple()`` behave as in HF.
Each class is a pytree (its fields are the children, ``None`` fields stay ``None``),
so an output can leave a ``jax.jit``-ed function or pass through ``jax.tree.map``.

HF's Flax stack has only the base and LM outputs; the heads HF has no Flax class for
get a ``Flax`` name following the same pattern.
"""

from __future__ import annotations

from dataclasses import fields

import jax

from gpt2_multi import outputs as _shared


def _register(cls: type) -> type:
    names = tuple(f.name for f in fields(cls))

    def flatten(out):
        return tuple(getattr(out, n) for n in names), None

    def unflatten(_aux, children):
        return cls(*children)

    jax.tree_util.register_pytree_node(cls, flatten, unflatten)
    return cls


@_register
class FlaxBaseModelOutputWithPastAndCrossAttentions(_shared.BaseModelOutputWithPastAndCrossAttentions):
    """``last_hidden_state`` (B, T, E); ``past_key_values`` the updated ``cache`` collection when a cache was passed;
    ``hidden_states`` n_layer + 1 arrays (B, T, E), the last after ``ln_f``; ``attentions`` n_layer arrays (B, H, T, S)."""


@_register
class FlaxCausalLMOutputWithCrossAttentions(_shared.CausalLMOutputWithCrossAttentions):
    """``loss`` () when labels are given; ``logits`` (B, T, vocab_size); the rest as the base output."""


@_register
class FlaxGPT2DoubleHeadsModelOutput(_shared.GPT2DoubleHeadsModelOutput):
    """``loss`` (LM, with labels), ``mc_loss`` (with mc_labels), ``logits`` (B, C, T, V), ``mc_logits`` (B, C)."""


@_register
class FlaxSequenceClassifierOutputWithPast(_shared.SequenceClassifierOutputWithPast):
    """``loss`` () with labels; ``logits`` (B, num_labels), pooled at the last non-pad token."""


@_register
class FlaxTokenClassifierOutput(_shared.TokenClassifierOutput):
    """``loss`` () with labels; ``logits`` (B, T, num_labels)."""


@_register
class FlaxQuestionAnsweringModelOutput(_shared.QuestionAnsweringModelOutput):
    """``loss`` () with start_positions and end_positions; ``start_logits`` / ``end_logits`` (B, T)."""


# HF's shorter names for the same classes.
FlaxBaseModelOutputWithPast = FlaxBaseModelOutputWithPastAndCrossAttentions
FlaxCausalLMOutput = FlaxCausalLMOutputWithCrossAttentions
FlaxSequenceClassifierOutput = FlaxSequenceClassifierOutputWithPast

__all__ = [
    "FlaxBaseModelOutputWithPast",
    "FlaxBaseModelOutputWithPastAndCrossAttentions",
    "FlaxCausalLMOutput",
    "FlaxCausalLMOutputWithCrossAttentions",
    "FlaxGPT2DoubleHeadsModelOutput",
    "FlaxQuestionAnsweringModelOutput",
    "FlaxSequenceClassifierOutput",
    "FlaxSequenceClassifierOutputWithPast",
    "FlaxTokenClassifierOutput",
]
