"""The README's usage examples run as written: they load the embedded model ``gpt2-multi/tiny`` by name, offline."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
NEEDS = {"gpt2_multi.pt": "torch", "gpt2_multi.tf": "tensorflow", "gpt2_multi.flax": "jax"}


def test_readme_has_an_example_per_framework():
    assert len(BLOCKS) >= 3
    for module in NEEDS:
        assert any(f"from {module} import" in block for block in BLOCKS), module


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    code = BLOCKS[index]
    for module, framework in NEEDS.items():
        if f"from {module} import" in code and importlib.util.find_spec(framework) is None:
            pytest.skip(f"{framework} is not installed")
    if 'backend="pt"' in code and importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")
    exec(compile(code, f"README block {index}", "exec"), {})
    assert capsys.readouterr().out.strip()  # every example prints something
