"""What ``pip install gpt2-multi`` puts in site-packages: one top-level package, ``gpt2_multi``.

The conformance suite lives in the repository's top-level ``conformance/`` folder and installs as
``gpt2_multi.conformance`` (a package-dir mapping in pyproject.toml), so no module named ``conformance``
can collide with another distribution's.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_under_src_is_listed():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(ROOT / "src").parts) for p in (ROOT / "src").rglob("__init__.py")}
    assert set(setuptools["packages"]) == on_disk | {"gpt2_multi.conformance"}
    assert setuptools["package-dir"]["gpt2_multi.conformance"] == "conformance"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Built from a private copy of the sources: setuptools builds in the source tree's build/ folder, and two
    # pytest-xdist workers each running this module-scoped fixture would race there.
    source = tmp_path_factory.mktemp("source")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("src", "conformance"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(source)], check=True, capture_output=True)
    (path,) = out.glob("gpt2_multi-*.whl")
    return path


def test_wheel_has_one_top_level_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"gpt2_multi"}
    assert "gpt2_multi/conformance/runner.py" in names
    assert "gpt2_multi/data/gpt2/vocab.json" in names


def test_installed_wheel_has_no_top_level_conformance(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    probe = ("import importlib.util, sys; sys.path.insert(0, sys.argv[1]); "
             "import gpt2_multi; assert gpt2_multi.__file__.startswith(sys.argv[1]), gpt2_multi.__file__; "
             "print(importlib.util.find_spec('conformance'), importlib.util.find_spec('gpt2_multi.conformance').origin)")
    out = subprocess.run([sys.executable, "-I", "-c", probe, str(target)], cwd=tmp_path, check=True,
                         capture_output=True, text=True).stdout.split()
    assert out[0] == "None"
    assert out[1].startswith(str(target))


def test_registry_extras_are_the_packages_extras():
    from gpt2_multi.backends import REGISTRY

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (everything,) = extras["all"]  # gpt2-multi[torch,tf,flax]
    assert everything.split("[")[1].rstrip("]").split(",") == [b.extra for b in REGISTRY.values()]
    for backend in REGISTRY.values():
        assert backend.extra in extras, backend


def test_test_module_names_are_unique():
    """pytest imports test modules by basename (no packages under tests/): two of one name break collection."""
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []
