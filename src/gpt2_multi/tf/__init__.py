"""GPT-2 for TensorFlow / Keras 3.

.. code-block:: python

    from gpt2_multi.tf import TFGPT2LMHeadModel

    model = TFGPT2LMHeadModel.from_pretrained("path/to/checkpoint")  # safetensors, .bin, .h5 or .msgpack
    out = model(input_ids, attention_mask=mask)                        # out.logits: (batch, seq, vocab)

Every class is a ``keras.Model`` on the TensorFlow backend; it follows HF's TF call
contract (keyword arguments, a dict, or a list in the documented order) and its
numbers match the PyTorch and Flax stacks of this package. Importing this module
imports TensorFlow and Keras only (never PyTorch or JAX).
"""

from __future__ import annotations

import os
import sys

from gpt2_multi import backends

_EXTRA = backends.get("tf").install_hint()

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
if os.environ["KERAS_BACKEND"] != "tensorflow" and "keras" not in sys.modules:
    raise ImportError(
        f"gpt2_multi.tf needs Keras on the TensorFlow backend, but KERAS_BACKEND={os.environ['KERAS_BACKEND']!r}; "
        "set KERAS_BACKEND=tensorflow (or unset it)"
    )

# TensorFlow's TFLite helpers do `try: from jax import jit` at import time, which would load JAX (and
# its ~1 s import) into every TensorFlow process. This stack must import only its own framework, so the
# frameworks not yet imported are hidden while TensorFlow and Keras load (TFLite then treats JAX as absent).
_hidden = [name for name in ("jax", "torch") if name not in sys.modules]
for _name in _hidden:
    sys.modules[_name] = None  # type: ignore[assignment]  # makes `import jax` raise ImportError
try:
    try:
        import tensorflow as _tf  # noqa: F401
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"gpt2_multi.tf needs TensorFlow: {_EXTRA} ({err})") from err
    try:
        import keras as _keras
    except ImportError as err:  # pragma: no cover
        raise ImportError(f"gpt2_multi.tf needs Keras 3: {_EXTRA} ({err})") from err
finally:
    for _name in _hidden:
        if sys.modules.get(_name, 0) is None:
            del sys.modules[_name]

if int(_keras.__version__.split(".")[0]) < 3:  # pragma: no cover
    raise ImportError(f"gpt2_multi.tf needs Keras 3 (keras>=3), found keras {_keras.__version__}: {_EXTRA}")
if _keras.config.backend() != "tensorflow":
    raise ImportError(
        f"gpt2_multi.tf needs Keras on the TensorFlow backend, but Keras runs on {_keras.config.backend()!r}; "
        "set KERAS_BACKEND=tensorflow before anything imports keras"
    )

from gpt2_multi.tf.generation import (  # noqa: E402
    TFBeamSearchDecoderOnlyOutput,
    TFGenerationMixin,
    TFGreedySearchDecoderOnlyOutput,
    TFSampleDecoderOnlyOutput,
)
from gpt2_multi.tf.modeling import (  # noqa: E402
    ACT2FN,
    TFGPT2MLP,
    TFConv1D,
    TFGPT2Attention,
    TFGPT2Block,
    TFGPT2DoubleHeadsModel,
    TFGPT2ForQuestionAnswering,
    TFGPT2ForSequenceClassification,
    TFGPT2ForTokenClassification,
    TFGPT2LMHeadModel,
    TFGPT2MainLayer,
    TFGPT2Model,
    TFGPT2PreTrainedModel,
    TFGPT2SequenceSummary,
    TFSequenceSummary,
)
from gpt2_multi.tf.outputs import (  # noqa: E402
    TFBaseModelOutputWithPastAndCrossAttentions,
    TFCausalLMOutputWithCrossAttentions,
    TFCausalLMOutputWithPast,
    TFGPT2DoubleHeadsModelOutput,
    TFQuestionAnsweringModelOutput,
    TFSequenceClassifierOutputWithPast,
    TFTokenClassifierOutput,
)

__all__ = [
    "TFBeamSearchDecoderOnlyOutput",
    "TFGenerationMixin",
    "TFGreedySearchDecoderOnlyOutput",
    "TFSampleDecoderOnlyOutput",
    "ACT2FN",
    "TFBaseModelOutputWithPastAndCrossAttentions",
    "TFCausalLMOutputWithCrossAttentions",
    "TFCausalLMOutputWithPast",
    "TFConv1D",
    "TFGPT2Attention",
    "TFGPT2Block",
    "TFGPT2DoubleHeadsModel",
    "TFGPT2DoubleHeadsModelOutput",
    "TFGPT2ForQuestionAnswering",
    "TFGPT2ForSequenceClassification",
    "TFGPT2ForTokenClassification",
    "TFGPT2LMHeadModel",
    "TFGPT2MLP",
    "TFGPT2MainLayer",
    "TFGPT2Model",
    "TFGPT2PreTrainedModel",
    "TFQuestionAnsweringModelOutput",
    "TFSequenceClassifierOutputWithPast",
    "TFGPT2SequenceSummary",
    "TFSequenceSummary",
    "TFTokenClassifierOutput",
]


def __getattr__(name: str):
    # The in-graph tokenizer needs tensorflow-text; load it only when asked for.
    if name == "TFGPT2Tokenizer":
        from gpt2_multi.tf.tokenizer import TFGPT2Tokenizer

        return TFGPT2Tokenizer
    raise AttributeError(f"module 'gpt2_multi.tf' has no attribute {name!r}")
