"""Streamers for ``generate(streamer=...)`` (HF's contract; PyTorch's ``generate`` takes one, as in HF).

``generate`` calls ``streamer.put(ids)`` once with the prompt ``(B, T)``, then once per new token with
``(B,)``, then ``streamer.end()``. The text streamers here follow one sequence: a batch of more than one
row raises ValueError, as HF's do (a :class:`BaseStreamer` of your own may take batches). Framework-free:
``put`` takes tensors of any framework, numpy arrays or lists.

* :class:`TextStreamer` prints the text as it forms, a word at a time.
* :class:`TextIteratorStreamer` hands the text to another thread: iterate over it while ``generate``
  runs in a background thread (for a UI or a server).
"""

from __future__ import annotations

import queue
from typing import Any

import numpy as np

__all__ = ["BaseStreamer", "TextIteratorStreamer", "TextStreamer"]


class BaseStreamer:
    """What ``generate`` calls: :meth:`put` with new token ids, :meth:`end` when generation is done."""

    def put(self, value: Any) -> None:
        raise NotImplementedError

    def end(self) -> None:
        raise NotImplementedError


def _token_list(value: Any) -> list[int]:
    """``(1, T)``, ``(T,)`` or ``(1,)`` ids of any framework -> a list of ints; more than one row is an error."""
    if hasattr(value, "detach"):  # torch: off the graph and the device
        value = value.detach().cpu()
    array = np.asarray(value)
    if array.ndim > 1:
        if array.shape[0] != 1:
            raise ValueError(f"a streamer follows one sequence, but got a batch of {array.shape[0]} rows")
        array = array[0]
    return [int(i) for i in array.reshape(-1)]


def _is_cjk(char: str) -> bool:
    """A CJK ideograph: written without spaces, so each one can be shown as soon as it is decoded."""
    code = ord(char)
    return (
        0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0x20000 <= code <= 0x2A6DF
        or 0x2A700 <= code <= 0x2B73F or 0x2B740 <= code <= 0x2B81F or 0x2B820 <= code <= 0x2CEAF
        or 0xF900 <= code <= 0xFAFF or 0x2F800 <= code <= 0x2FA1F
    )


class TextStreamer(BaseStreamer):
    """Print the generated text to stdout as it forms.

    Args:
        tokenizer: anything with ``decode(ids, **decode_kwargs)`` (``GPT2Tokenizer`` / ``GPT2TokenizerFast``).
        skip_prompt: do not print the prompt (the first :meth:`put`).
        **decode_kwargs: passed to ``tokenizer.decode`` (e.g. ``skip_special_tokens=True``).

    Text is released up to the last space, so a word is printed whole; at a newline or a CJK ideograph
    at once. A trailing partial UTF-8 character (GPT-2's byte-level tokens can split one) is held back
    until the token that completes it.
    """

    def __init__(self, tokenizer: Any, skip_prompt: bool = False, **decode_kwargs: Any) -> None:
        self.tokenizer = tokenizer
        self.skip_prompt = skip_prompt
        self.decode_kwargs = decode_kwargs
        self._tokens: list[int] = []
        self._printed = 0  # characters of the decoded text of _tokens already released
        self._prompt_pending = True

    def put(self, value: Any) -> None:
        tokens = _token_list(value)
        if self.skip_prompt and self._prompt_pending:
            self._prompt_pending = False
            return
        self._prompt_pending = False
        self._tokens += tokens
        text = self.tokenizer.decode(self._tokens, **self.decode_kwargs)
        if text.endswith("\n"):
            ready = text[self._printed:]
            self._tokens, self._printed = [], 0
        elif text.endswith("\ufffd"):  # an incomplete character: wait for its other bytes
            ready = ""
        elif text and _is_cjk(text[-1]):
            ready = text[self._printed:]
            self._printed += len(ready)
        else:
            ready = text[self._printed:text.rfind(" ") + 1]
            self._printed += len(ready)
        self.on_finalized_text(ready)  # also when empty, as HF's streamer

    def end(self) -> None:
        """Release what is left (the last word) and mark the end of the stream."""
        text = self.tokenizer.decode(self._tokens, **self.decode_kwargs)[self._printed:] if self._tokens else ""
        self._tokens, self._printed, self._prompt_pending = [], 0, True
        self.on_finalized_text(text, stream_end=True)

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        """Where released text goes: stdout here (a newline after the end); override to send it elsewhere."""
        print(text, flush=True, end="" if not stream_end else None)


class TextIteratorStreamer(TextStreamer):
    """A :class:`TextStreamer` whose text is read by iterating over it, from another thread::

        streamer = TextIteratorStreamer(tok, skip_prompt=True)
        thread = threading.Thread(target=model.generate, kwargs=dict(input_ids=ids, streamer=streamer, max_new_tokens=20))
        thread.start()
        for piece in streamer:
            ...
        thread.join()

    Args:
        timeout: seconds to wait for the next piece before ``queue.Empty`` is raised (None: wait for ever).
    """

    def __init__(self, tokenizer: Any, skip_prompt: bool = False, timeout: float | None = None, **decode_kwargs: Any) -> None:
        super().__init__(tokenizer, skip_prompt, **decode_kwargs)
        self.text_queue: queue.Queue[str | None] = queue.Queue()
        self.timeout = timeout

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        self.text_queue.put(text, timeout=self.timeout)  # empty pieces too, as HF's
        if stream_end:
            self.text_queue.put(None, timeout=self.timeout)

    def __iter__(self) -> TextIteratorStreamer:
        return self

    def __next__(self) -> str:
        value = self.text_queue.get(timeout=self.timeout)
        if value is None:
            raise StopIteration
        return value
