"""GPT-2 for PyTorch: HF transformers' GPT-2 classes, arguments, outputs and state_dict names.

    from gpt2_multi.pt import GPT2LMHeadModel
    model = GPT2LMHeadModel.from_pretrained("path/to/checkpoint")   # any format the checkpoint layer reads
    out = model(input_ids, labels=input_ids)                        # out.loss, out.logits (B, T, V)

Importing this package imports PyTorch and nothing of TensorFlow, Keras, JAX or Flax.
"""

from __future__ import annotations

from gpt2_multi import backends

try:
    import torch  # noqa: F401
except ImportError as err:  # pragma: no cover - exercised in a venv without torch
    raise ImportError(
        f"gpt2_multi.pt needs PyTorch, which is not installed: {backends.get('pt').install_hint()}"
    ) from err

from gpt2_multi.pt.cache import Cache, DynamicCache, StaticCache
from gpt2_multi.pt.generation import GenerateBeamDecoderOnlyOutput, GenerateDecoderOnlyOutput, GenerationMixin
from gpt2_multi.pt.modeling import (
    ACT2FN,
    GPT2MLP,
    MODEL_CLASSES,
    Conv1D,
    GPT2Attention,
    GPT2Block,
    GPT2DoubleHeadsModel,
    GPT2ForQuestionAnswering,
    GPT2ForSequenceClassification,
    GPT2ForTokenClassification,
    GPT2LMHeadModel,
    GPT2Model,
    GPT2PreTrainedModel,
    GPT2SequenceSummary,
)
from gpt2_multi.pt.outputs import (
    BaseModelOutputWithPastAndCrossAttentions,
    CausalLMOutputWithCrossAttentions,
    GPT2DoubleHeadsModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutputWithPast,
    TokenClassifierOutput,
)

__all__ = [
    "Cache",
    "DynamicCache",
    "StaticCache",
    "ACT2FN",
    "GenerateBeamDecoderOnlyOutput",
    "GenerateDecoderOnlyOutput",
    "GenerationMixin",
    "MODEL_CLASSES",
    "BaseModelOutputWithPastAndCrossAttentions",
    "CausalLMOutputWithCrossAttentions",
    "Conv1D",
    "GPT2Attention",
    "GPT2Block",
    "GPT2DoubleHeadsModel",
    "GPT2DoubleHeadsModelOutput",
    "GPT2ForQuestionAnswering",
    "GPT2ForSequenceClassification",
    "GPT2ForTokenClassification",
    "GPT2LMHeadModel",
    "GPT2MLP",
    "GPT2Model",
    "GPT2PreTrainedModel",
    "GPT2SequenceSummary",
    "QuestionAnsweringModelOutput",
    "SequenceClassifierOutputWithPast",
    "TokenClassifierOutput",
]
