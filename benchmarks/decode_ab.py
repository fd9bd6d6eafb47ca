"""Default ``generate()`` decode tokens/s of two source trees, interleaved in one run: a before/after check.

    git worktree add /tmp/before <commit>
    python benchmarks/decode_ab.py --before /tmp/before --after . [--backend pt,tf,flax] [--batch 1,8]

For each backend and batch size it runs ``model.generate`` (greedy, fp32, GPT-2 small shapes with random
weights, prompt 32, 128 new tokens, no eos) in fresh subprocesses whose ``PYTHONPATH`` points at one tree's
``src/``, alternating before / after ``--rounds`` times so that the machine's drift hits both alike, and
prints the best decode tokens/s of each and the ratio after / before (>= 1 is no slowdown). With
``--stream`` the "after" runs pass a do-nothing streamer: ``--before . --after . --stream`` measures what
streaming costs. Decode only:
``B * (new - 1) / (t(new) - t(1))``, the prefill and first token cancel out. Compile time (first call
minus steady call) is printed for the backends that compile.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, os, sys, time
import numpy as np
backend, path, batch, prompt, new = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
class Null:  # a streamer that takes every token and does nothing with it: the cost of streaming alone
    def put(self, value): pass
    def end(self): pass
extra = {"streamer": Null()} if sys.argv[6] == "1" else {}
rng = np.random.default_rng(0)
ids = rng.integers(0, 50257, size=(batch, prompt))
if backend == "pt":
    import torch
    from gpt2_multi.pt import GPT2LMHeadModel
    model = GPT2LMHeadModel.from_pretrained(path).eval()
    prompt_ids = torch.from_numpy(ids)
    def run(n):
        return model.generate(prompt_ids, max_new_tokens=n, min_new_tokens=n, eos_token_id=None, pad_token_id=0, **extra)
elif backend == "tf":
    from gpt2_multi.tf import TFGPT2LMHeadModel
    model = TFGPT2LMHeadModel.from_pretrained(path)
    def run(n):
        out = model.generate(ids, max_new_tokens=n, min_new_tokens=n, eos_token_id=None, pad_token_id=0, **extra)
        return np.asarray(out)
else:
    from gpt2_multi.flax import FlaxGPT2LMHeadModel
    model = FlaxGPT2LMHeadModel.from_pretrained(path)
    def run(n):
        out = model.generate(ids, max_new_tokens=n, min_new_tokens=n, eos_token_id=None, pad_token_id=0, **extra)
        return np.asarray(out.sequences)
def timed(n):
    start = time.perf_counter(); run(n); return time.perf_counter() - start
first = timed(new)
one = min(timed(1) for _ in range(2))
full = min(timed(new) for _ in range(2))
print(json.dumps(dict(rate=batch * (new - 1) / (full - one), compile=first - full)))
"""


def measure(tree: Path, backend: str, checkpoint: Path, batch: int, prompt: int, new: int, stream: bool = False) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree / "src"), TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", CHILD, backend, str(checkpoint), str(batch), str(prompt), str(new),
                          "1" if stream else "0"],
                         env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"{backend} in {tree} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, default=Path("."))
    parser.add_argument("--backend", default="pt,tf,flax")
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--stream", action="store_true",
                        help="the 'after' runs pass a streamer that does nothing (with --before . : the cost of streaming)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from generate import SMALL, write_checkpoint

    print(f"load average {os.getloadavg()[0]:.2f}; GPT-2 small fp32, prompt {args.prompt}, {args.new} new tokens, "
          f"best of {args.rounds} interleaved rounds")
    print(f"{'backend':<6} {'batch':>5} {'before tok/s':>13} {'after tok/s':>12} {'after/before':>13} "
          f"{'compile before / after s':>25}")
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "small"
        write_checkpoint(checkpoint, SMALL)
        for backend in args.backend.split(","):
            for batch in (int(b) for b in args.batch.split(",")):
                runs = {"before": [], "after": []}
                for _ in range(args.rounds):
                    for label, tree in (("before", args.before), ("after", args.after)):
                        stream = args.stream and label == "after"
                        runs[label].append(measure(tree.resolve(), backend, checkpoint, batch, args.prompt, args.new, stream))
                best = {k: max(r["rate"] for r in v) for k, v in runs.items()}
                compile_s = {k: min(r["compile"] for r in v) for k, v in runs.items()}
                compiled = backend != "pt"
                cs = f"{compile_s['before']:.1f} / {compile_s['after']:.1f}" if compiled else "-"
                print(f"{backend:<6} {batch:>5} {best['before']:>13.1f} {best['after']:>12.1f} "
                      f"{best['after'] / best['before']:>13.3f} {cs:>25}", flush=True)


if __name__ == "__main__":
    main()
