"""Chat templates: apply_chat_template, get_chat_template, template files, tools; against HF where installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpt2_multi import GPT2Tokenizer, GPT2TokenizerFast
from gpt2_multi.tokenization.chat import ChatTemplateError, json_schema

DATA = Path(__file__).resolve().parents[1] / "src" / "gpt2_multi" / "data" / "gpt2"

# ChatML, with a generation block around what the assistant says, tools and documents.
CHATML = (
    "{% if tools %}<|im_start|>system\nTools: {{ tools | tojson }}<|im_end|>\n{% endif %}"
    "{% if documents %}{% for d in documents %}<|im_start|>document\n{{ d.title }}: {{ d.text }}<|im_end|>\n"
    "{% endfor %}{% endif %}"
    "{% for message in messages %}"
    "{% if message.role not in ['system', 'user', 'assistant'] %}{{ raise_exception('unknown role ' + message.role) }}{% endif %}"
    "<|im_start|>{{ message.role }}\n"
    "{% if message.role == 'assistant' %}{% generation %}{{ message.content }}<|im_end|>{% endgeneration %}{{ '\\n' }}"
    "{% else %}{{ message.content }}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# One that strips the message (HF's continue_final_message then strips the whitespace before the cut too).
STRIPPING = "{% for m in messages %}[{{ m.role }}] {{ m.content | trim }} </s>{% endfor %}{{ eos_token }}"

CHAT = [
    {"role": "system", "content": "You answer briefly."},
    {"role": "user", "content": "Hello, who are you? 😀"},
    {"role": "assistant", "content": "A small model  "},
]
OTHER = [{"role": "user", "content": "naïve café"}, {"role": "assistant", "content": "Oui."}]


def get_weather(location: str, unit: str | None = None) -> float:
    """Get the temperature at a place.

    Args:
        location: The city, e.g. Paris
        unit: "celsius" or
            "fahrenheit"

    Returns:
        The temperature.
    """
    return 20.0


@pytest.fixture(scope="module")
def fast():
    tok = GPT2TokenizerFast.from_pretrained("gpt2", chat_template=CHATML)
    tok.pad_token = tok.eos_token
    return tok


def test_a_worked_example(fast):
    text = fast.apply_chat_template(CHAT[1:2], tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nHello, who are you? 😀<|im_end|>\n<|im_start|>assistant\n"
    assert fast.apply_chat_template(CHAT[1:2], add_generation_prompt=True) == fast(text, add_special_tokens=False).input_ids
    enc = fast.apply_chat_template(OTHER, return_dict=True, return_assistant_tokens_mask=True)
    marked = fast.decode([i for i, m in zip(enc.input_ids, enc.assistant_masks) if m])
    assert marked == "Oui.<|im_end|>"
    continued = fast.apply_chat_template(CHAT, tokenize=False, continue_final_message=True)
    assert continued.endswith("<|im_start|>assistant\nA small model  ")  # the template keeps spacing: kept


def test_errors_name_the_problem(fast):
    plain = GPT2TokenizerFast.from_pretrained("gpt2")
    with pytest.raises(ChatTemplateError, match="no chat template") as err:
        plain.apply_chat_template(CHAT)
    assert isinstance(err.value, ValueError)
    with pytest.raises(ValueError, match="do not go together"):
        fast.apply_chat_template(CHAT, add_generation_prompt=True, continue_final_message=True)
    with pytest.raises(ValueError, match="needs tokenize=True"):
        fast.apply_chat_template(CHAT, tokenize=False, return_dict=True)
    with pytest.raises(ValueError, match="needs return_dict=True"):
        fast.apply_chat_template(CHAT, return_assistant_tokens_mask=True)
    with pytest.raises(ValueError, match="GPT2TokenizerFast"):
        GPT2Tokenizer.from_pretrained("gpt2", chat_template=CHATML).apply_chat_template(
            CHAT, return_dict=True, return_assistant_tokens_mask=True)
    with pytest.raises(ChatTemplateError, match="unknown role tool"):
        fast.apply_chat_template([{"role": "tool", "content": "x"}])
    with pytest.raises(ChatTemplateError, match="not valid Jinja"):
        fast.apply_chat_template(CHAT, chat_template="{% for m in messages %}")
    with pytest.raises(TypeError, match="list of messages"):
        fast.apply_chat_template("Hello")
    with pytest.raises(ChatTemplateError, match="does not appear once"):
        fast.apply_chat_template(CHAT, chat_template="{{ messages | length }}", continue_final_message=True)

    def undocumented(x: int) -> int:
        """Does something.

        Args:
            y: not x
        """
        return x

    with pytest.raises(ValueError, match="not described"):
        json_schema(undocumented)


def test_named_templates_and_files(tmp_path):
    tok = GPT2TokenizerFast.from_pretrained("gpt2", chat_template={"default": CHATML, "tool_use": STRIPPING})
    assert tok.get_chat_template() == CHATML
    assert tok.get_chat_template(tools=[{"name": "x"}]) == STRIPPING
    assert tok.get_chat_template("tool_use") == STRIPPING
    tok.save_pretrained(tmp_path / "jinja")
    assert (tmp_path / "jinja" / "chat_template.jinja").read_text() == CHATML
    assert (tmp_path / "jinja" / "additional_chat_templates" / "tool_use.jinja").read_text() == STRIPPING
    tok.save_pretrained(tmp_path / "config", save_jinja_files=False)
    assert not (tmp_path / "config" / "chat_template.jinja").exists()
    for klass in (GPT2Tokenizer, GPT2TokenizerFast):
        for where in ("jinja", "config"):
            assert klass.from_pretrained(tmp_path / where).chat_template == {"default": CHATML, "tool_use": STRIPPING}
    with pytest.raises(ChatTemplateError, match="none is called 'default'"):
        GPT2TokenizerFast.from_pretrained("gpt2", chat_template={"a": CHATML}).apply_chat_template(CHAT)


# -- against HF ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf():
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    tok = transformers.GPT2TokenizerFast.from_pretrained(str(DATA), chat_template=CHATML)
    tok.pad_token = tok.eos_token
    return tok


CALLS = [
    ((CHAT,), {"tokenize": False}),
    ((CHAT[:2],), {"tokenize": False, "add_generation_prompt": True}),
    ((CHAT,), {"tokenize": False, "continue_final_message": True}),
    ((CHAT,), {"tokenize": False, "continue_final_message": True, "chat_template": STRIPPING}),
    ((CHAT,), {"tokenize": False, "chat_template": STRIPPING, "eos_token": "<END>"}),
    ((CHAT,), {"tokenize": False, "tools": [get_weather]}),
    ((CHAT,), {"tokenize": False, "documents": [{"title": "Paris", "text": "in France"}]}),
    ((CHAT,), {}),
    (([CHAT, OTHER],), {}),
    (([CHAT, OTHER],), {"return_dict": True, "padding": True, "return_tensors": "np"}),
    ((CHAT,), {"return_dict": True, "return_assistant_tokens_mask": True}),
    (([CHAT, OTHER],), {"return_dict": True, "return_assistant_tokens_mask": True, "padding": True}),
    (([CHAT, OTHER],), {"return_dict": True, "return_assistant_tokens_mask": True, "padding": True,
                        "return_tensors": "np", "tokenizer_kwargs": {"padding_side": "left"}}),
    ((CHAT,), {"return_dict": True, "truncation": True, "max_length": 12, "return_assistant_tokens_mask": True}),
    (([{"role": "user", "content": [{"type": "text", "text": "block"}]},
       {"role": "assistant", "content": [{"type": "text", "text": "reply"}]}],),
     {"tokenize": False, "continue_final_message": True,
      "chat_template": "{% for m in messages %}{{ m.role }}: {{ m.content[0].text }}\n{% endfor %}"}),
]


def _plain(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "keys"):
        return {k: _plain(v) for k, v in dict(value).items()}
    return value


@pytest.mark.parametrize("klass", [GPT2Tokenizer, GPT2TokenizerFast], ids=["slow", "fast"])
def test_apply_chat_template_matches_hf(hf, klass):
    ours = klass.from_pretrained("gpt2", chat_template=CHATML)
    ours.pad_token = ours.eos_token
    for args, kwargs in CALLS:
        if kwargs.get("return_assistant_tokens_mask") and not ours.is_fast:
            continue
        assert _plain(ours.apply_chat_template(*args, **kwargs)) == _plain(hf.apply_chat_template(*args, **kwargs)), kwargs


def test_tool_schemas_match_hf():
    utils = pytest.importorskip("transformers.utils")

    def search(query: str, limit: int = 10, exact: bool = False, tags: list[str] | None = None) -> list[str]:
        """Search the archive.

        Args:
            query: What to look for.
            limit: The most results to return.
            exact: Whether to match whole words only.
            tags: Tags the results must have.
        """
        return []

    for function in (get_weather, search):
        assert json_schema(function) == utils.get_json_schema(function)
