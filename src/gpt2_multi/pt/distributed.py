"""Fully sharded data parallel training of the PyTorch stack with PyTorch's FSDP2 (``fully_shard``).

:func:`shard_model` applies ``torch.distributed.fsdp.fully_shard`` to every ``GPT2Block`` and then to the
model itself, the layout PyTorch's FSDP2 examples use: each block's parameters are one all-gather unit, and
the root unit holds what is left (``wte``, ``wpe``, ``ln_f`` and the head). A tied LM head is the same
Parameter as ``wte``; both sit in the root unit, so the tie survives sharding and its gradient is the sum of
both uses, as in one process. After sharding every parameter is a ``DTensor`` split on dim 0 over the mesh.

Save and restore the sharded state with ``torch.distributed.checkpoint`` (each rank writes its own shards);
the same checkpoint loads into an unsharded model in a single process, with no process group::

    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
    from gpt2_multi.pt import GPT2LMHeadModel
    from gpt2_multi.pt.distributed import shard_model

    dist.init_process_group("nccl")              # or "gloo" on CPU; one process per device (torchrun)
    model = shard_model(GPT2LMHeadModel.from_pretrained("gpt2"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)   # built after sharding
    ...                                          # each rank trains on its own part of the global batch
    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id="ckpt/")

    # later, in one process without a process group: the same two calls, then dcp.load
    model = GPT2LMHeadModel(config); optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.load({"model": model_sd, "optim": optim_sd}, checkpoint_id="ckpt/", no_dist=True)
    set_state_dict(model, optimizer, model_state_dict=model_sd, optim_state_dict=optim_sd)
"""

from __future__ import annotations

from typing import Any

import torch.distributed as dist
from torch import nn

try:
    from torch.distributed.fsdp import fully_shard
except ImportError as err:  # public since torch 2.6 (earlier: torch.distributed._composable.fsdp)
    raise ImportError(f"gpt2_multi.pt.distributed needs FSDP2's torch.distributed.fsdp.fully_shard (torch >= 2.6): {err}") from err


def shard_model(model: nn.Module, mesh: Any = None, **fully_shard_kwargs: Any) -> nn.Module:
    """Shard ``model`` (any GPT-2 class of :mod:`gpt2_multi.pt`) in place with FSDP2; returns it.

    ``fully_shard`` is applied to each block of ``model.base_model.h``, then to ``model``. ``mesh`` is a
    1-D ``DeviceMesh`` (default: every rank of the default process group, on the current device type);
    ``fully_shard_kwargs`` go to each ``fully_shard`` call (``reshard_after_forward``, ``mp_policy``,
    ``offload_policy`` ...). Build the optimizer after this call: sharding replaces the Parameters.
    """
    if mesh is None and not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("shard_model needs a process group: call torch.distributed.init_process_group "
                           "(e.g. under torchrun) first, or pass a DeviceMesh")
    blocks = getattr(getattr(model, "base_model", model), "h", None)
    if blocks is None:
        raise TypeError(f"shard_model expects a GPT-2 model with blocks at base_model.h, got {type(model).__name__}")
    for block in blocks:
        fully_shard(block, mesh=mesh, **fully_shard_kwargs)
    fully_shard(model, mesh=mesh, **fully_shard_kwargs)
    return model


__all__ = ["shard_model"]
