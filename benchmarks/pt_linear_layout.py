"""PyTorch's float32 linear products at GPT-2 small's shapes, by weight layout and kernel, in one run.

One "step" is every block linear of GPT-2 small (12 x c_attn, attn.c_proj, c_fc, mlp.c_proj) plus the tied LM head,
for 1 or 8 rows: what a decode step multiplies. Kernels: ``torch.addmm`` on HF's (in, out) weight (the reference),
``addmm`` on an (in, out) view of (out, in) storage, ``F.linear`` and oneDNN's ``_linear_pointwise`` on (out, in).
Ratios are against the first, in the same run.

    python benchmarks/pt_linear_layout.py
"""

from __future__ import annotations

import time

import torch

D = 768
SHAPES = [(D, 3 * D), (D, D), (D, 4 * D), (4 * D, D)] * 12


def main() -> None:
    torch.manual_seed(0)
    weights = [torch.randn(i, o) for i, o in SHAPES]  # (in, out) contiguous: HF's Conv1D layout
    transposed = [w.t().contiguous() for w in weights]  # (out, in) contiguous
    views = [w.t() for w in transposed]  # (in, out) view of (out, in) storage
    biases = [torch.randn(o) for _, o in SHAPES]
    head = torch.randn(50257, D)
    kernels = {
        "addmm, (in, out)": lambda x, w, wt, wv, b: torch.addmm(b, x, w),
        "addmm, view of (out, in)": lambda x, w, wt, wv, b: torch.addmm(b, x, wv),
        "F.linear, (out, in)": lambda x, w, wt, wv, b: torch.nn.functional.linear(x, wt, b),
        "oneDNN, (out, in)": lambda x, w, wt, wv, b: torch.ops.mkldnn._linear_pointwise(x, wt, b, "none", [], ""),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}")
    for rows in (1, 8):
        inputs = {D: torch.randn(rows, D), 4 * D: torch.randn(rows, 4 * D)}
        reference = None
        for name, kernel in kernels.items():
            def step(kernel=kernel, inputs=inputs):
                for w, wt, wv, b in zip(weights, transposed, views, biases):
                    kernel(inputs[w.shape[0]], w, wt, wv, b)
                torch.nn.functional.linear(inputs[D], head)

            step()
            times = []
            for _ in range(5):
                start = time.perf_counter()
                step()
                times.append(time.perf_counter() - start)
            best = min(times)
            reference = reference or best
            print(f"rows {rows}  {name:26s} {best * 1e3:7.2f} ms/step  {reference / best:.2f}x")


if __name__ == "__main__":
    main()
