"""Chat templates: HF's ``apply_chat_template`` contract, the templates' files, and tools as JSON schemas.

A chat template is a Jinja template that turns a conversation (a list of ``{"role", "content"}``
messages) into the text a chat model was trained on. Templates see HF's variables: ``messages``,
``tools``, ``documents``, ``add_generation_prompt``, the tokenizer's special tokens (``bos_token``,
``eos_token``, ...) and any extra keyword of the call; and HF's helpers: ``raise_exception``,
``strftime_now``, a ``tojson`` filter that keeps non-ASCII text, ``{% break %}`` / ``{% continue %}``,
and ``{% generation %}...{% endgeneration %}`` around what the assistant wrote (for
``return_assistant_tokens_mask``). They run in Jinja's immutable sandbox, with ``trim_blocks`` and
``lstrip_blocks``, as in HF, so a template written for HF renders the same text here.

GPT-2 has no chat template of its own; ``tokenizer.chat_template`` is None until one is set or loaded
(``chat_template.jinja``, ``additional_chat_templates/*.jinja``, or tokenizer_config.json's ``chat_template``).
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

CHAT_TEMPLATE_FILE = "chat_template.jinja"
CHAT_TEMPLATE_DIR = "additional_chat_templates"

# Private-use characters that mark, while a template renders, where a generation block starts and
# ends and where the final message ends; they are removed from the text before anyone sees it.
_GEN_START, _GEN_END, _FINAL = "\ue000", "\ue001", "\ue002"
_MARKERS = (_GEN_START, _GEN_END, _FINAL)


class ChatTemplateError(ValueError):
    """A chat template that is missing, cannot be chosen, or cannot render this conversation."""


# ---------------------------------------------------------------------------------------------------------
# Templates as values and as files.


def normalize_templates(value: Any) -> str | dict[str, str] | None:
    """A template (str), named templates (dict name -> str; HF's config form, a list of ``{"name",
    "template"}``, is accepted), or None; checked."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        out = {}
        for entry in value:
            if not (isinstance(entry, Mapping) and isinstance(entry.get("name"), str) and isinstance(entry.get("template"), str)):
                raise ValueError(f"a chat template list holds {{'name': str, 'template': str}} entries, got {entry!r}")
            out[entry["name"]] = entry["template"]
        return out
    if isinstance(value, Mapping):
        for name, template in value.items():
            if not isinstance(name, str) or not isinstance(template, str):
                raise ValueError(f"chat templates by name must map str to str, got {name!r}: {type(template).__name__}")
        return dict(value)
    raise TypeError(f"chat_template must be a str, a dict of str, or None; got {type(value).__name__}")


def select_template(templates: str | dict[str, str] | None, chat_template: str | None, tools: Any) -> str:
    """HF's ``get_chat_template``: ``chat_template`` (a template, or the name of one of ``templates``) wins;
    otherwise the tokenizer's template, or of named ones "tool_use" when there are tools, else "default"."""
    if isinstance(templates, dict):
        if chat_template is not None:
            return templates.get(chat_template, chat_template)
        if tools is not None and "tool_use" in templates:
            return templates["tool_use"]
        if "default" in templates:
            return templates["default"]
        raise ChatTemplateError(
            f"this tokenizer has several chat templates ({', '.join(sorted(templates))}) and none is called 'default': "
            "pass chat_template= with one of these names or with a template"
        )
    if chat_template is not None:
        return chat_template
    if templates is None:
        raise ChatTemplateError(
            "this tokenizer has no chat template (GPT-2 was not trained on chats): set tokenizer.chat_template to a "
            "Jinja template, or pass chat_template= (e.g. '{% for m in messages %}{{ m.role }}: {{ m.content }}\\n"
            "{% endfor %}')"
        )
    return templates


def read_templates(directory: Path, config_value: Any) -> str | dict[str, str] | None:
    """The chat templates saved in ``directory``: ``chat_template.jinja`` and ``additional_chat_templates/*.jinja``
    (HF 4.4x and later), else tokenizer_config.json's ``chat_template`` (older)."""
    found: dict[str, str] = {}
    default = directory / CHAT_TEMPLATE_FILE
    if default.is_file():
        found["default"] = default.read_text(encoding="utf-8")
    extra = directory / CHAT_TEMPLATE_DIR
    if extra.is_dir():
        for path in sorted(extra.glob("*.jinja")):
            found[path.stem] = path.read_text(encoding="utf-8")
    if not found:
        return normalize_templates(config_value)
    return found["default"] if list(found) == ["default"] else found


def template_files(templates: str | dict[str, str] | None, prefix: str) -> dict[str, str]:
    """The files (relative path -> text) that hold ``templates`` in HF's layout."""
    if templates is None:
        return {}
    if isinstance(templates, str):
        return {prefix + CHAT_TEMPLATE_FILE: templates}
    return {
        (prefix + CHAT_TEMPLATE_FILE if name == "default" else f"{prefix}{CHAT_TEMPLATE_DIR}/{name}.jinja"): text
        for name, text in templates.items()
    }


def config_value(templates: str | dict[str, str] | None) -> Any:
    """``templates`` as tokenizer_config.json holds them (``save_jinja_files=False``)."""
    if isinstance(templates, dict):
        return [{"name": name, "template": text} for name, text in templates.items()]
    return templates


# ---------------------------------------------------------------------------------------------------------
# Rendering.


@functools.lru_cache(maxsize=32)
def _compile(template: str) -> Any:
    try:
        import jinja2
        import jinja2.ext
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as err:
        raise ImportError("apply_chat_template needs jinja2 (pip install 'jinja2>=3.1')") from err

    class GenerationBlocks(jinja2.ext.Extension):
        """``{% generation %}...{% endgeneration %}``: the body, between two markers."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_mark"), [], [], body).set_lineno(lineno)

        def _mark(self, caller: Callable[[], str]) -> str:
            return _GEN_START + caller() + _GEN_END

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
               sort_keys: bool = False) -> str:
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlocks, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(template)
    except jinja2.exceptions.TemplateSyntaxError as err:
        raise ChatTemplateError(f"the chat template is not valid Jinja (line {err.lineno}): {err.message}") from None


def _check_markers(value: Any) -> None:
    if isinstance(value, str):
        if any(m in value for m in _MARKERS):
            raise ChatTemplateError("a message holds one of the private-use characters U+E000-U+E002, which "
                                    "apply_chat_template uses as markers")
    elif isinstance(value, Mapping):
        for item in value.values():
            _check_markers(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_markers(item)


def _mark_final_message(chat: list[Any]) -> list[Any]:
    """A copy of ``chat`` whose final message's (last) text ends with the final marker and a space."""
    if not chat:
        raise ChatTemplateError("continue_final_message=True needs a conversation with at least one message")
    chat = copy.deepcopy(chat)
    final = chat[-1]
    content = final.get("content") if isinstance(final, Mapping) else None
    if isinstance(content, str):
        final["content"] = content + _FINAL + " "
        return chat
    if isinstance(content, (list, tuple)):
        for block in reversed(content):
            if isinstance(block, Mapping) and isinstance(block.get("text"), str):
                block["text"] = block["text"] + _FINAL + " "
                return chat
    raise ChatTemplateError("continue_final_message=True, but the final message has no text to continue")


def _cut_at_final(text: str) -> str:
    """The text up to the end of the final message: the template's trailing turn markup goes. If the template
    kept the space after the marker, it kept the message's spacing (cut there); else it stripped the message,
    so whitespace before the marker goes too (HF's rule)."""
    if text.count(_FINAL) != 1:
        raise ChatTemplateError(
            "continue_final_message=True, but the final message does not appear once in the rendered chat (the "
            "template drops or repeats part of it), so there is no place to continue from"
        )
    at = text.index(_FINAL)
    return text[:at] if text[at + 1 : at + 2] == " " else text[:at].rstrip()


def render(
    template: str,
    conversations: Sequence[Any],
    *,
    tools: list[dict[str, Any]] | None,
    documents: list[dict[str, Any]] | None,
    add_generation_prompt: bool,
    continue_final_message: bool,
    variables: Mapping[str, Any],
) -> tuple[list[str], list[list[tuple[int, int]]]]:
    """Render each conversation: (texts, and for each the character spans of its generation blocks)."""
    compiled = _compile(template)
    import jinja2

    texts: list[str] = []
    spans: list[list[tuple[int, int]]] = []
    for chat in conversations:
        chat = list(chat.messages if hasattr(chat, "messages") else chat)
        _check_markers(chat)
        if continue_final_message:
            chat = _mark_final_message(chat)
        try:
            text = compiled.render(
                messages=chat, tools=tools, documents=documents, add_generation_prompt=add_generation_prompt, **variables
            )
        except jinja2.exceptions.TemplateError as err:
            raise ChatTemplateError(f"the chat template failed on this conversation: {err}") from err
        if continue_final_message:
            text = _cut_at_final(text)
        clean, blocks = _take_generation_blocks(text)
        texts.append(clean)
        spans.append(blocks)
    return texts, spans


def _take_generation_blocks(text: str) -> tuple[str, list[tuple[int, int]]]:
    """Remove the generation markers; return the text and the spans they enclosed (an unclosed block, e.g.
    after continue_final_message, runs to the end)."""
    if _GEN_START not in text and _GEN_END not in text:
        return text, []
    out: list[str] = []
    spans: list[tuple[int, int]] = []
    length, start = 0, None
    for piece in re.split(f"([{_GEN_START}{_GEN_END}])", text):
        if piece == _GEN_START:
            start = length
        elif piece == _GEN_END:
            if start is not None:
                spans.append((start, length))
            start = None
        else:
            out.append(piece)
            length += len(piece)
    if start is not None:
        spans.append((start, length))
    return "".join(out), spans


def assistant_mask(encoding: Any, spans: list[tuple[int, int]]) -> list[int]:
    """1 for each token whose characters overlap a generation block, from a row's :class:`Encoding`."""
    mask = [0] * len(encoding.ids)
    for i, (start, end) in enumerate(encoding.offsets):
        if encoding.sequence_ids[i] is None or end <= start:
            continue
        if any(start < b and end > a for a, b in spans):
            mask[i] = 1
    return mask


# ---------------------------------------------------------------------------------------------------------
# Tools.


def tool_schemas(tools: Sequence[Any] | None) -> list[dict[str, Any]] | None:
    """Tools as JSON schemas: dicts pass as they are, functions become :func:`json_schema`."""
    if tools is None:
        return None
    if not isinstance(tools, (list, tuple)):
        raise TypeError(f"tools must be a list of JSON schemas (dicts) or functions, got {type(tools).__name__}")
    out = []
    for tool in tools:
        if isinstance(tool, Mapping):
            out.append(dict(tool))
        elif inspect.isfunction(tool) or inspect.ismethod(tool):
            out.append(json_schema(tool))
        else:
            raise TypeError(f"a tool must be a JSON schema (dict) or a function with type hints, got {type(tool).__name__}")
    return out


_JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean", type(None): "null", Any: "any"}


def _type_schema(hint: Any, where: str) -> dict[str, Any]:
    if hint in _JSON_TYPES:
        return {"type": _JSON_TYPES[hint]}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        parts = [_type_schema(a, where) for a in args if a is not type(None)]
        if len(parts) == 1:
            out = parts[0]
        elif all(set(p) == {"type"} and isinstance(p["type"], str) for p in parts):
            out = {"type": [p["type"] for p in parts]}
        else:
            out = {"anyOf": parts}
        if type(None) in args:  # Optional[...]: HF's (OpenAPI's) "nullable"
            out["nullable"] = True
        return out
    if origin is typing.Literal:
        return {"type": _JSON_TYPES.get(type(args[0]), "string"), "enum": list(args)}
    if hint is list or origin is list:
        return {"type": "array", **({"items": _type_schema(args[0], where)} if args else {})}
    if hint is tuple or origin is tuple:
        if not args or args[-1] is Ellipsis:
            return {"type": "array", **({"items": _type_schema(args[0], where)} if args else {})}
        return {"type": "array", "prefixItems": [_type_schema(a, where) for a in args]}
    if hint is dict or origin is dict:
        return {"type": "object", **({"additionalProperties": _type_schema(args[1], where)} if len(args) == 2 else {})}
    raise TypeError(f"{where}: no JSON schema type for the type hint {hint!r} (use int, float, str, bool, list, dict, ...)")


_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Returns|Raises|Yields|Examples?|Notes?)\s*:\s*$", re.MULTILINE)
_ARG = re.compile(r"^\s*(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def json_schema(function: Callable[..., Any]) -> dict[str, Any]:
    """A tool's JSON schema from a function with type hints and a Google-style docstring (HF's layout:
    ``{"type": "function", "function": {"name", "description", "parameters", ("return")}}``)."""
    name = function.__name__
    doc = inspect.getdoc(function)
    if not doc:
        raise ValueError(f"tool {name!r} has no docstring: its description and its arguments' come from the docstring")
    sections: dict[str, str] = {}
    marks = list(_SECTION.finditer(doc))
    description = doc[: marks[0].start()] if marks else doc
    for mark, following in zip(marks, [*marks[1:], None]):
        sections[mark.group(1).lower()] = doc[mark.end() : following.start() if following else len(doc)]
    arg_docs: dict[str, str] = {}
    current = None
    for line in (sections.get("args") or sections.get("arguments") or sections.get("parameters") or "").splitlines():
        found = _ARG.match(line)
        if found:
            current = found.group(1)
            arg_docs[current] = found.group(2).strip()
        elif current is not None and line.strip():
            arg_docs[current] = (arg_docs[current] + " " + line.strip()).strip()
    hints = typing.get_type_hints(function)
    properties: dict[str, Any] = {}
    required = []
    for param in inspect.signature(function).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {name!r}: *args / **kwargs cannot be described as JSON schema arguments")
        if param.name not in hints:
            raise TypeError(f"tool {name!r}: argument {param.name!r} has no type hint")
        if param.name not in arg_docs:
            raise ValueError(f"tool {name!r}: argument {param.name!r} is not described in the docstring's Args: section")
        schema = _type_schema(hints[param.name], f"tool {name!r}, argument {param.name!r}")
        schema["description"] = arg_docs[param.name]
        properties[param.name] = schema
        if param.default is inspect.Parameter.empty:
            required.append(param.name)
    out: dict[str, Any] = {
        "name": name,
        "description": " ".join(description.split()),
        "parameters": {"type": "object", "properties": properties, **({"required": required} if required else {})},
    }
    if "return" in hints and hints["return"] is not type(None):
        out["return"] = _type_schema(hints["return"], f"tool {name!r}, return value")
        if sections.get("returns", "").strip():
            out["return"]["description"] = " ".join(sections["returns"].split())
    return {"type": "function", "function": out}
