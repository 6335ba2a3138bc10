"""The default image model's figure on sources its choice never read: the policy's rule, run nested.

Why: among image models fitted on nothing here (pretrained), the app's default is the one with the best
cross-source category P@5 (`policy.default_model`). That same figure reports it, so with several candidates the
winner's figure is optimistic: the best of several noisy estimates. Here the rule runs nested, as training's
selection does (training/selection.py): for each outer fold of whole sources, the rule reads only the other folds
(each held out in turn against the rest, the outer fold out of the index too), picks a model, and that model is
judged on the outer fold. The pooled result is the honest figure of "the default image model, chosen by this
rule". The app's pick stays the rule on every fold, as training ships its choice refitted on every row.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .figures import CATEGORY, LEVELS
from .protocols import concat, search_rows
from .rows import Item


def _p5(items: Sequence[Item], results) -> float:
    return results.summary(items)[CATEGORY]["p@5"] or 0.0


def nested_default(items: Sequence[Item], vectors: dict[str, np.ndarray], folds: np.ndarray) -> dict | None:
    """{candidates, per outer fold: the model the rule picked and the inner figures it read, the picked models'
    outer figures}; None with fewer than 2 candidates or 3 folds (no choice, or no inner fold to choose on).
    `vectors`: each candidate's stored (n, d) unit vectors, rows in `items` order; `folds`: (n,) outer folds."""
    names = sorted(vectors)
    fold_ids = sorted(set(np.asarray(folds).tolist()))
    if len(names) < 2 or len(fold_ids) < 3:
        return None
    per_fold, parts = [], []
    for fold in fold_ids:
        inner = {}
        for name in names:
            runs = [search_rows(items, vectors[name], np.nonzero(folds == other)[0],
                                np.nonzero((folds != other) & (folds != fold))[0])
                    for other in fold_ids if other != fold]
            inner[name] = round(_p5(items, concat(runs)), 4)
        picked = max(names, key=lambda name: inner[name])  # ties: the first name
        held, rest = np.nonzero(folds == fold)[0], np.nonzero(folds != fold)[0]
        parts.append(search_rows(items, vectors[picked], held, rest))
        per_fold.append({"fold": int(fold), "picked": picked, "inner_category_p@5": inner,
                         "held_out_sources": sorted({items[r].source for r in held})})
    summary = concat(parts).summary(items)
    return {"rule": "best cross-source category P@5 (policy.default_model), read on the other folds only",
            "candidates": names, "per_fold": per_fold,
            "nested": {level: {key: summary[level][key] for key in ("p@5", "p@5_mean_over_sources", "queries")}
                       for level in LEVELS}}


__all__ = ["nested_default"]
