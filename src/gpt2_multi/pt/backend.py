"""PyTorch's entry in the backend registry (:mod:`gpt2_multi.backends`): numpy in, numpy out.

A model returns a :class:`~gpt2_multi.pt.cache.DynamicCache` when given no cache (else the kind it was given);
either kind iterates as HF's legacy ``(key, value)`` per layer, each (B, H, S, D), which is what is read here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

import gpt2_multi.pt as stack
from gpt2_multi.backends import Step, call_kwargs, chunk_calls, collect_outputs

if TYPE_CHECKING:
    from gpt2_multi.backends import KV


def load(path: Path, architecture: str, dtype: str = "float32") -> torch.nn.Module:
    kwargs = {"torch_dtype": torch.bfloat16} if dtype == "bfloat16" else {}
    return getattr(stack, architecture).from_pretrained(str(path), **kwargs).eval()


def to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach()
    return (t.float() if t.is_floating_point() else t).numpy()


def cache_to_bhsd(past: Any, length: int | None = None) -> KV:
    """Each layer's self-attention (key, value); a layer may hold more (HF's cross-attention caches add the
    encoder's key and value: they are recomputed from the encoder states, so not compared)."""
    return [(to_numpy(layer[0])[:, :, :length], to_numpy(layer[1])[:, :, :length]) for layer in past]


def _tensor(model: torch.nn.Module, x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.asarray(x))
    return t.to(model.dtype) if t.is_floating_point() else t


def forward(model: torch.nn.Module, inputs: dict[str, np.ndarray], flags: dict[str, bool],
            past_chunks: list[np.ndarray]) -> dict[str, np.ndarray]:
    past = None
    with torch.no_grad():
        for call in chunk_calls(inputs, past_chunks):
            call = {k: _tensor(model, v) for k, v in call.items()}
            past = model(**call, past_key_values=past, use_cache=True).past_key_values
        out = model(**{k: _tensor(model, v) for k, v in inputs.items()}, **call_kwargs(flags, past))
    # the cache is an output when the call asked for one (Flax has one only then: its cache is init_cache's)
    cached = flags.get("use_cache", False) or bool(past_chunks)
    kv = cache_to_bhsd(out.past_key_values) if cached and getattr(out, "past_key_values", None) is not None else None
    return collect_outputs(out, kv, to_numpy)


def step(model: torch.nn.Module, input_ids: np.ndarray, state: Any, max_length: int | None = None) -> tuple[Step, Any]:
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(input_ids), past_key_values=state, use_cache=True)
    return Step(to_numpy(out.logits), cache_to_bhsd(out.past_key_values)), out.past_key_values


def generate(model: torch.nn.Module, input_ids: np.ndarray, attention_mask: np.ndarray | None, **kwargs) -> Any:
    mask = None if attention_mask is None else torch.from_numpy(attention_mask)
    return model.generate(torch.from_numpy(input_ids), attention_mask=mask, **kwargs)


# --- training
def _backward(model: torch.nn.Module, inputs: dict[str, np.ndarray], checkpointing: bool) -> dict[str, float]:
    """Forward with labels and ``backward()`` of :func:`gpt2_multi.training.objective`; leaves ``.grad`` set.

    ``checkpointing=True`` is HF's training path: ``train()`` mode with ``gradient_checkpointing_enable()``
    (each block recomputed in the backward pass); otherwise the model's own mode (eval after loading).
    The mode and the checkpointing switch are restored afterwards.
    """
    import inspect

    from gpt2_multi.training import objective, reported_losses

    was_training, was_checkpointing = model.training, model.is_gradient_checkpointing
    kwargs = {k: _tensor(model, v) for k, v in inputs.items()}
    if "use_cache" in inspect.signature(model.forward).parameters:
        kwargs["use_cache"] = False  # no cache is wanted (and checkpointing would turn it off with a warning)
    for p in model.parameters():
        p.grad = None
    try:
        if checkpointing:
            if not was_checkpointing:
                model.gradient_checkpointing_enable()
            model.train()
        with torch.enable_grad():
            out = model(**kwargs)
            mc_loss = getattr(out, "mc_loss", None)
            objective(out.loss, mc_loss).float().backward()
    finally:
        model.train(was_training)
        if checkpointing and not was_checkpointing:
            model.gradient_checkpointing_disable()
    return reported_losses(out.loss, mc_loss)


def _parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """Parameters under HF names; a tied ``lm_head.weight`` is ``transformer.wte.weight`` (listed once)."""
    return dict(model.named_parameters())


def loss_and_grads(model: torch.nn.Module, inputs: dict[str, np.ndarray],
                   checkpointing: bool = False) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Losses and the gradient of their sum (:mod:`gpt2_multi.training`) per HF parameter name, float32 numpy."""
    losses = _backward(model, inputs, checkpointing)
    grads = {}
    for name, p in _parameters(model).items():
        grads[name] = np.zeros(tuple(p.shape), np.float32) if p.grad is None else to_numpy(p.grad).astype(np.float32, copy=True)
        p.grad = None
    return losses, grads


def adamw_step(model: torch.nn.Module, inputs: dict[str, np.ndarray], hyper: Any) -> dict[str, np.ndarray]:
    """One ``torch.optim.AdamW`` step on the loss of ``inputs``: the model's weights are updated in place and
    returned (float32 numpy, HF names). Two parameter groups: decayed and not (:func:`gpt2_multi.training.decays`)."""
    from gpt2_multi.training import decays

    params = _parameters(model)
    _backward(model, inputs, False)
    for p in params.values():
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    groups = [{"params": [p for n, p in params.items() if decays(n)], "weight_decay": hyper.weight_decay},
              {"params": [p for n, p in params.items() if not decays(n)], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=hyper.lr, betas=tuple(hyper.betas),
                                  eps=hyper.eps)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {name: to_numpy(p).astype(np.float32, copy=True) for name, p in params.items()}
