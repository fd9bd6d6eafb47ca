"""Access to the golden fixtures in tests/fixtures (made by HF transformers 4.57.6; see fixtures/README.md).

Shared by every backend's tests so that they read the same cases the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpt2_multi.conformance.cases import HEADS, read_case_file

FIXTURES = Path(__file__).parent / "fixtures"
HF_TINY = FIXTURES / "hf-tiny"
INDEX = json.loads((HF_TINY / "index.json").read_text())

# The PyTorch class HF used for each head directory (one table, shared with the conformance suite).
HEAD_ARCHITECTURES = HEADS


@dataclass
class Case:
    name: str
    head: str
    inputs: dict[str, np.ndarray]  # call arguments (and past_input_ids for *_past cases)
    flags: dict[str, bool]  # use_cache, output_hidden_states, output_attentions
    outputs: dict[str, np.ndarray]  # expected: logits, past.{i}.key (B, H, S, D), hidden_states.{i}, ...

    def valid_positions(self) -> np.ndarray | None:
        """(B, T) bool of query positions whose outputs are defined (left padding leaves rows undefined)."""
        if "left_pad" in self.name:
            return self.inputs["attention_mask"].astype(bool)
        return None

    def past(self, layer: int) -> tuple[np.ndarray, np.ndarray]:
        return self.outputs[f"past.{layer}.key"], self.outputs[f"past.{layer}.value"]

    def indexed(self, prefix: str) -> list[np.ndarray]:
        """``hidden_states.0 .. n`` (or attentions.*) as a list in order."""
        keys = sorted((k for k in self.outputs if k.startswith(prefix + ".")), key=lambda k: int(k.rsplit(".", 1)[1]))
        return [self.outputs[k] for k in keys]


def load_case(name: str) -> Case:
    inputs, flags, outputs = read_case_file(HF_TINY / "cases" / f"{name}.npz")
    head = next(h for h, info in INDEX["heads"].items() if name in info["cases"])
    return Case(name=name, head=head, inputs=inputs, flags=flags, outputs=outputs)


def all_cases() -> list[str]:
    return [c for info in INDEX["heads"].values() for c in info["cases"]]


def checkpoint_dir(head: str, fmt: str) -> Path:
    """Directory of HF's checkpoint for ``head`` in ``fmt`` (safetensors, bin, tf, flax)."""
    return HF_TINY / INDEX["heads"][head]["checkpoints"][fmt]


def checkpoint_formats(head: str) -> list[str]:
    return list(INDEX["heads"][head]["checkpoints"])


def case_checkpoints(formats: tuple[str, ...]) -> list[tuple[str, str]]:
    """Every (case name, format) pair where the case's head has a checkpoint in that format."""
    out = []
    for info in INDEX["heads"].values():
        for fmt in formats:
            if fmt in info["checkpoints"]:
                out.extend((case, fmt) for case in info["cases"])
    return out
