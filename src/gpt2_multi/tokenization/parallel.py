"""Threads for batch encoding: a shared pool over which a batch's texts are encoded in order.

The fast tokenizer's engine (tiktoken's Rust ``CoreBPE``) releases the GIL while it encodes, so a batch of
texts spread over threads uses every core. Results keep the batch's order and are exactly the sequential
ones; an error is the one the sequential loop would raise first.

* Threads: one per usable CPU (``os.sched_getaffinity`` where there is one), or
  ``GPT2_MULTI_TOKENIZER_THREADS`` (an int >= 1; 1 means no threads).
  ``TOKENIZERS_PARALLELISM=false`` (also ``0``, ``no``, ``off``: HF's switch for its Rust tokenizers)
  turns the threads off as well.
* Small batches stay on the calling thread: fewer than two texts, or less than :data:`MIN_PARALLEL_CHARS`
  characters in all (the pool's hand-over costs some tens of microseconds per chunk).
* Fork safety: the pool is created on first use in each process; a forked child drops its parent's pool
  (whose threads do not exist in the child). A child forked after its parent used the pool encodes on one
  thread unless one of the variables above says otherwise (as HF's Rust tokenizers do): N DataLoader workers
  then do not start N pools of a thread per CPU each.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

_T = TypeVar("_T")
_R = TypeVar("_R")

THREADS_ENV = "GPT2_MULTI_TOKENIZER_THREADS"
PARALLELISM_ENV = "TOKENIZERS_PARALLELISM"
# A batch with fewer characters than this is encoded on the calling thread.
MIN_PARALLEL_CHARS = 32_768
# Each thread gets about this many chunks of consecutive texts (documents of very different sizes balance).
CHUNKS_PER_THREAD = 4

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_forked_after_use = False


def usable_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def num_threads() -> int:
    """Threads a batch may use now (read from the environment on every call, so it can change at run time)."""
    if os.environ.get(PARALLELISM_ENV, "").strip().lower() in ("0", "false", "no", "off"):
        return 1
    value = os.environ.get(THREADS_ENV, "").strip()
    if not value and PARALLELISM_ENV not in os.environ and _forked_after_use:
        return 1
    if value:
        try:
            count = int(value)
        except ValueError:
            raise ValueError(f"{THREADS_ENV} must be an int >= 1, got {value!r}") from None
        if count < 1:
            raise ValueError(f"{THREADS_ENV} must be an int >= 1, got {value!r}")
        return count
    return usable_cpus()


def _get_pool(threads: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size != threads:
            # the old pool is not shut down: another thread may be submitting to it; it goes with its last user
            _pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gpt2_multi-tokenizer")
            _pool_size = threads
        return _pool


def _forget_pool() -> None:
    """In a forked child: the parent's pool threads are gone; the next batch makes a new pool."""
    global _pool, _pool_size, _lock, _forked_after_use
    _forked_after_use = _forked_after_use or _pool is not None
    _pool, _pool_size = None, 0
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def chunks(sizes: Sequence[int], count: int) -> list[tuple[int, int]]:
    """Cut ``range(len(sizes))`` into at most ``count`` runs ``(start, stop)`` of consecutive items of about
    equal total size (every run non-empty, in order, covering every item)."""
    n = len(sizes)
    if n == 0:
        return []
    count = max(1, min(count, n))
    total = sum(sizes)
    out: list[tuple[int, int]] = []
    start = 0
    acc = 0
    for i, size in enumerate(sizes):
        acc += size
        # close this run once it reaches its share of the total, leaving an item for every run still to come
        if len(out) < count - 1 and acc * count >= total * (len(out) + 1) and n - (i + 1) >= count - 1 - len(out):
            out.append((start, i + 1))
            start = i + 1
    if start < n:
        out.append((start, n))
    return out


def map_ordered(function: Callable[[_T], _R], items: Sequence[_T], sizes: Sequence[int], threads: int | None = None) -> list[_R]:
    """``[function(item) for item in items]``, spread over threads when the batch is worth it.

    ``sizes`` (one per item, e.g. its length in characters) decide whether to use threads and how to cut
    the batch. The result, and the exception raised if any item fails (the first in order), are the
    sequential loop's.
    """
    if threads is None:
        threads = num_threads()
    if threads <= 1 or len(items) < 2 or sum(sizes) < MIN_PARALLEL_CHARS:
        return [function(item) for item in items]

    def run(span: tuple[int, int]) -> list[_R]:
        return [function(item) for item in items[span[0] : span[1]]]

    spans = chunks(sizes, threads * CHUNKS_PER_THREAD)
    pool = _get_pool(threads)
    futures = [pool.submit(run, span) for span in spans]
    out: list[_R] = []
    try:
        for future in futures:
            out.extend(future.result())
    finally:
        for future in futures:
            future.cancel()
    return out
