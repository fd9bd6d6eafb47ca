"""Suite-wide collection rules: which worker process a test runs in (``pytest -n 2``, set in pyproject.toml).

The suite runs in two pytest-xdist workers (``--dist loadgroup``): one for the tests that use TensorFlow or Flax
and nothing else, one for everything else (PyTorch, the framework-free layer, and every test that mixes
frameworks). Two workers use the two cores of the CI machine (about 13 minutes instead of 18), and TensorFlow's
own tests never share a process with PyTorch's: in one
process of the whole suite (over 1500 tests, ~17 minutes, PyTorch's compiled kernels, JAX and TensorFlow's XLA
all loaded), TensorFlow's XLA-compiled ``generate`` crashed the interpreter (SIGSEGV / SIGABRT) at the same test
in every fresh clone, while each framework's tests pass alone and mixed in smaller sets (see issue 13's notes).
``pytest -n 0`` runs it in one process (what a debugger wants).
"""

from __future__ import annotations

import pytest

from gpt2_multi.backends import BACKENDS

#: the xdist group of the tests that touch TensorFlow or Flax and nothing else (PyTorch-free), and the rest
NO_TORCH = "tf-flax"
REST = "rest"


def _frameworks(item: pytest.Item) -> set[str]:
    """The backends a test names: its module's prefix (``test_tf_*``) and any backend among its parameters."""
    names = set()
    module = item.path.name
    for backend in BACKENDS:
        if module.startswith(f"test_{backend}_"):
            names.add(backend)
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        names |= {v for v in callspec.params.values() if isinstance(v, str) and v in BACKENDS}
    return names


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = _frameworks(item)
        group = NO_TORCH if names and names <= {"tf", "flax"} else REST
        item.add_marker(pytest.mark.xdist_group(group))
