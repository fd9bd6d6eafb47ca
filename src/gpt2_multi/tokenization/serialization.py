"""Reading and writing HF's tokenizer files: what ``from_pretrained`` and ``save_pretrained`` do with files.

The files (HF transformers 4.57's layout):

* ``vocab.json`` (token -> id) and ``merges.txt`` (``#version: 0.2`` then one merge a line): the BPE model,
  read by :func:`read_vocab_files`, written by :func:`write_vocabulary`;
* ``tokenizer.json``: the Rust ``tokenizers`` layout; read with :func:`bpe.load_tokenizer_json`, its added
  tokens merged by :func:`merge_json_added_tokens` (the fast tokenizer writes it itself);
* ``tokenizer_config.json``: constructor settings, ``added_tokens_decoder`` and the kept ``init_kwargs``
  (:func:`tokenizer_config`);
* ``special_tokens_map.json``: the special tokens in HF's dict form (:func:`special_tokens_map`);
* ``added_tokens.json``: the legacy content -> id of tokens beyond the base vocabulary
  (:func:`write_added_tokens`);
* chat templates: ``chat_template.jinja`` and friends, handled by :mod:`~gpt2_multi.tokenization.chat`.

:func:`resolve_directory` finds a name's directory (a local folder, the package's GPT-2 files, the HF
cache); :func:`read_pretrained` turns a directory's files into constructor arguments. The tokenizer class
(``base.py``) keeps the public methods and their order of hooks; this module only reads and writes.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpt2_multi.io_utils import atomic_write_text
from gpt2_multi.tokenization import bpe, chat
from gpt2_multi.tokenization.added_tokens import SPECIAL_TOKEN_NAMES, AddedToken

if TYPE_CHECKING:  # for type hints only: base.py imports this module
    from gpt2_multi.tokenization.base import GPT2TokenizerBase

logger = logging.getLogger(__name__)

TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
ADDED_TOKENS_FILE = "added_tokens.json"

#: keywords only HF's ``from_pretrained`` reads (where and how to fetch the files): it consumes them, so from
#: ``from_pretrained`` they reach neither ``init_kwargs`` nor tokenizer_config.json (HF 4.57; given to the
#: constructor itself, they are kept like any other keyword, as in HF)
FETCH_OPTIONS = frozenset({
    "cache_dir", "force_download", "local_files_only", "revision", "token", "use_auth_token", "trust_remote_code",
    "resume_download", "proxies", "subfolder", "_from_auto", "_from_pipeline", "_commit_hash",
})

#: keywords HF user code passes to loaders routinely (the fetch options, ``use_fast``: which class AutoTokenizer
#: builds, ...): accepted without a word. Those that reach the constructor (``use_fast``, ``from_slow``,
#: ``legacy``) are kept in ``init_kwargs`` and saved in tokenizer_config.json, as HF does
LOADER_OPTIONS = FETCH_OPTIONS | {"use_fast", "from_slow", "legacy", "from_pipeline"}

#: tokenizer_config.json keys that are constructor arguments read as such (the rest of the file's keys are
#: carried into ``init_kwargs``, except those below)
INIT_KEYS = frozenset(
    {
        "errors", "add_prefix_space", "add_bos_token", "model_max_length", "padding_side", "truncation_side",
        "clean_up_tokenization_spaces", "split_special_tokens", "additional_special_tokens", *SPECIAL_TOKEN_NAMES,
    }
)

#: tokenizer_config.json keys :func:`read_pretrained` reads itself, or that HF writes about the files and the
#: class (not constructor keywords); every other key is carried into ``init_kwargs``
CONFIG_KEYS_NOT_CARRIED = frozenset({
    "added_tokens_decoder", "chat_template", "tokenizer_class", "auto_map", "processor_class", "name_or_path",
    "special_tokens_map_file", "tokenizer_file", "vocab_file", "merges_file", "init_inputs", "device_map",
    "extra_special_tokens",
})


def json_value(value: Any) -> bool:
    """Whether ``value`` can be written as JSON."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


# ---------------------------------------------------------------------------------------------------------
# Reading.


def read_vocab_files(vocab_file: str | os.PathLike, merges_file: str | os.PathLike) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(token -> id, merges in order) from vocab.json and merges.txt; the package's own GPT-2 files come from
    the shared cache (a copy of it). FileNotFoundError names the missing file."""
    vocab_path, merges_path = Path(vocab_file), Path(merges_file)
    for what, path in (("vocab_file", vocab_path), ("merges_file", merges_path)):
        if not path.is_file():
            raise FileNotFoundError(f"{what} {str(path)!r} does not exist or is not a file")
    builtin = bpe.builtin_dir()
    if vocab_path.resolve() == (builtin / bpe.VOCAB_FILE).resolve() and merges_path.resolve() == (
        builtin / bpe.MERGES_FILE
    ).resolve():
        vocab, merges = bpe.builtin_vocab_and_merges()
        return dict(vocab), list(merges)
    return bpe.load_vocab(vocab_path), bpe.load_merges(merges_path)


def merge_json_added_tokens(init: dict[str, Any], data: dict[str, Any]) -> None:
    """Add tokenizer.json's added tokens and add_prefix_space to constructor arguments (files/kwargs win).

    ``data`` is :func:`bpe.load_tokenizer_json`'s dict; ``init`` is changed in place: its
    ``added_tokens_decoder`` (id -> AddedToken) gains the tokens it lacks.
    """
    added = dict(init.get("added_tokens_decoder") or {})
    for entry in data["added_tokens"]:
        if not isinstance(entry, Mapping) or "id" not in entry:
            raise ValueError(f"tokenizer.json: an added token needs 'id' and 'content', got {entry!r}")
        added.setdefault(int(entry["id"]), AddedToken.coerce(entry))
    init["added_tokens_decoder"] = added
    init.setdefault("add_prefix_space", data["add_prefix_space"])


def resolve_directory(name_or_path: str | os.PathLike) -> Path:
    """The directory of a tokenizer: a local directory as it is, a GPT-2 name (``"gpt2"``, ...) the package's
    own files, another name the HF cache (through :func:`gpt2_multi.hub.resolve`, offline)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.is_file():
        raise NotADirectoryError(
            f"{str(path)!r} is a file; from_pretrained takes a directory holding vocab.json and merges.txt "
            "(or tokenizer.json), or a model name such as 'gpt2'"
        )
    name = str(name_or_path)
    if name in bpe.BUILTIN_NAMES:
        return bpe.builtin_dir()
    from gpt2_multi import hub  # lazily: only for names that are neither local nor built in

    return Path(hub.resolve(name, files=(TOKENIZER_CONFIG_FILE, bpe.VOCAB_FILE, bpe.MERGES_FILE)))


def loader_kwargs(name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``from_pretrained``'s keywords as they reach the files' reader: for a GPT-2 model shipped with the
    package, ``model_max_length`` defaults to its context (``n_positions``); HF's fetch options are consumed."""
    kwargs = dict(kwargs)
    if name in bpe.EMBEDDED_MODELS and "model_max_length" not in kwargs:  # GPT-2's vocabulary, the model's context
        from gpt2_multi.config import GPT2Config

        kwargs["model_max_length"] = GPT2Config.from_pretrained(name).n_positions
    return {k: v for k, v in kwargs.items() if k not in FETCH_OPTIONS}  # HF's from_pretrained consumes them


def read_pretrained(directory: Path, kwargs: Mapping[str, Any], init_keys: Collection[str] = INIT_KEYS) -> dict[str, Any]:
    """Constructor arguments from HF's files in ``directory`` (``kwargs`` override them).

    Reads tokenizer_config.json (the ``init_keys`` among its keys, ``added_tokens_decoder``, a chat template),
    special_tokens_map.json, added_tokens.json and the chat template files, and names vocab.json/merges.txt
    (``vocab_file``, ``merges_file``) and tokenizer.json (``tokenizer_file``) when present. The result also
    has ``_carried``: the config's other keys (not given in ``kwargs``), for ``init_kwargs``, as HF keeps them.
    """

    def read_json(name: str) -> Any:
        path = directory / name
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from None

    init: dict[str, Any] = {}
    config = read_json(TOKENIZER_CONFIG_FILE) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{directory / TOKENIZER_CONFIG_FILE} must hold a JSON object")
    tokenizer_class = config.get("tokenizer_class")
    if tokenizer_class and not str(tokenizer_class).startswith("GPT2Tokenizer"):
        logger.warning("%s was saved by %s; loading it as GPT-2's byte-level BPE", directory, tokenizer_class)
    for key in init_keys:
        if key in config:
            init[key] = config[key]
    # as HF: any other key of the file (a keyword kept in init_kwargs when it was saved: verbose, use_fast,
    # do_lower_case ...) is kept again; from_pretrained adds it to init_kwargs without the constructor's warning
    carried = {k: v for k, v in config.items()
               if k not in init_keys and k not in CONFIG_KEYS_NOT_CARRIED and k not in SPECIAL_TOKEN_NAMES
               and k != "additional_special_tokens"}
    if "verbose" in carried:
        init["verbose"] = carried.pop("verbose")
    if init.get("model_max_length") is not None:
        init["model_max_length"] = int(init["model_max_length"])
    elif "model_max_length" in init:
        del init["model_max_length"]
    special_map = read_json(SPECIAL_TOKENS_MAP_FILE) or {}
    if not isinstance(special_map, dict):
        raise ValueError(f"{directory / SPECIAL_TOKENS_MAP_FILE} must hold a JSON object")
    for key, value in special_map.items():
        if key in SPECIAL_TOKEN_NAMES or key == "additional_special_tokens":
            init[key] = value
    for key in SPECIAL_TOKEN_NAMES:
        if isinstance(init.get(key), Mapping):
            init[key] = AddedToken.coerce(init[key], special=True)
    if "additional_special_tokens" in init:
        init["additional_special_tokens"] = [
            AddedToken.coerce(t, special=True) if isinstance(t, Mapping) else t for t in init["additional_special_tokens"] or []
        ]
    added: dict[int, Any] = {}
    decoder = config.get("added_tokens_decoder") or {}
    if not isinstance(decoder, Mapping):
        raise ValueError(f"{directory / TOKENIZER_CONFIG_FILE}: added_tokens_decoder must be an object of id -> token")
    for key, value in decoder.items():
        added[int(key)] = AddedToken.coerce(value)
    legacy = read_json(ADDED_TOKENS_FILE) or {}
    if not isinstance(legacy, Mapping):
        raise ValueError(f"{directory / ADDED_TOKENS_FILE} must hold a JSON object of token -> id")
    for content, index in sorted(legacy.items(), key=lambda item: item[1]):
        if int(index) not in added:
            added[int(index)] = AddedToken(content, special=False)
    init["added_tokens_decoder"] = added
    templates = chat.read_templates(directory, config.get("chat_template"))
    if templates is not None:
        init["chat_template"] = templates
    vocab_path, merges_path = directory / bpe.VOCAB_FILE, directory / bpe.MERGES_FILE
    if vocab_path.is_file() and merges_path.is_file():
        init["vocab_file"], init["merges_file"] = str(vocab_path), str(merges_path)
    if (directory / bpe.TOKENIZER_FILE).is_file():
        init["tokenizer_file"] = str(directory / bpe.TOKENIZER_FILE)
    if "vocab_file" not in init and "tokenizer_file" not in init:
        raise FileNotFoundError(
            f"{directory} holds no tokenizer: expected vocab.json and merges.txt (or tokenizer.json)"
        )
    init.update(kwargs)
    init["name_or_path"] = str(directory)
    init["_carried"] = {k: v for k, v in carried.items() if k not in kwargs}
    return init


# ---------------------------------------------------------------------------------------------------------
# Writing. Every file is written atomically.


def prepare_directory(save_directory: str | os.PathLike) -> Path:
    """``save_directory`` as a Path, created if missing; NotADirectoryError when it is something else."""
    directory = Path(save_directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"save_directory {str(directory)!r} exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def write_vocabulary(
    directory: Path, encoder: Mapping[str, int], merges: list[tuple[str, str]], filename_prefix: str | None = None
) -> tuple[str, str]:
    """Write ``vocab.json`` (``encoder``, keys sorted) and ``merges.txt`` (HF's formats) to an existing
    ``directory``, names prefixed with ``filename_prefix-``; returns their paths."""
    prefix = f"{filename_prefix}-" if filename_prefix else ""
    vocab_path = directory / f"{prefix}{bpe.VOCAB_FILE}"
    merges_path = directory / f"{prefix}{bpe.MERGES_FILE}"
    atomic_write_text(vocab_path, json.dumps(encoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    atomic_write_text(merges_path, "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return str(vocab_path), str(merges_path)


def token_json(token: AddedToken | str) -> Any:
    """A special token as special_tokens_map.json holds it: a str as it is, an AddedToken as its dict
    (without ``special``, as HF writes it there)."""
    return token if isinstance(token, str) else token.to_dict(with_special=False)


def tokenizer_config(tokenizer: GPT2TokenizerBase) -> dict[str, Any]:
    """The contents of tokenizer_config.json for ``tokenizer`` (keys sorted), without the chat template:
    its settings, ``added_tokens_decoder`` (str id -> HF's token dict), the special tokens (as str; bos, eos,
    unk and pad always, None when unset) and, as HF, every keyword kept in ``init_kwargs`` that is JSON (as
    the attribute of that name, if the tokenizer has one)."""
    added = tokenizer._added
    config: dict[str, Any] = {
        "add_bos_token": tokenizer.add_bos_token,
        "add_prefix_space": tokenizer.add_prefix_space,
        "added_tokens_decoder": {str(i): added[i].to_dict() for i in sorted(added)},
    }
    for name in SPECIAL_TOKEN_NAMES:
        token = tokenizer._special[name]
        if token is not None or name in ("bos_token", "eos_token", "unk_token", "pad_token"):
            config[name] = None if token is None else str(token)
    if tokenizer._additional:
        config["additional_special_tokens"] = tokenizer.additional_special_tokens
    config.update(
        {
            "clean_up_tokenization_spaces": tokenizer.clean_up_tokenization_spaces,
            "errors": tokenizer.errors,
            "extra_special_tokens": {},
            "model_max_length": tokenizer.model_max_length,
            "tokenizer_class": "GPT2Tokenizer",
        }
    )
    if tokenizer.padding_side != "right":
        config["padding_side"] = tokenizer.padding_side
    if tokenizer.truncation_side != "right":
        config["truncation_side"] = tokenizer.truncation_side
    if tokenizer.split_special_tokens:
        config["split_special_tokens"] = True
    for key, value in tokenizer.init_kwargs.items():  # as HF: every kept keyword, as the attribute of that name if any
        current = getattr(tokenizer, key, value)
        value = value if callable(current) else current
        if key not in config and json_value(value):
            config[key] = value
    return dict(sorted(config.items()))


def special_tokens_map(special: Mapping[str, AddedToken | str | None], additional: list[AddedToken | str]) -> dict[str, Any]:
    """The contents of special_tokens_map.json: the named special tokens that are set (``special``: name ->
    token or None), by name, then ``additional_special_tokens`` when there are any; each as :func:`token_json`."""
    out: dict[str, Any] = {name: token_json(token) for name, token in sorted(special.items()) if token is not None}
    if additional:
        out["additional_special_tokens"] = [token_json(t) for t in additional]
    return out


def write_config_files(tokenizer: GPT2TokenizerBase, directory: Path, prefix: str, save_jinja_files: bool) -> list[str]:
    """Write tokenizer_config.json, the chat templates (as .jinja files, or with ``save_jinja_files=False``
    inside tokenizer_config.json, HF's older layout) and special_tokens_map.json to an existing ``directory``,
    names prefixed with ``prefix``; returns the paths written, in that order."""
    written: list[str] = []
    config_path = directory / f"{prefix}{TOKENIZER_CONFIG_FILE}"
    config = tokenizer_config(tokenizer)
    templates = chat.normalize_templates(tokenizer.chat_template)
    if not save_jinja_files and templates is not None:
        config["chat_template"] = chat.config_value(templates)
    atomic_write_text(config_path, json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    written.append(str(config_path))
    if save_jinja_files:
        for name, text in chat.template_files(templates, prefix).items():
            path = directory / name
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, text)
            written.append(str(path))
    map_path = directory / f"{prefix}{SPECIAL_TOKENS_MAP_FILE}"
    special_map = special_tokens_map(tokenizer._special, tokenizer._additional)
    atomic_write_text(map_path, json.dumps(special_map, indent=2, ensure_ascii=False) + "\n")
    written.append(str(map_path))
    return written


def write_added_tokens(
    directory: Path, prefix: str, added: Mapping[int, AddedToken], encoder: Mapping[str, int]
) -> list[str]:
    """Write added_tokens.json (content -> id of the ``added`` tokens outside the base vocabulary ``encoder``)
    to ``directory``, only when there are such tokens; returns the paths written (none or one)."""
    extra = {t.content: i for i, t in sorted(added.items()) if t.content not in encoder}
    if not extra:
        return []
    added_path = directory / f"{prefix}{ADDED_TOKENS_FILE}"
    atomic_write_text(added_path, json.dumps(extra, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return [str(added_path)]
