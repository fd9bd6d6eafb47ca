"""Write the training corpus of the embedded model ``gpt2-multi/tiny``: English prose every CPython 3.11 has.

Sources (both under the Python Software Foundation License, like CPython itself):

* ``pydoc_data.topics``: the reference and language topics of the Python documentation that ``help()``
  shows (``help("FUNCTIONS")``, ``help("if")`` ...);
* the docstrings of the standard library's own modules, classes and functions, read with ``ast`` from
  the ``.py`` files (nothing is imported): the top-level modules and packages, without ``test``,
  ``idlelib``, ``lib2to3``, ``turtledemo`` and ``site-packages``, docstrings of at least 40 characters.

The documents are shuffled with a fixed seed (so the held-out tail that ``gpt2-multi train`` sets aside
mixes all sources) and joined with ``<|endoftext|>``. Usage::

    python recipes/tiny/make_corpus.py corpus.txt
"""

from __future__ import annotations

import ast
import random
import sys
import sysconfig
from pathlib import Path

SKIP = {"test", "tests", "idlelib", "lib2to3", "turtledemo", "site-packages", "__pycache__", "ensurepip", "pydoc_data"}
SEED = 0


def topics() -> list[str]:
    from pydoc_data.topics import topics as table

    return [table[key].strip() for key in sorted(table)]


def docstrings(root: Path) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).parts
        if any(part in SKIP for part in relative) or len(relative) > 3:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= 40:
                    out.append(doc.strip())
    return out


def main(target: str) -> None:
    if sys.version_info[:2] != (3, 11):
        print(f"note: the embedded model was trained on CPython 3.11's texts; this is {sys.version.split()[0]}",
              file=sys.stderr)
    documents = topics() + docstrings(Path(sysconfig.get_paths()["stdlib"]))
    random.Random(SEED).shuffle(documents)
    text = "<|endoftext|>".join(documents)
    Path(target).write_text(text, encoding="utf-8")
    print(f"{len(documents)} documents, {len(text):,} characters -> {target}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "corpus.txt")
