"""Batch encoding on threads (tokenization/parallel.py and GPT2TokenizerFast's batch path): the same ids,
in the same order, and the same first error as one text at a time; the opt-out switches; fork safety."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading

import pytest

from gpt2_multi import GPT2TokenizerFast
from gpt2_multi.tokenization import parallel
from gpt2_multi.tokenization.added_tokens import AddedToken


@pytest.fixture
def threads_on(monkeypatch):
    """Two threads, and threads for batches of any size."""
    monkeypatch.delenv(parallel.PARALLELISM_ENV, raising=False)
    monkeypatch.setenv(parallel.THREADS_ENV, "2")
    monkeypatch.setattr(parallel, "MIN_PARALLEL_CHARS", 0)


@pytest.fixture(scope="module")
def fast():
    tok = GPT2TokenizerFast.from_pretrained("gpt2")
    tok.pad_token = tok.eos_token
    return tok


def texts(n: int = 60, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = ["Hello", " world", "<|endoftext|>", "\n\n", "  ", "naïve", " 東京", "123", " it's", "\t", "😀", ""]
    return ["".join(rng.choice(words) for _ in range(rng.randint(0, 40))) for _ in range(n)]


def test_chunks_cover_every_item_in_order():
    assert parallel.chunks([], 4) == []
    assert parallel.chunks([5], 4) == [(0, 1)]
    assert parallel.chunks([1, 1, 1, 1], 2) == [(0, 2), (2, 4)]
    assert parallel.chunks([1, 1, 1, 1], 8) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert parallel.chunks([100, 1, 1, 1], 2) == [(0, 1), (1, 4)]  # by size, not by count
    assert parallel.chunks([0, 0, 0], 2) == [(0, 1), (1, 3)]
    rng = random.Random(1)
    for _ in range(200):
        sizes = [rng.randint(0, 50) for _ in range(rng.randint(1, 30))]
        count = rng.randint(1, 10)
        spans = parallel.chunks(sizes, count)
        assert 1 <= len(spans) <= min(count, len(sizes))
        assert spans[0][0] == 0 and spans[-1][1] == len(sizes)
        assert all(a < b for a, b in spans)
        assert all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1))


def test_map_ordered_keeps_order_and_uses_threads():
    seen: set[str] = set()

    def square(x: int) -> int:
        seen.add(threading.current_thread().name)
        return x * x

    items = list(range(1000))
    assert parallel.map_ordered(square, items, [100] * 1000, threads=3) == [x * x for x in items]
    assert any(name.startswith("gpt2_multi-tokenizer") for name in seen)
    seen.clear()
    # small batches stay on the calling thread
    assert parallel.map_ordered(square, [1, 2], [1, 1], threads=3) == [1, 4]
    assert seen == {threading.current_thread().name}


def test_map_ordered_raises_the_first_error_in_order():
    def check(x: int) -> int:
        if x in (700, 300):
            raise ValueError(f"bad {x}")
        return x

    with pytest.raises(ValueError, match="bad 300"):
        parallel.map_ordered(check, list(range(1000)), [100] * 1000, threads=4)


def test_num_threads_switches(monkeypatch):
    monkeypatch.delenv(parallel.PARALLELISM_ENV, raising=False)
    monkeypatch.delenv(parallel.THREADS_ENV, raising=False)
    assert parallel.num_threads() == parallel.usable_cpus() >= 1
    monkeypatch.setenv(parallel.THREADS_ENV, "3")
    assert parallel.num_threads() == 3
    for off in ("false", "0", "No", "OFF"):
        monkeypatch.setenv(parallel.PARALLELISM_ENV, off)
        assert parallel.num_threads() == 1
    monkeypatch.setenv(parallel.PARALLELISM_ENV, "true")
    monkeypatch.setenv(parallel.THREADS_ENV, "0")
    with pytest.raises(ValueError, match=parallel.THREADS_ENV):
        parallel.num_threads()
    monkeypatch.setenv(parallel.THREADS_ENV, "two")
    with pytest.raises(ValueError, match=parallel.THREADS_ENV):
        parallel.num_threads()


def test_opt_out_never_touches_the_pool(monkeypatch, fast):
    monkeypatch.setattr(parallel, "MIN_PARALLEL_CHARS", 0)
    monkeypatch.setenv(parallel.PARALLELISM_ENV, "false")

    def no_pool(threads: int):
        raise AssertionError("the thread pool was used although TOKENIZERS_PARALLELISM=false")

    monkeypatch.setattr(parallel, "_get_pool", no_pool)
    batch = texts(20)
    assert fast(batch)["input_ids"] == [fast.encode(t) for t in batch]
    monkeypatch.delenv(parallel.PARALLELISM_ENV)
    monkeypatch.setenv(parallel.THREADS_ENV, "1")
    assert fast(batch)["input_ids"] == [fast.encode(t) for t in batch]


def test_threaded_batch_equals_one_by_one(threads_on, fast, monkeypatch):
    batch = texts(80)
    used: list[int] = []
    real = parallel.map_ordered
    monkeypatch.setattr(parallel, "map_ordered", lambda *a, **k: used.append(1) or real(*a, **k))
    one_by_one = [fast.encode(t) for t in batch]
    assert fast(batch)["input_ids"] == one_by_one
    assert used, "the batch did not go through the thread pool"
    # the same with every option that touches the rows: pairs, truncation, padding, special tokens
    pairs = list(zip(batch[::2], batch[1::2]))
    kwargs = dict(truncation=True, max_length=12, padding="max_length", return_special_tokens_mask=True)
    threaded = fast(pairs, **kwargs)
    monkeypatch.setenv(parallel.THREADS_ENV, "1")
    sequential = fast(pairs, **kwargs)
    assert dict(threaded) == dict(sequential)
    monkeypatch.setenv(parallel.THREADS_ENV, "2")
    assert fast(batch, split_special_tokens=True)["input_ids"] == [fast.encode(t, split_special_tokens=True) for t in batch]


def test_threaded_batch_with_added_tokens_and_prefix_space(threads_on):
    tok = GPT2TokenizerFast.from_pretrained("gpt2", add_prefix_space=True)
    tok.add_tokens([AddedToken("<m>", lstrip=True), "naïve"])
    tok.add_special_tokens({"additional_special_tokens": ["<sep>"]})
    batch = [t.replace("Hello", "<m>").replace("123", "<sep>") for t in texts(50, seed=3)]
    threaded = tok(batch)["input_ids"]
    assert threaded == [tok.encode(t) for t in batch]
    words = [t.split(" ") for t in batch]
    assert tok(words, is_split_into_words=True)["input_ids"] == [tok.encode(w, is_split_into_words=True) for w in words]
    assert tok.encode("Hello <m> naïve<sep>") == [18435, 50257, 220, 50258, 50259]  # as HF's GPT2TokenizerFast


def test_threaded_batch_raises_the_first_error(threads_on, fast):
    batch = texts(30)
    batch[7] = "ok \ud800 lone surrogate"
    batch[20] = "\udfff"
    with pytest.raises(ValueError, match="lone surrogate '\\\\ud800' at position 3"):
        fast(batch)


_FORK_SCRIPT = """
import os, sys
os.environ["GPT2_MULTI_TOKENIZER_THREADS"] = "2"
from gpt2_multi import GPT2TokenizerFast
from gpt2_multi.tokenization import parallel
parallel.MIN_PARALLEL_CHARS = 0
tok = GPT2TokenizerFast.from_pretrained("gpt2")
batch = ["Hello world<|endoftext|> number %d" % i for i in range(50)]
expected = [tok.encode(t) for t in batch]
assert tok(batch)["input_ids"] == expected and parallel._pool is not None  # the parent's pool exists now
pid = os.fork()
if pid == 0:  # the child: a fresh pool of its own, the same ids
    try:
        ok = parallel._pool is None and tok(batch)["input_ids"] == expected and parallel._pool is not None
        # without the variables, a child forked after its parent used the pool encodes on one thread (as HF)
        del os.environ["GPT2_MULTI_TOKENIZER_THREADS"]
        ok = ok and parallel.num_threads() == 1
        os.environ["TOKENIZERS_PARALLELISM"] = "true"
        ok = ok and parallel.num_threads() == parallel.usable_cpus()
    except BaseException:
        ok = False
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
sys.exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 4)
"""


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs os.fork")
def test_forked_child_encodes_a_batch_on_its_own_pool():
    # In a fresh interpreter: forking this test process, which may hold other libraries' threads, could hang.
    done = subprocess.run([sys.executable, "-c", _FORK_SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
