"""``GPT2TokenizerFast``: the same contract as ``GPT2Tokenizer`` on compiled engines.

* ids: for GPT-2's own vocabulary, ``tiktoken`` (a ``tiktoken.Encoding`` built offline from
  vocab.json: each token's bytes ranked by its id, GPT-2's pattern, ``<|endoftext|>`` as special
  token); tiktoken's rank-ordered BPE gives the same ids as the merges-ordered BPE for this
  vocabulary (checked by the tests and the benchmark). Any other vocabulary uses the Rust
  ``tokenizers`` BPE, which is HF's own fast engine.
* each token's characters and word (``return_offsets_mapping=True``, a BatchEncoding's alignment
  methods) and ``tokenizer.json``: a ``tokenizers.Tokenizer`` that mirrors this tokenizer's state
  (added tokens, ``add_prefix_space``), built on first use.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from gpt2_multi.io_utils import atomic_write_text
from gpt2_multi.tokenization import bpe, parallel
from gpt2_multi.tokenization.base import GPT2TokenizerBase, TextTypeError
from gpt2_multi.tokenization.serialization import merge_json_added_tokens

logger = logging.getLogger(__name__)

_NOTHING: frozenset[str] = frozenset()


def _chars(value: Any) -> int:
    """The size of one text (a str, or a list of words) in characters, to share a batch among threads."""
    return len(value) if isinstance(value, str) else sum(len(word) for word in value)


@functools.lru_cache(maxsize=1)
def builtin_tiktoken_encoding() -> Any:
    """A ``tiktoken.Encoding`` for GPT-2's vocabulary, built from the package data (no download)."""
    import tiktoken

    vocab, _ = bpe.builtin_vocab_and_merges()
    ranks: dict[bytes, int] = {}
    for token, index in vocab.items():
        if token == bpe.ENDOFTEXT:
            continue
        data = bpe.token_to_bytes(token)
        if data is None:
            raise ValueError(f"the built-in vocabulary has a token that is not byte-level: {token!r}")
        ranks[data] = index
    return tiktoken.Encoding(
        name="gpt2_multi_gpt2",
        pat_str=bpe.GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={bpe.ENDOFTEXT: vocab[bpe.ENDOFTEXT]},
        explicit_n_vocab=len(vocab),
    )


def build_rust_tokenizer(
    vocab: dict[str, int],
    merges: list[tuple[str, str]],
    add_prefix_space: bool = False,
    added: dict[int, Any] | None = None,
    unk_token: str | None = None,
) -> Any:
    """A ``tokenizers.Tokenizer`` laid out like HF's GPT-2 ``tokenizer.json``, with ``added`` (id -> AddedToken);
    ``unk_token`` is what a byte the vocabulary lacks becomes."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    tokenizer = Tokenizer(models.BPE(vocab=dict(vocab), merges=list(merges), unk_token=unk_token))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space, use_regex=True)
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.decoder = decoders.ByteLevel()
    for index in sorted(added or {}):
        token = added[index]
        rust = AddedToken(
            token.content, single_word=token.single_word, lstrip=token.lstrip, rstrip=token.rstrip,
            normalized=token.normalized, special=token.special,
        )
        if token.special:
            tokenizer.add_special_tokens([rust])
        else:
            tokenizer.add_tokens([rust])
        got = tokenizer.token_to_id(token.content)
        if got != index:
            raise RuntimeError(f"the tokenizers library put added token {token.content!r} at id {got}, not {index}")
    return tokenizer


class GPT2TokenizerFast(GPT2TokenizerBase):
    """GPT-2's tokenizer on tiktoken / Rust ``tokenizers``, with HF's ``GPT2TokenizerFast`` API and ids.

    Built from ``vocab_file`` + ``merges_file`` or from ``tokenizer_file`` (HF's tokenizer.json);
    usually via :meth:`from_pretrained`. Pre-split input (``is_split_into_words=True``) needs
    ``add_prefix_space=True``, as in HF.

    A batch (``tokenizer(list_of_texts)``) of GPT-2's own vocabulary is encoded on a thread per CPU when
    it holds at least 32K characters; ``TOKENIZERS_PARALLELISM=false`` or ``GPT2_MULTI_TOKENIZER_THREADS=1``
    turn that off (see :mod:`gpt2_multi.tokenization.parallel`). The ids are the same either way.

    >>> tok = GPT2TokenizerFast.from_pretrained("gpt2")
    >>> tok("Hello world").input_ids
    [15496, 995]
    """

    is_fast = True
    vocab_files_names = {**GPT2TokenizerBase.vocab_files_names, "tokenizer_file": bpe.TOKENIZER_FILE}

    def __init__(self, vocab_file: Any = None, merges_file: Any = None, tokenizer_file: Any = None, **kwargs: Any) -> None:
        if tokenizer_file is not None and kwargs.get("vocab") is None:
            path = Path(tokenizer_file)
            if not path.is_file():
                raise FileNotFoundError(f"tokenizer_file {str(path)!r} does not exist or is not a file")
            builtin = bpe.builtin_dir()
            if path.resolve() == (builtin / bpe.TOKENIZER_FILE).resolve():
                # The shipped tokenizer.json holds the shipped vocab.json/merges.txt (read faster, and cached).
                vocab_file, merges_file = builtin / bpe.VOCAB_FILE, builtin / bpe.MERGES_FILE
            else:
                # Like HF, tokenizer.json wins over vocab.json/merges.txt when both are given.
                data = bpe.load_tokenizer_json(path)
                kwargs["vocab"], kwargs["merges"] = data["vocab"], data["merges"]
                merge_json_added_tokens(kwargs, data)
                vocab_file = merges_file = None
        self._rust_cache: tuple[Any, Any] | None = None
        self._version = 0
        self._tiktoken = None  # set by _post_init, after the base class has registered the special tokens
        self._plain_rust = None
        self._fallback: bpe.TextEncoder | None = None
        super().__init__(vocab_file, merges_file, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        # tiktoken's Rust encoder does not pickle (its Encoding does, and gives it back on unpickling).
        state = self.__dict__.copy()
        state["_core_encode"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self._tiktoken is not None:
            self._core_encode = self._tiktoken._core_bpe.encode

    # -- engines -----------------------------------------------------------------------------------------

    def _post_init(self) -> None:
        self._tiktoken = None
        self._core_encode = None
        self._plain_rust = None
        if self._is_builtin_vocab:
            try:
                self._tiktoken = builtin_tiktoken_encoding()
            except ImportError:
                logger.warning("tiktoken is not installed: GPT2TokenizerFast falls back to the tokenizers library")
            else:
                self._core_encode = self._tiktoken._core_bpe.encode  # (text, allowed special tokens) -> ids
        if self._tiktoken is None:
            self._plain_rust = build_rust_tokenizer(self.encoder, self.bpe_merges, unk_token=self._unk_for_missing_bytes())
        self._on_added_tokens_changed()

    def _on_added_tokens_changed(self) -> None:
        self._version += 1
        self._direct: set[str] | None = None
        self._direct_split: bool = False
        if self._tiktoken is None:
            return
        special = self._tiktoken._special_tokens  # {"<|endoftext|>": 50256}
        plain = all(not (t.single_word or t.lstrip or t.rstrip) for t in self._added.values())
        if plain and all(special.get(t.content) == i for i, t in self._added.items()):
            # Every added token is one tiktoken already knows: let tiktoken split on them itself.
            self._direct = {t.content for t in self._added.values()}
            self._direct_split = all(t.special for t in self._added.values())

    def _encode_ordinary(self, segments: list[str]) -> list[list[int]]:
        if not segments:
            return []
        if self._tiktoken is not None:
            # encode() with nothing allowed, not encode_ordinary(): on a regex failure the former raises
            # ValueError while the latter panics (an uncatchable-looking PanicException and a backtrace).
            encode = self._tiktoken.encode
            nothing: frozenset[str] = frozenset()
            out = []
            for segment in segments:
                try:
                    out.append(encode(segment, allowed_special=nothing, disallowed_special=()))
                except ValueError as err:
                    out.append(self._regex_fallback(segment, err))
            return out
        return [e.ids for e in self._plain_rust.encode_batch(segments, add_special_tokens=False)]

    def _regex_fallback(self, segment: str, err: ValueError) -> list[int]:
        """tiktoken's regex engine gives up on some huge inputs (e.g. a million newlines: its backtracking
        stack overflows); such text goes through the pure Python engine, which gives the same ids."""
        if "regex" not in str(err).lower():
            raise err
        if self._fallback is None:
            from gpt2_multi.tokenization.slow import _builtin_encoder

            self._fallback = bpe.TextEncoder(_builtin_encoder().encode_bytes)
        return self._fallback.encode(segment)

    def _encode_one(self, value: Any, is_split: bool, split_special: bool) -> list[int]:
        if not is_split and self._direct is not None and not self.add_prefix_space:
            # tiktoken's Rust encoder, called directly (what tiktoken.Encoding.encode calls after its argument
            # checks, which do nothing here): it refuses a lone surrogate (UnicodeEncodeError) without a scan
            # of the text on this side.
            try:
                if not split_special:
                    return self._core_encode(value, self._direct)
                if self._direct_split:
                    return self._core_encode(value, _NOTHING)
            except UnicodeEncodeError:
                self._check_encodable(value)  # raises this package's ValueError, naming the position
                raise
            except ValueError as err:
                if "regex" not in str(err).lower():
                    raise
                # Fall through: split on added tokens here and encode each piece (with the fallback if needed).
        return super()._encode_one(value, is_split, split_special)

    def _encode_examples(
        self, examples: list[tuple[Any, Any]], is_split: bool, split_special: bool
    ) -> list[tuple[list[int], list[int] | None]] | None:
        """A batch's texts encoded on a thread pool (tiktoken releases the GIL while it encodes): see
        :mod:`gpt2_multi.tokenization.parallel` for when it is used and how to turn it off."""
        if self._tiktoken is None or len(examples) < 2:
            return None  # the tokenizers library's engine runs its own threads
        threads = parallel.num_threads()
        if threads <= 1:
            return None
        sizes = [_chars(first) + (0 if second is None else _chars(second)) for first, second in examples]
        if sum(sizes) < parallel.MIN_PARALLEL_CHARS:
            return None
        encode = self._encode_one

        def one(example: tuple[Any, Any]) -> tuple[list[int], list[int] | None]:
            first, second = example
            return encode(first, is_split, split_special), None if second is None else encode(second, is_split, split_special)

        try:
            return parallel.map_ordered(one, examples, sizes, threads)
        except Exception:
            # Let the caller's one-by-one loop raise the error it meets first, in the batch's order.
            return None

    def _sequence_argument(self, text: list | tuple, text_pair: Any, method: str) -> tuple[Any, Any, bool]:
        """As HF's ``GPT2TokenizerFast``, whose Rust encoder reads two str as a pair: ``encode(("Hello world",
        "x"))`` is ``encode("Hello world", "x")``; any other list or tuple is a TypeError there, and here."""
        if text_pair is None and len(text) == 2 and all(isinstance(t, str) for t in text):
            return text[0], text[1], False
        raise TextTypeError(
            f"{method} takes one text (a str), or (text, text_pair) as two str as HF's GPT2TokenizerFast does, got "
            f"{type(text).__name__} of {len(text)}{' and a text_pair' if text_pair is not None else ''}; use "
            "tokenizer(list_of_texts) for a batch, or is_split_into_words=True for a list of words"
        )

    def _check_split_words(self) -> None:
        if not self.add_prefix_space:
            raise ValueError(
                "GPT2TokenizerFast encodes pre-split words (is_split_into_words=True) only when it was created "
                "with add_prefix_space=True, e.g. GPT2TokenizerFast.from_pretrained('gpt2', add_prefix_space=True) "
                "(HF's GPT2TokenizerFast has the same requirement)"
            )

    @property
    def backend_tokenizer(self) -> Any:
        """A ``tokenizers.Tokenizer`` with this tokenizer's vocabulary, added tokens and ``add_prefix_space``.

        It is rebuilt when those change; changing it does not change this tokenizer.
        """
        key = (self._version, self.add_prefix_space)
        if self._rust_cache is None or self._rust_cache[0] != key:
            self._rust_cache = (key, build_rust_tokenizer(self.encoder, self.bpe_merges, self.add_prefix_space, self._added,
                                                          unk_token=self._unk_for_missing_bytes()))
        return self._rust_cache[1]

    def _places_one(self, value: Any, is_split: bool, split_special: bool) -> tuple[list[int], list[tuple[int, int, int]]]:
        if is_split:
            for word in value:
                self._check_encodable(word)
        else:
            self._check_encodable(value)
        rust = self.backend_tokenizer
        rust.encode_special_tokens = split_special
        encoding = rust.encode(value, is_pretokenized=is_split, add_special_tokens=False)
        return list(encoding.ids), [(start, end, word) for (start, end), word in zip(encoding.offsets, encoding.word_ids)]

    # -- saving/loading -------------------------------------------------------------------------------

    def _save_extra(self, directory: Path, prefix: str) -> list[str]:
        path = directory / f"{prefix}{bpe.TOKENIZER_FILE}"
        atomic_write_text(path, self.backend_tokenizer.to_str(pretty=True) + "\n")
        return [str(path)]

    @classmethod
    def _from_init(cls, init: dict[str, Any]) -> GPT2TokenizerFast:
        return cls(**init)
