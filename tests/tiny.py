"""The tiny GPT-2 configuration the unit tests build their models from (seconds, not minutes, on 2 cores), and
the small helpers several test modules share."""

import os
import socket

import pytest

from gpt2_multi import GPT2Config

#: 2 layers, 4 heads, 32 wide, a 1000-token vocabulary, and no dropout anywhere
TINY = dict(vocab_size=1000, n_positions=64, n_embd=32, n_layer=2, n_head=4,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, summary_first_dropout=0.0)


def tiny_config(**overrides) -> GPT2Config:
    """:data:`TINY` with ``overrides`` applied."""
    return GPT2Config(**{**TINY, **overrides})


def count_calls(monkeypatch, module, *names: str) -> dict[str, int]:
    """Wrap ``module.<name>`` for each name so that each call is counted; returns the live counts."""
    calls = dict.fromkeys(names, 0)
    for name in names:
        real = getattr(module, name)

        def counting(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, name, counting)
    return calls


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny tensors: one intra-op thread is faster, and far faster on a shared, loaded machine. A PyTorch test
    module turns it on with ``from tiny import one_torch_thread``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def free_port() -> int:
    """A free TCP port on the loopback address, for a test's process group."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def join_gloo(rank: int, world_size: int, port: int) -> None:
    """In a spawned test worker: one intra-op thread, then join a gloo process group on ``127.0.0.1:port``."""
    import torch
    import torch.distributed as dist

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
