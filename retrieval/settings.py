"""Every `XRAY_*` environment variable, read in one place (README: "Settings" lists the same table).

Read afresh on each call, so a test or a launcher can change the environment between calls.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from .errors import RetrievalError

# name -> (default, meaning); the README's table is this one.
VARIABLES: dict[str, tuple[str, str]] = {
    "XRAY_INDEX": ("index", "index the app serves: a folder, or hf://datasets/OWNER/NAME (downloaded once)"),
    "XRAY_COLLECTION": ("", "collection folder or Hugging Face dataset id to build or refresh the index from "
                            "before serving"),
    "XRAY_MODEL_DIR": ("", "folder of model weights, one sub-folder per model name (offline use of hub models)"),
    "XRAY_TRACE_CACHE": ("", "folder of text models' saved traces, for a faster restart (default "
                             "~/.cache/xray-search/traces; off: keep none)"),
    "XRAY_STORE": ("faiss", "where vectors are searched: faiss (in the process) or milvus"),
    "XRAY_MILVUS_URI": ("", "Milvus Lite file (*.db) or server (http://host:19530); required for milvus"),
    "XRAY_MILVUS_INDEX": ("FLAT", "Milvus index type: FLAT, HNSW or IVF_FLAT"),
    "XRAY_MILVUS_TOKEN": ("", "Milvus credentials (user:password or an API key)"),
    "XRAY_MILVUS_DB": ("", "Milvus database name"),
    "XRAY_MILVUS_COLLECTION": ("", "name of the image collection in Milvus (default: derived from the index)"),
    "XRAY_MILVUS_SYNC": ("0", "1: mirror the index into Milvus when the app starts"),
}
STORES = ("faiss", "milvus")
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    index: str
    collection: str | None
    model_dir: str | None
    trace_cache: Path | None  # None: off (embedders/saved_traces.py)
    store: str
    milvus_uri: str | None
    milvus_index: str
    milvus_token: str
    milvus_db: str
    milvus_collection: str | None
    milvus_sync: bool
    host: str  # 0.0.0.0 on a Hugging Face Space (SPACE_ID set), else 127.0.0.1
    port: int  # Gradio's own GRADIO_SERVER_PORT, else 7860


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings from `environ` (default: the process environment), defaults filled in and checked."""
    environ = os.environ if environ is None else environ

    def get(name: str) -> str:
        return (environ.get(name) or VARIABLES[name][0]).strip()

    store = get("XRAY_STORE").lower()
    if store not in STORES:
        raise RetrievalError(f"XRAY_STORE={store!r} is not a vector store; choose from {list(STORES)}.")
    return Settings(
        index=get("XRAY_INDEX"), collection=get("XRAY_COLLECTION") or None, model_dir=get("XRAY_MODEL_DIR") or None,
        trace_cache=_trace_cache(get("XRAY_TRACE_CACHE"), environ),
        store=store, milvus_uri=get("XRAY_MILVUS_URI") or None, milvus_index=get("XRAY_MILVUS_INDEX").upper(),
        milvus_token=get("XRAY_MILVUS_TOKEN"), milvus_db=get("XRAY_MILVUS_DB"),
        milvus_collection=get("XRAY_MILVUS_COLLECTION") or None, milvus_sync=get("XRAY_MILVUS_SYNC").lower() in _TRUE,
        host="0.0.0.0" if environ.get("SPACE_ID") else "127.0.0.1", port=_port(environ.get("GRADIO_SERVER_PORT")),
    )


def _trace_cache(value: str, environ: Mapping[str, str]) -> Path | None:
    """A folder, `off` (None), or empty for the user's cache folder (XDG_CACHE_HOME, else ~/.cache)."""
    if value.lower() in ("off", "0", "none", "false", "no"):
        return None
    if value:
        return Path(value).expanduser()
    return Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "xray-search" / "traces"


def _port(value: str | None) -> int:
    try:
        return int(value) if value else 7860
    except ValueError:
        raise RetrievalError(f"GRADIO_SERVER_PORT={value!r} is not a port number.") from None


def hub_offline(environ: Mapping[str, str] | None = None) -> bool:
    """The Hugging Face convention HF_HUB_OFFLINE=1 (not ours, but read here with the rest)."""
    environ = os.environ if environ is None else environ
    return environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def markdown_table() -> str:
    """The README's table of variables."""
    lines = ["| Variable | Default | |", "|---|---|---|"]
    lines += [f"| `{name}` | {f'`{default}`' if default else '—'} | {meaning} |"
              for name, (default, meaning) in VARIABLES.items()]
    return "\n".join(lines)


__all__ = ["Settings", "load_settings", "hub_offline", "VARIABLES", "markdown_table"]
