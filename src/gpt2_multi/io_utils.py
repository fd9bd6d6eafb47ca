"""Atomic file writes: a file is either absent, the old version, or the complete new version."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success, fsync it and rename it over ``path``.

    The temporary is ``.<name>.<pid>.<random>.tmp``: hidden, never a name a reader looks for, and
    removable by :func:`remove_stale_temporaries` once the process that wrote it is gone (killed).

    If the body raises, the temporary file is removed and ``path`` is untouched.
    The temporary file lives in the same directory so the final rename is atomic.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a saved file gets the usual permissions, as open() would
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary files :func:`atomic_path` left in ``directory`` when its process was killed.

    A temporary's name carries the id of the process writing it (``.<name>.<pid>.<random>.tmp``); only those
    whose process is gone are removed, so a save running beside this one keeps its file. Readers never look
    at these names in any case. Returns what was removed.
    """
    removed = []
    directory = Path(directory)
    if not directory.is_dir():
        return removed
    for child in directory.glob(".*.tmp"):
        m = _TEMP_RE.match(child.name)
        if m is None or _alive(int(m.group(1))) or not child.is_file():
            continue
        with contextlib.suppress(FileNotFoundError):
            child.unlink()
            removed.append(child)
    return removed


_TEMP_RE = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
