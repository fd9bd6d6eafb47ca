"""Training data for ``gpt2-multi train``: plain UTF-8 text -> one token stream -> the same batches in every backend.

Framework-free (numpy only). What a backend's trainer receives is decided here, once:

Reading
    ``--data`` is a text file or a directory; a directory contributes every ``*.txt`` file below it, in
    sorted path order. Each file must be valid UTF-8 (the error names the file and the byte offset), and
    the whole corpus must hold some text. Files are documents; inside a file, the literal
    ``<|endoftext|>`` also separates documents (the tokenizer reads it as the end-of-text token).

The token stream
    Every file is tokenized with the run's tokenizer and the files are joined with the end-of-text
    token, as GPT-2's own training data was. The last ``eval_fraction`` of the stream (at least
    ``2 * (seq_len + 1)`` tokens) is held out; the rest is the training stream. A stream is cut, not
    shuffled, so the held-out part is the corpus' tail: a recipe that wants a mixed held-out set orders
    its documents itself (the embedded model's recipe shuffles them with a seed).

Batches
    Step ``s`` of a run with seed ``seed`` trains on ``batch_size`` windows of ``seq_len`` tokens taken at
    offsets drawn from ``numpy.random.default_rng((seed, s))``: a function of the step alone, so a resumed
    run sees exactly the batches it would have seen, and every backend sees the same ones. The labels are
    the inputs (the models shift them, as HF's do).

Held-out loss
    The held-out stream is cut into consecutive windows of ``seq_len`` tokens (at most ``max_eval_windows``
    of them); the held-out loss is the mean of the per-window LM losses, which is the mean over tokens
    since every window predicts the same number of tokens. Perplexity is ``exp`` of it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: the share of the token stream held out for evaluation
EVAL_FRACTION = 0.05


class DataError(ValueError):
    """Training data that cannot be used: missing, empty, not UTF-8, or too short for the settings."""


def text_files(data: str | os.PathLike) -> list[Path]:
    """The files ``data`` names: itself, or every ``*.txt`` below a directory, in sorted order."""
    path = Path(data).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise DataError(f"{path} is a directory with no *.txt files in it; --data takes a text file or a directory of them")
        return files
    raise DataError(f"--data {str(data)!r}: no such file or directory")


def read_text(path: Path) -> str:
    """The UTF-8 text of ``path``; a :class:`DataError` naming the file and byte offset if it is not UTF-8."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text: byte {err.start} ({raw[err.start:err.start + 1]!r}) "
                        f"cannot be decoded ({err.reason}); --data takes plain UTF-8 text") from None


@dataclass(frozen=True)
class TokenStreams:
    """The training and held-out token streams (int32), and a fingerprint of the whole stream."""

    train: np.ndarray
    heldout: np.ndarray
    files: int
    fingerprint: str

    @property
    def tokens(self) -> int:
        return int(self.train.size + self.heldout.size)


def tokenize_corpus(data: str | os.PathLike, tokenizer, seq_len: int, eval_fraction: float = EVAL_FRACTION) -> TokenStreams:
    """Read, tokenize and split ``data`` (see the module docstring); ``tokenizer`` is a GPT-2 tokenizer."""
    if not 0.0 < eval_fraction < 1.0:
        raise DataError(f"the held-out fraction must lie in (0, 1), got {eval_fraction}")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise DataError("the tokenizer has no eos_token; the files of a corpus are joined with it")
    files = text_files(data)
    pieces: list[np.ndarray] = []
    for path in files:
        text = read_text(path)
        if not text.strip():
            continue
        ids = tokenizer.encode(text)
        pieces.append(np.asarray([*ids, eos], dtype=np.int32))
    if not pieces:
        where = files[0] if len(files) == 1 else f"the {len(files)} files under {data}"
        raise DataError(f"the training data is empty: {where} holds no text")
    stream = np.concatenate(pieces)
    window = seq_len + 1
    held = max(int(round(stream.size * eval_fraction)), 2 * window)
    if stream.size - held < window:
        raise DataError(f"the training data is too short: {stream.size} tokens, but --seq-len {seq_len} needs at least "
                        f"{held + window} ({held} held out for evaluation, and one training window of {window})")
    fingerprint = hashlib.sha256(stream.tobytes()).hexdigest()[:16]
    return TokenStreams(stream[:-held], stream[-held:], len(files), fingerprint)


def batch_at(stream: np.ndarray, step: int, batch_size: int, seq_len: int, seed: int) -> np.ndarray:
    """The ``(batch_size, seq_len)`` int32 inputs of step ``step`` (a pure function of its arguments)."""
    rng = np.random.default_rng((seed, step))
    starts = rng.integers(0, stream.size - seq_len + 1, size=batch_size)
    return np.stack([stream[s:s + seq_len] for s in starts]).astype(np.int32)


def eval_windows(stream: np.ndarray, seq_len: int, max_windows: int) -> np.ndarray:
    """Consecutive ``seq_len`` windows of ``stream`` (at most ``max_windows``), ``(N, seq_len)`` int32."""
    n = min(stream.size // seq_len, max_windows)
    return stream[:n * seq_len].reshape(n, seq_len).astype(np.int32)


def eval_batches(windows: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(windows), batch_size):
        yield windows[start:start + batch_size]


__all__ = ["EVAL_FRACTION", "DataError", "TokenStreams", "batch_at", "eval_batches", "eval_windows", "read_text",
           "text_files", "tokenize_corpus"]
