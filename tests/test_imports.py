"""Import hygiene: the shared layer imports no framework; each stack imports only its own."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

FRAMEWORKS = ("torch", "tensorflow", "keras", "jax", "flax", "transformers", "keras_hub")


def _modules_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def test_shared_layer_imports_no_framework():
    loaded = _modules_after(
        "import gpt2_multi, gpt2_multi.checkpoint, gpt2_multi.hub, gpt2_multi.cli, gpt2_multi.backends\n"
        "from gpt2_multi import GPT2Config\n"
        "from gpt2_multi.checkpoint import load_checkpoint, save_checkpoint"
    )
    assert not loaded & set(FRAMEWORKS), loaded & set(FRAMEWORKS)


STACKS = {
    "gpt2_multi.pt": ("torch", {"tensorflow", "keras", "jax", "flax"}),
    "gpt2_multi.tf": ("tensorflow", {"torch", "jax", "flax"}),
    "gpt2_multi.tf.tokenizer": ("tensorflow", {"torch", "jax", "flax"}),
    "gpt2_multi.flax": ("jax", {"torch", "tensorflow", "keras"}),
}


@pytest.mark.parametrize("module", sorted(STACKS))
def test_each_stack_imports_only_its_framework(module):
    framework, others = STACKS[module]
    if importlib.util.find_spec(framework) is None:
        pytest.skip(f"{framework} is not installed")
    loaded = _modules_after(f"import {module}")
    assert framework in loaded
    assert not loaded & (others | {"transformers", "keras_hub"}), loaded & others
