"""Model outputs shared by the three stacks: HF's ``ModelOutput`` contract without a framework.

An output is a dataclass that also behaves like an ordered dict of its non-``None``
fields: ``out.logits``, ``out["logits"]`` and ``out[0]`` all work, and
``out.to_tuple()`` gives HF's tuple order (what ``return_dict=False`` returns).
Each stack's ``outputs.py`` exposes these under HF's framework-specific names
(``CausalLMOutputWithCrossAttentions``, ``TFCausalLMOutputWithPast``, ``FlaxCausalLMOutput``...).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import Any


class ModelOutput(OrderedDict):
    """Base of every output: attribute, key and integer access over the fields that are not ``None``."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                super().__setitem__(f.name, value)

    def __getitem__(self, key: str | int | slice) -> Any:
        if isinstance(key, str):
            return super().__getitem__(key)
        return self.to_tuple()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        object.__setattr__(self, key, value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.keys() and value is not None:
            super().__setitem__(name, value)
        object.__setattr__(self, name, value)

    def __reduce__(self):
        return (self.__class__, tuple(getattr(self, f.name) for f in fields(self)))

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(self[k] for k in self.keys())

    def replace(self, **changes: Any) -> ModelOutput:
        """A copy with ``changes`` applied (as HF's Flax outputs, ``flax.struct`` dataclasses, offer).

        Unknown field names raise TypeError. The copy's dict view follows its fields: a field set to
        ``None`` leaves it.
        """
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field(s) {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)


@dataclass(repr=False, eq=False)
class BaseModelOutputWithPastAndCrossAttentions(ModelOutput):
    last_hidden_state: Any = None
    past_key_values: Any = None
    hidden_states: Any = None
    attentions: Any = None
    cross_attentions: Any = None


@dataclass(repr=False, eq=False)
class CausalLMOutputWithCrossAttentions(ModelOutput):
    loss: Any = None
    logits: Any = None
    past_key_values: Any = None
    hidden_states: Any = None
    attentions: Any = None
    cross_attentions: Any = None


@dataclass(repr=False, eq=False)
class GPT2DoubleHeadsModelOutput(ModelOutput):
    loss: Any = None
    mc_loss: Any = None
    logits: Any = None
    mc_logits: Any = None
    past_key_values: Any = None
    hidden_states: Any = None
    attentions: Any = None


@dataclass(repr=False, eq=False)
class SequenceClassifierOutputWithPast(ModelOutput):
    loss: Any = None
    logits: Any = None
    past_key_values: Any = None
    hidden_states: Any = None
    attentions: Any = None


@dataclass(repr=False, eq=False)
class TokenClassifierOutput(ModelOutput):
    loss: Any = None
    logits: Any = None
    hidden_states: Any = None
    attentions: Any = None


@dataclass(repr=False, eq=False)
class QuestionAnsweringModelOutput(ModelOutput):
    loss: Any = None
    start_logits: Any = None
    end_logits: Any = None
    hidden_states: Any = None
    attentions: Any = None
