"""An index served from the Hugging Face Hub: `hf://datasets/owner/name[@revision]`.

The location is resolved once per process with `huggingface_hub.snapshot_download` into the HF cache, and
the downloaded folder is then loaded by the same code as a local index folder. A Hub repository keeps files,
not symlinks, so the folder names its generation in a CURRENT file (`python -m retrieval publish --as-dataset`
writes exactly that layout; `IndexFolder.current` reads it).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from .errors import NoIndex

HUB_PREFIX = "hf://datasets/"
_REPO_ID = re.compile(r"^[\w.\-]+/[\w.\-]+$")
_RESOLVED: dict[str, Path] = {}
_LOCK = threading.Lock()


def is_hub_location(location) -> bool:
    return isinstance(location, str) and location.startswith(HUB_PREFIX)


def parse_location(location: str) -> tuple[str, str | None]:
    """`hf://datasets/owner/name@rev` -> ("owner/name", "rev"); raises NoIndex for anything else."""
    repo_id, _, revision = location[len(HUB_PREFIX):].strip("/").partition("@")
    if not _REPO_ID.match(repo_id):
        raise NoIndex(f"{location!r} is not a Hub dataset location; write hf://datasets/OWNER/NAME[@REVISION].")
    return repo_id, revision or None


def download_snapshot(repo_id: str, revision: str | None = None) -> str:
    """The Hub call (tests replace this function): the dataset repository's files in the HF cache."""
    from huggingface_hub import snapshot_download

    return snapshot_download(repo_id=repo_id, repo_type="dataset", revision=revision)


def resolve_index(location: str | Path) -> Path:
    """The local folder of an index location: a path as it is, a Hub dataset downloaded (once per process)."""
    if not is_hub_location(location):
        return Path(location)
    with _LOCK:
        if location not in _RESOLVED:
            repo_id, revision = parse_location(location)
            try:
                folder = download_snapshot(repo_id, revision)
            except Exception as error:  # offline, unknown or private repository: say so, do not crash
                raise NoIndex(f"Could not download the index {location} from the Hugging Face Hub "
                              f"({error.__class__.__name__}: {error}). Check the id and the network, or "
                              f"serve a local index folder.") from error
            _RESOLVED[location] = Path(folder)
        return _RESOLVED[location]


def forget_resolved() -> None:
    """Drop the per-process memory of resolved locations (tests)."""
    with _LOCK:
        _RESOLVED.clear()


__all__ = ["HUB_PREFIX", "is_hub_location", "parse_location", "download_snapshot", "resolve_index",
           "forget_resolved"]
