"""The options every search shares (k, category, minimum score), validated once: the engine, the CLI and page
links read their ranges and defaults from here.

    options = QueryOptions(k=10, category="knee")   # raises BadQuery naming a bad value
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from numbers import Integral, Real

from .errors import BadQuery

K_MIN, K_MAX, K_DEFAULT = 1, 20, 5  # how many results a search returns
MIN_SCORE_RANGE = (-1.0, 1.0)  # a cosine similarity
MAX_QUERY_CHARS = 1000  # a longer query text is refused
TEXT_WEIGHT_DEFAULT = 0.5  # an image query's words weigh this much when given (the image the rest): a slider
MAX_JUDGED = K_MAX * 5  # ids a refine round may mark relevant (and as many not relevant)


@dataclass(frozen=True)
class QueryOptions:
    """k results, only rows of `category` when given, none scoring below `min_score` (None: the model's own
    default, filled in by `with_default_min_score`). Construction validates; a bad value raises BadQuery."""

    k: int = K_DEFAULT
    category: str | None = None
    min_score: float | None = None

    def __post_init__(self):
        k = self.k
        if isinstance(k, bool) or not isinstance(k, Integral) or not K_MIN <= int(k) <= K_MAX:
            raise BadQuery(f"k must be a whole number from {K_MIN} to {K_MAX}; got {k!r}.")
        object.__setattr__(self, "k", int(k))
        if self.category is not None and not isinstance(self.category, str):
            raise BadQuery(f"The category must be a text; got {self.category!r}.")
        object.__setattr__(self, "category", self.category or None)  # "" means every category
        score = self.min_score
        if score is not None:
            low, high = MIN_SCORE_RANGE
            if isinstance(score, bool) or not isinstance(score, Real) or math.isnan(score) \
                    or not low <= score <= high:
                raise BadQuery(f"The minimum score must be a number from {low:g} to {high:g}; got {score!r}.")
            object.__setattr__(self, "min_score", float(score))

    def check_category(self, categories) -> "QueryOptions":
        """Itself, when its category is one of `categories` (or none is asked for); else BadQuery."""
        if self.category is not None and self.category not in categories:
            raise BadQuery(f"Unknown category {self.category!r}; choose from {sorted(categories)}.")
        return self

    def with_default_min_score(self, default: float) -> "QueryOptions":
        """These options with `default` as the minimum score when none was given."""
        return self if self.min_score is not None else replace(self, min_score=float(default))


__all__ = ["QueryOptions", "K_MIN", "K_MAX", "K_DEFAULT", "MIN_SCORE_RANGE", "MAX_QUERY_CHARS",
           "TEXT_WEIGHT_DEFAULT", "MAX_JUDGED"]
