"""Tensor-by-tensor writing: what every weights writer does to each tensor just before and after it is written.

A conversion never holds the checkpoint twice. The readers return views (memory maps of safetensors,
tf_model.h5 and flax_model.msgpack, ``torch.load(mmap=True)`` for pytorch_model.bin; layout transposes
as views, see ``layout.pt_to_tf_array(contiguous=False)``), and each writer asks a :class:`WriteStream`
for its tensor in row blocks of at most :data:`BLOCK_BYTES`, converted (transposed, cast to the target
dtype, made little-endian and contiguous) one block at a time. Once a tensor is written its source pages
can be dropped from the process (``release=True``, what ``convert`` asks: the source is not used again),
so a conversion peaks near one tensor on top of the interpreter, whatever the checkpoint's size.
The ``.bin`` writer is the exception that ``torch.save`` imposes: it holds the converted tensors of one
shard (``--max-shard-size``) at a time, and none when a tensor needs no conversion.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from gpt2_multi.checkpoint.pages import release as release_pages
from gpt2_multi.checkpoint.pages import row_blocks

BLOCK_BYTES = 16 * 2**20

ProgressFn = Callable[[str, int, int], None]  # (what, bytes done, bytes in all)

_DTYPE_NAMES = {
    "float32": "float32", "fp32": "float32", "float": "float32",
    "float16": "float16", "fp16": "float16", "half": "float16",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
}


def parse_dtype(dtype: str | np.dtype | None) -> np.dtype | None:
    """``"bf16"`` / ``"bfloat16"`` / ``"fp16"`` / ``"float32"`` (or a numpy dtype) -> the numpy dtype; None stays None."""
    if dtype is None:
        return None
    name = getattr(dtype, "name", None) if not isinstance(dtype, str) else dtype
    name = _DTYPE_NAMES.get(str(name).lower().removeprefix("torch.").removeprefix("jnp."))
    if name is None:
        raise ValueError(f"cannot write weights as {dtype!r}: choose one of float32 (fp32), float16 (fp16), bfloat16 (bf16)")
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def _little(dtype: np.dtype) -> np.dtype:
    return dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype


class WriteStream:
    """Per-tensor hooks of one save: cast to ``dtype`` (floats only), release the sources, count progress.

    Writers call :meth:`out_dtype` to plan headers, :meth:`blocks` (or :meth:`whole`) to get the bytes to
    write, and :meth:`done` with the source array once its bytes are written.
    """

    def __init__(self, dtype: np.dtype | None = None, *, release: bool = False, progress: ProgressFn | None = None):
        self.dtype = dtype
        self.release = release
        self.progress = progress
        self.total = 0  # bytes the whole save writes: set by the caller, which knows the tensors
        self.written = 0

    def out_dtype(self, dtype: np.dtype) -> np.dtype:
        dtype = np.dtype(dtype)
        if self.dtype is not None and (np.issubdtype(dtype, np.floating) or dtype.name == "bfloat16"):
            return self.dtype
        return _little(dtype)

    def out_nbytes(self, array: np.ndarray) -> int:
        return int(np.prod(array.shape, dtype=np.int64)) * self.out_dtype(array.dtype).itemsize

    def blocks(self, array: np.ndarray, block_bytes: int = BLOCK_BYTES) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, block)``: ``array`` converted and C-contiguous, in blocks of whole rows along axis 0.

        Each block's source rows are released once the caller has taken the next one, when ``array``
        is itself contiguous (a plain view of the file); a transposed view is released whole by :meth:`done`.
        """
        dtype = self.out_dtype(array.dtype)
        if array.ndim == 0 or array.shape[0] == 0 or array.nbytes <= block_bytes:
            yield 0, np.ascontiguousarray(array, dtype=dtype)
            return
        itemsize = max(array.dtype.itemsize, dtype.itemsize)
        for start, _, block in row_blocks(array, block_bytes, release_pages=self.release, itemsize=itemsize):
            yield start, np.ascontiguousarray(block, dtype=dtype)

    def whole(self, array: np.ndarray) -> np.ndarray:
        """``array`` converted, C-contiguous and little-endian: a view when nothing needs converting."""
        return np.ascontiguousarray(array, dtype=self.out_dtype(array.dtype))

    def done(self, source: np.ndarray, nbytes: int | None = None) -> None:
        """``source``'s bytes are written: drop its mapped pages (``release``) and advance the progress."""
        if self.release:
            release_pages(source)
        self.written += self.out_nbytes(source) if nbytes is None else nbytes
        if self.progress is not None:
            self.progress("write", self.written, self.total)
