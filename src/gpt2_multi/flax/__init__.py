"""GPT-2 for JAX/Flax: Linen modules, HF-style model classes, loading, sharding and an optax train step.

Importing this package imports JAX and Flax only (never PyTorch or TensorFlow). Quick start::

    import numpy as np
    import jax.numpy as jnp
    from gpt2_multi.flax import FlaxGPT2LMHeadModel

    model = FlaxGPT2LMHeadModel.from_pretrained("path/to/checkpoint")  # any format, never random-initialised
    ids = np.array([[464, 2068, 7586]])                                  # (B, T)
    logits = model(ids).logits                                         # (B, T, vocab_size)

    # incremental decoding, as HF's Flax models do it: a static cache, explicit positions,
    # and an attention mask as long as the cache
    B, T, max_length = 1, 3, 16
    cache = model.init_cache(B, max_length)
    mask = np.zeros((B, max_length), np.int32)
    mask[:, :T] = 1
    out = model(ids, attention_mask=mask, position_ids=np.arange(T)[None], past_key_values=cache)
    next_id = out.logits[:, -1].argmax(-1)[:, None]
    mask[:, T] = 1
    out = model(next_id, attention_mask=mask, position_ids=np.array([[T]]), past_key_values=out.past_key_values)

    # mixed precision: bfloat16 compute on float32 weights, or bfloat16 storage too
    fast = FlaxGPT2LMHeadModel.from_pretrained("path/to/checkpoint", dtype=jnp.bfloat16)
    small_params = model.to_bf16()

    model.save_pretrained("out/")  # config.json + model.safetensors (HF PyTorch names)

Training: :mod:`gpt2_multi.flax.training` (``create_train_state`` / ``train_step``). Several devices:
:mod:`gpt2_multi.flax.sharding` (``make_mesh``, ``shard_params``, ``shard_batch``). The cache in
HF PyTorch's (B, H, S, D) layout: :func:`cache_to_bhsd`.
"""

from __future__ import annotations

from gpt2_multi import backends

try:
    import flax  # noqa: F401
    import jax  # noqa: F401
except ImportError as err:  # pragma: no cover - exercised in a venv without JAX
    raise ImportError(
        f"gpt2_multi.flax needs JAX and Flax ({err}); install them with: {backends.get('flax').install_hint()}"
    ) from err

from gpt2_multi.flax.generation import (
    FlaxBeamSearchOutput,
    FlaxGenerationMixin,
    FlaxGreedySearchOutput,
    FlaxSampleOutput,
)
from gpt2_multi.flax.loading import cache_to_bhsd
from gpt2_multi.flax.modeling import (
    ACT2FN,
    MODEL_CLASSES,
    FlaxGPT2Attention,
    FlaxGPT2Block,
    FlaxGPT2DoubleHeadsModel,
    FlaxGPT2DoubleHeadsModule,
    FlaxGPT2ForQuestionAnswering,
    FlaxGPT2ForQuestionAnsweringModule,
    FlaxGPT2ForSequenceClassification,
    FlaxGPT2ForSequenceClassificationModule,
    FlaxGPT2ForTokenClassification,
    FlaxGPT2ForTokenClassificationModule,
    FlaxGPT2LMHeadModel,
    FlaxGPT2LMHeadModule,
    FlaxGPT2MLP,
    FlaxGPT2Model,
    FlaxGPT2Module,
    FlaxGPT2PreTrainedModel,
)
from gpt2_multi.flax.outputs import (
    FlaxBaseModelOutputWithPastAndCrossAttentions,
    FlaxCausalLMOutputWithCrossAttentions,
    FlaxGPT2DoubleHeadsModelOutput,
    FlaxQuestionAnsweringModelOutput,
    FlaxSequenceClassifierOutputWithPast,
    FlaxTokenClassifierOutput,
)
from gpt2_multi.flax.sharding import (
    DATA_PARALLEL_RULES,
    TENSOR_PARALLEL_RULES,
    make_mesh,
    shard_batch,
    shard_params,
)

__all__ = [
    "ACT2FN", "FlaxBeamSearchOutput", "FlaxGenerationMixin", "FlaxGreedySearchOutput", "FlaxSampleOutput", "DATA_PARALLEL_RULES", "MODEL_CLASSES", "TENSOR_PARALLEL_RULES",
    "FlaxBaseModelOutputWithPastAndCrossAttentions", "FlaxCausalLMOutputWithCrossAttentions",
    "FlaxGPT2Attention", "FlaxGPT2Block", "FlaxGPT2DoubleHeadsModel", "FlaxGPT2DoubleHeadsModelOutput",
    "FlaxGPT2DoubleHeadsModule", "FlaxGPT2ForQuestionAnswering", "FlaxGPT2ForQuestionAnsweringModule",
    "FlaxGPT2ForSequenceClassification", "FlaxGPT2ForSequenceClassificationModule", "FlaxGPT2ForTokenClassification",
    "FlaxGPT2ForTokenClassificationModule", "FlaxGPT2LMHeadModel", "FlaxGPT2LMHeadModule", "FlaxGPT2MLP",
    "FlaxGPT2Model", "FlaxGPT2Module", "FlaxGPT2PreTrainedModel", "FlaxQuestionAnsweringModelOutput",
    "FlaxSequenceClassifierOutputWithPast", "FlaxTokenClassifierOutput", "cache_to_bhsd", "make_mesh", "shard_batch",
    "shard_params",
]
