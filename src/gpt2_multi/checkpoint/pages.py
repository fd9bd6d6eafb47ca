"""Dropping a weights file's pages from the process once their tensors are written or copied.

Readers hand out views of memory-mapped files (safetensors, tf_model.h5, flax_model.msgpack, and
``torch.load(mmap=True)`` for pytorch_model.bin). A loader that has copied a view into its own parameters,
or a conversion that has written it, calls :func:`release` so that the pages leave this process's resident
memory (they stay in the OS page cache). That is what keeps a load near one copy of the weights and a
conversion near one tensor on top of the interpreter.
"""

from __future__ import annotations

import mmap
import weakref
from collections.abc import Iterator

import numpy as np


def row_blocks(array: np.ndarray, block_bytes: int, *, release_pages: bool = False,
               itemsize: int | None = None) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(start, stop, array[start:stop])`` over whole rows of ``array`` (``ndim >= 1``), about ``block_bytes`` a
    block at ``itemsize`` bytes an element (default: ``array``'s own); one block when it fits.

    The one walk every converting copy of a checkpoint tensor makes (the writers, and each stack's loading into
    another dtype or layout). With ``release_pages`` and a C-contiguous ``array`` (a plain view of a file), each
    block's mapped pages are dropped once the caller has taken the next block, so the source and its converted
    copy are never both resident.
    """
    row_bytes = max(1, (array[0].size if array.shape[0] else 0) * (itemsize or array.dtype.itemsize))
    rows = max(1, block_bytes // row_bytes) if array.nbytes > block_bytes else max(1, array.shape[0])
    drop = release_pages and array.flags.c_contiguous
    for start in range(0, array.shape[0], rows):
        stop = min(start + rows, array.shape[0])
        yield start, stop, array[start:stop]
        if drop:
            release(array[start:stop])


def release(array: np.ndarray) -> None:
    """Drop the mapped file pages behind ``array`` from this process's resident memory (best effort).

    For a backend that has copied ``array`` into its own parameters: the pages stay in the OS page
    cache (a re-read is free) but stop counting in this process, so a load never holds the mapped
    file next to the parameters made from it. Only whole pages inside ``array`` are dropped, and only
    from read-only or copy-on-write file maps; call it only on arrays nobody wrote to (a modified
    copy-on-write page would be discarded). A no-op for arrays that are not mapped.
    """
    base = array
    while base is not None and not isinstance(base, np.memmap):
        if _is_file_backed(base):
            low, high = _byte_bounds(array)
            base_low, base_high = _byte_bounds(base)
            _madvise_dontneed(max(low, base_low), min(high, base_high))  # never past the marked array
            return
        base = getattr(base, "base", None)
    if base is None or getattr(base, "mode", None) not in ("r", "c"):
        return
    mapping = getattr(base, "_mmap", None)
    if not isinstance(mapping, mmap.mmap) or not hasattr(mapping, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
        return
    try:
        map_start = np.frombuffer(mapping, dtype=np.uint8).__array_interface__["data"][0]
        low, high = _byte_bounds(array)
        begin, end = low - map_start, high - map_start
        first = -(-begin // mmap.PAGESIZE) * mmap.PAGESIZE  # whole pages inside the array only
        last = (end // mmap.PAGESIZE) * mmap.PAGESIZE
        if 0 <= first < last <= len(mapping):
            mapping.madvise(mmap.MADV_DONTNEED, first, last - first)
    except (ValueError, OSError, TypeError):  # best effort: never fail a load for it
        pass


# Arrays (numpy views of ``torch.load(mmap=True)``'s tensors) whose memory is a private map of a file that
# nobody writes: :func:`release` may drop their pages as it does for ``np.memmap``. Registered by the reader
# that made them (``torch_bin.load``), never by a caller with memory of its own. Held by id, forgotten when
# the array is collected.
_FILE_BACKED: set[int] = set()


def mark_file_backed(array: np.ndarray) -> None:
    """Let :func:`release` drop the pages of ``array`` and of every view whose ``.base`` chain reaches it."""
    key = id(array)
    _FILE_BACKED.add(key)
    weakref.finalize(array, _FILE_BACKED.discard, key)


def _is_file_backed(obj: object) -> bool:
    return id(obj) in _FILE_BACKED


def _byte_bounds(array: np.ndarray) -> tuple[int, int]:
    """The first and one-past-last addresses ``array`` touches, whatever its strides (negative ones included)."""
    try:
        from numpy.lib.array_utils import byte_bounds
    except ImportError:  # NumPy < 2
        byte_bounds = np.byte_bounds
    return byte_bounds(array)


def _madvise_dontneed(begin: int, end: int) -> None:
    """MADV_DONTNEED on the whole pages inside the addresses [begin, end)."""
    if not hasattr(mmap, "MADV_DONTNEED"):
        return
    try:
        import ctypes

        first = -(-begin // mmap.PAGESIZE) * mmap.PAGESIZE
        last = (end // mmap.PAGESIZE) * mmap.PAGESIZE
        if first < last:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), ctypes.c_int(mmap.MADV_DONTNEED))
    except (OSError, AttributeError, TypeError, ValueError):  # best effort
        pass
