"""Test matrix: one venv per backend (proving the stacks import only their own framework), the
cross-backend parity run with every backend installed, and lint.

    nox -s tests-pt tests-tf tests-flax   # per-backend suites, each in a venv with only that framework
    nox -s conformance                    # all backends in one venv: the parity run
    nox -s lint
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import nox


def _registry() -> dict:
    """The backend registry (``src/gpt2_multi/backends.py``), loaded from its file: the registry needs nothing
    installed, and nox's own environment has neither the package nor its dependencies."""
    spec = importlib.util.spec_from_file_location("_gpt2_multi_backends", Path(__file__).parent / "src/gpt2_multi/backends.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.REGISTRY


REGISTRY = _registry()

nox.options.sessions = ["lint", *(f"tests-{name}" for name in REGISTRY), "conformance"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"
CONSTRAINTS = ("-c", "constraints.txt")


def _backend_suite(extra: str):
    def suite(session: nox.Session) -> None:
        """The suite in a venv with one framework only: the other backends' tests skip (visibly), the rest must pass."""
        session.install(*CONSTRAINTS, "-e", f".[{extra},test]")
        session.run("python", "-m", "pytest", "-rs", *session.posargs)

    return suite


for _name, _backend in REGISTRY.items():  # tests-pt, tests-tf, tests-flax: one session per registered backend
    nox.session(name=f"tests-{_name}", python=PYTHON)(_backend_suite(_backend.extra))


@nox.session(python=PYTHON)
def conformance(session: nox.Session) -> None:
    """Every backend in one venv: load one checkpoint everywhere and compare logits and KV caches."""
    session.install(*CONSTRAINTS, "-e", ".[all,test,oracle]")  # oracle: HF PyTorch checks the whole grid
    args = session.posargs or ["--golden", "tests/fixtures/hf-tiny", "--full", "--grads"]
    session.run("gpt2-multi", "conform", *args)
    session.run("python", "-m", "pytest", "tests/test_conformance.py", "tests/contract/test_grid.py", "-rs",
                env={"GPT2_MULTI_FULL_GRID": "1"})


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "src", "tests", "conformance", "noxfile.py", "benchmarks")
