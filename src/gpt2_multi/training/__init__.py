"""Training semantics shared by every backend: the loss that is differentiated, the AdamW hyper-parameters
and the weight-decay rule. Framework-free (standard library only).

Each stack's ``backend`` module implements ``loss_and_grads`` and ``adamw_step`` on top of these
definitions (see :mod:`gpt2_multi.backends`), and the conformance suite compares them
(``gpt2-multi conform --grads``).

The loss
    The differentiated objective is the head's own ``loss`` output (HF's: the shifted LM loss, the
    classification / token-classification loss, the QA loss ``(start + end) / 2``). The double-heads model
    returns two losses, ``loss`` (LM) and ``mc_loss`` (multiple choice), and HF leaves combining them to
    the user; HF's examples train on their sum, and so do we: :func:`objective` is ``loss + mc_loss``.
    ``loss_and_grads`` still reports both separately.

Gradients
    Keyed by HF PyTorch parameter names in HF's PyTorch layout (``Conv1D`` weights ``(in, out)``,
    ``nn.Linear`` weights ``(out, in)``), one entry per parameter, exactly the names of a saved checkpoint
    (:func:`gpt2_multi.checkpoint.expected_shapes`): with tied embeddings there is no ``lm_head.weight``
    and the gradient of ``transformer.wte.weight`` holds both the embedding's and the LM head's part.
    A parameter the loss does not reach has a zero gradient.

One AdamW step (:class:`AdamWHyper`), from a fresh optimizer state (step ``t = 1``)::

    m = (1 - b1) g            v = (1 - b2) g**2
    m_hat = m / (1 - b1**t)   v_hat = v / (1 - b2**t)
    w <- w - lr * wd * w * decays(name) - lr * m_hat / (sqrt(v_hat) + eps)

That is decoupled weight decay (Loshchilov & Hutter) with ``lr`` multiplying the decay, applied to the
weight before the Adam update, and ``eps`` added outside the square root of the bias-corrected second
moment. How each framework is made to compute exactly this:

* PyTorch: ``torch.optim.AdamW(lr, betas, eps)`` with two parameter groups, ``weight_decay=wd`` for the
  parameters :func:`decays` selects and ``0.0`` for the others. Its rule is the formula above as written.
* Flax: ``optax.adamw(lr, b1, b2, eps, eps_root=0, weight_decay=wd, mask=...)``, the mask built from
  :func:`decays` on each parameter's HF name. optax adds ``wd * w`` to the Adam direction and then scales
  the sum by ``-lr``: the same update.
* TensorFlow: ``keras.optimizers.AdamW(learning_rate, weight_decay, beta_1, beta_2, epsilon)`` with the
  non-decayed variables passed to ``exclude_from_weight_decay(var_list=...)``. Keras decays first
  (``w -= w * wd * lr``, as PyTorch) but folds the bias corrections into the step size and adds its
  epsilon to the *uncorrected* ``sqrt(v)``:
  ``w -= lr * sqrt(1 - b2**t) / (1 - b1**t) * m / (sqrt(v) + eps_keras)``. Multiplying numerator and
  denominator out shows this equals the formula above exactly when ``eps_keras = eps * sqrt(1 - b2**t)``;
  :func:`keras_epsilon` gives that value for the step taken (t = 1 for ``adamw_step``). Keras' epsilon is a
  constant, so the correction is exact for one step (or any single fixed step), not for a run of steps.

``adamw_step`` updates the model it is given in place (its weights become the new ones, as a training
step would) and returns the new weights; the optimizer state is discarded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: the LayerNorm modules of GPT-2 (their weights are not decayed)
LAYER_NORMS = ("ln_1", "ln_2", "ln_f", "ln_cross_attn")


@dataclass(frozen=True)
class AdamWHyper:
    """AdamW hyper-parameters, in PyTorch's terms (``torch.optim.AdamW``)."""

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.1


def decays(name: str) -> bool:
    """Whether decoupled weight decay applies to the parameter with HF PyTorch name ``name``.

    Every parameter decays except biases and LayerNorm weights (``ln_1``, ``ln_2``, ``ln_f``,
    ``ln_cross_attn``); embeddings and the heads' weights decay.
    """
    parts = name.split(".")
    if parts[-1] == "bias":
        return False
    return not (len(parts) >= 2 and parts[-2] in LAYER_NORMS)


def keras_epsilon(hyper: AdamWHyper, step: int = 1) -> float:
    """The ``epsilon`` that makes Keras' Adam update at ``step`` equal PyTorch's / optax's with ``hyper.eps``."""
    return hyper.eps * math.sqrt(1.0 - hyper.betas[1] ** step)


def objective(loss: Any, mc_loss: Any = None) -> Any:
    """The differentiated loss: ``loss``, plus ``mc_loss`` when the model returned one (double heads)."""
    if loss is None and mc_loss is None:
        raise ValueError("the inputs carry no labels, so the model returned no loss; add the head's labels")
    if mc_loss is None:
        return loss
    return mc_loss if loss is None else loss + mc_loss


def reported_losses(loss: Any, mc_loss: Any = None) -> dict[str, float]:
    """The losses ``loss_and_grads`` reports: ``loss`` and, for the double heads, ``mc_loss``, as floats
    (any framework's scalar converts with ``float``)."""
    losses = {} if loss is None else {"loss": float(loss)}
    if mc_loss is not None:
        losses["mc_loss"] = float(mc_loss)
    return losses


__all__ = ["LAYER_NORMS", "AdamWHyper", "decays", "keras_epsilon", "objective", "reported_losses"]
