"""Where a model's weights come from: a configured local folder, the local Hugging Face cache, or the hub.

Decided without loading anything and cached per process: a hub `from_pretrained` that cannot connect
takes ~30 s to fail, so the app never probes models one by one.
"""

from __future__ import annotations

import functools
import hashlib
import socket
from pathlib import Path

from ..settings import hub_offline, load_settings
from .registry import Availability

MODEL_DIR_ENV = "XRAY_MODEL_DIR"  # XRAY_MODEL_DIR/<model name>/ holds downloaded weights for offline use
HUB_HOST = "huggingface.co"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
CONFIG_SUFFIXES = (".json",)


def local_folder(name: str) -> Path | None:
    """`$XRAY_MODEL_DIR/<name>` when it exists and is not empty."""
    root = load_settings().model_dir
    if not root:
        return None
    folder = Path(root).expanduser() / name
    return folder if folder.is_dir() and any(folder.iterdir()) else None


def digest(name: str, hub_id: str) -> str:
    """A cheap identity of the weights found here, without loading them: for a local folder the names and
    sizes of its weight files and the bytes of its configs (so the same files elsewhere are the same
    weights); for the Hugging Face cache the snapshot revision; else the hub id's latest."""
    folder = local_folder(name)
    if folder is not None:
        content = hashlib.sha256()
        for path in sorted(folder.iterdir()):
            if path.suffix in WEIGHT_SUFFIXES:
                content.update(f"{path.name}:{path.stat().st_size}\n".encode())
            elif path.suffix in CONFIG_SUFFIXES:
                content.update(path.name.encode() + b"\0" + path.read_bytes())
        return f"local-{content.hexdigest()[:12]}"
    revision = cached_revision(hub_id)
    return f"hub-{revision[:12]}" if revision else "hub-latest"


def sha256_file(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MB chunks: the identity of a weight file."""
    content = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            content.update(chunk)
    return content.hexdigest()


def hub_offline_reason() -> str | None:
    """None when the hub can be reached; otherwise why not (checked once per process)."""
    if hub_offline():
        return "HF_HUB_OFFLINE is set"
    return _probe_hub()


@functools.lru_cache(maxsize=1)
def _probe_hub() -> str | None:
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=2.0):
            return None
    except OSError as error:
        return f"the Hugging Face Hub cannot be reached ({error.__class__.__name__})"


def cached_revision(hub_id: str) -> str | None:
    """The newest snapshot revision of `hub_id` in the local Hugging Face cache, or None."""
    try:
        from huggingface_hub import scan_cache_dir

        for repo in scan_cache_dir().repos:
            if repo.repo_id == hub_id and repo.revisions:
                return max(repo.revisions, key=lambda revision: revision.last_modified).commit_hash
    except Exception:
        return None
    return None


def in_hub_cache(hub_id: str) -> bool:
    """True when a snapshot of `hub_id` is already in the local Hugging Face cache."""
    return cached_revision(hub_id) is not None


def resolve(name: str, hub_id: str) -> tuple[str | None, Availability]:
    """(what to pass to from_pretrained, availability). The first is None when the model is unavailable."""
    folder = local_folder(name)
    if folder is not None:
        return str(folder), Availability(True, f"local folder {folder}")
    if in_hub_cache(hub_id):
        return hub_id, Availability(True, f"{hub_id} (Hugging Face cache)")
    reason = hub_offline_reason()
    if reason is None:
        return hub_id, Availability(True, f"{hub_id} (Hugging Face Hub)")
    return None, Availability(
        False, f"{reason} and no local weights; put them in ${MODEL_DIR_ENV}/{name}/ (or the HF cache)"
    )


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """True when the CPU computes bfloat16 natively (AVX-512 BF16 or AMX); elsewhere bf16 would be emulated."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def cpu_bf16_inference() -> bool:
    """True when models run on the CPU and it computes bf16 natively: where this project's measured bf16 paths
    apply. Decided without importing torch when it is not loaded yet (a model's version asks it, and an
    up-to-date check must stay fast): a machine with an NVIDIA driver counts as a GPU machine."""
    import sys

    if "torch" in sys.modules:
        gpu = sys.modules["torch"].cuda.is_available()
    else:
        gpu = Path("/proc/driver/nvidia/version").exists()
    return not gpu and cpu_has_bf16()


def device() -> str:
    """CUDA when present, else CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
