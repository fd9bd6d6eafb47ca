"""Model outputs of the PyTorch stack, under HF's PyTorch names, registered as torch pytrees.

The classes subclass the framework-free dataclasses of :mod:`gpt2_multi.outputs`, so
``out.logits``, ``out["logits"]``, ``out[0]`` and ``out.to_tuple()`` behave as in HF
(``None`` fields are skipped by key and index access; ``to_tuple()`` is what
``return_dict=False`` returns). Each class is registered with ``torch.utils._pytree``
(its non-``None`` fields are the children) so that an output can leave a
``torch.compile``-d or exported function, and DDP finds the tensors in it.

Shapes (B batch, T new tokens, S = past + T keys, E = n_embd, H heads, D head_dim):

* ``past_key_values``: a tuple over layers of ``(key, value)``, each (B, H, S, D).
* ``hidden_states``: n_layer + 1 tensors (B, T, E); the first is the embedding output,
  the last is after the final layer norm ``ln_f``.
* ``attentions``: n_layer tensors (B, H, T, S), the softmax probabilities after dropout and head mask.
* ``cross_attentions``: n_layer tensors (B, H, T, S_encoder) when the config has cross-attention.
"""

from __future__ import annotations

from dataclasses import fields

import torch.utils._pytree as _pytree

from gpt2_multi import outputs as _shared


def _register(cls: type) -> type:
    """Register ``cls`` as a pytree node: children are the values of the fields that are set."""

    def flatten(out):
        keys = [f.name for f in fields(out) if getattr(out, f.name) is not None]
        return [getattr(out, k) for k in keys], tuple(keys)

    def unflatten(children, keys):
        return cls(**dict(zip(keys, children)))

    def flatten_with_keys(out):
        children, keys = flatten(out)
        return [(_pytree.MappingKey(k), v) for k, v in zip(keys, children)], keys

    _pytree.register_pytree_node(
        cls,
        flatten,
        unflatten,
        serialized_type_name=f"{cls.__module__}.{cls.__qualname__}",
        flatten_with_keys_fn=flatten_with_keys,
    )
    return cls


@_register
class BaseModelOutputWithPastAndCrossAttentions(_shared.BaseModelOutputWithPastAndCrossAttentions):
    """``GPT2Model``'s output.

    ``last_hidden_state`` (B, T, E), after ``ln_f``; ``past_key_values`` when ``use_cache``;
    ``hidden_states`` / ``attentions`` / ``cross_attentions`` when asked for.
    """


@_register
class CausalLMOutputWithCrossAttentions(_shared.CausalLMOutputWithCrossAttentions):
    """``GPT2LMHeadModel``'s output: ``loss`` () with labels (mean over non-ignored tokens), ``logits`` (B, T, V)."""


@_register
class GPT2DoubleHeadsModelOutput(_shared.GPT2DoubleHeadsModelOutput):
    """``GPT2DoubleHeadsModel``'s output for (B, C, T) inputs.

    ``loss`` (LM loss, with labels), ``mc_loss`` (with mc_labels), ``logits`` (B, C, T, V), ``mc_logits`` (B, C).
    ``past_key_values`` and ``hidden_states`` / ``attentions`` are over the flattened batch B * C
    (HF's layout; the last hidden state is reshaped to (B, C, T, E)).
    """


@_register
class SequenceClassifierOutputWithPast(_shared.SequenceClassifierOutputWithPast):
    """``GPT2ForSequenceClassification``'s output: ``loss`` () with labels, ``logits`` (B, num_labels)."""


@_register
class TokenClassifierOutput(_shared.TokenClassifierOutput):
    """``GPT2ForTokenClassification``'s output: ``loss`` () with labels, ``logits`` (B, T, num_labels)."""


@_register
class QuestionAnsweringModelOutput(_shared.QuestionAnsweringModelOutput):
    """``GPT2ForQuestionAnswering``'s output: ``loss`` () with both positions, ``start_logits`` / ``end_logits`` (B, T)."""


__all__ = [
    "BaseModelOutputWithPastAndCrossAttentions",
    "CausalLMOutputWithCrossAttentions",
    "GPT2DoubleHeadsModelOutput",
    "QuestionAnsweringModelOutput",
    "SequenceClassifierOutputWithPast",
    "TokenClassifierOutput",
]
