"""The call contract shared by :class:`GPT2Tokenizer` and :class:`GPT2TokenizerFast`.

It follows HF transformers' tokenizers (``tok(text, ...)``, ``encode``, ``decode``, special
tokens, added tokens, padding, truncation, tensors, ``save_pretrained``/``from_pretrained``).
Where HF's slow and fast GPT-2 tokenizers disagree, this module follows the fast one
(``GPT2TokenizerFast``, i.e. the Rust ``tokenizers`` library), because both of our classes must give
the ids HF's fast tokenizer gives. The differences from HF are listed in :class:`GPT2TokenizerBase`.

A subclass provides the BPE engine: :meth:`GPT2TokenizerBase._encode_ordinary` turns text that
holds no added token into ids.

Where each part lives (this module keeps the public class and its methods, which delegate):

* ``base.py`` (here): :class:`GPT2TokenizerBase`, the HF contract: the constructor, special-token
  attributes, the call (argument checks, encoding, special tokens around sequences), ``encode*``,
  ``pad``, ``prepare_for_model``, ``apply_chat_template``, decoding, ``save_pretrained`` /
  ``from_pretrained``; :class:`InvalidTokenIdError`, :class:`TextTypeError`.
* ``added_tokens.py``: :class:`AddedToken`, the added-token table (ids, contents, new ids), splitting
  text on added tokens with HF's rules, coercing the tokens given to the special-token arguments.
* ``encoding.py``: :class:`BatchEncoding`, :class:`Encoding` (token <-> text alignment), tensors.
* ``truncation.py``: truncation and padding as pure functions on id lists.
* ``serialization.py``: HF's files: finding a tokenizer's directory, reading vocab.json, merges.txt,
  tokenizer.json, tokenizer_config.json, special_tokens_map.json, added_tokens.json into constructor
  arguments, and writing them (``save_pretrained`` here decides which files ``legacy_format`` asks
  for; serialization.py writes them).
* ``chat.py``: chat templates (Jinja rendering, template files); ``bpe.py``: the vocabulary and BPE
  engines; ``slow.py`` / ``fast.py``: the two classes.

Names that moved keep their import path here: ``AddedToken``, ``SPECIAL_TOKEN_NAMES``,
``TOKENIZER_CONFIG_FILE``, ``SPECIAL_TOKENS_MAP_FILE``, ``ADDED_TOKENS_FILE``, ``FETCH_OPTIONS``,
``LOADER_OPTIONS``, ``merge_json_added_tokens``, ``BatchEncoding``, ``Encoding``, ``TENSOR_TYPES``,
``check_tensor_type``, ``to_tensor``.
"""

from __future__ import annotations

import codecs
import copy
import functools
import logging
import operator
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from gpt2_multi.tokenization import added_tokens, bpe, chat, serialization
from gpt2_multi.tokenization import truncation as truncating
from gpt2_multi.tokenization.added_tokens import SPECIAL_TOKEN_NAMES, AddedToken, AddedTokenTable
from gpt2_multi.tokenization.encoding import (  # noqa: F401  (check_tensor_type, to_tensor: public here too)
    TENSOR_TYPES,
    BatchEncoding,
    Encoding,
    check_tensor_type,
    to_tensor,
)
from gpt2_multi.tokenization.serialization import (  # noqa: F401  (the file names and merge_json_added_tokens: public here too)
    ADDED_TOKENS_FILE,
    FETCH_OPTIONS,
    LOADER_OPTIONS,
    SPECIAL_TOKENS_MAP_FILE,
    TOKENIZER_CONFIG_FILE,
    merge_json_added_tokens,
)
from gpt2_multi.tokenization.truncation import PADDING_STRATEGIES, TRUNCATION_STRATEGIES

logger = logging.getLogger(__name__)

_T = TypeVar("_T", bound="GPT2TokenizerBase")

# HF's "no limit" value for model_max_length.
VERY_LARGE_INTEGER = int(1e30)
LARGE_INTEGER = int(1e20)

# The replacements of HF's clean_up_tokenization (undo spaces before punctuation and contractions).
_CLEAN_UP = (
    (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
    (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
)


class InvalidTokenIdError(ValueError, IndexError):
    """A token id outside the vocabulary (both a ValueError and an IndexError)."""


# ---------------------------------------------------------------------------------------------------------
# The base class.


def _side(value: str, name: str) -> str:
    """A ``padding_side`` / ``truncation_side`` value, checked."""
    if value not in ("right", "left"):
        raise ValueError(f"{name} must be 'right' or 'left', got {value!r}")
    return value


def _as_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


class TextTypeError(TypeError, ValueError):
    """A text argument of the wrong type. HF raises ValueError here ("Input is not valid"), so ``except
    ValueError`` code keeps working; it is a TypeError too, which is what it is."""


class GPT2TokenizerBase:
    """Everything but the BPE engine: special/added tokens, the call contract, decoding, saving and loading.

    Differences from HF, on purpose:

    * both classes give HF's *fast* tokenizer's ids, including where HF's slow tokenizer differs
      (``add_prefix_space`` adds the space to every piece between added tokens; pre-split words
      that already start with a space get no second one; pair truncation with ``longest_first``);
    * ``add_bos_token=True`` prepends ``bos_token`` in both classes (HF's fast tokenizer ignores it);
    * ``decode`` writes an added token's text as it is (HF's fast tokenizer pushes it through the
      byte-level decoder, which garbles added tokens with characters such as ``é``);
    * ids outside the vocabulary raise :class:`InvalidTokenIdError` instead of being dropped;
    * text with a lone surrogate raises ValueError (it has no UTF-8 bytes).
    """

    vocab_files_names: ClassVar[dict[str, str]] = {"vocab_file": bpe.VOCAB_FILE, "merges_file": bpe.MERGES_FILE}
    model_input_names: ClassVar[list[str]] = ["input_ids", "attention_mask"]
    is_fast: ClassVar[bool] = False
    pad_token_type_id: int = 0

    def __init__(
        self,
        vocab_file: str | os.PathLike | None = None,
        merges_file: str | os.PathLike | None = None,
        *,
        vocab: Mapping[str, int] | None = None,
        merges: Sequence[Any] | None = None,
        errors: str = "replace",
        unk_token: Any = bpe.ENDOFTEXT,
        bos_token: Any = bpe.ENDOFTEXT,
        eos_token: Any = bpe.ENDOFTEXT,
        pad_token: Any = None,
        sep_token: Any = None,
        cls_token: Any = None,
        mask_token: Any = None,
        additional_special_tokens: Sequence[Any] | None = None,
        add_prefix_space: bool = False,
        add_bos_token: bool = False,
        model_max_length: int = VERY_LARGE_INTEGER,
        padding_side: str = "right",
        truncation_side: str = "right",
        clean_up_tokenization_spaces: bool = False,
        split_special_tokens: bool = False,
        added_tokens_decoder: Mapping[int | str, Any] | None = None,
        name_or_path: str = "",
        verbose: bool | None = None,
        chat_template: Any = None,
        **kwargs: Any,
    ) -> None:
        if vocab is None and merges is None:
            if vocab_file is None or merges_file is None:
                raise TypeError(
                    f"{type(self).__name__} needs vocab_file and merges_file (or vocab= and merges=); "
                    f"use {type(self).__name__}.from_pretrained('gpt2') for GPT-2's own vocabulary"
                )
            vocab, merges = serialization.read_vocab_files(vocab_file, merges_file)
        elif vocab is None or merges is None:
            raise TypeError("pass both vocab= and merges=, or neither")
        else:
            vocab = bpe.check_vocab(dict(vocab))
            merges = bpe.check_merges(list(merges))
        self.encoder: dict[str, int] = vocab
        self.bpe_merges: list[tuple[str, str]] = merges
        builtin_vocab, builtin_merges = bpe.builtin_vocab_and_merges()
        # True when this is GPT-2's own vocabulary (engines and tables built for it are shared).
        self._is_builtin_vocab = vocab == builtin_vocab and merges == builtin_merges
        self._missing_bytes: list[str] = []
        if not self._is_builtin_vocab:
            bpe.check_merges_in_vocab(vocab, merges)
            self._missing_bytes = bpe.missing_byte_tokens(vocab)
        tables = bpe.builtin_id_tables() if self._is_builtin_vocab else bpe.id_tables(vocab)
        self._base_tokens, self._base_bytes = tables
        self._base_size = len(self._base_tokens)

        try:
            codecs.lookup_error(errors)
        except (LookupError, TypeError):
            raise ValueError(f"errors={errors!r} is not a codec error handler (use 'replace', 'strict', 'ignore', ...)") from None
        self.errors = errors
        self.add_prefix_space = _as_bool(add_prefix_space, "add_prefix_space")
        self.add_bos_token = _as_bool(add_bos_token, "add_bos_token")
        self.clean_up_tokenization_spaces = _as_bool(clean_up_tokenization_spaces, "clean_up_tokenization_spaces")
        self.split_special_tokens = _as_bool(split_special_tokens, "split_special_tokens")
        if isinstance(model_max_length, bool) or not isinstance(model_max_length, int) or model_max_length <= 0:
            raise ValueError(f"model_max_length must be a positive int, got {model_max_length!r}")
        self.model_max_length = model_max_length
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        self.name_or_path = str(name_or_path)
        self.verbose = bool(verbose)  # HF's default: False
        #: a Jinja chat template, or templates by name; None for GPT-2 (see :meth:`apply_chat_template`)
        self.chat_template: str | dict[str, str] | None = chat.normalize_templates(chat_template)
        # HF keeps keywords it has no use for in init_kwargs (and writes them to tokenizer_config.json), and
        # verbose= when given; so do we. The loaders' own options (use_fast=, revision= ...) pass silently; the
        # rest change nothing for GPT-2's byte-level BPE, which a warning says once.
        self.init_kwargs: dict[str, Any] = dict(kwargs)
        if verbose is not None:
            self.init_kwargs["verbose"] = verbose
        inert = sorted(k for k in kwargs if k not in LOADER_OPTIONS)
        if inert:
            logger.warning("%s: keyword argument(s) %s change nothing for GPT-2's byte-level BPE tokenizer; they are "
                           "kept in init_kwargs and saved in tokenizer_config.json, as HF does", type(self).__name__,
                           ", ".join(inert))

        self._table = AddedTokenTable(self.encoder, self._base_tokens)
        # The table's two maps, bound here for the hot paths (the table changes them in place, never rebinds them).
        self._added: dict[int, AddedToken] = self._table.by_id  # id -> token
        self._added_ids: dict[str, int] = self._table.by_content  # content -> id
        self._special: dict[str, AddedToken | str | None] = dict.fromkeys(SPECIAL_TOKEN_NAMES)
        self._additional: list[AddedToken | str] = []
        self._special_ids_cache: frozenset[int] | None = None
        self._table.register_decoder(added_tokens_decoder or {})

        specials = {
            "bos_token": bos_token, "eos_token": eos_token, "unk_token": unk_token, "sep_token": sep_token,
            "pad_token": pad_token, "cls_token": cls_token, "mask_token": mask_token,
        }
        to_add: list[AddedToken] = []
        for name, token in specials.items():
            if token is None:
                continue
            added = added_tokens.special_token(token, name)
            self._special[name] = added
            to_add.append(added)
        for token in additional_special_tokens or ():
            added = added_tokens.special_token(token, "additional_special_tokens")
            self._additional.append(added)
            to_add.append(added)
        # Like HF: special tokens given at construction are registered so that they are never split.
        self._add_tokens([t for t in to_add if t.content not in self._added_ids], special=True)
        if self._missing_bytes:
            unk = self._unk_for_missing_bytes()
            logger.warning(
                "%s: the vocabulary lacks %d of the 256 single-byte tokens (e.g. %s); text with those bytes encodes "
                "each of them as %s, as HF's GPT2Tokenizer does", type(self).__name__, len(self._missing_bytes),
                ", ".join(map(repr, self._missing_bytes[:5])),
                f"unk_token {unk!r}" if unk is not None else "nothing (the vocabulary has no unk_token either)")
        self._post_init()

    # -- engine hooks -------------------------------------------------------------------------------------

    def _unk_for_missing_bytes(self) -> str | None:
        """The token a byte without its own token becomes: ``unk_token`` when the vocabulary has it, else None."""
        unk = self._special.get("unk_token")
        return str(unk) if self._missing_bytes and unk is not None and str(unk) in self.encoder else None

    def _post_init(self) -> None:
        """Build the BPE engine (subclasses)."""

    def _encode_ordinary(self, segments: list[str]) -> list[list[int]]:
        """ids of texts that hold no added token (no special tokens, no prefix space added)."""
        raise NotImplementedError

    def _on_added_tokens_changed(self) -> None:
        """Called after the added tokens changed (subclasses drop what depends on them)."""

    # -- simple properties -----------------------------------------------------------------------------

    @property
    def padding_side(self) -> str:
        """Where padding goes: "right" (default) or "left" (for generation)."""
        return self._padding_side

    @padding_side.setter
    def padding_side(self, value: str) -> None:
        self._padding_side = _side(value, "padding_side")

    @property
    def truncation_side(self) -> str:
        """Which end truncation cuts: "right" (default) or "left"."""
        return self._truncation_side

    @truncation_side.setter
    def truncation_side(self, value: str) -> None:
        self._truncation_side = _side(value, "truncation_side")

    @property
    def vocab_size(self) -> int:
        """Size of the base BPE vocabulary, without added tokens (50257 for GPT-2)."""
        return len(self.encoder)

    def __len__(self) -> int:
        """Size of the full vocabulary: base plus added tokens (HF's ``len(tokenizer)``)."""
        return len(self.encoder) + sum(1 for content in self._added_ids if content not in self.encoder)

    def get_vocab(self) -> dict[str, int]:
        """token -> id for the base vocabulary and the added tokens."""
        vocab = dict(self.encoder)
        vocab.update(self._added_ids)
        return vocab

    @property
    def added_tokens_encoder(self) -> dict[str, int]:
        """content -> id of the added tokens (special tokens included)."""
        return dict(sorted(self._added_ids.items(), key=lambda item: item[1]))

    @property
    def added_tokens_decoder(self) -> dict[int, AddedToken]:
        """id -> AddedToken of the added tokens (special tokens included)."""
        return {index: copy.copy(self._added[index]) for index in sorted(self._added)}

    def get_added_vocab(self) -> dict[str, int]:
        """The added tokens as content -> id (HF's name)."""
        return self.added_tokens_encoder

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size}, "
            f"len={len(self)}, model_max_length={self.model_max_length}, padding_side={self.padding_side!r}, "
            f"add_prefix_space={self.add_prefix_space}, special_tokens={self.special_tokens_map})"
        )

    # -- special tokens -----------------------------------------------------------------------------------

    def _get_special(self, name: str) -> str | None:
        token = self._special[name]
        return None if token is None else str(token)

    def _set_special(self, name: str, value: Any) -> None:
        # Like HF, assigning does not add the token to the vocabulary (add_special_tokens does).
        self._special[name] = added_tokens.special_value(value, name)
        self._special_ids_cache = None

    def _get_special_id(self, name: str) -> int | None:
        token = self._get_special(name)
        return None if token is None else self.convert_tokens_to_ids(token)

    def _set_special_id(self, name: str, value: int | None) -> None:
        if value is None:
            self._set_special(name, None)
            return
        self._set_special(name, self.convert_ids_to_tokens(value))

    bos_token = property(lambda self: self._get_special("bos_token"), lambda self, v: self._set_special("bos_token", v))
    eos_token = property(lambda self: self._get_special("eos_token"), lambda self, v: self._set_special("eos_token", v))
    unk_token = property(lambda self: self._get_special("unk_token"), lambda self, v: self._set_special("unk_token", v))
    sep_token = property(lambda self: self._get_special("sep_token"), lambda self, v: self._set_special("sep_token", v))
    pad_token = property(lambda self: self._get_special("pad_token"), lambda self, v: self._set_special("pad_token", v))
    cls_token = property(lambda self: self._get_special("cls_token"), lambda self, v: self._set_special("cls_token", v))
    mask_token = property(lambda self: self._get_special("mask_token"), lambda self, v: self._set_special("mask_token", v))
    bos_token_id = property(lambda self: self._get_special_id("bos_token"), lambda self, v: self._set_special_id("bos_token", v))
    eos_token_id = property(lambda self: self._get_special_id("eos_token"), lambda self, v: self._set_special_id("eos_token", v))
    unk_token_id = property(lambda self: self._get_special_id("unk_token"), lambda self, v: self._set_special_id("unk_token", v))
    sep_token_id = property(lambda self: self._get_special_id("sep_token"), lambda self, v: self._set_special_id("sep_token", v))
    pad_token_id = property(lambda self: self._get_special_id("pad_token"), lambda self, v: self._set_special_id("pad_token", v))
    cls_token_id = property(lambda self: self._get_special_id("cls_token"), lambda self, v: self._set_special_id("cls_token", v))
    mask_token_id = property(lambda self: self._get_special_id("mask_token"), lambda self, v: self._set_special_id("mask_token", v))

    @property
    def additional_special_tokens(self) -> list[str]:
        """Extra special tokens beyond bos/eos/unk/sep/pad/cls/mask."""
        return [str(t) for t in self._additional]

    @additional_special_tokens.setter
    def additional_special_tokens(self, value: Sequence[Any] | None) -> None:
        if value is not None and (isinstance(value, str) or not isinstance(value, Sequence)):
            raise TypeError(f"additional_special_tokens must be a list of tokens, got {type(value).__name__}")
        self._additional = [added_tokens.special_token(t, "additional_special_tokens") for t in value or ()]
        self._special_ids_cache = None

    @property
    def additional_special_tokens_ids(self) -> list[int]:
        return [self.convert_tokens_to_ids(t) for t in self.additional_special_tokens]

    @property
    def special_tokens_map(self) -> dict[str, Any]:
        """The special tokens that are set, as strings (HF's ``special_tokens_map``)."""
        out: dict[str, Any] = {name: str(t) for name, t in self._special.items() if t is not None}
        if self._additional:
            out["additional_special_tokens"] = self.additional_special_tokens
        return out

    @property
    def all_special_tokens(self) -> list[str]:
        """Every special token once, in HF's order (bos, eos, unk, sep, pad, cls, mask, additional)."""
        seen: list[str] = []
        for name in SPECIAL_TOKEN_NAMES:
            token = self._get_special(name)
            if token is not None and token not in seen:
                seen.append(token)
        for token in self.additional_special_tokens:
            if token not in seen:
                seen.append(token)
        return seen

    @property
    def all_special_ids(self) -> list[int]:
        """The ids of :attr:`all_special_tokens`."""
        return [self.convert_tokens_to_ids(t) for t in self.all_special_tokens]

    def _special_ids(self) -> frozenset[int]:
        if self._special_ids_cache is None:
            ids = {i for i in self.all_special_ids if i is not None}
            ids.update(i for i, t in self._added.items() if t.special)
            self._special_ids_cache = frozenset(ids)
        return self._special_ids_cache

    def add_special_tokens(
        self, special_tokens_dict: Mapping[str, Any], replace_additional_special_tokens: bool = True
    ) -> int:
        """Set special tokens (``{"pad_token": "[PAD]"}``) and add the new ones to the vocabulary.

        Keys are ``bos_token``, ``eos_token``, ``unk_token``, ``sep_token``, ``pad_token``,
        ``cls_token``, ``mask_token`` and ``additional_special_tokens`` (a list). Returns how
        many tokens became added tokens (resize the model's embeddings to ``len(tokenizer)``).
        """
        if not isinstance(special_tokens_dict, Mapping):
            raise TypeError(f"add_special_tokens takes a dict such as {{'pad_token': '[PAD]'}}, got {type(special_tokens_dict).__name__}")
        to_add: list[AddedToken] = []
        for key, value in special_tokens_dict.items():
            if key == "additional_special_tokens":
                if isinstance(value, str) or not isinstance(value, (list, tuple)):
                    raise TypeError(f"additional_special_tokens must be a list or tuple of tokens, got {type(value).__name__}")
                tokens = [added_tokens.special_token(t, key) for t in value]
                if replace_additional_special_tokens:
                    self._additional = list(tokens)
                else:
                    self._additional.extend(t for t in tokens if str(t) not in self.additional_special_tokens)
                to_add.extend(tokens)
            elif key in SPECIAL_TOKEN_NAMES:
                token = added_tokens.special_token(value, key)
                self._special[key] = token
                to_add.append(token)
            else:
                allowed = ", ".join((*SPECIAL_TOKEN_NAMES, "additional_special_tokens"))
                raise ValueError(f"{key!r} is not a special token name (use one of: {allowed})")
        self._special_ids_cache = None
        return self._add_tokens(to_add, special=True)

    def add_tokens(self, new_tokens: Any, special_tokens: bool = False) -> int:
        """Add tokens (str or AddedToken, one or a list) that are matched in text before BPE and never split.

        A token already in the base vocabulary keeps its id; others get new ids from ``len(tokenizer)``
        on. Returns how many tokens became added tokens (like HF's fast tokenizer, this counts tokens
        of the base vocabulary too; ``len(tokenizer)`` is the size to resize embeddings to).
        """
        return self._add_tokens(added_tokens.new_tokens(new_tokens, special_tokens), special=special_tokens)

    def _add_tokens(self, tokens: Iterable[AddedToken], special: bool) -> int:
        """Add ``tokens`` to the table (see :meth:`AddedTokenTable.add`); how many became added tokens."""
        created, changed = self._table.add(tokens, special)
        if changed:
            self._special_ids_cache = None
            self._on_added_tokens_changed()
        return created

    # -- conversions ------------------------------------------------------------------------------------

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | None | list[int | None]:
        """Token string(s) -> id(s); an unknown token gives ``unk_token_id`` (like HF)."""
        if isinstance(tokens, str):
            return self._token_to_id(tokens)
        if not isinstance(tokens, (list, tuple)):
            raise TypeError(f"convert_tokens_to_ids takes a str or a list of str, got {type(tokens).__name__}")
        return [self._token_to_id(t) for t in tokens]

    def _token_to_id(self, token: Any) -> int | None:
        if not isinstance(token, str):
            raise TypeError(f"a token must be a str, got {type(token).__name__}")
        index = self._added_ids.get(token)
        if index is None:
            index = self.encoder.get(token)
        if index is None:
            unk = self._get_special("unk_token")
            if unk is None or unk == token:
                return None
            return self._token_to_id(unk)
        return index

    def _id_limit(self) -> int:
        return self._table.next_id()

    def _bad_id(self, index: Any) -> Exception:
        if isinstance(index, int) and not isinstance(index, bool):
            return InvalidTokenIdError(
                f"token id {index} is outside the vocabulary (valid ids are 0..{self._id_limit() - 1}; "
                f"len(tokenizer) is {len(self)})"
            )
        return TypeError(f"token ids must be ints, got {type(index).__name__} ({index!r})")

    def _id_to_token(self, index: int) -> str:
        added = self._added.get(index)
        if added is not None:
            return added.content
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < self._base_size:
            raise self._bad_id(index)
        token = self._base_tokens[index]
        if token is None:
            raise self._bad_id(index)
        return token

    def convert_ids_to_tokens(self, ids: Any, skip_special_tokens: bool = False) -> str | list[str]:
        """Id(s) -> token string(s) (byte-level strings such as ``"Ġworld"``)."""
        if isinstance(ids, int) and not isinstance(ids, bool) or (hasattr(ids, "ndim") and ids.ndim == 0):
            return self._id_to_token(operator.index(ids))
        id_list = self._id_list(ids)
        if skip_special_tokens:
            special = self._special_ids()
            id_list = [i for i in id_list if i not in special]
        return [self._id_to_token(i) for i in id_list]

    def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
        """Join token strings back to text (byte-level characters -> bytes -> UTF-8 with ``errors``)."""
        if isinstance(tokens, str) or not isinstance(tokens, (list, tuple)):
            raise TypeError(f"convert_tokens_to_string takes a list of token strings, got {type(tokens).__name__}")
        parts: list[str] = []
        pending = bytearray()
        for token in tokens:
            if not isinstance(token, str):
                raise TypeError(f"a token must be a str, got {type(token).__name__}")
            if token in self._added_ids and token not in self.encoder:
                if pending:
                    parts.append(pending.decode("utf-8", self.errors))
                    pending = bytearray()
                parts.append(token)
                continue
            data = bpe.token_to_bytes(token)
            pending += data if data is not None else token.encode("utf-8")
        if pending:
            parts.append(pending.decode("utf-8", self.errors))
        return "".join(parts)

    # -- encoding ---------------------------------------------------------------------------------------

    @staticmethod
    def _check_encodable(text: str) -> None:
        if text.isascii():
            return
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ValueError(
                f"the text holds a lone surrogate {text[err.start]!r} at position {err.start}: it is not valid "
                "Unicode and has no UTF-8 bytes (decode your bytes with errors='replace' or 'ignore' first)"
            ) from None

    def _encode_chunks(self, chunks: Sequence[str], prefix: bool, split_special: bool) -> list[int]:
        """ids of ``chunks`` (one text, or the words of a pre-split text), without special tokens.

        Added tokens are matched first; with ``prefix``, every plain piece that does not start with a
        space gets one (HF's ByteLevel ``add_prefix_space``).
        """
        pieces: list[Any] = []
        for chunk in chunks:
            self._check_encodable(chunk)
            if self._added:
                pieces.extend(self._table.split(chunk, split_special))
            elif chunk:
                pieces.append(chunk)
        plain = [p for p in pieces if isinstance(p, str) and p]
        if prefix:
            plain = [p if p.startswith(" ") else " " + p for p in plain]
        encoded = iter(self._encode_ordinary(plain))
        ids: list[int] = []
        for piece in pieces:
            if isinstance(piece, str):
                if piece:
                    ids.extend(next(encoded))
            else:
                ids.append(piece)
        return ids

    def _encode_one(self, value: Any, is_split: bool, split_special: bool) -> list[int]:
        if is_split:
            return self._encode_chunks(value, True, split_special)
        return self._encode_chunks([value], self.add_prefix_space, split_special)

    def _encode_examples(
        self, examples: list[tuple[Any, Any]], is_split: bool, split_special: bool
    ) -> list[tuple[list[int], list[int] | None]] | None:
        """The ids of every example of a batch at once, ``[(first, second or None), ...]``, exactly as
        :meth:`_encode_one` gives them one by one; or None to let the caller encode them one by one (here
        always: a hook for engines that encode a batch faster, e.g. on several threads)."""
        return None

    def _places_one(self, value: Any, is_split: bool, split_special: bool) -> tuple[list[int], list[tuple[int, int, int]]]:
        """ids of one text (or list of words) and each token's (start, end, word): hook of the fast tokenizer."""
        raise NotImplementedError(
            f"return_offsets_mapping=True is not available with {type(self).__name__} (pure Python, like HF's slow "
            "tokenizer); use GPT2TokenizerFast"
        )

    def _check_split_words(self) -> None:
        """Hook: the fast tokenizer requires add_prefix_space=True for pre-split words (as HF's does)."""

    # -- special tokens around sequences ------------------------------------------------------------------

    def build_inputs_with_special_tokens(self, token_ids_0: list[int], token_ids_1: list[int] | None = None) -> list[int]:
        """The model input for one sequence or a pair: ``bos`` before each when ``add_bos_token``."""
        bos = [self.bos_token_id] if self.add_bos_token and self.bos_token_id is not None else []
        out = bos + list(token_ids_0)
        if token_ids_1 is not None:
            out += bos + list(token_ids_1)
        return out

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        """How many special tokens :meth:`build_inputs_with_special_tokens` adds."""
        return len(self.build_inputs_with_special_tokens([], [] if pair else None))

    @property
    def max_len_single_sentence(self) -> int:
        """The most tokens one sequence may have: ``model_max_length`` less the special tokens added to it."""
        return self.model_max_length - self.num_special_tokens_to_add(pair=False)

    @property
    def max_len_sentences_pair(self) -> int:
        """The most tokens a pair may have together: ``model_max_length`` less the special tokens added to a pair."""
        return self.model_max_length - self.num_special_tokens_to_add(pair=True)

    def get_special_tokens_mask(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None, already_has_special_tokens: bool = False
    ) -> list[int]:
        """1 for a special token added by :meth:`build_inputs_with_special_tokens`, 0 for a sequence token."""
        if already_has_special_tokens:
            special = self._special_ids()
            return [1 if i in special else 0 for i in list(token_ids_0) + list(token_ids_1 or [])]
        bos = [1] if self.add_bos_token and self.bos_token_id is not None else []
        out = bos + [0] * len(token_ids_0)
        if token_ids_1 is not None:
            out += bos + [0] * len(token_ids_1)
        return out

    def create_token_type_ids_from_sequences(self, token_ids_0: list[int], token_ids_1: list[int] | None = None) -> list[int]:
        """0 for the first sequence (and its special tokens), 1 for the second."""
        first = len(self.build_inputs_with_special_tokens(token_ids_0))
        if token_ids_1 is None:
            return [0] * first
        total = len(self.build_inputs_with_special_tokens(token_ids_0, token_ids_1))
        return [0] * first + [1] * (total - first)

    # -- argument handling ----------------------------------------------------------------------------

    def _strategies(
        self, padding: Any, truncation: Any, max_length: Any, pad_to_multiple_of: Any
    ) -> tuple[str, str, int | None]:
        """HF's rules: (padding strategy, truncation strategy, max_length)."""
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 0):
            raise ValueError(f"max_length must be a non-negative int or None, got {max_length!r}")
        if pad_to_multiple_of is not None and (
            isinstance(pad_to_multiple_of, bool) or not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of <= 0
        ):
            raise ValueError(f"pad_to_multiple_of must be a positive int or None, got {pad_to_multiple_of!r}")
        if max_length is not None and padding is False and truncation is None:
            truncation = "longest_first"  # HF: a max_length alone means truncation
        if padding is False or padding is None:
            pad = "do_not_pad"
        elif padding is True:
            pad = "longest"
        else:
            pad = getattr(padding, "value", padding)
            if pad not in PADDING_STRATEGIES:
                raise ValueError(f"padding must be True, False or one of {', '.join(map(repr, PADDING_STRATEGIES))}; got {padding!r}")
        if truncation is True:
            trunc = "longest_first"
        elif truncation is False or truncation is None:
            trunc = "do_not_truncate"
        else:
            trunc = getattr(truncation, "value", truncation)
            if trunc not in TRUNCATION_STRATEGIES:
                raise ValueError(
                    f"truncation must be True, False or one of {', '.join(map(repr, TRUNCATION_STRATEGIES))}; got {truncation!r}"
                )
        if max_length is None:
            if pad == "max_length":
                if self.model_max_length > LARGE_INTEGER:
                    logger.warning("padding='max_length' without max_length, and the tokenizer has no model_max_length: no padding")
                    pad = "do_not_pad"
                else:
                    max_length = self.model_max_length
            if trunc != "do_not_truncate":
                if self.model_max_length > LARGE_INTEGER:
                    logger.warning("truncation without max_length, and the tokenizer has no model_max_length: no truncation")
                    trunc = "do_not_truncate"
                else:
                    max_length = self.model_max_length
        if pad != "do_not_pad":
            pad_id = self.pad_token_id
            if self.pad_token is None or pad_id is None or pad_id < 0:
                raise ValueError(
                    "padding was requested, but this tokenizer has no padding token. Set one, e.g. "
                    "`tokenizer.pad_token = tokenizer.eos_token` (GPT-2 is usually padded with <|endoftext|> and an "
                    "attention mask), or add a new one with `tokenizer.add_special_tokens({'pad_token': '[PAD]'})` "
                    "and resize the model's embeddings"
                )
        if (
            trunc != "do_not_truncate" and pad != "do_not_pad" and pad_to_multiple_of is not None
            and max_length is not None and max_length % pad_to_multiple_of != 0
        ):
            raise ValueError(
                f"truncation and padding are both on, but max_length={max_length} is not a multiple of "
                f"pad_to_multiple_of={pad_to_multiple_of}"
            )
        return pad, trunc, max_length

    @staticmethod
    def _examples(text: Any, text_pair: Any, is_split: bool) -> tuple[bool, list[tuple[Any, Any]]]:
        """Check the input's shape: (batched, [(first, second or None), ...])."""

        def words(value: Any, what: str) -> list[str]:
            if not isinstance(value, (list, tuple)):
                raise TextTypeError(
                    f"with is_split_into_words=True, {what} must be a list of words (str), got {type(value).__name__}"
                )
            for i, word in enumerate(value):
                if not isinstance(word, str):
                    raise TextTypeError(f"with is_split_into_words=True, {what}[{i}] must be a str, got {type(word).__name__}")
            return list(value)

        def plain(value: Any, what: str) -> str:
            if not isinstance(value, str):
                raise TextTypeError(f"{what} must be a str, got {type(value).__name__}")
            return value

        if text is None:
            raise ValueError("no text given: pass a str, a list of str, or a list of (text, text_pair) pairs")
        if is_split:
            if not isinstance(text, (list, tuple)):
                raise TextTypeError(
                    "with is_split_into_words=True, text must be a list of words (one example) or a list of lists "
                    f"of words (a batch), got {type(text).__name__}"
                )
            batched = bool(text) and isinstance(text[0], (list, tuple))
            if not batched:
                first = words(text, "text")
                second = None if text_pair is None else words(text_pair, "text_pair")
                return False, [(first, second)]
            if text_pair is not None:
                if not isinstance(text_pair, (list, tuple)) or len(text_pair) != len(text):
                    raise ValueError("text and text_pair must be batches of the same length")
                return True, [(words(a, f"text[{i}]"), words(b, f"text_pair[{i}]")) for i, (a, b) in enumerate(zip(text, text_pair))]
            out = []
            for i, example in enumerate(text):
                if example and isinstance(example[0], (list, tuple)):
                    if len(example) != 2:
                        raise ValueError(f"text[{i}] must be a list of words or a pair of lists of words")
                    out.append((words(example[0], f"text[{i}][0]"), words(example[1], f"text[{i}][1]")))
                else:
                    out.append((words(example, f"text[{i}]"), None))
            return True, out
        if isinstance(text, str):
            return False, [(text, None if text_pair is None else plain(text_pair, "text_pair"))]
        if not isinstance(text, (list, tuple)):
            raise TextTypeError(
                "text must be a str, a list of str (a batch), or a list of (text, text_pair) pairs; "
                f"got {type(text).__name__}"
            )
        if text_pair is not None:
            if not isinstance(text_pair, (list, tuple)):
                raise TextTypeError(f"with a batch of texts, text_pair must be a list of str too, got {type(text_pair).__name__}")
            if len(text_pair) != len(text):
                raise ValueError(f"text and text_pair must have the same length, got {len(text)} and {len(text_pair)}")
            return True, [(plain(a, f"text[{i}]"), plain(b, f"text_pair[{i}]")) for i, (a, b) in enumerate(zip(text, text_pair))]
        out = []
        for i, example in enumerate(text):
            if isinstance(example, str):
                out.append((example, None))
            elif isinstance(example, (list, tuple)) and len(example) == 2:
                out.append((plain(example[0], f"text[{i}][0]"), plain(example[1], f"text[{i}][1]")))
            else:
                raise TextTypeError(
                    f"text[{i}] must be a str or a (text, text_pair) pair, got {type(example).__name__}"
                    + (" (pre-split words need is_split_into_words=True)" if isinstance(example, (list, tuple)) else "")
                )
        return True, out

    # -- truncation and padding ----------------------------------------------------------------------

    def _truncate(
        self, first: list[Any], second: list[Any] | None, strategy: str, max_length: int | None, n_special: int,
        stride: int = 0,
    ) -> tuple[list[Any], list[Any] | None]:
        """HF's fast (Rust) truncation of a sequence or a pair to ``max_length`` including special tokens."""
        keep_first, keep_second = truncating.keep_lengths(
            len(first), None if second is None else len(second), strategy, max_length, n_special
        )
        self._check_stride(first, second, keep_first, keep_second, stride)
        side = self.truncation_side
        return truncating.cut(first, keep_first, side), None if second is None else truncating.cut(second, keep_second or 0, side)

    @staticmethod
    def _check_stride(first: list[Any], second: list[Any] | None, keep_first: int, keep_second: int | None,
                      stride: int) -> None:
        lengths = {"first": (len(first), keep_first)}
        if second is not None:
            lengths["second"] = (len(second), keep_second)
        truncating.check_stride(lengths, stride)

    def _prepare_overflowing(
        self,
        first: list[int],
        second: list[int] | None,
        places: tuple[list[Any], list[Any] | None] | None,
        add_special_tokens: bool,
        trunc: str,
        max_length: int | None,
        stride: int,
        want: dict[str, bool],
    ) -> list[dict[str, list[Any]]]:
        """One example as HF's fast tokenizer returns it with ``return_overflowing_tokens``: the truncated
        example, then one row per overflowing window (for a pair, every window of one sequence with every
        window of the other, in HF's engine's order)."""
        n_special = self.num_special_tokens_to_add(pair=second is not None) if add_special_tokens else 0
        if trunc == "do_not_truncate" or max_length is None:
            return [self._prepare(first, second, places, add_special_tokens, trunc, max_length, want)]
        keep_first, keep_second = truncating.keep_lengths(
            len(first), None if second is None else len(second), trunc, max_length, n_special
        )
        self._check_stride(first, second, keep_first, keep_second, stride)

        def parts(values: list[Any] | None, keep: int | None, index: int) -> list[tuple[Any, Any]]:
            if values is None:
                return [(None, None)]
            assert keep is not None
            windows = truncating.windows(values, keep, stride, self.truncation_side)
            spans = truncating.windows(places[index], keep, stride, self.truncation_side) if places is not None else [None] * len(windows)
            return list(zip(windows, spans))

        parts_first, parts_second = parts(first, keep_first, 0), parts(second, keep_second, 1)
        combos = [(parts_first[0], parts_second[0])]
        for window in parts_first[1:]:
            combos += [(window, parts_second[0])] + [(window, other) for other in parts_second[1:]]
        combos += [(parts_first[0], other) for other in parts_second[1:]]
        return [
            self._prepare(a, b, None if places is None else (a_off, b_off), add_special_tokens, "do_not_truncate", None, want)
            for (a, a_off), (b, b_off) in combos
        ]

    def _prepare(
        self,
        first: list[int],
        second: list[int] | None,
        places: tuple[list[Any], list[Any] | None] | None,
        add_special_tokens: bool,
        trunc: str,
        max_length: int | None,
        want: dict[str, bool],
        stride: int = 0,
    ) -> dict[str, list[Any]]:
        """One row: the (truncated) sequences with their special tokens, and the fields ``want`` asks for.
        With ``places`` (each token's (start, end, word)), also ``_places``: (start, end, word, sequence) per
        token, None for an added special token."""
        use_bos = bool(add_special_tokens and self.add_bos_token)
        bos_id = self.bos_token_id if use_bos else None
        use_bos = use_bos and bos_id is not None
        n_special = (2 if second is not None else 1) if use_bos else 0
        if trunc != "do_not_truncate":
            first, second = self._truncate(first, second, trunc, max_length, n_special, stride)

        def assemble(a: list[Any], b: list[Any] | None, head_a: Any, head_b: Any) -> list[Any]:
            if b is None and not use_bos:
                return a
            out = ([head_a] if use_bos else []) + a
            if b is not None:
                out += ([head_b] if use_bos else []) + b
            return out

        ids = assemble(first, second, bos_id, bos_id)
        out: dict[str, list[Any]] = {"input_ids": ids}
        if want["token_type_ids"]:
            out["token_type_ids"] = assemble([0] * len(first), None if second is None else [1] * len(second), 0, 1)
        if want["attention_mask"]:
            out["attention_mask"] = [1] * len(ids)
        if want["special_tokens_mask"]:
            out["special_tokens_mask"] = assemble([0] * len(first), None if second is None else [0] * len(second), 1, 1)
        if places is not None:
            at_first, at_second = places
            if trunc != "do_not_truncate":
                at_first, at_second = self._truncate(at_first, at_second, trunc, max_length, n_special)
            out["_places"] = assemble(
                [(*p, 0) for p in at_first], None if at_second is None else [(*p, 1) for p in at_second], None, None
            )
        return out

    def _pad_fill(self) -> dict[str, Any]:
        """What each field is padded with."""
        return {
            "input_ids": self.pad_token_id,
            "token_type_ids": self.pad_token_type_id,
            "attention_mask": 0,
            "special_tokens_mask": 1,
            "_places": None,
        }

    def _pad_batch(
        self, examples: list[dict[str, list[Any]]], pad: str, max_length: int | None, multiple: int | None, side: str
    ) -> None:
        if pad == "do_not_pad":
            return
        length = truncating.padded_length([len(e["input_ids"]) for e in examples], pad, max_length, multiple)
        if length is None:
            return
        fill = self._pad_fill()
        for example in examples:
            truncating.pad_row(example, length, fill, side)

    # -- the call ----------------------------------------------------------------------------------------

    def __call__(
        self,
        text: Any = None,
        text_pair: Any = None,
        *,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        stride: int = 0,
        is_split_into_words: bool = False,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
        split_special_tokens: bool | None = None,
        verbose: bool = True,
    ) -> BatchEncoding:
        """Tokenize one text, a batch of texts, or (batches of) pairs, HF-style.

        ``text`` is a str, a list of str (a batch), or a list of ``(text, text_pair)`` pairs; with
        ``is_split_into_words=True`` it is a list of words (or a list of such lists). Returns a
        :class:`BatchEncoding` with ``input_ids`` and (by default) ``attention_mask``; lists, or
        tensors of ``return_tensors`` ("np", "pt", "tf", "jax"; a single example gets a batch axis).

        With truncation, ``return_overflowing_tokens=True`` also returns what truncation cut, as HF's fast
        tokenizer does (both classes here): each example becomes several rows, windows of ``max_length``
        tokens overlapping by ``stride``, and ``overflow_to_sample_mapping`` gives each row's example
        (the output is a batch even for one text). HF's slow tokenizer's ``overflowing_tokens`` /
        ``num_truncated_tokens`` keys are not produced.
        """
        tensor_type = check_tensor_type(return_tensors)
        overflowing = _as_bool(return_overflowing_tokens, "return_overflowing_tokens")
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 0:
            raise ValueError(f"stride must be a non-negative int, got {stride!r}")
        if padding_side is not None:
            _side(padding_side, "padding_side")
        is_split = _as_bool(is_split_into_words, "is_split_into_words")
        add_special = _as_bool(add_special_tokens, "add_special_tokens")
        split_special = self.split_special_tokens if split_special_tokens is None else _as_bool(split_special_tokens, "split_special_tokens")
        pad, trunc, max_length = self._strategies(padding, truncation, max_length, pad_to_multiple_of)
        batched, examples = self._examples(text, text_pair, is_split)
        if trunc != "do_not_truncate" and max_length is not None:
            n_special = self.num_special_tokens_to_add(pair=any(second is not None for _, second in examples)) if add_special else 0
            if stride > max_length - n_special:  # HF's rule; a stride equal to it fails only where truncation happens
                raise ValueError(
                    f"stride={stride} is larger than the effective max length {max_length - n_special} "
                    f"(max_length={max_length} minus {n_special} special tokens)"
                )
        if is_split:
            self._check_split_words()
        want = {
            "token_type_ids": bool(return_token_type_ids) if return_token_type_ids is not None else "token_type_ids" in self.model_input_names,
            "attention_mask": bool(return_attention_mask) if return_attention_mask is not None else "attention_mask" in self.model_input_names,
            "special_tokens_mask": bool(return_special_tokens_mask),
        }
        side = padding_side or self.padding_side
        options = (is_split, split_special, add_special, trunc, max_length, stride, overflowing, want, pad, pad_to_multiple_of, side)
        rows, sample_of_row = self._rows(examples, options, align=return_offsets_mapping)
        if rows:
            keys = [k for k in rows[0] if k != "_places"]
        else:
            keys = ["input_ids"] + [k for k in ("token_type_ids", "attention_mask", "special_tokens_mask") if want[k]]
        data: dict[str, Any] = {key: [row[key] for row in rows] for key in keys}
        encodings = None
        if return_offsets_mapping:
            data["offset_mapping"] = [[(0, 0) if p is None else (p[0], p[1]) for p in row["_places"]] for row in rows]
            encodings = self._encodings_of(rows, examples, sample_of_row)
        if return_length:
            # The length after padding, like HF's fast tokenizer.
            data["length"] = [len(row["input_ids"]) for row in rows]
        if overflowing:
            data["overflow_to_sample_mapping"] = sample_of_row
        n_sequences = 2 if any(second is not None for _, second in examples) else 1
        align = None
        if self.is_fast and encodings is None:
            align = functools.partial(self._align_later, examples, options, data["input_ids"])
        if batched or overflowing or tensor_type is not None:  # overflowing rows: a batch even for one text
            out = BatchEncoding(data, encodings, tensor_type=tensor_type, n_sequences=n_sequences, align=align)
        else:
            # One example without tensors: plain lists (``length`` stays a one-item list, as in HF's fast tokenizer).
            out = BatchEncoding(
                {key: (value if key == "length" else value[0]) for key, value in data.items()}, encodings,
                n_sequences=n_sequences, align=align,
            )
        return out

    def _rows(
        self, examples: list[tuple[Any, Any]], options: tuple[Any, ...], align: bool
    ) -> tuple[list[dict[str, list[Any]]], list[int]]:
        """Encode, truncate, add special tokens to and pad each example: (rows, the example of each row).
        With ``align``, each row also has ``_places`` (see :meth:`_prepare`)."""
        is_split, split_special, add_special, trunc, max_length, stride, overflowing, want, pad, multiple, side = options
        rows: list[dict[str, list[Any]]] = []
        sample_of_row: list[int] = []
        encoded = None if align else self._encode_examples(examples, is_split, split_special)
        for sample, (first_text, second_text) in enumerate(examples):
            if align:
                first, first_at = self._places_one(first_text, is_split, split_special)
                second, second_at = (None, None) if second_text is None else self._places_one(second_text, is_split, split_special)
                places = (first_at, second_at)
            elif encoded is not None:
                first, second = encoded[sample]
                places = None
            else:
                first = self._encode_one(first_text, is_split, split_special)
                second = None if second_text is None else self._encode_one(second_text, is_split, split_special)
                places = None
            if overflowing:
                new_rows = self._prepare_overflowing(first, second, places, add_special, trunc, max_length, stride, want)
            else:
                new_rows = [self._prepare(first, second, places, add_special, trunc, max_length, want, stride)]
            rows += new_rows
            sample_of_row += [sample] * len(new_rows)
        self._pad_batch(rows, pad, max_length, multiple, side)
        return rows, sample_of_row

    def _encodings_of(
        self, rows: list[dict[str, list[Any]]], examples: list[tuple[Any, Any]], sample_of_row: list[int]
    ) -> list[Encoding]:
        return [
            Encoding(row["input_ids"], [self._id_to_token(i) for i in row["input_ids"]], row["_places"],
                     1 if examples[sample][1] is None else 2)
            for row, sample in zip(rows, sample_of_row)
        ]

    def _align_later(self, examples: list[tuple[Any, Any]], options: tuple[Any, ...], ids: Any) -> list[Encoding]:
        """A BatchEncoding's alignment, computed when first asked for: the same call again, with each token's
        place; it must give the ids the BatchEncoding was made with."""
        rows, sample_of_row = self._rows(examples, options, align=True)
        if [row["input_ids"] for row in rows] != ids:
            raise RuntimeError(
                "cannot align this BatchEncoding with its text: encoding the text again gives other ids (the "
                "tokenizer was changed after the call, e.g. by add_tokens or add_prefix_space, or input_ids were "
                "edited in place); call the tokenizer again"
            )
        return self._encodings_of(rows, examples, sample_of_row)

    def encode(
        self,
        text: Any,
        text_pair: Any = None,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        *,
        return_tensors: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """ids of one text (or a pair); a tensor of shape (1, T) with ``return_tensors``.

        A list or tuple (without ``is_split_into_words``) is read as HF's class of the same name reads it:
        tokens or ids in :class:`GPT2Tokenizer`, ``(text, text_pair)`` in :class:`GPT2TokenizerFast`.
        """
        if (
            type(text) is str and text_pair is None and not kwargs and return_tensors is None and padding is False
            and truncation is None and max_length is None and (add_special_tokens is True or add_special_tokens is False)
        ):
            # The common call, encode(text): what the call below returns for it, without its argument handling.
            ids = self._encode_one(text, False, self.split_special_tokens)
            if add_special_tokens and self.add_bos_token:
                bos = self.bos_token_id
                if bos is not None:
                    ids = [bos, *ids]
            return ids
        is_split = kwargs.get("is_split_into_words", False)
        if isinstance(text, (list, tuple)) and not is_split:
            text, text_pair, as_ids = self._sequence_argument(text, text_pair, "encode")
            if as_ids:
                kwargs.pop("is_split_into_words", None)
                encoded = self.prepare_for_model(
                    text, text_pair, add_special_tokens=add_special_tokens, padding=padding, truncation=truncation,
                    max_length=max_length, return_tensors=return_tensors, return_attention_mask=False,
                    prepend_batch_axis=return_tensors is not None, **kwargs,
                )
                return encoded["input_ids"]
        elif not isinstance(text, str) and not is_split:
            raise TextTypeError(
                f"encode takes one text (a str) but got {type(text).__name__}; "
                "use tokenizer(list_of_texts) for a batch, or is_split_into_words=True for a list of words"
            )
        encoded = self(
            text, text_pair, add_special_tokens=add_special_tokens, padding=padding, truncation=truncation,
            max_length=max_length, return_tensors=return_tensors, return_attention_mask=False, **kwargs,
        )
        return encoded["input_ids"]

    def encode_plus(self, text: Any, text_pair: Any = None, **kwargs: Any) -> BatchEncoding:
        """HF's older name for calling the tokenizer on one example (a list or tuple: as :meth:`encode` reads it)."""
        is_split = kwargs.get("is_split_into_words", False)
        if isinstance(text, (list, tuple)) and not is_split:
            text, text_pair, as_ids = self._sequence_argument(text, text_pair, "encode_plus")
            if as_ids:
                kwargs.pop("is_split_into_words", None)
                kwargs.setdefault("prepend_batch_axis", kwargs.get("return_tensors") is not None)
                return self.prepare_for_model(text, text_pair, **kwargs)
        elif not isinstance(text, str) and not is_split:
            raise TextTypeError(f"encode_plus takes one text (a str), got {type(text).__name__}; use batch_encode_plus for a batch")
        return self(text, text_pair, **kwargs)

    def _sequence_argument(self, text: list | tuple, text_pair: Any, method: str) -> tuple[Any, Any, bool]:
        """How ``encode``/``encode_plus`` read a list or tuple given as the text (not pre-split words): returns
        ``(text, text_pair, as_ids)``, where ``as_ids`` says both are token ids for :meth:`prepare_for_model`.
        Each class reads it as HF's class of the same name does (slow.py, fast.py)."""
        raise NotImplementedError

    def batch_encode_plus(self, batch_text_or_text_pairs: Sequence[Any], **kwargs: Any) -> BatchEncoding:
        """HF's older name for calling the tokenizer on a batch (texts or (text, pair) tuples)."""
        if not isinstance(batch_text_or_text_pairs, (list, tuple)):
            raise TypeError(f"batch_encode_plus takes a list, got {type(batch_text_or_text_pairs).__name__}")
        return self(list(batch_text_or_text_pairs), **kwargs)

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False, **kwargs: Any) -> list[str]:
        """Token strings of ``text`` (byte-level, e.g. ``["Hello", "Ġworld"]``)."""
        if not isinstance(text, str) and not (kwargs.get("is_split_into_words") and isinstance(text, (list, tuple))):
            raise TypeError(f"tokenize takes a str, got {type(text).__name__}")
        ids = self(text, pair, add_special_tokens=add_special_tokens, return_attention_mask=False, **kwargs)["input_ids"]
        return [self._id_to_token(i) for i in ids]

    def pad(
        self,
        encoded_inputs: Any,
        padding: bool | str = True,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
    ) -> BatchEncoding:
        """Pad already-encoded inputs (a dict of lists, a list of dicts, or one dict) — what data collators use."""
        tensor_type = check_tensor_type(return_tensors)
        if padding_side is not None:
            _side(padding_side, "padding_side")
        if isinstance(encoded_inputs, (list, tuple)) and encoded_inputs and isinstance(encoded_inputs[0], Mapping):
            keys = list(encoded_inputs[0].keys())
            encoded_inputs = {k: [dict(e)[k] for e in encoded_inputs] for k in keys}
        if not isinstance(encoded_inputs, Mapping) or "input_ids" not in encoded_inputs:
            raise ValueError("pad takes a dict (or BatchEncoding) with 'input_ids', or a list of such dicts")
        data = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in dict(encoded_inputs).items()}
        ids = data["input_ids"]
        batched = bool(ids) and isinstance(ids[0], (list, tuple))
        pad, _, max_length = self._strategies(padding, False, max_length, pad_to_multiple_of)
        want_mask = return_attention_mask if return_attention_mask is not None else "attention_mask" in self.model_input_names
        n = len(ids) if batched else 1
        rows = []
        for i in range(n):
            row = {k: list(v[i] if batched else v) for k, v in data.items()}
            if want_mask and "attention_mask" not in row:
                row["attention_mask"] = [1] * len(row["input_ids"])
            rows.append(row)
        self._pad_batch(rows, pad, max_length, pad_to_multiple_of, padding_side or self.padding_side)
        if batched:
            return BatchEncoding({k: [r[k] for r in rows] for k in rows[0]}, tensor_type=tensor_type)
        return BatchEncoding(rows[0], tensor_type=tensor_type)

    def _ids_argument(self, ids: Any, name: str) -> list[int]:
        if isinstance(ids, str) or (isinstance(ids, (list, tuple)) and ids and isinstance(ids[0], str)):
            raise TextTypeError(
                f"prepare_for_model takes token ids ({name}: a list of int), got text; encode text with tokenizer(text)"
            )
        if isinstance(ids, (list, tuple)) and ids and isinstance(ids[0], (list, tuple)):
            raise TypeError(f"prepare_for_model takes one sequence of ids ({name}: a list of int), got a list of lists")
        return self._id_list(ids)

    def truncate_sequences(
        self,
        ids: list[int],
        pair_ids: list[int] | None = None,
        num_tokens_to_remove: int = 0,
        truncation_strategy: str = "longest_first",
        stride: int = 0,
    ) -> tuple[list[int], list[int] | None, list[int]]:
        """HF's Python truncation: (ids, pair_ids, overflowing tokens); see :func:`truncating.truncate_sequences`."""
        strategy = getattr(truncation_strategy, "value", truncation_strategy)
        if strategy not in TRUNCATION_STRATEGIES:
            raise ValueError(f"truncation_strategy must be one of {', '.join(map(repr, TRUNCATION_STRATEGIES))}; got {strategy!r}")
        return truncating.truncate_sequences(list(ids), None if pair_ids is None else list(pair_ids),
                                             num_tokens_to_remove, strategy, stride, self.truncation_side)

    def prepare_for_model(
        self,
        ids: Any,
        pair_ids: Any = None,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        stride: int = 0,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
        verbose: bool = True,
        prepend_batch_axis: bool = False,
        **kwargs: Any,
    ) -> BatchEncoding:
        """Make model input of token ids (one sequence or a pair), as HF's ``prepare_for_model``: special tokens,
        truncation, padding, the masks and tensors.

        Both classes run HF's Python rules here, as both HF classes do: truncation is
        :meth:`truncate_sequences` (a pair with ``longest_first`` may split its budget unlike a tokenizer
        call), and ``return_overflowing_tokens`` gives ``overflowing_tokens`` (what was cut, plus ``stride``
        tokens) and ``num_truncated_tokens``. Where HF logs an error and returns the ids untruncated (a
        strategy that would empty its sequence), this raises ValueError.
        """
        if kwargs:
            unknown = sorted(k for k in kwargs if k not in LOADER_OPTIONS)
            if unknown:
                raise TypeError(f"prepare_for_model got unexpected keyword arguments: {', '.join(unknown)}")
        if return_offsets_mapping:
            raise ValueError("prepare_for_model takes token ids, which carry no text, so it has no offsets to return")
        tensor_type = check_tensor_type(return_tensors)
        if padding_side is not None:
            _side(padding_side, "padding_side")
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 0:
            raise ValueError(f"stride must be a non-negative int, got {stride!r}")
        add_special = _as_bool(add_special_tokens, "add_special_tokens")
        first = self._ids_argument(ids, "ids")
        second = None if pair_ids is None else self._ids_argument(pair_ids, "pair_ids")
        pad, trunc, max_length = self._strategies(padding, truncation, max_length, pad_to_multiple_of)
        if return_token_type_ids and not add_special:
            raise ValueError(
                "return_token_type_ids=True needs add_special_tokens=True in prepare_for_model (as in HF: which "
                "tokens are special decides the type ids)"
            )
        if _as_bool(return_overflowing_tokens, "return_overflowing_tokens"):
            truncating.check_overflow(trunc, second is not None)
        want_types = "token_type_ids" in self.model_input_names if return_token_type_ids is None else bool(return_token_type_ids)
        want_mask = "attention_mask" in self.model_input_names if return_attention_mask is None else bool(return_attention_mask)
        total = len(first) + len(second or []) + (self.num_special_tokens_to_add(pair=second is not None) if add_special else 0)
        out: dict[str, Any] = {}
        if trunc != "do_not_truncate" and max_length is not None and total > max_length:
            first, second, overflow = self.truncate_sequences(first, second, total - max_length, trunc, stride)
            if return_overflowing_tokens:
                out["overflowing_tokens"], out["num_truncated_tokens"] = overflow, total - max_length
        elif return_overflowing_tokens:
            out["overflowing_tokens"], out["num_truncated_tokens"] = [], 0 if max_length is None else total - max_length
        if add_special:
            out["input_ids"] = self.build_inputs_with_special_tokens(first, second)
            types = self.create_token_type_ids_from_sequences(first, second)
            special = self.get_special_tokens_mask(first, second)
        else:
            out["input_ids"] = first + (second or [])
            types = [0] * len(out["input_ids"])
            special = [0] * len(out["input_ids"])
        if want_types:
            out["token_type_ids"] = types
        if return_special_tokens_mask:
            out["special_tokens_mask"] = special
        if want_mask:
            out["attention_mask"] = [1] * len(out["input_ids"])
        self._pad_batch([out], pad, max_length, pad_to_multiple_of, padding_side or self.padding_side)
        if return_length:
            out["length"] = len(out["input_ids"])
        return BatchEncoding(out, tensor_type=tensor_type, prepend_batch_axis=prepend_batch_axis,
                             n_sequences=1 if second is None else 2)

    # -- chat templates -----------------------------------------------------------------------------------

    def get_chat_template(self, chat_template: str | None = None, tools: Any = None) -> str:
        """The template :meth:`apply_chat_template` would use: ``chat_template`` (a template or the name of one
        of this tokenizer's), else this tokenizer's (of named ones, "tool_use" when there are tools, else
        "default"). :class:`~gpt2_multi.tokenization.chat.ChatTemplateError` (a ValueError) when there is none."""
        return chat.select_template(chat.normalize_templates(self.chat_template), chat_template, tools)

    def apply_chat_template(
        self,
        conversation: Any,
        tools: Sequence[Any] | None = None,
        documents: Sequence[Mapping[str, Any]] | None = None,
        chat_template: str | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool = False,
        tokenize: bool = True,
        padding: bool | str = False,
        truncation: bool | str = False,
        max_length: int | None = None,
        return_tensors: str | None = None,
        return_dict: bool = False,
        return_assistant_tokens_mask: bool = False,
        tokenizer_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Render a conversation with a chat template and (by default) tokenize it, as HF's ``apply_chat_template``.

        ``conversation`` is a list of ``{"role": ..., "content": ...}`` messages, or a batch of such lists.
        The template (see :mod:`gpt2_multi.tokenization.chat`) sees ``messages``, ``tools`` (JSON schemas;
        functions with type hints and a Google-style docstring are converted), ``documents``,
        ``add_generation_prompt``, the special tokens and ``**kwargs``. ``continue_final_message`` ends the
        text inside the final message, so that generation continues it.

        Returns the text (``tokenize=False``), the ids (default; special tokens are the template's job, so
        none is added), or with ``return_dict=True`` the :class:`BatchEncoding`, where
        ``return_assistant_tokens_mask=True`` adds ``assistant_masks``: 1 for the tokens inside the
        template's ``{% generation %}`` blocks (needs GPT2TokenizerFast, as in HF).
        """
        for name, value in (("add_generation_prompt", add_generation_prompt), ("continue_final_message", continue_final_message),
                            ("tokenize", tokenize), ("return_dict", return_dict),
                            ("return_assistant_tokens_mask", return_assistant_tokens_mask)):
            _as_bool(value, name)
        if return_dict and not tokenize:
            raise ValueError("return_dict=True needs tokenize=True (there is no BatchEncoding of an untokenized text)")
        if return_assistant_tokens_mask and not return_dict:
            raise ValueError("return_assistant_tokens_mask=True needs return_dict=True (the mask is a field of it)")
        if continue_final_message and add_generation_prompt:
            raise ValueError(
                "continue_final_message and add_generation_prompt do not go together: the first continues the final "
                "message, the second starts a new assistant turn"
            )
        if continue_final_message and return_assistant_tokens_mask:
            raise ValueError("continue_final_message=True does not go with return_assistant_tokens_mask=True")
        if return_assistant_tokens_mask and not self.is_fast:
            raise ValueError(
                "return_assistant_tokens_mask=True needs the token-to-text alignment of GPT2TokenizerFast "
                f"({type(self).__name__} has none, like HF's slow tokenizers)"
            )
        template = self.get_chat_template(chat_template, tools)
        if return_assistant_tokens_mask and not re.search(r"\{%-?\s*generation\s*-?%\}", template):
            logger.warning("return_assistant_tokens_mask=True, but the chat template has no {%% generation %%} block: "
                           "the mask is all zeros")
        conversations, batched = self._conversations(conversation)
        for document in documents or ():
            if not isinstance(document, Mapping):
                raise TypeError(f"documents must be dicts (e.g. with 'title' and 'text'), got {type(document).__name__}")
        variables = {**{k: str(v) if not isinstance(v, list) else [str(t) for t in v]
                        for k, v in self.special_tokens_map.items()}, **kwargs}
        texts, spans = chat.render(
            template, conversations, tools=chat.tool_schemas(tools), documents=None if documents is None else list(documents),
            add_generation_prompt=add_generation_prompt, continue_final_message=continue_final_message, variables=variables,
        )
        if not tokenize:
            return texts if batched else texts[0]
        encoded = self(
            texts if batched else texts[0], padding=padding, truncation=truncation, max_length=max_length,
            add_special_tokens=False, return_tensors=return_tensors, **dict(tokenizer_kwargs or {}),
        )
        if not return_dict:
            return encoded["input_ids"]
        if return_assistant_tokens_mask:
            if len(encoded.encodings) != len(texts):
                raise ValueError("return_assistant_tokens_mask=True does not go with return_overflowing_tokens=True")
            masks = [chat.assistant_mask(row, row_spans) for row, row_spans in zip(encoded.encodings, spans)]
            encoded["assistant_masks"] = masks if batched or return_tensors is not None else masks[0]
            if return_tensors is not None:
                encoded.convert_to_tensors(return_tensors)
        return encoded

    @staticmethod
    def _conversations(conversation: Any) -> tuple[list[Any], bool]:
        """(the conversations, batched?) of apply_chat_template's first argument, checked."""
        def is_chat(value: Any) -> bool:
            return hasattr(value, "messages") or (
                isinstance(value, (list, tuple)) and all(isinstance(m, Mapping) for m in value)
            )

        if hasattr(conversation, "messages"):
            return [conversation], False
        if isinstance(conversation, (list, tuple)) and conversation and not isinstance(conversation[0], Mapping):
            for i, chat_ in enumerate(conversation):
                if not is_chat(chat_):
                    raise TypeError(f"conversation[{i}] must be a list of messages (dicts), got {type(chat_).__name__}")
            return list(conversation), True
        if not is_chat(conversation):
            raise TypeError(
                "apply_chat_template takes a list of messages such as [{'role': 'user', 'content': 'Hi'}], or a batch "
                f"of such lists; got {type(conversation).__name__}"
            )
        return [conversation], False

    # -- decoding -------------------------------------------------------------------------------------------

    def _id_list(self, token_ids: Any) -> list[int]:
        """A flat list of Python ints from a list, an int, or a numpy/torch/tf/jax array; checked."""
        if hasattr(token_ids, "numpy") and not hasattr(token_ids, "tolist"):
            token_ids = token_ids.numpy()
        if hasattr(token_ids, "tolist"):
            token_ids = token_ids.tolist()
        if isinstance(token_ids, int) and not isinstance(token_ids, bool):
            token_ids = [token_ids]
        if not isinstance(token_ids, (list, tuple)):
            raise TypeError(f"token ids must be an int, a list of ints or a 1-D array, got {type(token_ids).__name__}")
        ids = list(token_ids)
        if not all(type(i) is int for i in ids):
            for i, value in enumerate(ids):
                if isinstance(value, (list, tuple)):
                    raise TypeError("decode takes one sequence of ids (1-D); use batch_decode for a batch (2-D)")
                if isinstance(value, bool) or not hasattr(value, "__index__"):
                    raise TypeError(f"token ids must be ints, got {type(value).__name__} ({value!r}) at position {i}")
                ids[i] = operator.index(value)
        if ids:
            low, high = min(ids), max(ids)
            if low < 0 or high >= self._id_limit():
                raise self._bad_id(low if low < 0 else high)
        return ids

    def _decode_ids(self, ids: list[int], skip_special_tokens: bool, clean_up: bool) -> str:
        if skip_special_tokens:
            special = self._special_ids()
            ids = [i for i in ids if i not in special]
        extra = self._table.extra_ids()
        if not extra or extra.isdisjoint(ids):
            try:
                text = b"".join(map(self._base_bytes.__getitem__, ids)).decode("utf-8", self.errors)
            except (TypeError, IndexError):
                raise self._bad_id(next(i for i in ids if i >= self._base_size or self._base_bytes[i] is None)) from None
            if clean_up:
                for before, after in _CLEAN_UP:
                    text = text.replace(before, after)
            return text
        added = self._added
        base_bytes = self._base_bytes
        base_size = self._base_size
        text_parts: list[str] = []
        run: list[bytes] = []
        errors = self.errors
        for index in ids:
            token = added.get(index)
            if token is not None and token.content not in self.encoder:
                if run:
                    text_parts.append(b"".join(run).decode("utf-8", errors))
                    run = []
                text_parts.append(token.content)
                continue
            data = base_bytes[index] if index < base_size else None
            if data is None:
                raise self._bad_id(index)
            run.append(data)
        if run:
            text_parts.append(b"".join(run).decode("utf-8", errors))
        text = "".join(text_parts)
        if clean_up:
            for before, after in _CLEAN_UP:
                text = text.replace(before, after)
        return text

    def decode(
        self,
        token_ids: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> str:
        """Text of a sequence of ids (list, int, or 1-D numpy/torch/tf/jax array).

        Bytes that are not valid UTF-8 (e.g. half of an emoji) become U+FFFD with the default
        ``errors="replace"``. ``clean_up_tokenization_spaces`` defaults to the tokenizer's setting
        (False for GPT-2). An id outside the vocabulary raises :class:`InvalidTokenIdError`.
        """
        ids = self._id_list(token_ids)
        clean_up = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None else clean_up_tokenization_spaces
        return self._decode_ids(ids, _as_bool(skip_special_tokens, "skip_special_tokens"), bool(clean_up))

    def batch_decode(
        self,
        sequences: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> list[str]:
        """:meth:`decode` of every sequence of a batch (a list of lists or a 2-D array)."""
        if hasattr(sequences, "numpy") and not hasattr(sequences, "tolist"):
            sequences = sequences.numpy()
        if hasattr(sequences, "tolist"):
            sequences = sequences.tolist()
        if not isinstance(sequences, (list, tuple)):
            raise TypeError(f"batch_decode takes a list of sequences or a 2-D array, got {type(sequences).__name__}")
        return [self.decode(s, skip_special_tokens, clean_up_tokenization_spaces) for s in sequences]

    # -- saving and loading (the files: serialization.py) ----------------------------------------------

    def save_vocabulary(self, save_directory: str | os.PathLike, filename_prefix: str | None = None) -> tuple[str, str]:
        """Write ``vocab.json`` and ``merges.txt`` (HF's formats) and return their paths."""
        directory = serialization.prepare_directory(save_directory)
        return serialization.write_vocabulary(directory, self.encoder, self.bpe_merges, filename_prefix)

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        legacy_format: bool | None = None,
        filename_prefix: str | None = None,
        push_to_hub: bool = False,
        **kwargs: Any,
    ) -> tuple[str, ...]:
        """Write HF's tokenizer files to ``save_directory``; returns the paths written.

        tokenizer_config.json and special_tokens_map.json, then HF's ``legacy_format`` choice:

        * None (default): both formats: vocab.json, merges.txt, added_tokens.json (only if tokens were
          added beyond the base vocabulary) and, for the fast tokenizer, tokenizer.json;
        * True: only the first three (what HF's slow tokenizer reads);
        * False: only tokenizer.json (fast tokenizer only, as in HF).

        Chat templates go to chat_template.jinja and additional_chat_templates/NAME.jinja, or with
        ``save_jinja_files=False`` into tokenizer_config.json (HF's older layout).

        Every file is written atomically. ``push_to_hub`` is refused (this package does not reach the hub);
        other keywords (HF passes them on to the hub upload) are ignored.
        """
        if legacy_format not in (None, True, False):
            raise ValueError(f"legacy_format must be None, True or False, got {legacy_format!r}")
        if legacy_format is False and not self.is_fast:
            raise ValueError(
                f"legacy_format=False writes only tokenizer.json, which {type(self).__name__} does not write "
                "(as in HF, only fast tokenizers can); save with GPT2TokenizerFast, or with legacy_format=None"
            )
        if push_to_hub:
            raise NotImplementedError(
                "push_to_hub=True: gpt2-multi does not upload to the Hugging Face hub; save to a directory and "
                "upload it with `huggingface-cli upload`"
            )
        directory = serialization.prepare_directory(save_directory)
        prefix = f"{filename_prefix}-" if filename_prefix else ""
        written = serialization.write_config_files(self, directory, prefix, kwargs.get("save_jinja_files", True))
        if legacy_format is not False:
            written.extend(self.save_vocabulary(directory, filename_prefix))
            written.extend(serialization.write_added_tokens(directory, prefix, self._added, self.encoder))
        if legacy_format is not True:
            written.extend(self._save_extra(directory, prefix))
        return tuple(written)

    def _save_extra(self, directory: Path, prefix: str) -> list[str]:
        """Hook: the fast tokenizer also writes tokenizer.json."""
        return []

    #: tokenizer_config.json keys read as constructor arguments (see :func:`serialization.read_pretrained`)
    _INIT_KEYS: ClassVar[frozenset[str]] = serialization.INIT_KEYS

    @classmethod
    def from_pretrained(cls: type[_T], pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> _T:
        """Load a tokenizer: ``"gpt2"`` (and the other GPT-2 names) from the package data, offline;
        a directory saved by HF or by :meth:`save_pretrained`; or another hub name found locally.

        Keyword arguments override what the files say (e.g. ``padding_side="left"``, ``add_prefix_space=True``).
        """
        if not isinstance(pretrained_model_name_or_path, (str, os.PathLike)):
            raise TypeError(f"from_pretrained takes a name or a path, got {type(pretrained_model_name_or_path).__name__}")
        directory = serialization.resolve_directory(pretrained_model_name_or_path)
        name = str(pretrained_model_name_or_path)
        init = serialization.read_pretrained(directory, serialization.loader_kwargs(name, kwargs), cls._INIT_KEYS)
        carried = init.pop("_carried")
        tokenizer = cls._from_init(init)
        tokenizer.init_kwargs = {**carried, **tokenizer.init_kwargs}
        tokenizer.name_or_path = name
        return tokenizer

    @classmethod
    def _from_init(cls: type[_T], init: dict[str, Any]) -> _T:
        """Construct from :func:`serialization.read_pretrained`'s arguments (the slow tokenizer reads
        tokenizer.json only when vocab.json/merges.txt are missing)."""
        init = dict(init)
        tokenizer_file = init.pop("tokenizer_file", None)
        if "vocab_file" not in init and "vocab" not in init:
            data = bpe.load_tokenizer_json(tokenizer_file)
            init["vocab"], init["merges"] = data["vocab"], data["merges"]
            merge_json_added_tokens(init, data)
        return cls(**init)
