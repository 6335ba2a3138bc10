"""Atomic writes: a file is written under a temporary name beside it, then renamed over it.

Its own module because every built artefact is written this way (the index's JSON and arrays, a build's
checkpoints, the shipped fusion): a reader, or the next build after a kill, sees the old file or the new one,
never half of one. rename(2) within a folder is atomic on POSIX file systems.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(temporary)`, then rename the temporary file over `path` (its folder is created if needed); on
    failure remove the temporary and re-raise.
    The temporary name keeps `path`'s suffix (np.save appends .npy to a name without it) and starts with a
    dot, so no listing of finished files (`part-*.npz`, `*.json`) sees it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write `payload` as indented JSON, atomically."""
    write_atomic(path, lambda temporary: temporary.write_text(json.dumps(payload, indent=2)))


__all__ = ["write_atomic", "write_json_atomic"]
