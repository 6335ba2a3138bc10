"""Nuisance attribute projection (NAP) of the source out of an embedding, as settings a nested selection chooses
among. EXPERIMENT (benchmarks/neighbour_expansion.py --method nap): not shipped.

Why: frozen ImageNet features of two films showing the same finding from two hospitals differ by the hospital (its
scanner, processing, borders, markers) as much as by anything the films show, so a film from a new hospital finds
the source it looks like. Speaker verification met the same problem with channels and answered it with nuisance
attribute projection (Solomonoff, Campbell & Boardman 2005, "Advances in channel compensation for SVM speaker
recognition", ICASSP): estimate the directions along which the same class varies from one channel to another,
and project them out. Here a class is a (category, label) group, a channel is a source: for every group that the
training rows hold from two sources or more, each source's mean of that group minus the group's mean over its
sources is one nuisance vector; the top `k` right singular vectors of those vectors are projected out of EVERY
row's vector, which is then made unit length again. `k` is a setting the inner folds choose (0 is the plain
vectors), like the epochs; only training rows are read to find the directions.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

from ..evaluation.rows import Item
from .selection import with_twins

SUFFIX = "-nap"
RANKS = (0, 1, 2, 4, 8, 16, 32)  # directions projected out (capped at what the training rows give)


def setting(k: int) -> str:
    return f"k{k}"


def nuisance_directions(vectors: np.ndarray, groups: Sequence[str], sources: Sequence[str]) -> np.ndarray:
    """(r, d) orthonormal directions, strongest first: along them a group's per-source means differ most.
    Groups held by one source only give nothing."""
    by_group: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for row, (group, source) in enumerate(zip(groups, sources)):
        by_group[group][source].append(row)
    deviations = []
    for per_source in by_group.values():
        if len(per_source) < 2:
            continue
        means = np.stack([vectors[rows].mean(axis=0) for rows in per_source.values()])
        deviations.append(means - means.mean(axis=0))
    if not deviations:
        return np.zeros((0, vectors.shape[1]), vectors.dtype)
    stacked = np.concatenate(deviations).astype(np.float64)
    _, singular, right = np.linalg.svd(stacked, full_matrices=False)
    keep = singular > singular[0] * 1e-6 if len(singular) and singular[0] > 0 else np.zeros(0, bool)
    return right[keep].astype(vectors.dtype)


def projected(vectors: np.ndarray, index_rows: np.ndarray, items: Sequence[Item],
              ranks: Iterable[int] = RANKS) -> dict[str, np.ndarray]:
    """{setting: (n, d) unit vectors with the top k nuisance directions of `index_rows` projected out}."""
    groups = [f"{items[r].category}\x1f{items[r].label}" for r in index_rows]
    sources = [items[r].source for r in index_rows]
    directions = nuisance_directions(vectors[index_rows], groups, sources)
    out = {}
    for k in ranks:
        basis = directions[:k]
        moved = vectors - (vectors @ basis.T) @ basis if len(basis) else vectors
        out[setting(k)] = moved / np.maximum(np.linalg.norm(moved, axis=1, keepdims=True), 1e-12)
    return out


def projected_fitter(fit, items: Sequence[Item], ranks: Iterable[int] = RANKS):
    """A selection fitter that answers for `fit`'s keys and, per key and rank, (variant + SUFFIX, 'setting/k..'):
    the same vectors with the training rows' nuisance directions projected out."""
    ranks = tuple(ranks)
    return with_twins(fit, SUFFIX, lambda vectors, rows: projected(vectors, rows, items, ranks))


__all__ = ["RANKS", "SUFFIX", "nuisance_directions", "projected", "projected_fitter", "setting"]
