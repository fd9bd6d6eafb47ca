"""The tiny GPT-2 configuration the unit tests build their models from (seconds, not minutes, on 2 cores)."""

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
