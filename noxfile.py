"""Test matrix: one venv per backend (proving the stacks import only their own framework), the
cross-backend parity run with every backend installed, and lint.

    nox -s tests-pt tests-tf tests-flax   # per-backend suites, each in a venv with only that framework
    nox -s conformance                    # all backends in one venv: the parity run
    nox -s lint
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests-pt", "tests-tf", "tests-flax", "conformance"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"
CONSTRAINTS = ("-c", "constraints.txt")
EXTRAS = {"pt": "torch", "tf": "tf", "flax": "flax"}


@nox.session(name="tests-pt", python=PYTHON)
def tests_pt(session: nox.Session) -> None:
    """The suite in a venv with PyTorch only: TF and Flax tests skip (visibly), the rest must pass."""
    _backend_suite(session, "pt")


@nox.session(name="tests-tf", python=PYTHON)
def tests_tf(session: nox.Session) -> None:
    _backend_suite(session, "tf")


@nox.session(name="tests-flax", python=PYTHON)
def tests_flax(session: nox.Session) -> None:
    _backend_suite(session, "flax")


def _backend_suite(session: nox.Session, backend: str) -> None:
    session.install(*CONSTRAINTS, "-e", f".[{EXTRAS[backend]},test]")
    session.run("python", "-m", "pytest", "-rs", *session.posargs)


@nox.session(python=PYTHON)
def conformance(session: nox.Session) -> None:
    """Every backend in one venv: load one checkpoint everywhere and compare logits and KV caches."""
    session.install(*CONSTRAINTS, "-e", ".[all,test]")
    args = session.posargs or ["--golden", "tests/fixtures/hf-tiny", "--full"]
    session.run("gpt2-multi", "conform", *args)
    session.run("python", "-m", "pytest", "tests/test_conformance.py", "-rs")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "src", "tests", "conformance", "noxfile.py", "benchmarks")
