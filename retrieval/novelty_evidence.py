"""The evidence that a query's content is in the collection, the same at build and at query time: for a query, six
numbers read from its nearest rows and the category centres (`features`); for training, every row of the index
searched across sources from the stored vectors (`collect_evidence`). novelty.py fits and judges on it; kept apart
because the examples are a job of their own (which rows a query may see, memory kept flat as the index grows) and
the joint judge (joint_novelty.py) reads the same examples for each model.

    top_similarity     cosine similarity of the nearest row
    mean_similarity    mean similarity of the `NEIGHBOURS` nearest rows (the ones that vote)
    vote_margin        share of the similarity-weighted vote of the first category minus the second's
    agreement          fraction of the nearest rows in the voted category
    centre_similarity  similarity to the nearest category centre (the unit mean of a category's vectors)
    centre_z           similarity to the voted category's centre, in standard deviations of its own members'
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FEATURES = ("top_similarity", "mean_similarity", "vote_margin", "agreement", "centre_similarity", "centre_z")
NEIGHBOURS = 10  # as ranking.VOTE_NEIGHBOURS: the rows whose vote is the suggestion
QUERY_BLOCK = 1024  # queries whose similarities are held at once (1024 x 20,000 rows: 80 MB)


def features(scores: np.ndarray, codes: np.ndarray, centre: np.ndarray, centre_mean: np.ndarray,
             centre_std: np.ndarray, with_vote: bool = False):
    """(queries, len(FEATURES)) evidence, the same at build and at query time.

    `scores` (queries, k): similarities of the k nearest rows, best first; `codes` (queries, k): their category
    numbers (-1: none); `centre` (queries, categories): similarity to each category's centre, -inf for a
    category absent from the searchable rows; `centre_mean`, `centre_std` (categories,): its members' spread.
    `with_vote`: also return each query's voted category (queries,)."""
    queries, width = centre.shape
    weights = np.maximum(scores, 0.0) * (codes >= 0)
    votes = np.zeros((queries, width + 1), dtype=np.float64)
    np.add.at(votes, (np.repeat(np.arange(queries), scores.shape[1]), codes.ravel()), weights.ravel())
    votes = votes[:, :width]  # code -1 (a row of no known category) went to the last column: no vote
    total = votes.sum(axis=1)
    shares = votes / np.where(total > 0, total, 1.0)[:, None]
    ordered = -np.sort(-shares, axis=1)
    margin = ordered[:, 0] - (ordered[:, 1] if width > 1 else 0.0)
    voted = votes.argmax(axis=1)
    agreement = (codes == voted[:, None]).mean(axis=1)
    nearest_centre = np.max(np.where(np.isfinite(centre), centre, -1.0), axis=1)
    rows = np.arange(queries)
    voted_centre = np.where(np.isfinite(centre[rows, voted]), centre[rows, voted], -1.0)
    centre_z = (voted_centre - centre_mean[voted]) / np.maximum(centre_std[voted], 1e-3)
    evidence = np.stack([scores[:, 0], scores.mean(axis=1), margin, agreement, nearest_centre, centre_z],
                        axis=1).astype(np.float64)
    return (evidence, voted) if with_vote else evidence


def centres_of(vectors: np.ndarray, codes: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each category's unit mean vector (zeros where it has no row) and its members' mean and standard
    deviation of similarity to it: (width, dim), (width,), (width,)."""
    centres = np.zeros((width, vectors.shape[1]), dtype=np.float32)
    mean, std = np.zeros(width), np.ones(width)
    for code in range(width):
        members = vectors[codes == code]
        if not len(members):
            continue
        total = members.sum(axis=0)
        centres[code] = total / max(float(np.linalg.norm(total)), 1e-12)
        similarity = members @ centres[code]
        mean[code], std[code] = float(similarity.mean()), float(max(similarity.std(), 1e-3))
    return centres, mean, std


@dataclass
class Evidence:
    """The training examples of one index: features, label (1: in collection) and the query's category."""

    x: np.ndarray
    in_collection: np.ndarray
    category: np.ndarray  # code of the query row's category
    source: np.ndarray  # the query row's source (its fold)
    voted: np.ndarray  # code of the category its neighbours voted for


def collect_evidence(vectors: np.ndarray, codes: np.ndarray, sources: np.ndarray,
                     width: int) -> Evidence | None:
    """Every row searched with its own source removed (in collection, where its category keeps another source)
    and with its source and its whole category removed (not in collection), over the stored vectors; None when
    no row can be searched that way (too few sources or categories)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    parts = []
    for source in np.unique(sources):
        others = sources != source
        for leave_category in (False, True):
            for code in np.unique(codes[sources == source]):
                queries = np.flatnonzero((sources == source) & (codes == code))
                searchable = others & (codes != code) if leave_category else others
                if not leave_category and not np.any(searchable & (codes == code)):
                    continue  # its category has no other source: not an in-collection query
                if np.unique(codes[searchable]).size < 2:
                    continue
                x, voted = _group_features(vectors, codes, width, queries, searchable)
                parts.append((x, not leave_category, code, source, voted))
    if not parts:  # no source whose rows could be searched against another source's
        return None
    return Evidence(np.concatenate([p[0] for p in parts]),
                    np.concatenate([np.full(len(p[0]), p[1]) for p in parts]),
                    np.concatenate([np.full(len(p[0]), p[2]) for p in parts]),
                    np.concatenate([np.full(len(p[0]), p[3], dtype=object) for p in parts]),
                    np.concatenate([p[4] for p in parts]))


def _group_features(vectors, codes, width, queries, searchable) -> tuple[np.ndarray, np.ndarray]:
    """The evidence of `queries` searched over the `searchable` rows. Similarities are taken a block of
    `QUERY_BLOCK` queries at a time, never as a rows x rows matrix: memory stays flat as the collection grows
    (20,000 rows would need 1.6 GB at once)."""
    allowed = np.flatnonzero(searchable)
    k = min(NEIGHBOURS, len(allowed))
    centres, mean, std = centres_of(vectors[allowed], codes[allowed], width)
    present = np.isin(np.arange(width), codes[allowed])
    candidates = vectors[allowed]
    xs, votes = [], []
    for start in range(0, len(queries), QUERY_BLOCK):
        chunk = queries[start:start + QUERY_BLOCK]
        block = vectors[chunk] @ candidates.T
        top = np.argpartition(-block, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(block, top, axis=1), axis=1), axis=1)
        scores = np.take_along_axis(block, top, axis=1)
        centre = np.where(present[None, :], vectors[chunk] @ centres.T, -np.inf)
        x, voted = features(scores, codes[allowed][top], centre, mean, std, with_vote=True)
        xs.append(x)
        votes.append(voted)
    return np.concatenate(xs), np.concatenate(votes)


__all__ = ["FEATURES", "NEIGHBOURS", "QUERY_BLOCK", "Evidence", "features", "centres_of", "collect_evidence"]
