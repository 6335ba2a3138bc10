"""Text models' frozen traces kept on disk, so that a restart runs them with torch and `tokenizers` alone.

Why: importing transformers and loading MiniLM through it was most of the time between the app's page coming up
and its first text answer (about 4.2 s of CPU here, against 0.1 s to load the saved trace; docs/performance.md,
"Cold start"). The trace is the one the passes already run through (tracing.py): the same kernels on the same
weights, so the same vectors bit for bit; the tokenizer is the one transformers drove (its `tokenizers` backend,
saved inside the same file).

A saved trace belongs to the weights, the precision and the torch it was made with, not to an index: its file
name is a digest of them, so changed weights, precision or torch never read an old one. Where:
`$XRAY_TRACE_CACHE`, else `$XDG_CACHE_HOME/xray-search/traces` (`~/.cache/...`); `off` keeps none. Any failure
to read or write one leaves the model loading through transformers, with the same vectors.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..atomic import write_atomic

FORMAT = 1  # of the saved file: bumped when what it holds changes
META, TOKENIZER = "meta.json", "tokenizer.json"  # the extra files inside the saved trace
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # what a model folder's weights are read from


def cache_folder() -> Path | None:
    """Where saved traces live; None when `XRAY_TRACE_CACHE` says off."""
    from ..settings import load_settings

    return load_settings().trace_cache


@dataclass(frozen=True)
class SavedTrace:
    """A loaded trace with what runs it: the tokenizer (`tokenizers.Tokenizer`, padding and truncation set as
    transformers set them), the names of the trace's inputs in order, and the width of its output."""

    forward: object
    tokenizer: object
    inputs: tuple[str, ...]
    dim: int


def key(location: str | Path, device: str, max_length: int, bf16: bool) -> str:
    """The name of a model's saved trace: a digest of its weights files (name, size, modification time), its
    configuration and tokenizer files (contents), the precision, the device, the longest input and torch's
    version."""
    import torch

    folder = Path(location)
    parts: dict = {"format": FORMAT, "torch": torch.__version__, "device": device, "max_length": max_length,
                   "bf16": bool(bf16), "folder": str(folder.resolve())}
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            stat = (folder / name).stat()
            parts[name] = [stat.st_size, stat.st_mtime_ns]
    for name in ("config.json", TOKENIZER):
        if (folder / name).is_file():
            parts[name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]
    slug = re.sub(r"[^A-Za-z0-9_.]+", "_", f"{folder.parent.name}_{folder.name}").strip("_") or "model"
    return f"{slug}-{'bf16' if bf16 else 'fp32'}-{digest}"


def load(name: str) -> SavedTrace | None:
    """The saved trace `name`, or None (none saved, the cache off, or a file that cannot be read)."""
    folder = cache_folder()
    path = folder / f"{name}.pt" if folder else None
    if path is None or not path.is_file():
        return None
    try:
        import torch
        from tokenizers import Tokenizer

        extra = {META: "", TOKENIZER: ""}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit's deprecation notice (tracing.py says why it stays)
            forward = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        meta = json.loads(extra[META])
        if meta.get("format") != FORMAT or meta.get("key") != name:
            return None
        tokenizer = Tokenizer.from_str(extra[TOKENIZER].decode() if isinstance(extra[TOKENIZER], bytes)
                                       else extra[TOKENIZER])
        tokenizer.enable_truncation(int(meta["max_length"]))
        tokenizer.enable_padding(pad_id=int(meta["pad_id"]), pad_token=meta["pad_token"],
                                 pad_type_id=int(meta["pad_type_id"]), direction=meta["padding_side"])
        return SavedTrace(forward.eval(), tokenizer, tuple(meta["inputs"]), int(meta["dim"]))
    except Exception:  # noqa: BLE001 - a damaged or foreign file: the model loads through transformers
        return None


def save(name: str, forward, tokenizer, inputs: list[str], max_length: int, dim: int) -> Path | None:
    """Keep `forward` (a frozen trace) with `tokenizer` (a transformers fast tokenizer) as `name`, atomically,
    and remove the cache's other traces of the same model and precision (older weights or torch). Returns the
    file, or None when the cache is off or the write failed (nothing else changes then)."""
    folder = cache_folder()
    if folder is None or not getattr(tokenizer, "is_fast", False):
        return None
    meta = {"format": FORMAT, "key": name, "inputs": list(inputs), "max_length": int(max_length), "dim": int(dim),
            "pad_id": int(tokenizer.pad_token_id), "pad_token": str(tokenizer.pad_token),
            "pad_type_id": int(getattr(tokenizer, "pad_token_type_id", 0) or 0),
            "padding_side": str(getattr(tokenizer, "padding_side", "right"))}
    try:
        import torch

        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.save(forward, buffer, _extra_files={META: json.dumps(meta),
                                                          TOKENIZER: tokenizer.backend_tokenizer.to_str()})
        path = folder / f"{name}.pt"
        write_atomic(path, lambda temporary: temporary.write_bytes(buffer.getvalue()))
    except Exception:  # noqa: BLE001 - a read-only or full disk: the next start traces again
        return None
    family = name.rsplit("-", 1)[0]
    for other in folder.glob(f"{family}-*.pt"):
        if other != path and other.stem.rsplit("-", 1)[0] == family:
            try:
                other.unlink(missing_ok=True)
            except OSError:  # another user's file: it stays, and is never read for this model
                pass
    return path


__all__ = ["SavedTrace", "cache_folder", "key", "load", "save"]
