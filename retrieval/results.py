"""What a search returns: `SearchResult`, its `Hit`s (rank, score and every field of retrieval/schema.py) and,
for an image query, the suggested category and whether the query's content is in the collection at all."""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import Iterator

from .query_words import QueryWords
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
    the vote of its nearest rows (category -> share, largest first) and the novelty judgement (novelty.py):
    `in_collection` False when the evidence says the collection holds nothing like the query (the suggestion
    then abstains), `match_score` = P(in collection), `judged_by` the image model whose scorer judged (joined
    models as "a+b": joint_novelty.py, where a similarity floor that vetoes gives match 0; "DICOM modality XA"
    for a DICOM query of a modality the collection does not hold, match 0: modalities.py); all None
    where the index has no scorer. A text query's `query_words`: the words no row's text has, and what the
    hybrid read them as (query_words.py; None for other queries).
    Iterates over its hits."""

    hits: list[Hit]
    model: str
    suggestion: dict[str, float] = field(default_factory=dict)
    in_collection: bool | None = None
    match_score: float | None = None
    judged_by: str | None = None  # what judged in_collection: a model, joined models "a+b", or "DICOM modality XA"
    query_words: QueryWords | None = None

    @property
    def suggested_category(self) -> str | None:
        """The vote's winner, or None when there is no vote or the query is judged not in the collection."""
        return None if self.in_collection is False else next(iter(self.suggestion), None)

    def records(self) -> list[dict]:
        """One JSON record per hit; for a judged image query each also carries the query's judgement
        (`query_in_collection`, `query_match_score`: the same on every record)."""
        query = {} if self.in_collection is None else {"query_in_collection": self.in_collection,
                                                        "query_match_score": self.match_score}
        return [{**hit.to_dict(), **query} for hit in self.hits]

    def __iter__(self) -> Iterator[Hit]:
        return iter(self.hits)

    def __len__(self) -> int:
        return len(self.hits)

    def __getitem__(self, position):
        return self.hits[position]


__all__ = ["Hit", "SearchResult"]
