"""The text query set: one query type, one loader, one versioned file (retrieval/queries/text_queries.json),
read by `evaluate` and by training's text-on-pixels protocol alike.

Version 2 gives every query a `split`: "train" queries may choose parameters (the hybrid text model's fusion
weights, retrieval/hybrid.py), "test" queries only judge them, so no query judges what it chose. A version-1 file
(no split) still reads; its queries belong to no split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import RetrievalError
from .figures import CATEGORY

QUERIES_FILE = Path(__file__).resolve().parents[1] / "queries" / "text_queries.json"
QUERIES_FILE_SHOWN = "retrieval/queries/text_queries.json"  # how reports and training cards name it
QUERIES_VERSION = 2
READABLE_VERSIONS = (1, 2)
TRAIN, TEST = "train", "test"  # the splits of a version-2 file


@dataclass(frozen=True)
class TextQuery:
    """A query text and what it asks for: its category, and optionally the labels that answer it."""

    text: str
    category: str
    labels: tuple[str, ...] = ()  # any of these labels is relevant at label level; empty: category level only
    split: str = ""  # TRAIN or TEST (version 2); "" in a version-1 file

    def relevant(self, categories: np.ndarray, labels: np.ndarray, level: str) -> np.ndarray:
        """(rows,) bool: which rows answer the query at `level` (none at label level when it names no label)."""
        in_category = np.asarray(categories, dtype=object) == self.category
        if level == CATEGORY:
            return in_category
        if not self.labels:
            return np.zeros(len(in_category), dtype=bool)
        return in_category & np.isin(np.asarray(labels, dtype=object), list(self.labels))


def load_queries(path: str | Path | None = None) -> tuple[int, list[TextQuery]]:
    """(version, queries) from a query file; the packaged file when `path` is None. Categories and labels are
    compared in lower case, as the rows store them."""
    path = Path(path) if path is not None else QUERIES_FILE
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise RetrievalError(f"Cannot read the query file {path}: {error}") from error
    version = payload.get("version") if isinstance(payload, dict) else None
    if version not in READABLE_VERSIONS:
        raise RetrievalError(f"{path} has query-file version {version!r}; this program reads "
                             f"versions {', '.join(map(str, READABLE_VERSIONS))}.")
    queries = []
    for position, item in enumerate(payload.get("queries", [])):
        if not isinstance(item, dict) or not str(item.get("text", "")).strip() or not item.get("category"):
            raise RetrievalError(f"{path}: query {position} needs a non-empty 'text' and 'category'; got {item!r}.")
        split = str(item.get("split") or "")
        if version >= 2 and split not in (TRAIN, TEST):
            raise RetrievalError(f"{path}: query {position} ({item['text']!r}) needs a 'split' of {TRAIN!r} or "
                                 f"{TEST!r}; got {item.get('split')!r}.")
        labels = item.get("label") or ()
        labels = (labels,) if isinstance(labels, str) else tuple(labels)
        queries.append(TextQuery(item["text"], str(item["category"]).lower(),
                                 tuple(str(l).lower() for l in labels if str(l).strip()), split))
    if not queries:
        raise RetrievalError(f"{path} holds no queries.")
    return version, queries


def in_split(queries: list[TextQuery], split: str) -> list[int]:
    """Positions of the queries of `split` (TRAIN or TEST)."""
    return [position for position, query in enumerate(queries) if query.split == split]


def shown_path(path: str | Path | None) -> str:
    """The query file as a report names it: the packaged file by its path in the repository."""
    return Path(path).as_posix() if path is not None else QUERIES_FILE_SHOWN


__all__ = ["TextQuery", "load_queries", "in_split", "shown_path", "QUERIES_FILE", "QUERIES_VERSION", "TRAIN", "TEST"]
