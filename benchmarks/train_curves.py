"""The same ``gpt2-multi train`` run in every installed backend: how far apart the loss curves are, and the
training speed of each, measured in one run.

    python benchmarks/train_curves.py [--steps 300] [--n-embd 64] [--n-layer 2] [--batch-size 8] [--seq-len 64]

Dropout is off (each framework draws its own masks otherwise). Data: the test corpus
(``tests/fixtures/train/corpus.txt``) unless ``--data`` names another. Prints, per backend, the loss at a few
steps, the largest difference from the first backend's curve over all steps (and over the held-out
evaluations), and tokens/s over the steps after the first (the first compiles in TF and Flax).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from gpt2_multi import backends
from gpt2_multi.training.run import TrainSettings, train

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / "tests" / "fixtures" / "train" / "corpus.txt"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--n-embd", type=int, default=64)
    parser.add_argument("--n-layer", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    args = parser.parse_args()
    config = json.dumps({"vocab_size": 50257, "n_positions": args.seq_len, "n_embd": args.n_embd, "n_layer": args.n_layer,
                         "n_head": 4, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0})
    runs = {}
    for backend in (b for b in backends.BACKENDS if backends.stack_available(b)):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            result = train(TrainSettings(backend=backend, data=args.data, out=out, config=config, steps=args.steps,
                                         batch_size=args.batch_size, seq_len=args.seq_len, lr=args.lr,
                                         eval_every=max(1, args.steps // 5), eval_windows=16, progress=False))
            runs[backend] = (result, time.perf_counter() - start)
    names = list(runs)
    ref = np.array([h["loss"] for h in runs[names[0]][0].history])
    marks = sorted({0, args.steps // 10, args.steps // 2, args.steps - 1})
    print(f"\n{args.steps} steps, batch {args.batch_size} x {args.seq_len}, n_embd {args.n_embd}, {args.n_layer} layers")
    print(f"{'backend':<8} " + " ".join(f"{'loss@' + str(m + 1):>10}" for m in marks)
          + f" {'max|dloss|':>11} {'max|dheld|':>11} {'run s':>7}")
    for name, (result, seconds) in runs.items():
        losses = np.array([h["loss"] for h in result.history])
        held = np.array([e["loss"] for e in result.evals])
        ref_held = np.array([e["loss"] for e in runs[names[0]][0].evals])
        print(f"{name:<8} " + " ".join(f"{losses[m]:>10.5f}" for m in marks)
              + f" {np.abs(losses - ref).max():>11.2e} {np.abs(held - ref_held).max():>11.2e} {seconds:>7.1f}")


if __name__ == "__main__":
    main()
