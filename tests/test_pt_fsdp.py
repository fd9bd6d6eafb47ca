"""The PyTorch stack under FSDP2 (``fully_shard``, via :func:`gpt2_multi.pt.distributed.shard_model`) over 2 gloo
processes: one AdamW step equals one single-process step on the combined batch, and the sharded state saved
with ``torch.distributed.checkpoint`` restores into a fresh sharded model and into an unsharded one.

The model has a tied LM head (``lm_head.weight`` is ``wte.weight``), which must stay tied through sharding,
the step, the save and both loads."""

from __future__ import annotations

import json
import os

import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from tiny import free_port, join_gloo  # noqa: E402

pytestmark = [pytest.mark.torch,
              pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available in this build")]

WORLD = 2
PER_RANK = 2
SEQ = 12
VOCAB = 100
LR = 1e-3
WEIGHT_DECAY = 0.1
# AdamW's first update is lr * g / (|g| + eps): near g = 0 it multiplies a gradient's rounding error by lr / eps.
# The sharded and the single run sum the batch in a different order, so their gradients differ by up to ~3e-8
# (measured), and some gradients are ~0 (the key part of c_attn's bias: softmax ignores a shift shared by a
# row of scores, so only ~1e-11 of rounding is left). With the default eps=1e-8 that rounding becomes
# updates of ~1e-5 of either sign; lr / eps = 10 keeps it under 1e-6 for every weight.
EPS = 1e-4


def _model(seed: int = 0):
    from gpt2_multi import GPT2Config
    from gpt2_multi.pt import GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=2, n_head=4,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(cfg)
    model.train()
    return model


def _optimizer(model):
    """AdamW with the repo's two groups (``gpt2_multi.training.decays``: no decay on biases and layer norms)."""
    from gpt2_multi.training import decays

    params = dict(model.named_parameters())  # the tied head is listed once, as transformer.wte.weight
    groups = [{"params": [p for n, p in params.items() if decays(n)], "weight_decay": WEIGHT_DECAY},
              {"params": [p for n, p in params.items() if not decays(n)], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=LR, eps=EPS)


def _batch(step: int = 0):
    return torch.randint(0, VOCAB, (WORLD * PER_RANK, SEQ), generator=torch.Generator().manual_seed(1 + step))


def _step(model, optimizer, ids):
    """The training objective of ``gpt2-multi train``: next-token loss with ``labels=input_ids``, no padding,
    so each rank's half has the same number of labelled tokens and the mean of the two means is the global mean."""
    loss = model(input_ids=ids, labels=ids, use_cache=False).loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys(), sorted(set(a) ^ set(b))
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def _local(state: dict) -> dict:
    """The flat tensors of a (sharded) state dict, each rank's own shard of every DTensor."""
    from torch.distributed.tensor import DTensor

    out = {}

    def walk(prefix, value):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}/{k}", v)
        elif isinstance(value, torch.Tensor):
            out[prefix] = (value.to_local() if isinstance(value, DTensor) else value).detach().clone()

    walk("", state)
    return out


def _worker(rank: int, port: int, out_dir: str) -> None:
    join_gloo(rank, WORLD, port)
    try:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_state_dict,
            set_state_dict,
        )
        from torch.distributed.tensor import DTensor

        from gpt2_multi.pt.distributed import shard_model

        report: dict = {}
        model = shard_model(_model())
        wte = model.transformer.wte.weight
        report["tied_after_shard"] = model.lm_head.weight is wte
        report["wte_local_shape"] = list(wte.to_local().shape) if isinstance(wte, DTensor) else None
        report["block_kernel_is_dtensor"] = isinstance(model.transformer.h[0].mlp.c_fc.weight, DTensor)
        optimizer = _optimizer(model)
        part = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        loss = _step(model, optimizer, _batch()[part])
        dist.all_reduce(loss)
        full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if rank == 0:
            torch.save({"state": full, "loss": loss / WORLD}, os.path.join(out_dir, "gathered.pt"))

        # the sharded state (model + optimizer) through torch.distributed.checkpoint
        ckpt = os.path.join(out_dir, "dcp")
        model_sd, optim_sd = get_state_dict(model, optimizer)
        dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=ckpt)

        fresh = shard_model(_model(seed=7))
        fresh_opt = _optimizer(fresh)
        fresh_model_sd, fresh_optim_sd = get_state_dict(fresh, fresh_opt)
        target = {"model": fresh_model_sd, "optim": fresh_optim_sd}
        dcp.load(target, checkpoint_id=ckpt)
        set_state_dict(fresh, fresh_opt, model_state_dict=target["model"], optim_state_dict=target["optim"])
        report["tied_after_load"] = fresh.lm_head.weight is fresh.transformer.wte.weight
        restored_model_sd, restored_optim_sd = get_state_dict(fresh, fresh_opt)
        report["restored_model_diff"] = _max_diff(_local(model_sd), _local(restored_model_sd))
        report["restored_optim_diff"] = _max_diff(_local(optim_sd), _local(restored_optim_sd))
        report["restored_optim_entries"] = len(_local(restored_optim_sd))

        # the restored model and optimizer take the same next step as the originals
        next_part = _batch(step=1)[part]
        _step(model, optimizer, next_part)
        _step(fresh, fresh_opt, next_part)
        report["second_step_diff"] = _max_diff(_local(get_model_state_dict(model)), _local(get_model_state_dict(fresh)))
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(report, f)
        # Leave together: a rank that tears gloo down while its peer is still talking to it can abort.
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fsdp")
    mp.spawn(_worker, args=(free_port(), str(out)), nprocs=WORLD, join=True)
    reports = [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)]
    return out, torch.load(out / "gathered.pt", weights_only=True), reports


def _single_step():
    model = _model()
    optimizer = _optimizer(model)
    loss = _step(model, optimizer, _batch())
    return model, optimizer, loss


def test_fsdp2_step_equals_single_process_step(fsdp_run):
    _, gathered, reports = fsdp_run
    for report in reports:
        assert report["tied_after_shard"] and report["block_kernel_is_dtensor"]
        assert report["wte_local_shape"] == [VOCAB // WORLD, 32]  # wte (and so the head) split on dim 0
    single, _, loss = _single_step()
    torch.testing.assert_close(gathered["loss"], loss, atol=1e-6, rtol=0)
    ref = single.state_dict()
    state = gathered["state"]
    assert set(state) == set(ref), sorted(set(state) ^ set(ref))
    torch.testing.assert_close(state["lm_head.weight"], state["transformer.wte.weight"], atol=0, rtol=0)
    before = _model().state_dict()
    moved = 0
    for name, value in ref.items():
        torch.testing.assert_close(state[name], value, atol=1e-6, rtol=1e-5, msg=lambda m, name=name: f"{name}: {m}")
        moved += int(not torch.equal(value, before[name]))
    assert moved > 10  # the step changed the weights


def test_dcp_checkpoint_restores_into_a_fresh_sharded_model(fsdp_run):
    _, _, reports = fsdp_run
    for report in reports:
        assert report["tied_after_load"]
        assert report["restored_model_diff"] == 0.0
        assert report["restored_optim_diff"] == 0.0 and report["restored_optim_entries"] > 20
        assert report["second_step_diff"] == 0.0


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")  # a one-process load is the point
def test_dcp_checkpoint_loads_into_an_unsharded_model(fsdp_run):
    """No process group here: ``dcp.load`` reads every rank's shards into plain tensors."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    out, gathered, _ = fsdp_run
    assert not dist.is_initialized()
    model = _model(seed=7)
    optimizer = _optimizer(model)
    model_sd, optim_sd = get_state_dict(model, optimizer)
    target = {"model": model_sd, "optim": optim_sd}
    dcp.load(target, checkpoint_id=str(out / "dcp"), no_dist=True)
    set_state_dict(model, optimizer, model_state_dict=target["model"], optim_state_dict=target["optim"])

    assert model.lm_head.weight is model.transformer.wte.weight
    loaded = model.state_dict()
    for name, value in gathered["state"].items():
        torch.testing.assert_close(loaded[name], value, atol=0, rtol=0, msg=name)
    # the optimizer's moments equal the single-process optimizer's after its one step
    _, single_opt, _ = _single_step()
    for ours, ref in zip(optimizer.state_dict()["state"].values(), single_opt.state_dict()["state"].values(), strict=True):
        for key in ("step", "exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(ours[key], ref[key], atol=1e-6, rtol=1e-5)
