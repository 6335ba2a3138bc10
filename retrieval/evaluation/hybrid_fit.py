"""Fit the hybrid text model's fusion (retrieval/hybrid.py) on the query file's TRAIN split and store it in the
index generation: the step `evaluate` runs before it judges the hybrid, which it then reports on the TEST split
only, so no query judges the weights it chose."""

from __future__ import annotations

import numpy as np

from ..hybrid import DEPTH, EXPANDED, FEEDBACK_MODEL, Fusion, fit_fusion, fit_with_feedback
from .figures import CATEGORY, LABEL
from .index_access import IndexAccess
from .queries import TRAIN, TextQuery, in_split


def fit_hybrid(index: IndexAccess, queries: list[TextQuery], categories: np.ndarray, labels: np.ndarray,
               queries_file: str, depth: int = DEPTH) -> Fusion | None:
    """Fit on the TRAIN queries (relevant: the query's labels when it names any, else its category) and write
    the fusion into the index generation; None when there is nothing to fuse or no training query."""
    components = index.fusion_components()
    train = in_split(queries, TRAIN)
    if len(components) < 2 or not train:
        return None
    expanded = tuple(name for name in EXPANDED if name in components)
    examples = []
    for position in train:
        query = queries[position]
        relevant = query.relevant(categories, labels, LABEL if query.labels else CATEGORY)
        lists = index.component_lists(query.text, components, depth, expanded)
        examples.append((lists, set(np.flatnonzero(relevant))))
    fitted_on = {"queries_file": queries_file, "split": TRAIN, "queries": len(train), "rows": len(categories)}
    if FEEDBACK_MODEL in components:  # the first pass's top rows feed back (hybrid.py)
        texts = [queries[position].text for position in train]
        fusion = fit_with_feedback(examples, components, lambda i, first: index.feedback_list(
            texts[i], first, depth, expanded), depth, fitted_on, expanded)
    else:
        fusion = fit_fusion(examples, components, depth, fitted_on, expanded)
    index.generation.write_fusion(fusion.to_dict())
    return fusion


__all__ = ["fit_hybrid"]
