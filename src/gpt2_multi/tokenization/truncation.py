"""Truncation and padding of token sequences: pure functions on lists, no tokenizer state.

HF's tokenizers truncate in two ways, and this module has both:

* **Calling a tokenizer** (``tok(text, truncation=...)``): HF's fast tokenizer's engine (Rust
  ``tokenizers``). :func:`keep_lengths` says how many tokens of each sequence stay, :func:`cut` keeps
  them, :func:`windows` gives what ``return_overflowing_tokens`` returns.
* **prepare_for_model / truncate_sequences** (both HF classes run HF's Python code for these):
  :func:`truncate_sequences` removes tokens one at a time. With a pair and ``longest_first`` the
  two ways can split the budget differently (5 + 5 tokens to 7: Rust keeps 3 + 4, Python 4 + 3).

The values truncated are any per-token items (ids, offsets, ...), so the same cut applies to each
field of a row. ``side`` is the tokenizer's ``truncation_side`` or ``padding_side``: "right" or "left".
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any, TypeVar

T = TypeVar("T")

PADDING_STRATEGIES = ("longest", "max_length", "do_not_pad")
TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second", "do_not_truncate")


# ---------------------------------------------------------------------------------------------------------
# The fast engine's truncation (tokenizer calls).


def keep_lengths(n1: int, n2: int | None, strategy: str, max_length: int | None, n_special: int) -> tuple[int, int | None]:
    """How many tokens of each sequence (``n1``, and ``n2`` or None for a single one) HF's fast engine keeps
    when the row, with its ``n_special`` special tokens, must fit ``max_length``."""
    if strategy == "do_not_truncate" or max_length is None:
        return n1, n2
    total = n1 + (n2 or 0)
    budget = max_length - n_special
    if budget < 0:
        raise ValueError(f"max_length={max_length} is smaller than the {n_special} special tokens this tokenizer adds")
    if total <= budget:
        return n1, n2
    if budget == 0:  # HF's engine empties every sequence, whatever the strategy
        return 0, None if n2 is None else 0
    remove = total - budget
    if strategy == "longest_first":
        if n2 is None:
            return budget, None
        a, b = min(n1, n2), max(n1, n2)
        b = a if a > budget else max(a, budget - a)
        if a + b > budget:
            a = budget // 2
            b = a + budget % 2
        return (b, a) if n1 > n2 else (a, b)
    if strategy == "only_second" and n2 is None:
        raise ValueError(
            f"truncation='only_second' was asked for a single sequence of {total} tokens > max_length={max_length}; "
            "it needs a text_pair (use truncation=True or 'only_first')"
        )
    target = n1 if strategy == "only_first" else n2
    assert target is not None
    if target <= remove:
        raise _cannot_remove(strategy, remove, target)
    return (n1 - remove, n2) if strategy == "only_first" else (n1, target - remove)


def _cannot_remove(strategy: str, remove: int, length: int) -> ValueError:
    which = "first" if strategy == "only_first" else "second"
    other = "'only_second' or 'longest_first'" if which == "first" else "'only_first' or 'longest_first'"
    return ValueError(
        f"truncation={strategy!r} must remove {remove} tokens, but the {which} sequence has only "
        f"{length}; use another strategy ({other})"
    )


def cut(values: list[T], keep: int, side: str = "right") -> list[T]:
    """The ``keep`` items of ``values`` that truncation on ``side`` leaves."""
    if len(values) <= keep:
        return values
    return values[len(values) - keep :] if side == "left" else values[:keep]


def check_stride(lengths: Mapping[str, tuple[int, int | None]], stride: int) -> None:
    """HF's engine cannot cut a sequence into windows of ``keep`` tokens with a stride that is not smaller.
    ``lengths``: sequence name -> (its length, the tokens kept)."""
    for name, (length, keep) in lengths.items():
        if keep is not None and 0 < keep < length and stride >= keep:
            raise ValueError(
                f"stride={stride} must be less than the {keep} tokens truncation keeps of the {name} sequence; "
                "use a smaller stride or another truncation strategy"
            )


def windows(values: list[T], keep: int, stride: int, side: str = "right") -> list[list[T]]:
    """HF's engine's overflow: the kept part of ``values`` first, then the windows of ``keep`` items that
    overlap the previous one by ``stride``, walking away from the kept side."""
    n = len(values)
    if keep >= n:
        return [values]
    if keep == 0:
        return [values[:0], values]
    step = keep - stride
    parts = []
    if side == "left":
        stop = n
        while True:
            start = max(stop - keep, 0)
            parts.append(values[start:stop])
            if start == 0:
                return parts
            stop -= step
    start = 0
    while True:
        stop = min(start + keep, n)
        parts.append(values[start:stop])
        if stop == n:
            return parts
        start += step


# ---------------------------------------------------------------------------------------------------------
# HF's Python truncation (prepare_for_model, truncate_sequences).


def truncate_sequences(
    ids: list[T],
    pair_ids: list[T] | None = None,
    num_tokens_to_remove: int = 0,
    truncation_strategy: str = "longest_first",
    stride: int = 0,
    side: str = "right",
) -> tuple[list[T], list[T] | None, list[T]]:
    """HF's ``truncate_sequences``: remove ``num_tokens_to_remove`` tokens; returns (ids, pair_ids, overflowing).

    ``longest_first`` removes tokens from the longer sequence until both are as long, then from both
    (the odd one from the second); with a pair it returns no overflowing tokens (HF refuses to, see :func:`check_overflow`). ``only_first`` /
    ``only_second`` (and ``longest_first`` on one sequence) return the removed tokens plus ``stride`` tokens
    of context as the overflow. Removing as many tokens as the sequence has is a ValueError (HF logs
    an error and returns the sequences untruncated).
    """
    if num_tokens_to_remove <= 0 or truncation_strategy == "do_not_truncate":
        return ids, pair_ids, []
    strategy = truncation_strategy
    if strategy == "longest_first" and pair_ids is None:
        strategy = "only_first"
    if strategy == "only_second" and pair_ids is None:
        raise ValueError("truncation='only_second' needs a pair of sequences (use 'only_first' or 'longest_first')")
    if strategy in ("only_first", "only_second"):
        target = ids if strategy == "only_first" else pair_ids
        assert target is not None
        if len(target) <= num_tokens_to_remove:
            raise _cannot_remove(strategy, num_tokens_to_remove, len(target))
        width = min(len(target), stride + num_tokens_to_remove)
        if side == "left":
            overflow, kept = target[:width], target[num_tokens_to_remove:]
        else:
            overflow, kept = target[-width:], target[:-num_tokens_to_remove]
        return (kept, pair_ids, overflow) if strategy == "only_first" else (ids, kept, overflow)
    if strategy != "longest_first":
        raise ValueError(f"truncation strategy must be one of {', '.join(map(repr, TRUNCATION_STRATEGIES))}, got {strategy!r}")
    assert pair_ids is not None
    n1, n2 = len(ids), len(pair_ids)
    first = min(abs(n1 - n2), num_tokens_to_remove)  # from the longer one, down to the shorter one's length
    rest = num_tokens_to_remove - first  # then from both, the odd one from the second
    remove_1, remove_2 = (first + rest // 2, rest - rest // 2) if n1 > n2 else (rest // 2, first + rest - rest // 2)
    return cut(ids, max(n1 - remove_1, 0), side), cut(pair_ids, max(n2 - remove_2, 0), side), []


def check_overflow(strategy: str, pair: bool) -> None:
    """HF's rule: overflowing tokens of a pair need ``only_first`` or ``only_second``."""
    if pair and strategy == "longest_first":
        raise ValueError(
            "return_overflowing_tokens=True with a pair and truncation='longest_first' is not possible in "
            "prepare_for_model (as in HF); use truncation='only_first' or 'only_second', or call the tokenizer, "
            "which returns every window"
        )


# ---------------------------------------------------------------------------------------------------------
# Padding.


def padded_length(lengths: list[int], strategy: str, max_length: int | None, multiple: int | None) -> int | None:
    """The length rows are padded to (None: no padding): the longest or ``max_length``, rounded up to ``multiple``."""
    if strategy == "do_not_pad" or not lengths:
        return None
    if strategy == "longest":
        length = max(lengths)
    else:
        if max_length is None:
            raise ValueError("padding='max_length' needs a max_length")
        length = max_length
    if multiple is not None and length % multiple:
        length += multiple - length % multiple
    return length


def pad_row(row: MutableMapping[str, list[Any]], length: int, fill: Mapping[str, Any], side: str = "right") -> None:
    """Pad each field of ``row`` named in ``fill`` with its fill value to ``length`` (measured on input_ids)."""
    missing = length - len(row["input_ids"])
    if missing <= 0:
        return
    for key, value in row.items():
        if key in fill:
            pad = [fill[key]] * missing
            row[key] = pad + value if side == "left" else value + pad
