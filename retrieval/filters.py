"""Which fields of an index can restrict a search, and which rows each of their values holds.

A filter is a mapping {field: (value, ...)}: a row passes when, for every field named, its value is one of those
given (fields intersect, values of one field unite). The rows of each value are precomputed once per index, so
a filter is a few array lookups; the vector store applies the result inside its search (FAISS: an ID selector
over these rows; Milvus: the same mapping as an expression), so k results come back whenever k rows pass.

    rows = RowFilter.of_dataset(dataset)
    rows.allowed({"view": ("lateral",), "category": ("knee", "hand")})   # int64 row numbers, ascending
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

from .schema import FIELDS, is_filter_field

Filters = Mapping[str, Sequence[str]]  # field -> the values allowed (normalised by options.QueryOptions)


def filter_fields(dataset) -> tuple[str, ...]:
    """The fields of an index's Dataset that may restrict a search: its string columns that schema.is_filter_field
    accepts, the schema's first (in schema order), then a collection's extra columns (in column order)."""
    import datasets

    strings = [name for name, feature in dataset.features.items()
               if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")
               and is_filter_field(name)]
    return (*(name for name in FIELDS if name in strings), *(name for name in strings if name not in FIELDS))


class RowFilter:
    """Per filter field and value, the rows holding it (an empty value is no value: nothing filters on it)."""

    def __init__(self, columns: Mapping[str, Sequence[str]], rows: int):
        """`columns`: field -> one value per row, in row order; `rows`: how many rows the index has."""
        self.rows = int(rows)
        self._rows_of: dict[str, dict[str, np.ndarray]] = {}
        for field, values in columns.items():
            grouped: dict[str, list[int]] = {}
            for row, value in enumerate(values):
                if value:
                    grouped.setdefault(value, []).append(row)
            self._rows_of[field] = {value: np.asarray(rows_, dtype=np.int64) for value, rows_ in grouped.items()}
        self._values = {field: sorted(rows) for field, rows in self._rows_of.items()}

    @classmethod
    def of_dataset(cls, dataset) -> "RowFilter":
        return cls({field: dataset[field] for field in filter_fields(dataset)}, len(dataset))

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self._rows_of)

    def values(self) -> dict[str, list[str]]:
        """Every filter field with the values its rows hold, sorted (what a filter may ask for)."""
        return dict(self._values)

    def allowed(self, filters: Filters | None, exclude: int | Iterable[int] | None = None) -> np.ndarray | None:
        """The rows that pass `filters` and are not in `exclude`, ascending; None when nothing restricts (every
        row passes). A field or value this index lacks passes no row (the options refused it before)."""
        allowed = None
        for field, wanted in (filters or {}).items():
            by_value = self._rows_of.get(field, {})
            parts = [by_value[value] for value in dict.fromkeys(wanted) if value in by_value]
            rows = np.unique(np.concatenate(parts)) if len(parts) > 1 else (parts[0] if parts else
                                                                              np.empty(0, np.int64))
            allowed = rows if allowed is None else np.intersect1d(allowed, rows, assume_unique=True)
        if exclude is not None:
            allowed = np.arange(self.rows, dtype=np.int64) if allowed is None else allowed
            allowed = allowed[~np.isin(allowed, np.atleast_1d(np.asarray(exclude, dtype=np.int64)))]
        return allowed


def with_category(filters: Filters | None, category: str | None) -> Filters | None:
    """`filters` with the older `category=` argument of a store's search folded in (one of the filters)."""
    if category is None:
        return filters
    given = (filters or {}).get("category")
    return {**(filters or {}), "category": (category,) if given is None or category in given else ()}


__all__ = ["Filters", "RowFilter", "filter_fields", "with_category"]
