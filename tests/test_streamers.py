"""The text streamers (framework-free) against HF transformers' own, fed the same tokens one at a time."""

from __future__ import annotations

import numpy as np
import pytest

from gpt2_multi import GPT2TokenizerFast, TextIteratorStreamer, TextStreamer

TEXT = "Hello there, world!\nA second line 你好世界 and an emoji 😀 then the end. Ünïcödé words"


class Chunks(TextStreamer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.chunks = []

    def on_finalized_text(self, text, stream_end=False):
        self.chunks.append((text, stream_end))


def feed(streamer, ids, prompt=3):
    streamer.put(np.asarray([ids[:prompt]]))
    for token in ids[prompt:]:
        streamer.put(np.asarray([token]))
    streamer.end()


def test_text_streamer_releases_whole_words_and_ends_with_the_rest():
    tok = GPT2TokenizerFast.from_pretrained("gpt2")
    ids = tok(TEXT)["input_ids"]
    streamer = Chunks(tok)
    feed(streamer, ids)
    assert "".join(text for text, _ in streamer.chunks) == TEXT
    assert streamer.chunks[-1] == ("words", True)
    assert len(streamer.chunks) == len(ids) - 3 + 1 + 1  # one call per put (the prompt too) and one at the end
    assert all("\ufffd" not in text for text, _ in streamer.chunks)  # split characters are held back
    assert all(text.endswith((" ", "\n")) or any("\u4e00" <= c <= "\u9fff" for c in text[-1:])
               for text, end in streamer.chunks if text and not end)


def test_skip_prompt_and_iterator():
    tok = GPT2TokenizerFast.from_pretrained("gpt2")
    ids = tok(TEXT)["input_ids"]
    streamer = TextIteratorStreamer(tok, skip_prompt=True)
    feed(streamer, ids)
    assert "".join(streamer) == tok.decode(ids[3:])


def test_a_batch_is_refused():
    streamer = TextStreamer(GPT2TokenizerFast.from_pretrained("gpt2"))
    with pytest.raises(ValueError, match="one sequence, but got a batch of 2 rows"):
        streamer.put(np.zeros((2, 3), np.int64))


def test_same_chunks_as_hf_text_streamer():
    transformers = pytest.importorskip("transformers")
    tok = GPT2TokenizerFast.from_pretrained("gpt2")
    ids = tok(TEXT.replace("😀 ", ""))["input_ids"]  # HF releases a split emoji's replacement characters; we do not

    class HFChunks(transformers.TextStreamer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.chunks = []

        def on_finalized_text(self, text, stream_end=False):
            self.chunks.append((text, stream_end))

    import torch  # HF's streamer takes torch tensors

    theirs = HFChunks(transformers.GPT2TokenizerFast.from_pretrained(_vocab_dir()))
    ours = Chunks(tok)
    theirs.put(torch.tensor([ids[:3]]))
    ours.put(np.asarray([ids[:3]]))
    for token in ids[3:]:
        theirs.put(torch.tensor([token]))
        ours.put(np.asarray([token]))
    theirs.end()
    ours.end()
    assert ours.chunks == theirs.chunks


def _vocab_dir() -> str:
    from pathlib import Path

    import gpt2_multi

    return str(Path(gpt2_multi.__file__).parent / "data" / "gpt2")
