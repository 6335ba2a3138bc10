"""What a search returns: `SearchResult`, its `Hit`s (rank, score and every field of retrieval/schema.py) and,
for an image query, the suggested category."""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import Iterator

from .schema import ALL_FIELDS, ARCHIVE_FIELDS, FIELDS


@dataclass
class _Ranked:
    id: str
    rank: int
    score: float


def _to_dict(hit) -> dict:
    """id, rank, score (6 decimals) and every schema field (a DICOM archive's too, for a row of an archive):
    one JSON record of the results."""
    names = ALL_FIELDS if any(getattr(hit, name) for name in ARCHIVE_FIELDS) else FIELDS
    return {"id": hit.id, "rank": hit.rank, "score": round(hit.score, 6), **{name: getattr(hit, name) for name in names}}


# One result: where it ranks, how similar it is, and every metadata field of the row, one attribute per schema
# field (hit.category, hit.body_part, ...); `row` is its row number in the index.
Hit = make_dataclass(
    "Hit", [*((name, str, field(default="")) for name in ALL_FIELDS), ("row", int, field(default=-1, repr=False))],
    bases=(_Ranked,),
    namespace={"to_dict": _to_dict, "__doc__": "One result: its rank, its score and every metadata field of the row."})
Hit.__module__ = __name__


@dataclass
class SearchResult:
    """What every query returns: the hits, best first, the model that ranked them and, for an image query,
    the suggested category (category -> share of the vote, largest first). Iterates over its hits."""

    hits: list[Hit]
    model: str
    suggestion: dict[str, float] = field(default_factory=dict)

    @property
    def suggested_category(self) -> str | None:
        return next(iter(self.suggestion), None)

    def records(self) -> list[dict]:
        return [hit.to_dict() for hit in self.hits]

    def __iter__(self) -> Iterator[Hit]:
        return iter(self.hits)

    def __len__(self) -> int:
        return len(self.hits)

    def __getitem__(self, position):
        return self.hits[position]


__all__ = ["Hit", "SearchResult"]
