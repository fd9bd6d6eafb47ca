"""Resolve what a user passes to ``from_pretrained``: a directory, a file, or a hub name.

Order: a local directory or file; then a model that ships in the package (:data:`EMBEDDED_MODELS`,
``gpt2-multi/tiny``); then the local HF cache (``HF_HUB_CACHE``, else
``HF_HOME/hub``, else ``~/.cache/huggingface/hub``), under both the current repo id
(``openai-community/gpt2``) and the legacy one (``gpt2``); then, unless
``HF_HUB_OFFLINE=1``, a download into that cache. When everything fails the error
says where it looked and why the download did not happen.

``gpt2_multi.config`` imports this module (``GPT2Config.from_pretrained`` resolves names here and falls
back to the built-in sizes it holds), never the reverse. Which weight files a checkpoint may hold is the
checkpoint layer's business (:func:`gpt2_multi.checkpoint.load_checkpoint` asks :func:`resolve` for them).
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from gpt2_multi.filenames import CONFIG_NAME
from gpt2_multi.io_utils import atomic_path

#: the short name of each built-in size (gpt2_multi.config.BUILTIN_CONFIGS) -> its current hub repo id
HUB_ALIASES: dict[str, str] = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
    "distilgpt2": "distilbert/distilgpt2",
}

DEFAULT_ENDPOINT = "https://huggingface.co"

#: models that ship inside the package (name -> folder under ``gpt2_multi/data``): they load by name, offline,
#: in every backend, as HF's hub names do; their tokenizer is the built-in GPT-2 one
EMBEDDED_MODELS: dict[str, str] = {"gpt2-multi/tiny": "tiny"}


class HubError(OSError):
    """A name could not be resolved to local files (and could not be downloaded)."""


def short_name(name: str) -> str | None:
    """``openai-community/gpt2`` or ``gpt2`` -> ``gpt2``; None for names that are not built in."""
    if name in HUB_ALIASES:
        return name
    return next((short for short, repo in HUB_ALIASES.items() if name == repo), None)


def embedded_dir(name: str) -> Path | None:
    """The package folder of an embedded model (:data:`EMBEDDED_MODELS`), or None for other names."""
    folder = EMBEDDED_MODELS.get(name)
    if folder is None:
        return None
    from importlib import resources

    path = Path(str(resources.files("gpt2_multi").joinpath("data", folder)))
    if not (path / CONFIG_NAME).is_file():
        raise HubError(f"{name!r} ships with gpt2-multi, but its files are missing from the installed package: {path}")
    return path


def cache_dir() -> Path:
    """The HF hub cache this process would use, by HF's own environment variables."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.environ["HUGGINGFACE_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def _repo_ids(name: str) -> list[str]:
    ids = [name]
    if name in HUB_ALIASES:
        ids.insert(0, HUB_ALIASES[name])
    short = short_name(name)
    if short is not None and short not in ids:
        ids.append(short)
    return ids


def _cached_snapshot(repo_id: str, revision: str = "main") -> Path | None:
    repo_dir = cache_dir() / f"models--{repo_id.replace('/', '--')}"
    if not repo_dir.is_dir():
        return None
    ref = repo_dir / "refs" / revision
    commit = ref.read_text().strip() if ref.is_file() else revision
    snapshot = repo_dir / "snapshots" / commit
    if snapshot.is_dir():
        return snapshot
    snapshots = sorted((repo_dir / "snapshots").glob("*")) if (repo_dir / "snapshots").is_dir() else []
    return snapshots[-1] if len(snapshots) == 1 else None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def download(repo_id: str, filename: str, revision: str = "main", timeout: float = 10.0) -> Path:
    """Fetch ``filename`` of ``repo_id`` into the HF cache layout; raise :class:`HubError` on failure."""
    endpoint = os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")
    url = f"{endpoint}/{repo_id}/resolve/{revision}/{filename}"
    headers = {"User-Agent": "gpt2-multi"}
    if os.environ.get("HF_TOKEN"):
        headers["Authorization"] = f"Bearer {os.environ['HF_TOKEN']}"
    repo_dir = cache_dir() / f"models--{repo_id.replace('/', '--')}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as response:
            commit = response.headers.get("X-Repo-Commit") or revision
            target = repo_dir / "snapshots" / commit / filename
            with atomic_path(target) as tmp, open(tmp, "wb") as out:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
    except urllib.error.HTTPError as err:
        raise HubError(f"could not download {filename} of {repo_id}: HTTP {err.code} from {url}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise HubError(f"could not download {filename} of {repo_id} from {endpoint}: {reason}") from None
    with atomic_path(repo_dir / "refs" / revision) as tmp:
        tmp.write_text(commit)
    return target


def resolve(name_or_path: str | os.PathLike, *, files: tuple[str, ...] = (CONFIG_NAME,), revision: str = "main") -> Path:
    """Return a local directory for ``name_or_path`` (a file resolves to its parent directory).

    For a hub name, a cached snapshot is used if it exists; otherwise ``files`` are
    downloaded, in order. Raises :class:`HubError` naming every place tried.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.is_file():
        return path.parent
    name = str(name_or_path)
    embedded = embedded_dir(name)
    if embedded is not None:
        return embedded
    if path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1 or not name:
        raise HubError(f"no such file or directory: {name_or_path}")
    tried = []
    for repo_id in _repo_ids(name):
        snapshot = _cached_snapshot(repo_id, revision)
        tried.append(str(cache_dir() / f"models--{repo_id.replace('/', '--')}"))
        if snapshot is not None:
            return snapshot
    where = f"not a local path, and not in the HF cache (looked in {', '.join(tried)})"
    if _offline():
        raise HubError(f"{name!r}: {where}; HF_HUB_OFFLINE is set, so nothing was downloaded")
    repo_id = _repo_ids(name)[0]
    try:
        last = None
        for filename in files:
            last = download(repo_id, filename, revision)
        assert last is not None
        return last.parent
    except HubError as err:
        raise HubError(f"{name!r}: {where}; and the download failed: {err}") from None


def resolve_config_file(name_or_path: str | os.PathLike) -> Path:
    """The ``config.json`` of a directory, a JSON file itself, or a cached (or downloaded) hub name."""
    path = Path(name_or_path).expanduser()
    if path.is_file() and path.suffix == ".json":
        return path
    config_file = resolve(name_or_path) / CONFIG_NAME
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file.parent} has no {CONFIG_NAME}")
    return config_file
