"""The embedded model's held-out perplexity in every installed backend (the README's table).

    python recipes/tiny/heldout_perplexity.py

Every 128-token window of ``heldout.txt`` (the 28,964 tokens ``gpt2-multi train`` set aside), the model's own
LM loss per backend (``backends.Driver.lm_loss``), batches of 16; the mean over windows, and ``exp`` of it.
"""

from __future__ import annotations

import math
import time

import numpy as np

from gpt2_multi import GPT2TokenizerFast, backends, hub
from gpt2_multi.demo import DEFAULT_MODEL, HELDOUT_FILE
from gpt2_multi.training.data import eval_batches, eval_windows


def main() -> None:
    directory = hub.resolve(DEFAULT_MODEL)
    tokenizer = GPT2TokenizerFast.from_pretrained(DEFAULT_MODEL)
    ids = np.array(tokenizer.encode((directory / HELDOUT_FILE).read_text(encoding="utf-8")), np.int32)
    windows = eval_windows(ids, 128, len(ids))
    print(f"{ids.size:,} held-out tokens, {len(windows)} windows of 128")
    for backend in (b for b in backends.BACKENDS if backends.stack_available(b)):
        driver = backends.Driver(backend, directory)
        start = time.perf_counter()
        loss = sum(driver.lm_loss(batch) * len(batch) for batch in eval_batches(windows, 16)) / len(windows)
        print(f"{backends.get(backend).label:<18} loss {loss:.6f}  perplexity {math.exp(loss):.4f}  "
              f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
