"""Added tokens alone (tokenization/added_tokens.py): AddedToken, the table, splitting text on added tokens."""

from __future__ import annotations

import pytest

from gpt2_multi import GPT2Tokenizer, GPT2TokenizerFast
from gpt2_multi.tokenization import added_tokens as at
from gpt2_multi.tokenization import base
from gpt2_multi.tokenization.added_tokens import AddedToken, AddedTokenTable

# A toy base vocabulary: ids 0..3, with a hole at 2.
VOCAB = {"a": 0, "b": 1, "<s>": 3}
BASE_TOKENS = ["a", "b", None, "<s>"]


def test_names_keep_their_import_path_in_base():
    assert base.AddedToken is at.AddedToken
    assert base.SPECIAL_TOKEN_NAMES is at.SPECIAL_TOKEN_NAMES


def test_split_on_applies_single_word_lstrip_rstrip():
    def split(text, token):
        tokens = {token.content: token}
        return at.split_on(text, at.split_patterns(tokens.values(), False)[0][0], tokens, {token.content: 9})

    assert split("x<m>y", AddedToken("<m>")) == ["x", 9, "y"]
    assert split("x <m> y", AddedToken("<m>", lstrip=True)) == ["x", 9, " y"]
    assert split("x <m> \t y", AddedToken("<m>", rstrip=True)) == ["x ", 9, "y"]
    assert split("a\u3000<m>", AddedToken("<m>", lstrip=True)) == ["a", 9]  # Unicode White_Space, as Rust
    assert split("cat dog cats", AddedToken("cat", single_word=True)) == [9, " dog cats"]
    assert split("_cat", AddedToken("cat", single_word=True)) == ["_cat"]
    assert split("", AddedToken("<m>")) == []


def test_split_patterns_order_and_longest_first():
    tokens = [AddedToken("ab", normalized=True), AddedToken("abc", normalized=True), AddedToken("<x>", special=True)]
    groups = at.split_patterns(tokens, split_special=False)
    assert [sorted(group) for _, group in groups] == [["<x>"], ["ab", "abc"]]  # normalized=False first (HF's order)
    assert groups[1][0].match("abcd").group() == "abc"  # the longest at one position wins
    assert [sorted(group) for _, group in at.split_patterns(tokens, split_special=True)] == [["ab", "abc"]]
    assert at.split_patterns([], split_special=False) == []


def test_table_ids_and_conflicts():
    table = AddedTokenTable(VOCAB, BASE_TOKENS)
    assert table.next_id() == 4
    assert table.add([AddedToken("<s>", special=True), AddedToken("<new>")], special=False) == (2, True)
    assert table.by_content == {"<s>": 3, "<new>": 4} and table.next_id() == 5  # a base token keeps its id
    assert table.extra_ids() == frozenset({4})
    assert table.add([AddedToken("<new>")], special=True) == (0, True)  # kept, now special
    assert table.by_id[4].special
    assert table.add([AddedToken("<new>")], special=True) == (0, False)
    with pytest.raises(ValueError, match="vocabulary has it at id 0"):
        table.register(AddedToken("a"), 7)
    with pytest.raises(ValueError, match="which is the vocabulary's token 'b'"):
        table.register(AddedToken("<y>"), 1)
    with pytest.raises(ValueError, match="both claim id 4"):
        table.register(AddedToken("<z>"), 4)
    with pytest.raises(ValueError, match="given two ids: 4 and 9"):
        table.register(AddedToken("<new>"), 9)
    assert table.register(AddedToken("<hole>"), 2)  # a hole of the base vocabulary may take an added token
    with pytest.raises(ValueError, match="keys must be token ids"):
        table.register_decoder({"x": "<q>"})
    table.register_decoder({"7": {"content": "<q>", "special": True}})
    assert table.by_id[7] == AddedToken("<q>", special=True) and table.next_id() == 8


def test_table_split_and_caches():
    table = AddedTokenTable(VOCAB, BASE_TOKENS)
    table.add([AddedToken("<s>", special=True, normalized=False), AddedToken("xy")], special=False)
    assert table.split("a<s>bxyc", split_special=False) == ["a", 3, "b", 4, "c"]
    assert table.split("a<s>bxyc", split_special=True) == ["a<s>b", 4, "c"]  # special tokens stay text
    table.add([AddedToken("bx")], special=False)  # a new token drops the cached patterns
    assert table.split("a<s>bxyc", split_special=False) == ["a", 3, 5, "yc"]  # leftmost match wins
    assert table.extra_ids() == frozenset({4, 5})


def test_coercing_what_users_pass():
    assert at.special_token("<p>", "pad_token") == AddedToken("<p>", special=True, normalized=False)
    assert at.special_token({"content": "<p>", "lstrip": True}, "pad_token").lstrip
    with pytest.raises(TypeError, match="pad_token must be a str or an AddedToken, got int"):
        at.special_token(5, "pad_token")
    assert at.special_value(None, "pad_token") is None and at.special_value("<p>", "pad_token") == "<p>"
    assert at.special_value(AddedToken("<p>"), "pad_token").special
    with pytest.raises(TypeError, match="pad_token must be a str, an AddedToken or None"):
        at.special_value(3, "pad_token")
    assert at.new_tokens("<x>", special=False) == [AddedToken("<x>")]
    assert [t.content for t in at.new_tokens(["", "<x>", AddedToken("<y>")], special=True)] == ["<x>", "<y>"]
    assert all(t.special for t in at.new_tokens(["<x>", AddedToken("<y>")], special=True))
    with pytest.raises(TypeError, match="add_tokens takes a token or a list"):
        at.new_tokens(5, special=False)


@pytest.mark.parametrize("cls", [GPT2Tokenizer, GPT2TokenizerFast])
def test_tokenizer_state_is_the_table(cls):
    tok = cls.from_pretrained("gpt2")
    tok.add_tokens(["<new>", AddedToken("zqx", single_word=True)])
    assert tok._added is tok._table.by_id and tok._added_ids is tok._table.by_content
    assert tok._table.split("say <new> zqx", split_special=False) == ["say ", 50257, " ", 50258]
    assert tok.encode("say <new> zqx") == tok.encode("say ") + [50257] + tok.encode(" ") + [50258]
    assert len(tok) == tok._table.next_id() == 50259


@pytest.mark.parametrize("cls", [GPT2Tokenizer, GPT2TokenizerFast])
def test_a_token_made_special_after_use_splits_as_in_a_fresh_tokenizer(cls):
    """Adding a token, encoding with split_special_tokens=True (which caches the split patterns), then making the
    token special must give what a tokenizer that made it special straight away gives, in both modes."""
    text = "a <tok> b"
    stale = cls.from_pretrained("gpt2")
    stale.add_tokens(["<tok>"])
    stale(text, split_special_tokens=True)
    stale.add_special_tokens({"additional_special_tokens": ["<tok>"]})
    fresh = cls.from_pretrained("gpt2")
    fresh.add_tokens(["<tok>"])
    fresh.add_special_tokens({"additional_special_tokens": ["<tok>"]})
    for split in (True, False):
        assert stale(text, split_special_tokens=split)["input_ids"] == fresh(text, split_special_tokens=split)["input_ids"]
    assert fresh(text, split_special_tokens=True)["input_ids"] != fresh(text)["input_ids"]  # the mode matters here
