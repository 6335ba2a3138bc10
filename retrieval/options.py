"""The options every search shares (k, filters, minimum score), validated once: the engine, the CLI and page
links read their ranges and defaults from here.

    options = QueryOptions(k=10, category="knee")                      # raises BadQuery naming a bad value
    options = QueryOptions(filters={"view": "lateral", "sex": ["F", "M"]})
    options.filters   # {"view": ("lateral",), "sex": ("F", "M")}: category, when given, is one of them
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from numbers import Integral, Real

from .errors import BadQuery

K_MIN, K_MAX, K_DEFAULT = 1, 20, 5  # how many results a search returns
MIN_SCORE_RANGE = (-1.0, 1.0)  # a cosine similarity
MAX_QUERY_CHARS = 1000  # a longer query text is refused
TEXT_WEIGHT_DEFAULT = 0.5  # an image query's words weigh this much when given (the image the rest): a slider
MAX_JUDGED = K_MAX * 5  # ids a refine round may mark relevant (and as many not relevant)
MAX_FILTER_FIELDS, MAX_FILTER_VALUES, MAX_FILTER_CHARS = 16, 64, 200  # fields, values of one field, characters
LISTED_VALUES = 30  # a refused filter value's message lists at most this many of the values present


@dataclass(frozen=True)
class QueryOptions:
    """k results, only rows that pass `filters` ({field: value or [values]}; `category` is one of them), none
    scoring below `min_score` (None: the model's own default, filled in by `with_default_min_score`).
    Construction validates and normalises (`filters` becomes {field: (values, ...)}, the category included);
    a bad value raises BadQuery. `check_filters` then checks fields and values against an index."""

    k: int = K_DEFAULT
    category: str | None = None
    min_score: float | None = None
    filters: Mapping | None = None

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
        filters = normalise_filters(self.filters)
        if self.category is not None:
            if filters.get("category", (self.category,)) != (self.category,):
                raise BadQuery(f"The category is given twice, as category={self.category!r} and in the filters as "
                               f"{list(filters['category'])}; give it once.")
            filters = {"category": (self.category,), **filters}
        object.__setattr__(self, "filters", filters)

    def check_category(self, categories) -> "QueryOptions":
        """Itself, when its category is one of `categories` (or none is asked for); else BadQuery."""
        if self.category is not None and self.category not in categories:
            raise BadQuery(f"Unknown category {self.category!r}; choose from {sorted(categories)}.")
        return self

    def check_filters(self, present: Mapping[str, list[str]]) -> "QueryOptions":
        """Itself, when every filter field is one of `present`'s (field -> the values an index holds) and every
        value one of that field's; else BadQuery naming the fields, or the values, this index has."""
        for name, values in self.filters.items():
            if name not in present:
                raise BadQuery(f"Unknown filter field {name!r}; this index can filter on {list(present)}.")
            held = set(present[name])
            for value in values:
                if value not in held:
                    listed = sorted(held)
                    more = f" and {len(listed) - LISTED_VALUES} more" if len(listed) > LISTED_VALUES else ""
                    raise BadQuery(f"Unknown {name} {value!r}; choose from {listed[:LISTED_VALUES]}{more}.")
        return self

    def with_default_min_score(self, default: float) -> "QueryOptions":
        """These options with `default` as the minimum score when none was given."""
        return self if self.min_score is not None else replace(self, min_score=float(default))


def normalise_filters(filters) -> dict[str, tuple[str, ...]]:
    """{field: value or [values]} (or that mapping as JSON text) as {field: (values, ...)}: values in order,
    repeats and empty values dropped, a field left with no value dropped (like category "": no filter). None,
    "" and {} are no filter. BadQuery names a malformed entry."""
    if filters is None or filters == "":
        return {}
    if isinstance(filters, str):
        try:
            filters = json.loads(filters)
        except ValueError:
            raise BadQuery('The filters must be a JSON object such as {"view": "lateral"}; '
                           f"got {filters[:80]!r}.") from None
    if not isinstance(filters, Mapping):
        raise BadQuery(f"The filters must map fields to values, e.g. {{'view': 'lateral'}}; got {filters!r:.80}.")
    if len(filters) > MAX_FILTER_FIELDS:
        raise BadQuery(f"At most {MAX_FILTER_FIELDS} filter fields; got {len(filters)}.")
    normal = {}
    for name, wanted in filters.items():
        if not isinstance(name, str) or not name or len(name) > MAX_FILTER_CHARS:
            raise BadQuery(f"A filter field must be a name (text); got {name!r:.80}.")
        values = [wanted] if isinstance(wanted, str) else wanted
        if not isinstance(values, (list, tuple)) or not all(isinstance(value, str) for value in values):
            raise BadQuery(f"The filter on {name!r} must be a text or a list of texts; got {wanted!r:.80}.")
        if len(values) > MAX_FILTER_VALUES or any(len(value) > MAX_FILTER_CHARS for value in values):
            raise BadQuery(f"The filter on {name!r} may hold at most {MAX_FILTER_VALUES} values of at most "
                           f"{MAX_FILTER_CHARS} characters.")
        values = tuple(dict.fromkeys(value for value in values if value))
        if values:
            normal[name] = values
    return normal


__all__ = ["QueryOptions", "normalise_filters", "K_MIN", "K_MAX", "K_DEFAULT", "MIN_SCORE_RANGE", "MAX_QUERY_CHARS",
           "TEXT_WEIGHT_DEFAULT", "MAX_JUDGED", "MAX_FILTER_FIELDS", "MAX_FILTER_VALUES", "MAX_FILTER_CHARS"]
