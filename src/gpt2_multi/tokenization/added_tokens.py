"""Added tokens: :class:`AddedToken`, the table of added tokens, and splitting text on them.

An added token is text matched before BPE and never split (``<|endoftext|>``, a ``[PAD]`` added by
``add_special_tokens``, a word added by ``add_tokens``). This module holds:

* :class:`AddedToken`: one token and its matching rules (``single_word``, ``lstrip``, ``rstrip``,
  ``normalized``, ``special``), with HF's JSON form;
* :class:`AddedTokenTable`: id -> token and content -> id for one base vocabulary, the rules for the
  ids new tokens get, and :meth:`AddedTokenTable.split`, which cuts a text into plain pieces and
  added-token ids with HF's matching rules;
* plain functions that check and coerce the tokens given to the tokenizer's special-token
  arguments and to ``add_tokens``.

It imports nothing else of the tokenizer (``base.py`` builds on it).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: the named special tokens, in HF's order (``all_special_tokens`` lists them in this order)
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")

# Unicode White_Space (what Rust's char::is_whitespace tests; str.isspace() also accepts \x1c-\x1f).
WHITE_SPACE = frozenset("\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | frozenset(
    chr(c) for c in range(0x2000, 0x200B)
)


class AddedToken:
    """A token added on top of the BPE vocabulary; the text is matched before BPE and never split.

    ``single_word``: match only when not glued to a letter, digit or ``_`` on either side.
    ``lstrip``/``rstrip``: the match also swallows the whitespace on its left/right.
    ``normalized``: kept for HF compatibility (GPT-2 has no normalizer); tokens with
    ``normalized=False`` are matched first, as HF does. ``special``: a special token
    (skipped by ``decode(..., skip_special_tokens=True)``).
    """

    __slots__ = ("content", "single_word", "lstrip", "rstrip", "normalized", "special")

    def __init__(
        self,
        content: str,
        single_word: bool = False,
        lstrip: bool = False,
        rstrip: bool = False,
        normalized: bool | None = None,
        special: bool = False,
    ) -> None:
        if not isinstance(content, str):
            raise TypeError(f"AddedToken content must be a str, got {type(content).__name__}")
        if not content:
            raise ValueError("an added token cannot be the empty string")
        self.content = content
        self.single_word = bool(single_word)
        self.lstrip = bool(lstrip)
        self.rstrip = bool(rstrip)
        self.normalized = (not special) if normalized is None else bool(normalized)
        self.special = bool(special)

    @classmethod
    def coerce(cls, token: Any, special: bool | None = None) -> AddedToken:
        """An AddedToken from a str, an AddedToken (ours or ``tokenizers``'), or HF's JSON dict form."""
        if isinstance(token, str):
            return cls(token, special=bool(special))
        if isinstance(token, Mapping):
            fields = {k: token[k] for k in ("content", "single_word", "lstrip", "rstrip", "normalized", "special") if k in token}
            if "content" not in fields:
                raise ValueError(f"an added token given as a dict needs a 'content' key, got {dict(token)!r}")
            if special is not None:
                fields["special"] = special
            return cls(**fields)
        if all(hasattr(token, attr) for attr in ("content", "single_word", "lstrip", "rstrip", "normalized")):
            out = cls(
                token.content, token.single_word, token.lstrip, token.rstrip, token.normalized,
                getattr(token, "special", False),
            )
            if special is not None:
                out.special = special
            return out
        raise TypeError(f"a token must be a str or an AddedToken, got {type(token).__name__}")

    def to_dict(self, with_special: bool = True) -> dict[str, Any]:
        """HF's JSON form (the one in tokenizer_config.json / special_tokens_map.json)."""
        out: dict[str, Any] = {
            "content": self.content,
            "lstrip": self.lstrip,
            "normalized": self.normalized,
            "rstrip": self.rstrip,
            "single_word": self.single_word,
        }
        if with_special:
            out["special"] = self.special
        return out

    def __str__(self) -> str:
        return self.content

    def __repr__(self) -> str:
        return (
            f"AddedToken({self.content!r}, rstrip={self.rstrip}, lstrip={self.lstrip}, single_word={self.single_word}, "
            f"normalized={self.normalized}, special={self.special})"
        )

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AddedToken):
            return all(getattr(self, k) == getattr(other, k) for k in self.__slots__)
        if isinstance(other, str):
            return self.content == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.content)


# ---------------------------------------------------------------------------------------------------------
# Coercing what users pass.


def special_token(token: Any, name: str) -> AddedToken:
    """``token`` (a str, an AddedToken or HF's dict form) given for the special token ``name`` (e.g.
    "pad_token", used in the error), as a special AddedToken; a str gets ``normalized=False``, as in HF."""
    if not isinstance(token, str) and not hasattr(token, "content") and not isinstance(token, Mapping):
        raise TypeError(f"{name} must be a str or an AddedToken, got {type(token).__name__}")
    if isinstance(token, str):
        return AddedToken(token, special=True, normalized=False)
    return AddedToken.coerce(token, special=True)


def special_value(value: Any, name: str) -> AddedToken | str | None:
    """What assigning ``value`` to the special-token attribute ``name`` stores: None, the str itself, or a special
    AddedToken (from an AddedToken of ours or of ``tokenizers``); anything else is a TypeError."""
    if value is not None and not isinstance(value, str) and not hasattr(value, "content"):
        raise TypeError(f"{name} must be a str, an AddedToken or None, got {type(value).__name__}")
    return value if value is None or isinstance(value, str) else AddedToken.coerce(value, special=True)


def new_tokens(tokens: Any, special: bool) -> list[AddedToken]:
    """``add_tokens``' argument (one token or a list of them: str, AddedToken, or HF's dict form) as
    AddedTokens; empty strings are skipped, as HF does (nothing could ever match them). With ``special``
    every token is made special."""
    if isinstance(tokens, (str, AddedToken)) or hasattr(tokens, "content"):
        tokens = [tokens]
    if not isinstance(tokens, (list, tuple)):
        raise TypeError(f"add_tokens takes a token or a list of tokens, got {type(tokens).__name__}")
    out = []
    for token in tokens:
        if isinstance(token, str) and not token:
            continue
        if isinstance(token, str):
            out.append(AddedToken(token, special=special))
        else:
            out.append(AddedToken.coerce(token, special=True if special else None))
    return out


# ---------------------------------------------------------------------------------------------------------
# Splitting text on added tokens.


def split_on(text: str, pattern: re.Pattern, tokens: Mapping[str, AddedToken], ids: Mapping[str, int]) -> list[str | int]:
    """Split ``text`` into plain strings and added-token ids, with HF's single_word/lstrip/rstrip rules.

    ``pattern`` matches the contents of ``tokens`` (content -> AddedToken), longest first; ``ids`` maps
    content -> id. Returns the pieces in order: a str for text between matches, an int for a match.
    """
    pieces: list[str | int] = []
    position = 0
    for match in pattern.finditer(text):
        start, stop = match.span()
        if start < position:
            continue
        token = tokens[match.group()]
        if token.single_word:
            before = text[start - 1] if start > 0 else ""
            after = text[stop] if stop < len(text) else ""
            if (before and (before.isalnum() or before == "_")) or (after and (after.isalnum() or after == "_")):
                continue
        if token.lstrip:
            while start > position and text[start - 1] in WHITE_SPACE:
                start -= 1
        if token.rstrip:
            while stop < len(text) and text[stop] in WHITE_SPACE:
                stop += 1
        if start > position:
            pieces.append(text[position:start])
        pieces.append(ids[token.content])
        position = stop
    if position < len(text):
        pieces.append(text[position:])
    return pieces


def split_patterns(tokens: Iterable[AddedToken], split_special: bool) -> list[tuple[re.Pattern, dict[str, AddedToken]]]:
    """Patterns matching ``tokens``, in HF's order: those with ``normalized=False`` first, then the others.

    Each item is (a regex of the contents, longest first so that at one position the longest wins, as HF's
    leftmost-longest match; content -> AddedToken). With ``split_special`` special tokens are left out
    (``split_special_tokens=True``: they are encoded as plain text). Groups without a token are dropped.
    """
    tokens = list(tokens)
    groups: list[tuple[re.Pattern, dict[str, AddedToken]]] = []
    for normalized in (False, True):
        group = {t.content: t for t in tokens if t.normalized == normalized and not (split_special and t.special)}
        if group:
            pattern = re.compile("|".join(re.escape(c) for c in sorted(group, key=len, reverse=True)))
            groups.append((pattern, group))
    return groups


# ---------------------------------------------------------------------------------------------------------
# The table.


class AddedTokenTable:
    """The added tokens of one tokenizer: ``by_id`` (id -> AddedToken) and ``by_content`` (content -> id).

    ``vocab`` (token -> id) and ``base_tokens`` (id -> token, None for a hole) are the base BPE vocabulary;
    an added token that is in it keeps its id, any other gets the next id after both the base vocabulary and
    the added tokens. The table checks that ids and contents stay one-to-one and never shadow a base token.
    It caches the split patterns and the ids of tokens outside the base vocabulary; :meth:`register` drops
    the caches (both maps are changed only through it).
    """

    def __init__(self, vocab: Mapping[str, int], base_tokens: Sequence[str | None]) -> None:
        self.vocab = vocab
        self.base_tokens = base_tokens
        self.by_id: dict[int, AddedToken] = {}
        self.by_content: dict[str, int] = {}
        self._patterns: dict[bool, list[tuple[re.Pattern, dict[str, AddedToken]]]] = {}
        self._extra_ids: frozenset[int] | None = None

    def next_id(self) -> int:
        """One past the largest id in use: the id the next new token gets (also the size of the id space)."""
        return max(len(self.base_tokens), max(self.by_id, default=-1) + 1)

    def register(self, token: AddedToken, index: int) -> bool:
        """Record ``token`` at ``index``; True if it was not an added token before. ValueError when ``index``
        is the base vocabulary's id of another token, or ids and contents would no longer be one-to-one."""
        base = self.vocab.get(token.content)
        if base is not None and base != index:
            raise ValueError(f"added token {token.content!r} is given id {index}, but the vocabulary has it at id {base}")
        if base is None and index < len(self.base_tokens) and self.base_tokens[index] is not None:
            raise ValueError(
                f"added token {token.content!r} is given id {index}, which is the vocabulary's token {self.base_tokens[index]!r}"
            )
        old = self.by_id.get(index)
        if old is not None and old.content != token.content:
            raise ValueError(f"added tokens {old.content!r} and {token.content!r} both claim id {index}")
        if token.content in self.by_content and self.by_content[token.content] != index:
            raise ValueError(f"added token {token.content!r} is given two ids: {self.by_content[token.content]} and {index}")
        self.by_id[index] = token
        self.by_content[token.content] = index
        self._patterns.clear()
        self._extra_ids = None
        return old is None

    def register_decoder(self, added_tokens_decoder: Mapping[int | str, Any]) -> None:
        """Register the constructor's ``added_tokens_decoder`` (id, or its str as in JSON -> token in any form
        :meth:`AddedToken.coerce` takes), in its order."""
        for key, token in added_tokens_decoder.items():
            try:
                index = operator.index(int(key))
            except (TypeError, ValueError):
                raise ValueError(f"added_tokens_decoder keys must be token ids, got {key!r}") from None
            self.register(AddedToken.coerce(token), index)

    def add(self, tokens: Iterable[AddedToken], special: bool) -> tuple[int, bool]:
        """Add ``tokens``: a base-vocabulary token keeps its id, another gets :meth:`next_id`; a token already
        added is kept (with ``special``, it is marked special). Returns (how many became added tokens,
        whether anything changed)."""
        created = 0
        changed = False
        for token in tokens:
            if token.content in self.by_content:
                index = self.by_content[token.content]
                if special and not self.by_id[index].special:
                    self.by_id[index].special = True
                    self._patterns.clear()  # the split patterns group tokens by specialness
                    changed = True
                continue
            index = self.vocab.get(token.content)
            if index is None:
                index = self.next_id()
            created += self.register(token, index)
            changed = True
        return created, changed

    def extra_ids(self) -> frozenset[int]:
        """Ids of added tokens that are not in the base vocabulary (decoded as their text)."""
        if self._extra_ids is None:
            self._extra_ids = frozenset(i for i, t in self.by_id.items() if t.content not in self.vocab)
        return self._extra_ids

    def patterns(self, split_special: bool) -> list[tuple[re.Pattern, dict[str, AddedToken]]]:
        """:func:`split_patterns` of the table's tokens, cached."""
        cached = self._patterns.get(split_special)
        if cached is None:
            cached = self._patterns[split_special] = split_patterns(self.by_id.values(), split_special)
        return cached

    def split(self, text: str, split_special: bool) -> list[str | int]:
        """``text`` as a list of plain strings and added-token ids (:func:`split_on` with each group of
        :meth:`patterns` in turn, on the plain pieces the previous group left)."""
        pieces: list[str | int] = [text]
        for pattern, tokens in self.patterns(split_special):
            out: list[str | int] = []
            for piece in pieces:
                if isinstance(piece, str) and pattern.search(piece) is not None:
                    out.extend(split_on(piece, pattern, tokens, self.by_content))
                else:
                    out.append(piece)
            pieces = out
        return pieces
