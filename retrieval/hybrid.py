"""Hybrid text search: one text "model" that fuses every text model of an index, because each one misses
different queries — TF-IDF is exact on label words and blind to synonyms, MiniLM over the metadata finds meaning
but loses severity, an image-text model's text tower (xray-lite0) ranks the pixels and catches lay words the
metadata never says.

Calibrated score fusion: each component searches on its own (its top `depth` rows, through the vector store, so
filters apply); a candidate row has, per component, its score s, its gap to that component's best row for the
query (s - best) and its z-score among the component's rows for the query ((s - mean) / std: how far it stands out
of this query's list, whatever the model's usual scale; a row outside a component's list takes the list's last
score). A logistic model over these features gives the fused score P(relevant | scores), in [0, 1]: "of the
training queries' candidates that scored like this, this share was relevant", which a person can read and
`min_score` can cut. The z-score was added when a fourth component (letter-n-gram TF-IDF) came: in 5-fold
cross-validation inside the TRAIN queries it raised P@5 (docs/evaluation.md); a fusion fitted before it reads
with a z weight of 0.

Query expansion: the components named in a fusion's `expanded` (today TF-IDF words and MiniLM, EXPANDED) search for
the query with the words that independently made vocabularies give for the words the word TF-IDF vocabulary lacks
(expansion.py); the fit records which were expanded, so a fusion fitted without it is served without it.

Pseudo-relevance feedback (RM3-style): a fusion with a `first_pass` fuses one more list, FEEDBACK: the first pass's
fused top FEEDBACK_ROWS rows' TF-IDF vectors, averaged by fused score and mixed with the query's TF-IDF vector,
searched like a component (`feedback_list`). Both fits come from the train queries (`fit_with_feedback`).

The weights are fitted by `fit_fusion` on the query file's TRAIN split only (`python -m retrieval evaluate` does
it and writes them into the index generation, layout.IndexGeneration.write_fusion); the TEST split judges them.
Before an index is evaluated, DEFAULT_FUSION serves: the same fit on the real collection, shipped in
default_fusion.json (`python -m retrieval evaluate --index DIR --ship-fusion` refits and rewrites it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

HYBRID = "hybrid"  # the model name a query asks for (not a registry entry: it has no vectors of its own)
DESCRIPTION = ("fusion of every text model of this index (TF-IDF words, MiniLM meaning, image-text models on "
               "the pixels); the score is the estimated chance that a result matches")
DEPTH = 200  # rows each component contributes to the candidates
MIN_SCORE = 0.05  # default minimum fused score: rows below a 5 % estimated chance of matching are not shown
REGULARISATION = 1.0  # the logistic fit's inverse L2 strength (fixed in advance, not chosen on any query)
METHOD = "calibrated score fusion (logistic over each component's score, gap to its best and z-score in its list)"
FEATURES = ("score", "gap", "z")  # per component, in this order: the columns of `candidate_features`
# The components a new fit expands the query for, MiniLM with the word TF-IDF's vocabulary (chosen by train-query
# CV, expansion.py; docs/evaluation.md): xray-lite0's text head still reads MiniLM's vector of the typed query.
EXPANDED = ("tfidf", "minilm")
FEEDBACK = "feedback"  # the pseudo-relevance feedback list's name among a fusion's weights (it has no vectors)
# Feedback from the fused top 10 rows' word TF-IDF vectors, half the query's vector and half theirs: chosen by
# 5-fold cross-validation inside the TRAIN queries (docs/evaluation.md).
FEEDBACK_MODEL, FEEDBACK_ROWS, FEEDBACK_MIX = "tfidf", 10, 0.5

Found = list[tuple[int, float]]
Nearest = Callable[[str, np.ndarray, int], Found]  # (model, query vector, n) -> the n nearest (row, score)
RowVectors = Callable[[str, list[int]], np.ndarray]  # (model, rows) -> their stored vectors, (len(rows), dim)


@dataclass(frozen=True)
class Fusion:
    """The fitted fusion: per component a weight per feature (FEATURES; missing ones are 0), a bias, the
    candidate depth, provenance, the components whose query was expanded when it was fitted, and with feedback
    (FEEDBACK among the weights) the fusion whose ranking gives the feedback rows."""

    weights: dict[str, tuple[float, ...]]
    bias: float
    depth: int = DEPTH
    fitted_on: dict = field(default_factory=dict)
    expanded: tuple[str, ...] = ()
    first_pass: "Fusion | None" = None

    def __post_init__(self) -> None:
        padded = {name: tuple(float(v) for v in w) + (0.0,) * (len(FEATURES) - len(w))
                  for name, w in self.weights.items()}
        object.__setattr__(self, "weights", padded)  # frozen: set once, here

    @property
    def components(self) -> list[str]:
        """The fused lists: the searched models, then FEEDBACK when the fusion has it."""
        return list(self.weights)

    @property
    def searched(self) -> list[str]:
        """The components that search with vectors of their own (the query is encoded for each)."""
        return [name for name in self.weights if name != FEEDBACK]

    def restricted(self, available: Sequence[str]) -> "Fusion | None":
        """This fusion over the components that are `available` (None when fewer than two remain); feedback stays
        while its model and a first pass over the available components do."""
        first = self.first_pass.restricted(available) if self.first_pass else None
        kept = {name: w for name, w in self.weights.items()
                if name in available or (name == FEEDBACK and FEEDBACK_MODEL in available and first)}
        if len(kept) - (FEEDBACK in kept) < 2:
            return None
        return Fusion(kept, self.bias, self.depth, self.fitted_on, tuple(n for n in self.expanded if n in kept),
                      first if FEEDBACK in kept else None)

    def score(self, features: np.ndarray) -> np.ndarray:
        """(n,) fused scores in [0, 1] from `features` (n, FEATURES * components), as `candidate_features`."""
        coefficients = np.asarray([w for name in self.weights for w in self.weights[name]], dtype=np.float64)
        return _sigmoid(np.asarray(features, dtype=np.float64) @ coefficients + self.bias)

    def rank(self, lists: Mapping[str, Found], feedback: Callable[[Found], Found]) -> Found:
        """`fuse`, after adding the FEEDBACK list when the fusion has one: `feedback(first pass's ranking)`."""
        if self.first_pass is not None and FEEDBACK in self.weights:
            lists = {**lists, FEEDBACK: feedback(self.first_pass.fuse(lists))}
        return self.fuse(lists)

    def fuse(self, lists: Mapping[str, Found]) -> Found:
        """Every candidate row with its fused score, best first (ties: lower row first)."""
        rows, features = candidate_features(lists, self.components)
        if not len(rows):
            return []
        scores = self.score(features)
        order = np.lexsort((rows, -scores))
        return list(zip(rows[order].tolist(), scores[order].tolist()))

    def to_dict(self) -> dict:
        return {"method": METHOD, "depth": self.depth, "bias": self.bias,
                "weights": {name: dict(zip(FEATURES, w)) for name, w in self.weights.items()},
                "expanded": list(self.expanded), "fitted_on": self.fitted_on,
                **({"first_pass": self.first_pass.to_dict()} if self.first_pass else {})}

    @classmethod
    def from_dict(cls, payload: dict) -> "Fusion | None":
        """A fusion from its JSON form; None when it is malformed (the default then serves)."""
        try:
            weights = {str(name): (float(w["score"]), float(w["gap"]), *(float(w.get(f, 0.0)) for f in FEATURES[2:]))
                       for name, w in payload["weights"].items()}
            expanded = payload.get("expanded") or ()
            first = cls.from_dict(payload["first_pass"]) if payload.get("first_pass") else None
            if isinstance(expanded, str) or (payload.get("first_pass") and first is None):
                return None
            return cls(weights, float(payload["bias"]), int(payload.get("depth", DEPTH)),
                       dict(payload.get("fitted_on") or {}), tuple(str(name) for name in expanded), first)
        except (KeyError, TypeError, ValueError, AttributeError):
            return None


def candidate_features(lists: Mapping[str, Found], components: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, features): the union of the components' lists, and per component (FEATURES) the row's score, its gap
    to the component's best score and its z-score among the list's scores. A row a component did not return takes
    that list's last (lowest) score."""
    found_rows = {name: np.asarray([row for row, _ in lists.get(name) or ()], dtype=np.int64) for name in components}
    rows = np.unique(np.concatenate([np.zeros(0, np.int64), *found_rows.values()]))
    width = len(FEATURES)
    features = np.zeros((len(rows), width * len(components)), dtype=np.float64)
    for c, name in enumerate(components):
        found = lists.get(name) or []
        if not found:
            continue
        scores = np.asarray([score for _, score in found], dtype=np.float64)
        column = np.full(len(rows), scores.min(), dtype=np.float64)
        column[np.searchsorted(rows, found_rows[name])] = scores
        features[:, width * c] = column
        features[:, width * c + 1] = column - scores.max()
        features[:, width * c + 2] = (column - scores.mean()) / (scores.std() + 1e-6)
    return rows, features


def component_lists(vectors: Mapping[str, np.ndarray], nearest: Nearest, depth: int) -> dict[str, Found]:
    """Each component's `depth` nearest rows for its own query vector."""
    return {name: nearest(name, np.asarray(vector).reshape(-1), depth) for name, vector in vectors.items()}


def fit_fusion(examples: Sequence[tuple[Mapping[str, Found], set[int]]], components: Sequence[str],
               depth: int = DEPTH, fitted_on: dict | None = None, expanded: Sequence[str] = ()) -> Fusion:
    """Fit the fusion on training queries only: `examples` are (each component's list, the relevant rows) per
    query, the lists of the `expanded` components searched for the expanded query. Every candidate of every query
    is one example, relevant or not."""
    from sklearn.linear_model import LogisticRegression

    blocks, targets = [], []
    for lists, relevant in examples:
        rows, features = candidate_features(lists, components)
        blocks.append(features)
        targets.append(np.isin(rows, list(relevant)))
    if not blocks:
        raise ValueError("No training queries to fit the fusion on.")
    x, y = np.concatenate(blocks), np.concatenate(targets)
    if y.all() or not y.any():
        raise ValueError("The training queries' candidates are all relevant or all irrelevant: nothing to fit.")
    model = LogisticRegression(C=REGULARISATION, max_iter=2000).fit(x, y)
    coefficients = model.coef_[0]
    width = len(FEATURES)
    weights = {name: tuple(round(float(v), 4) for v in coefficients[width * c:width * (c + 1)])
               for c, name in enumerate(components)}
    provenance = {"examples": int(len(y)), "relevant": int(y.sum()), **(fitted_on or {})}
    return Fusion(weights, round(float(model.intercept_[0]), 4), depth, provenance,
                  tuple(name for name in expanded if name in components))


def fit_with_feedback(examples: Sequence[tuple[Mapping[str, Found], set[int]]], components: Sequence[str],
                      feedback: Callable[[int, Found], Found], depth: int = DEPTH, fitted_on: dict | None = None,
                      expanded: Sequence[str] = ()) -> Fusion:
    """Two fits on the same training queries: the first pass over `components`, then, with each query's FEEDBACK
    list (`feedback(position in examples, first pass's ranking)`), the fusion over the components and FEEDBACK."""
    first = fit_fusion(examples, components, depth, fitted_on, expanded)
    second = [({**lists, FEEDBACK: feedback(i, first.fuse(lists))}, relevant)
              for i, (lists, relevant) in enumerate(examples)]
    return replace(fit_fusion(second, [*components, FEEDBACK], depth, fitted_on, expanded), first_pass=first)


def feedback_list(first: Found, query: np.ndarray | None, row_vectors: RowVectors, nearest: Nearest,
                  depth: int) -> Found:
    """The FEEDBACK list: FEEDBACK_MODEL's `depth` nearest rows to its query vector mixed with the unit mean of
    the first pass's top FEEDBACK_ROWS rows' vectors, weighted by their fused scores (RM3-style; empty when there
    is nothing to feed back)."""
    top = [(row, score) for row, score in first[:FEEDBACK_ROWS] if score > 0]
    if query is None or not top:
        return []
    weights = np.asarray([score for _, score in top], dtype=np.float64)
    centroid = (weights / weights.sum()) @ np.asarray(row_vectors(FEEDBACK_MODEL, [row for row, _ in top]),
                                                      dtype=np.float64)
    centroid /= np.linalg.norm(centroid) + 1e-12
    mixed = (1 - FEEDBACK_MIX) * np.asarray(query, dtype=np.float64).reshape(-1) + FEEDBACK_MIX * centroid
    mixed /= np.linalg.norm(mixed) + 1e-12
    return nearest(FEEDBACK_MODEL, mixed.astype(np.float32), depth)


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(values, -50, 50)))


def ship_fusion(payload: dict) -> Path:
    """Make a fitted fusion (an index generation's fusion.json, as `evaluate` wrote it) the shipped default:
    `python -m retrieval evaluate --index DIR --ship-fusion` after a model is retrained."""
    from .atomic import write_json_atomic

    if Fusion.from_dict(payload) is None:
        raise ValueError(f"Not a fitted fusion: {payload!r}")
    write_json_atomic(SHIPPED_FUSION, {**payload, "fitted_on": {**payload.get("fitted_on", {}), "shipped": True}})
    return SHIPPED_FUSION


def _shipped_fusion() -> Fusion:
    try:
        fusion = Fusion.from_dict(json.loads(SHIPPED_FUSION.read_text(encoding="utf-8")))
    except (OSError, ValueError) as error:
        raise RuntimeError(f"Cannot read the shipped fusion {SHIPPED_FUSION}: {error}") from error
    if fusion is None:
        raise RuntimeError(f"{SHIPPED_FUSION} is not a fitted fusion; rewrite it with "
                           f"`python -m retrieval evaluate --index DIR --ship-fusion`.")
    return fusion


# The fusion an index serves until its own evaluation writes its own fit: the fit on the TRAIN queries of the real
# collection's index (its provenance is in the file).
SHIPPED_FUSION = Path(__file__).with_name("default_fusion.json")
DEFAULT_FUSION = _shipped_fusion()


__all__ = ["HYBRID", "DESCRIPTION", "DEPTH", "FEATURES", "EXPANDED", "MIN_SCORE", "Fusion", "DEFAULT_FUSION", "SHIPPED_FUSION",
           "FEEDBACK", "candidate_features", "component_lists", "feedback_list", "fit_fusion", "fit_with_feedback",
           "ship_fusion"]
