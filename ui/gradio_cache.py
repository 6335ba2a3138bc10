"""Gradio writes each result image to a content-addressed cache file by truncating and rewriting it, so two
users shown the same image at once can download it half-written (seen under load as 'peer closed
connection ... received 0 bytes'). `write_cache_atomically()` makes it write a temporary file and rename it
instead: same path, never torn."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_cache_atomically() -> None:
    from gradio import processing_utils

    def save_pil_to_cache(img, cache_dir: str, name: str = "image", format: str = "webp") -> str:
        data = processing_utils.encode_pil_to_bytes(img, format)
        folder = Path(cache_dir) / processing_utils.hash_bytes(data)
        folder.mkdir(exist_ok=True, parents=True)
        target = (folder / f"{name}.{format}").resolve()
        if not target.is_file():
            with tempfile.NamedTemporaryFile(dir=folder, delete=False, suffix=".part") as handle:
                handle.write(data)
            os.replace(handle.name, target)
        return str(target)

    processing_utils.save_pil_to_cache = save_pil_to_cache
