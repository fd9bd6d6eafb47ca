"""Import hygiene: the shared layer imports no framework; each stack imports only its own."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

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


def test_safetensors_checkpoints_need_no_other_format_library(tmp_path):
    """Reading and writing safetensors imports neither h5py nor msgpack (nor torch): each format's library is
    imported when that format is used, so a machine without them (the GPU check's) still loads safetensors."""
    loaded = _modules_after(
        "import numpy as np\n"
        "from gpt2_multi import GPT2Config\n"
        "from gpt2_multi.checkpoint import expected_shapes, load_checkpoint, save_checkpoint\n"
        "config = GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=11, n_positions=4)\n"
        "tensors = {k: np.ones(v, np.float32) for k, v in expected_shapes(config, 'GPT2Model').items()}\n"
        f"save_checkpoint({str(tmp_path)!r}, tensors, config, architecture='GPT2Model')\n"
        f"assert load_checkpoint({str(tmp_path)!r}).tensors['transformer.wte.weight'].shape == (11, 8)"
    )
    assert not loaded & {"h5py", "msgpack", "torch"}, loaded & {"h5py", "msgpack", "torch"}


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


# ------------------------------------------------------------------------------------ the import graph
SRC = Path(__file__).resolve().parents[1] / "src" / "gpt2_multi"
CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance"  # installs as gpt2_multi.conformance

# Edges (importer, imported) allowed to close a cycle (none: modeling imports loading and the generation mixin,
# neither imports modeling); an edge that no longer exists must leave this list (a test checks).
ALLOWED_CYCLE_EDGES: set[tuple[str, str]] = set()


def _module_files() -> dict[str, Path]:
    """Every module of the package, by its import name (a package is its ``__init__.py``)."""
    files = {}
    for root, prefix in ((SRC, "gpt2_multi"), (CONFORMANCE, "gpt2_multi.conformance")):
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join((prefix, *parts))] = path
    return files


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported_names(tree: ast.AST, package: str, modules: dict[str, Path]) -> set[str]:
    """The gpt2_multi modules a module's code imports, at module level or inside functions (try / except
    included). ``if TYPE_CHECKING:`` blocks never run and are skipped; importlib calls are not seen."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for statement in child.orelse:
                    visit(ast.Module(body=[statement], type_ignores=[]))
                continue
            if isinstance(child, ast.Import):
                names.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:  # relative: from the importing module's package upwards
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    source = ".".join([*base, child.module] if child.module else base)
                else:
                    source = child.module or ""
                for alias in child.names:  # `from pkg import sub` imports the submodule sub
                    names.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source)
            visit(child)

    visit(tree)
    return {name for name in names if name == "gpt2_multi" or name.startswith("gpt2_multi.")}


def _ancestors(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def _import_graph() -> dict[str, set[str]]:
    """module -> the modules importing it runs. Importing ``a.b.c`` also runs the packages ``a`` and ``a.b``;
    a module's own enclosing packages are left out (Python has them initialised before the module runs)."""
    modules = _module_files()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for target in _imported_names(ast.parse(path.read_text(encoding="utf-8")), package, modules):
            while target not in modules:  # `from gpt2_multi.x import Name`: the module gpt2_multi.x
                target = target.rpartition(".")[0]
            edges.update(t for t in {target} | _ancestors(target) if t != name and t not in _ancestors(name))
        graph[name] = edges
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for succ in sorted(graph.get(node, ())):
            if state.get(succ) == 1:
                return [*path[path.index(succ):], succ]
            if succ not in state and (cycle := visit(succ)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_graph_sees_module_and_function_level_imports():
    graph = _import_graph()
    assert "gpt2_multi.hub" in graph["gpt2_multi.config"]  # module level
    assert "gpt2_multi.hub" in graph["gpt2_multi.checkpoint"]  # inside load_checkpoint's helper
    assert "gpt2_multi.generation" in graph["gpt2_multi.checkpoint"]  # `from gpt2_multi.generation.config import`
    assert "gpt2_multi.generation.config" in graph["gpt2_multi.checkpoint"]


def test_no_import_cycles():
    graph = _import_graph()
    stale = sorted(edge for edge in ALLOWED_CYCLE_EDGES if edge[1] not in graph.get(edge[0], ()))
    assert not stale, f"no longer imported, remove from ALLOWED_CYCLE_EDGES: {stale}"
    for importer, imported in ALLOWED_CYCLE_EDGES:
        graph[importer] = graph[importer] - {imported}
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_hub_never_imports_the_config():
    """config -> hub (GPT2Config.from_pretrained resolves names there; the built-in sizes live in config.py)."""
    graph = _import_graph()
    assert "gpt2_multi.hub" in graph["gpt2_multi.config"]
    assert graph["gpt2_multi.hub"] <= {"gpt2_multi.filenames", "gpt2_multi.io_utils"}
    assert graph["gpt2_multi.filenames"] == set()


def test_conformance_does_not_import_the_cli():
    graph = _import_graph()
    for name in (m for m in graph if m == "gpt2_multi.conformance" or m.startswith("gpt2_multi.conformance.")):
        reached, todo = set(), [name]
        while todo:
            for succ in graph[todo.pop()] - reached:
                reached.add(succ)
                todo.append(succ)
        assert "gpt2_multi.cli" not in reached, f"{name} imports gpt2_multi.cli (directly or through another module)"
