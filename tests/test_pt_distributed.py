"""The PyTorch stack under PyTorch's own distributed engine: DistributedDataParallel over 2 gloo
processes takes the same training step as one process on the combined batch."""

from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from tiny import free_port, join_gloo  # noqa: E402

pytestmark = pytest.mark.torch

WORLD = 2
PER_RANK = 2
LR = 0.5


def _model():
    from gpt2_multi import GPT2Config
    from gpt2_multi.pt import GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=1000, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(cfg)


def _batch():
    x = torch.randint(0, 1000, (WORLD * PER_RANK, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(x)
    mask[1, 9:] = 0  # padding in one row: the loss still averages over the same number of tokens per rank
    return x, mask


def _step(model, x, mask):
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    model.train()
    loss = model(x, attention_mask=mask, labels=x).loss
    loss.backward()
    opt.step()
    return loss.detach()


def _worker(rank: int, port: int, out_dir: str) -> None:
    join_gloo(rank, WORLD, port)
    try:
        model = _model()
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        x, mask = _batch()
        part = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        loss = _step(ddp, x[part], mask[part])
        dist.all_reduce(loss)
        if rank == 0:
            torch.save({"state": model.state_dict(), "loss": loss / WORLD}, os.path.join(out_dir, "ddp.pt"))
        # Leave together: a rank that tears gloo down while its peer is still talking to it can abort
        # ("terminate called without an active exception").
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available in this build")
def test_ddp_step_equals_single_process_step(tmp_path):
    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    result = torch.load(tmp_path / "ddp.pt", weights_only=True)

    single = _model()
    before = {k: v.clone() for k, v in single.state_dict().items()}
    x, mask = _batch()
    # HF's loss is a mean over tokens; every rank's half has the same number of labelled tokens,
    # so the mean of the per-rank means (what DDP's gradient averaging computes) is the global mean.
    loss = _step(single, x, mask)
    torch.testing.assert_close(result["loss"], loss, atol=1e-6, rtol=0)
    moved = 0
    for name, value in single.state_dict().items():
        torch.testing.assert_close(result["state"][name], value, atol=1e-6, rtol=1e-5, msg=name)
        moved += int(not torch.equal(value, before[name]))
    assert moved > 10  # the step changed the weights
