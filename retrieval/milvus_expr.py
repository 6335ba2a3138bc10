"""Milvus boolean expressions built from user values, quoted so that no value can change the expression.

Its own module because both sides of the Milvus store write expressions from text they do not control: the
store turns a search's filters and excluded rows into one (milvus_store.py), the mirror looks ids up and deletes
them (milvus_sync.py). A filter compares a value cut exactly as the mirror cut the metadata it stored (`clip`).

    filter_terms({"view": ("PA", "AP")})  ->  ['(metadata["view"] == "PA" or metadata["view"] == "AP")']
"""

from __future__ import annotations

from typing import Iterable

from .filters import Filters

TEXT_BYTES = 1024  # longest metadata value Milvus keeps (UTF-8 bytes); longer text is cut (`clip`)


def filter_terms(filters: Filters | None) -> list[str] | None:
    """One expression term per filtered field, on the JSON metadata; None when a field allows no value (no row
    passes). Values are cut as the sync cut them; `==` joined by `or`, since Milvus Lite takes no `in` on JSON."""
    terms = []
    for field, values in (filters or {}).items():
        if not values:
            return None
        key = f"metadata[{literal(field)}]"
        terms.append("(" + " or ".join(f"{key} == {literal(clip(value))}" for value in values) + ")")
    return terms


def literal(value: str) -> str:
    """A Milvus string literal: double quotes, with backslashes, quotes and line breaks escaped."""
    escaped = (str(value).replace("\\", "\\\\").replace('"', '\\"')
               .replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{escaped}"'


def literal_list(values: Iterable[str]) -> str:
    """A Milvus list of string literals, for `id in [...]` and `id not in [...]`."""
    return "[" + ", ".join(literal(v) for v in values) + "]"


def clip(value) -> str:
    """Metadata as a VarChar: None becomes "", over-long text is cut at a character boundary."""
    data = str(value or "").encode("utf-8")
    return data[:TEXT_BYTES].decode("utf-8", errors="ignore")


__all__ = ["filter_terms", "literal", "literal_list", "clip", "TEXT_BYTES"]
