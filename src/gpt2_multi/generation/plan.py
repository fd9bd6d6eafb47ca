"""``prepare``: everything ``generate()`` decides before any framework work, written once for the three stacks.

Every stack's ``generate`` turns its prompt tensors into numpy, calls :func:`prepare`, and runs the
returned :class:`Plan`: validated and expanded prompts, the resolved pad / eos / fill tokens, the
``(min_new, max_new)`` arithmetic and the hashable :class:`Settings` that key a compiled program.
So the three backends accept the same inputs, infer the same attention mask, raise the same error
with the same words, and compile one program per distinct :class:`Settings`.

The logits-processor pipeline (HF's order, each step's semantics) is specified here too, as
:data:`PROCESSORS` and :attr:`Settings.processors`; a stack implements each named step in its own
array ops and applies them in the order :attr:`Settings.processors` lists. The numpy oracle is
:func:`gpt2_multi.generation.reference.reference_process_logits`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpt2_multi import validation
from gpt2_multi.generation.config import GenerationConfig
from gpt2_multi.generation.sampling import seed_words

logger = logging.getLogger("gpt2_multi.generation")
_warned: set[str] = set()

#: The logits processors in the order they run, HF's order. On (N, V) float32 scores, with ``ids`` the
#: tokens so far (prompt, its padding included, then the new tokens):
#:
#: ``repetition_penalty``  every id present in ``ids``: score / p if the score is > 0, score * p if not.
#: ``no_repeat_ngram``     ban (-inf) every id that would complete an n-gram already in ``ids``.
#: ``min_new_tokens``      while fewer than ``min_new`` tokens are generated, every eos id -> -inf.
#: ``temperature``         score / t (sampling only).
#: ``top_k``               keep the k highest scores (ties with the k-th kept), -inf elsewhere (sampling only).
#: ``top_p``               sort ascending, softmax, cumulative sum; drop ids whose cumulative probability
#:                         is <= 1 - p, always keeping the most likely one (sampling only).
PROCESSORS: tuple[str, ...] = (
    "repetition_penalty", "no_repeat_ngram", "min_new_tokens", "temperature", "top_k", "top_p",
)


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logger.warning(message)


@dataclass(frozen=True)
class Settings:
    """The static part of a generation: what shapes the program, not its inputs (hashable; keys compiled code).

    Canonical: settings that cannot act are set to their neutral value (greedy has temperature 1.0,
    top_k 0, top_p 1.0; an eos id outside the vocabulary is dropped), so calls that decode the same
    way share one compiled program.
    """

    max_new: int
    min_new: int
    do_sample: bool
    num_beams: int
    num_return_sequences: int
    temperature: float
    top_k: int
    top_p: float
    repetition_penalty: float
    no_repeat_ngram_size: int
    eos: tuple[int, ...]
    pad: int  # written after a row's eos (greedy / sampling), and in unfilled beam slots
    length_penalty: float
    early_stopping: Any  # True / False / "never"
    output_scores: bool
    seeded: bool  # sampling draws from the shared counter-based stream (gpt2_multi.generation.sampling)

    @property
    def processors(self) -> tuple[str, ...]:
        """The active processors, in :data:`PROCESSORS` order."""
        active = {
            "repetition_penalty": self.repetition_penalty != 1.0,
            "no_repeat_ngram": self.no_repeat_ngram_size > 0,
            "min_new_tokens": self.min_new > 0 and bool(self.eos),
            "temperature": self.temperature != 1.0,
            "top_k": self.top_k > 0,
            "top_p": self.top_p < 1.0,
        }
        return tuple(name for name in PROCESSORS if active[name])

    @property
    def beam_candidates(self) -> int:
        """Candidates per prompt each beam step keeps: enough that ``num_beams`` survive even if as many end."""
        return max(2, 1 + len(self.eos)) * self.num_beams

    @property
    def expand(self) -> int:
        """Rows per prompt: ``num_beams`` for beam search, else ``num_return_sequences``."""
        return self.num_beams if self.num_beams > 1 else self.num_return_sequences


@dataclass
class Plan:
    """What a stack runs. ``input_ids`` / ``attention_mask`` (N, T) int32, each prompt repeated
    ``settings.expand`` times in place (HF's ``repeat_interleave``); ``batch_size`` B prompts."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    batch_size: int
    prompt_length: int
    settings: Settings
    config: GenerationConfig
    seed: tuple[int, int] | None  # the seed's (low, high) 32-bit words when ``seed=`` was given
    padded: bool  # some prompt has (left) padding

    @property
    def min_new(self) -> int:
        return self.settings.min_new

    @property
    def max_new(self) -> int:
        return self.settings.max_new

    @property
    def rows(self) -> int:
        return self.input_ids.shape[0]

    @property
    def total_length(self) -> int:
        return self.prompt_length + self.settings.max_new


def resolve_prompt(input_ids: Any, inputs: Any = None) -> Any:
    """HF's two names for the prompt (``input_ids``, and ``inputs`` as HF's generate calls it)."""
    if inputs is not None:
        if input_ids is not None:
            raise TypeError("pass the prompt as input_ids or as inputs, not both")
        input_ids = inputs
    if input_ids is None:
        raise validation.InputError("generate() needs input_ids (batch, prompt_length): a prompt of at least one token")
    return input_ids


def check_prompt(input_ids: Any, attention_mask: Any, vocab_size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate a prompt given as numpy-convertible arrays; returns (ids, mask) as int arrays.

    ``input_ids`` (B, T) integer ids in [0, vocab_size), T >= 1; a 1-D prompt is one row. ``attention_mask``
    (B, T) of 0 / 1 with at least one 1 per row.
    """
    ids = np.asarray(input_ids)
    if ids.ndim == 1:
        ids = ids[None, :]
    if ids.ndim != 2 or ids.shape[1] == 0 or ids.shape[0] == 0:
        raise validation.InputError(
            f"input_ids must be (batch, prompt_length) with batch >= 1 and prompt_length >= 1, got shape {tuple(ids.shape)}")
    if ids.dtype == bool or not np.issubdtype(ids.dtype, np.integer):
        raise validation.InputDtypeError(f"input_ids must hold integer token ids, got dtype {ids.dtype}")
    validation.check_input_ids(ids, vocab_size)
    if attention_mask is None:
        return ids.astype(np.int64), None
    mask = np.asarray(attention_mask)
    if mask.ndim == 1 and ids.shape[0] == 1:
        mask = mask[None, :]
    if tuple(mask.shape) != tuple(ids.shape):
        raise validation.InputShapeError(
            f"attention_mask has shape {tuple(mask.shape)} but input_ids has shape {tuple(ids.shape)}; they must match")
    if mask.size and not np.isin(mask, (0, 1)).all():
        bad = mask[~np.isin(mask, (0, 1))].flat[0]
        raise validation.InputError(f"attention_mask must hold only 0 (padding) and 1 (token), got {bad!r}")
    empty = np.flatnonzero(mask.sum(axis=1) == 0)
    if empty.size:
        raise validation.InputError(f"attention_mask row {int(empty[0])} has no token: every prompt needs at least one")
    return ids.astype(np.int64), mask.astype(np.int64)


def prepare(
    model_config: Any,
    base: GenerationConfig | None,
    kwargs: dict[str, Any],
    input_ids: Any,
    attention_mask: Any = None,
    seed: Any = None,
) -> Plan:
    """Validate and resolve one ``generate`` call; the same for every backend.

    Args:
        model_config: the model's :class:`~gpt2_multi.config.GPT2Config` (vocab_size, n_positions, token ids).
        base: the model's generation config (None: the model config's token ids); ``kwargs`` override it,
            and an unknown keyword is a ``TypeError`` naming it.
        input_ids, attention_mask: the prompt as numpy-convertible arrays (B, T); see :func:`check_prompt`.
        seed: an int in [0, 2**64) selects the shared counter-based sampling stream; None leaves sampling to
            the stack's own generator.

    Pad / eos (HF's rules): with no ``pad_token_id`` and an eos id, pad = the first eos (logged once). The
    attention mask, when not given, is ``input_ids != pad`` if the pad id occurs in the prompt and is not an
    eos id, else all ones. Right padding (a 0 in a row's last column) is logged once, as HF does. The fill of
    unfinished beam slots is HF's ``pad or eos[0] or -1``; greedy rows that ended get ``pad`` (0 without one).
    """
    if base is None:
        base = GenerationConfig.from_model_config(model_config)
    if not isinstance(base, GenerationConfig):
        raise TypeError(f"generation_config must be a GenerationConfig, got {type(base).__name__}")
    config = base.copy(**kwargs)  # TypeError naming unknown keywords; ValueError on bad values
    vocab = int(model_config.vocab_size)
    ids, mask = check_prompt(input_ids, attention_mask, vocab)
    batch, prompt_length = ids.shape
    min_new, max_new = config.new_tokens(prompt_length, int(model_config.n_positions))

    eos = config.eos_token_ids
    pad = config.pad_token_id
    if pad is None and eos:
        _warn_once(f"Setting `pad_token_id` to `eos_token_id`:{eos[0]} for open-end generation.")
        pad = eos[0]
    config.pad_token_id = pad
    if mask is None:
        if pad is not None and pad not in eos and bool((ids == pad).any()):
            mask = (ids != pad).astype(np.int64)
            if (mask.sum(axis=1) == 0).any():
                raise validation.InputError(
                    f"a prompt consists only of pad_token_id ({pad}): pass attention_mask, or a prompt with a token")
        else:
            mask = np.ones_like(ids)
    if pad is not None and bool((mask[:, -1] == 0).any()):
        _warn_once("A decoder-only architecture is being used, but right-padding was detected! For correct "
                   "generation results, please set `padding_side='left'` when initializing the tokenizer.")

    beams = config.num_beams
    if beams > 1:
        fill = pad if pad else (eos[0] if eos else -1)  # HF 4.57: `pad_token_id or eos_token_id[0]`, else -1
    else:
        fill = pad if pad is not None else 0
    sample = bool(config.do_sample)
    top_k = int(config.top_k) if sample and 0 < config.top_k < vocab else 0
    words = None
    if seed is not None:
        words = seed_words(seed)
    settings = Settings(
        max_new=int(max_new), min_new=int(min_new), do_sample=sample, num_beams=int(beams),
        num_return_sequences=int(config.num_return_sequences),
        temperature=float(config.temperature) if sample else 1.0, top_k=top_k,
        top_p=float(config.top_p) if sample else 1.0, repetition_penalty=float(config.repetition_penalty),
        no_repeat_ngram_size=int(config.no_repeat_ngram_size), eos=tuple(e for e in eos if e < vocab),
        pad=int(fill), length_penalty=float(config.length_penalty), early_stopping=config.early_stopping,
        output_scores=bool(config.output_scores),
        seeded=sample and words is not None,
    )
    expand = settings.expand
    padded = not bool(mask.all())
    ids = np.repeat(ids, expand, axis=0).astype(np.int32)
    mask = np.repeat(mask, expand, axis=0).astype(np.int32)
    return Plan(input_ids=ids, attention_mask=mask, batch_size=batch, prompt_length=prompt_length,
                settings=settings, config=config, seed=words, padded=padded)


__all__ = ["PROCESSORS", "Plan", "Settings", "check_prompt", "prepare", "resolve_prompt"]
