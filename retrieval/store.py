"""The on-disk layout of an index folder and its atomic switch between generations.

    DIR/current -> generations/<id>/      (a symlink, replaced atomically)
    DIR/generations/<id>/manifest.json    what was built, from what, with which models
    DIR/generations/<id>/dataset/         the Dataset (metadata, images, one vector column per model)
    DIR/generations/<id>/faiss/<model>.faiss
    DIR/generations/<id>/models/<model>/  fitted state (TF-IDF vocabulary)

A build writes a new generation and switches `current` only when it is complete, so a build killed
midway leaves the previous index untouched and loadable.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from .errors import BrokenIndex

CURRENT = "current"
GENERATIONS = "generations"
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


def current_generation(index_dir: str | Path) -> Path | None:
    """The folder `current` points to, or None when no index has been completed yet."""
    link = Path(index_dir) / CURRENT
    if not link.exists():
        return None
    return link.resolve()


def new_generation(index_dir: str | Path) -> Path:
    root = Path(index_dir) / GENERATIONS
    root.mkdir(parents=True, exist_ok=True)
    folder = root / f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6:06d}"
    folder.mkdir()
    return folder


def publish(index_dir: str | Path, generation: Path, keep: int = 1) -> None:
    """Point `current` at `generation` atomically, then delete all but the newest `keep` older generations."""
    index_dir = Path(index_dir)
    temporary = index_dir / f".{CURRENT}.{os.getpid()}"
    if temporary.is_symlink() or temporary.exists():
        temporary.unlink()
    os.symlink(Path(GENERATIONS) / generation.name, temporary)
    os.replace(temporary, index_dir / CURRENT)  # rename(2) is atomic: readers see the old or the new
    prune(index_dir, keep=keep)


def prune(index_dir: str | Path, keep: int = 1) -> None:
    """Remove abandoned (unpublished, e.g. killed) and old generations, keeping `current` and `keep` others."""
    index_dir = Path(index_dir)
    current = current_generation(index_dir)
    folders = sorted((p for p in (index_dir / GENERATIONS).glob("*") if p.is_dir()), reverse=True)
    others = [p for p in folders if current is None or p.resolve() != current]
    for folder in others[keep:]:
        shutil.rmtree(folder, ignore_errors=True)


def write_json_atomic(path: Path, payload: dict) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(payload, indent=2, sort_keys=False))
    os.replace(temporary, path)


def read_manifest(generation: Path) -> dict:
    path = generation / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise BrokenIndex(f"The index at {generation} has no {MANIFEST}; rebuild it with "
                          "`python -m retrieval build --collection PATH --index DIR`.") from None
    except json.JSONDecodeError as error:
        raise BrokenIndex(f"{path} is damaged ({error}); rebuild the index with "
                          "`python -m retrieval build --collection PATH --index DIR`.") from error
    if manifest.get("manifest_version") != MANIFEST_VERSION:
        raise BrokenIndex(f"{path} has manifest version {manifest.get('manifest_version')}, this program reads "
                          f"{MANIFEST_VERSION}; rebuild the index.")
    return manifest


def faiss_file(generation: Path, model: str) -> Path:
    return generation / "faiss" / f"{model}.faiss"


def state_dir(generation: Path, model: str) -> Path:
    return generation / "models" / model
