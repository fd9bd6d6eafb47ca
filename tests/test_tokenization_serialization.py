"""HF's tokenizer files alone (tokenization/serialization.py): reading them into constructor arguments, writing them."""

from __future__ import annotations

import json

import pytest

from gpt2_multi import GPT2Tokenizer, GPT2TokenizerFast
from gpt2_multi.tokenization import base, bpe
from gpt2_multi.tokenization import serialization as ser
from gpt2_multi.tokenization.added_tokens import AddedToken

VOCAB = {"a": 0, "b": 1, "ab": 2, "<|endoftext|>": 3}
MERGES = [("a", "b")]


def test_names_keep_their_import_path_in_base():
    for name in ("TOKENIZER_CONFIG_FILE", "SPECIAL_TOKENS_MAP_FILE", "ADDED_TOKENS_FILE", "FETCH_OPTIONS",
                 "LOADER_OPTIONS", "merge_json_added_tokens"):
        assert getattr(base, name) is getattr(ser, name), name
    assert base.GPT2TokenizerBase._INIT_KEYS is ser.INIT_KEYS


def test_vocabulary_round_trip(tmp_path):
    directory = ser.prepare_directory(tmp_path / "new" / "dir")
    paths = ser.write_vocabulary(directory, VOCAB, MERGES, "p")
    assert paths == (str(directory / "p-vocab.json"), str(directory / "p-merges.txt"))
    assert (directory / "p-merges.txt").read_text(encoding="utf-8") == "#version: 0.2\na b\n"
    assert ser.read_vocab_files(*paths) == (VOCAB, MERGES)
    with pytest.raises(FileNotFoundError, match="merges_file .* does not exist"):
        ser.read_vocab_files(paths[0], directory / "missing.txt")
    with pytest.raises(NotADirectoryError, match="exists and is not a directory"):
        ser.prepare_directory(paths[0])


def test_builtin_vocabulary_is_read_as_a_copy():
    builtin = bpe.builtin_dir()
    vocab, merges = ser.read_vocab_files(builtin / bpe.VOCAB_FILE, builtin / bpe.MERGES_FILE)
    assert len(vocab) == 50257 and len(merges) == 50000
    vocab["<not in gpt2>"] = 1
    merges.pop()
    assert "<not in gpt2>" not in bpe.builtin_vocab_and_merges()[0] and len(bpe.builtin_vocab_and_merges()[1]) == 50000


def test_special_tokens_map_and_added_tokens_file(tmp_path):
    special = dict.fromkeys(("bos_token", "eos_token", "pad_token"))
    special["eos_token"] = "</s>"
    special["bos_token"] = AddedToken("<s>", lstrip=True, special=True)
    assert ser.special_tokens_map(special, [AddedToken("<x>", special=True)]) == {
        "bos_token": {"content": "<s>", "lstrip": True, "normalized": False, "rstrip": False, "single_word": False},
        "eos_token": "</s>",
        "additional_special_tokens": [
            {"content": "<x>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
        ],
    }
    assert ser.write_added_tokens(tmp_path, "", {3: AddedToken("<|endoftext|>")}, VOCAB) == []
    written = ser.write_added_tokens(tmp_path, "", {3: AddedToken("<|endoftext|>"), 4: AddedToken("<x>")}, VOCAB)
    assert written == [str(tmp_path / "added_tokens.json")]
    assert json.loads((tmp_path / "added_tokens.json").read_text(encoding="utf-8")) == {"<x>": 4}


def test_merge_json_added_tokens_files_and_kwargs_win():
    init = {"added_tokens_decoder": {4: AddedToken("<mine>")}, "add_prefix_space": True}
    data = {"added_tokens": [{"id": 4, "content": "<theirs>"}, {"id": 5, "content": "<y>", "special": True}],
            "add_prefix_space": False}
    ser.merge_json_added_tokens(init, data)
    assert init["added_tokens_decoder"] == {4: AddedToken("<mine>"), 5: AddedToken("<y>", special=True)}
    assert init["add_prefix_space"] is True
    with pytest.raises(ValueError, match="needs 'id' and 'content'"):
        ser.merge_json_added_tokens({}, {"added_tokens": [{"content": "<z>"}], "add_prefix_space": False})


def test_loader_kwargs():
    kwargs = {"revision": "main", "cache_dir": "/x", "use_fast": True, "padding_side": "left"}
    assert ser.loader_kwargs("./some/dir", kwargs) == {"use_fast": True, "padding_side": "left"}
    assert ser.loader_kwargs("./some/dir", kwargs) is not kwargs and "revision" in kwargs  # the caller's dict unchanged
    assert ser.loader_kwargs("./some/dir", {"model_max_length": 7}) == {"model_max_length": 7}


@pytest.mark.parametrize("cls", [GPT2Tokenizer, GPT2TokenizerFast])
def test_read_pretrained_reads_what_save_pretrained_wrote(cls, tmp_path):
    tok = cls.from_pretrained("gpt2", padding_side="left", do_lower_case=True)
    tok.add_special_tokens({"pad_token": "[PAD]"})
    tok.add_tokens(["<new>"])
    tok.save_pretrained(tmp_path)
    config = json.loads((tmp_path / ser.TOKENIZER_CONFIG_FILE).read_text(encoding="utf-8"))
    assert config == ser.tokenizer_config(tok)
    init = ser.read_pretrained(tmp_path, {"add_prefix_space": True})
    assert init["padding_side"] == "left" and init["pad_token"] == AddedToken("[PAD]", special=True)
    assert init["added_tokens_decoder"][50258] == AddedToken("<new>")
    assert init["add_prefix_space"] is True and init["name_or_path"] == str(tmp_path)
    assert init["_carried"] == {"do_lower_case": True}
    assert init["vocab_file"] == str(tmp_path / bpe.VOCAB_FILE)
    assert ("tokenizer_file" in init) == cls.is_fast
    with pytest.raises(FileNotFoundError, match="holds no tokenizer"):
        ser.read_pretrained(tmp_path / "nothing", {})


def test_resolve_directory(tmp_path):
    assert ser.resolve_directory("gpt2") == bpe.builtin_dir()
    assert ser.resolve_directory(tmp_path) == tmp_path
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(NotADirectoryError, match="is a file"):
        ser.resolve_directory(tmp_path / "file")
