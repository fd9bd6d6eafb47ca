"""Package a ``gpt2-multi train`` run as the embedded model ``gpt2-multi/tiny`` (``src/gpt2_multi/data/tiny``).

What it writes there:

* ``model.safetensors``: the run's final weights in float16 (loading upcasts to the requested dtype,
  float32 by default), ``config.json``, ``generation_config.json``;
* ``heldout.txt``: the held-out tail of the corpus, exactly the tokens training never saw (the split rule
  of :func:`gpt2_multi.training.data.tokenize_corpus`), decoded back to text;
* ``training.json``: the run's settings, loss history and held-out evaluations, the training time, and the
  command that made it;
* ``README.md``: the model card.

Usage (after ``make_corpus.py`` and the ``gpt2-multi train`` command in ``recipes/tiny/README.md``)::

    python recipes/tiny/package.py RUN_DIR CORPUS [TRAIN_SECONDS]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from gpt2_multi.checkpoint import load_checkpoint, save_checkpoint
from gpt2_multi.generation import GenerationConfig
from gpt2_multi.tokenization import GPT2TokenizerFast
from gpt2_multi.training.data import tokenize_corpus
from gpt2_multi.training.run import ARCHITECTURE, STATE_FILE, checkpoints

TARGET = Path(__file__).resolve().parents[2] / "src" / "gpt2_multi" / "data" / "tiny"


def main(run_dir: str, corpus: str, seconds: str | None = None) -> None:
    run = Path(run_dir)
    (step, last), *_ = reversed(checkpoints(run))
    state = json.loads((last / STATE_FILE).read_text())
    ckpt = load_checkpoint(run)
    tensors = {k: v.astype(np.float16) for k, v in ckpt.tensors.items()}
    config = ckpt.config.copy(torch_dtype="float16")
    TARGET.mkdir(parents=True, exist_ok=True)
    save_checkpoint(TARGET, tensors, config, architecture=ARCHITECTURE,
                    generation_config=GenerationConfig.from_model_config(config))
    tokenizer = GPT2TokenizerFast.from_pretrained("gpt2")
    streams = tokenize_corpus(corpus, tokenizer, state["run"]["seq_len"])
    if streams.fingerprint != state["data"]:
        raise SystemExit(f"{corpus} is not the corpus the run trained on ({streams.fingerprint} vs {state['data']})")
    (TARGET / "heldout.txt").write_text(tokenizer.decode(streams.heldout.tolist()), encoding="utf-8")
    summary = {"name": "gpt2-multi/tiny", "step": step, "backend": state["backend"], "run": state["run"],
               "data": {"fingerprint": state["data"], "train_tokens": int(streams.train.size),
                        "heldout_tokens": int(streams.heldout.size)},
               "evals": state["evals"], "train_seconds": float(seconds) if seconds else None,
               "history": state["history"][::10]}
    (TARGET / "training.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {TARGET}: step {step}, held-out loss {state['evals'][-1]['loss']:.4f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
