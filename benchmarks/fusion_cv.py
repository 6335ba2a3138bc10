"""The protocol that judges a change to the hybrid's fusion or to one of its components (docs/evaluation.md): 5-fold
cross-validation inside the packaged TRAIN queries (`seeds` shuffles) chooses; the packaged TEST queries and the
fresh query sets judge the fusion fitted on every train query, once per variant. P@5 of the raw fused top 5 (no
tie-breaking, no label diversity), the fusion and its feedback refitted in each fold as `hybrid.fit_with_feedback`
does. Shared by the benchmarks that judge text changes this way (fusion_category_share.py, fusion_exact_scores.py,
text_head_variants.py).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

FOLDS = 5
SETS = {"fresh A (development)": "retrieval/queries/text_queries_fresh.json",
        "fresh B (development)": "retrieval/queries/text_queries_fresh_b.json",
        "fresh C (development)": "retrieval/queries/text_queries_fresh_c.json",  # its misses read on 2026-12-07
        "fresh D (judges)": "retrieval/queries/text_queries_fresh_d.json"}


class Harness:
    """Every query of the packaged file and the fresh sets, with each component's list as the engine searches it
    and each component's score for every row (`full`), ready for `judge`."""

    def __init__(self, index_dir: str) -> None:
        from retrieval.evaluation.index_access import IndexAccess
        from retrieval.evaluation.queries import TEST, TRAIN, load_queries
        from retrieval.hybrid import DEPTH, EXPANDED

        self.index = IndexAccess.open(index_dir)
        self.engine = self.index._engine
        self.depth = DEPTH
        self.components = self.index.fusion_components()
        self.expanded = tuple(name for name in EXPANDED if name in self.components)
        self.categories = np.asarray([r["category"].lower() for r in self.index.records], dtype=object)
        self.labels = np.asarray([r["label"].lower() for r in self.index.records], dtype=object)
        self.matrices = {name: np.asarray(self.index.vectors(name), dtype=np.float32) for name in self.components}
        self.largest_score_difference = 0.0
        packaged = self._judged(load_queries()[1])
        self.train = [q for q in packaged if q["split"] == TRAIN]
        self.sets = {"packaged test": [q for q in packaged if q["split"] == TEST],
                     **{name: self._judged(load_queries(path)[1]) for name, path in SETS.items()}}

    def top(self, scores: np.ndarray, n: int | None = None) -> list[tuple[int, float]]:
        order = np.lexsort((np.arange(len(scores)), -scores))[:n or self.depth]
        return [(int(i), float(scores[i])) for i in order]

    def _judged(self, queries) -> list[dict]:
        out = []
        for q in queries:
            vectors = self.engine.encoder.text_per_model(self.components, q.text, expanded=self.expanded)
            full = {name: self.matrices[name] @ np.asarray(vectors[name], dtype=np.float32).reshape(-1)
                    for name in self.components}
            lists = self.index.component_lists(q.text, self.components, self.depth, self.expanded)
            for name, found in lists.items():  # the full scores are the store's scores
                self.largest_score_difference = max(self.largest_score_difference, max(
                    (abs(float(full[name][r]) - s) for r, s in found), default=0.0))
            out.append({"text": q.text, "split": q.split, "labels": bool(q.labels), "vectors": vectors,
                        "full": full, "lists": lists,
                        "category": set(np.flatnonzero(q.relevant(self.categories, self.labels, "category")).tolist()),
                        "label": set(np.flatnonzero(q.relevant(self.categories, self.labels, "label")).tolist())})
        return out

    def judge(self, features: Callable, seeds: int, queries: Callable[[dict], dict] = lambda q: q) -> dict:
        """{"train_cv_p@5": [category, label], "<set>_p@5": [...]} of the fusion whose candidates have
        `features(lists, full, names) -> (rows, x)`; `queries` may rework each judged query (its lists and full
        scores) before anything is fitted."""
        from sklearn.linear_model import LogisticRegression

        from retrieval.hybrid import FEEDBACK, FEEDBACK_MODEL, REGULARISATION, feedback_list

        train = [queries(q) for q in self.train]
        sets = {name: [queries(q) for q in items] for name, items in self.sets.items()}
        matrices, top = self.matrices, self.top

        class Fit:
            def __init__(self, model, names):
                self.model, self.names = model, names

            def fuse(self, lists, full):
                rows, x = features(lists, full, self.names)
                if not len(rows):
                    return []
                scores = self.model.decision_function(x)
                order = np.lexsort((rows, -scores))
                return list(zip(rows[order].tolist(), scores[order].tolist()))

        def fit_one(examples, names):
            blocks, targets = [], []
            for lists, full, relevant in examples:
                rows, x = features(lists, full, names)
                blocks.append(x)
                targets.append(np.isin(rows, list(relevant)))
            model = LogisticRegression(C=REGULARISATION, max_iter=2000).fit(np.concatenate(blocks),
                                                                            np.concatenate(targets))
            return Fit(model, names)

        def second(q, first):
            """The lists and full scores with FEEDBACK: hybrid.feedback_list over the stored word TF-IDF vectors,
            the first pass's fused scores read as probabilities, as Fusion does."""
            mixed = {}

            def nearest(name, vector, n):
                mixed["scores"] = matrices[name] @ np.asarray(vector, dtype=np.float32).reshape(-1)
                return top(mixed["scores"], n)

            ranked = first.fuse(q["lists"], q["full"])
            found = feedback_list([(row, 1 / (1 + np.exp(-s))) for row, s in ranked], q["vectors"][FEEDBACK_MODEL],
                                  lambda name, rows: matrices[name][rows], nearest, self.depth)
            scores = mixed.get("scores", np.zeros(len(self.categories), np.float32))
            return {**q["lists"], FEEDBACK: found}, {**q["full"], FEEDBACK: scores}

        def fit(items):
            examples = [(q["lists"], q["full"], q["label"] if q["labels"] else q["category"]) for q in items]
            first = fit_one(examples, self.components)
            more = [(*second(q, first), relevant) for q, (_, _, relevant) in zip(items, examples)]
            return first, fit_one(more, [*self.components, FEEDBACK])

        def p5(items, fitted):
            first, final = fitted
            category, label = [], []
            for q in items:
                top5 = [row for row, _ in final.fuse(*second(q, first))[:5]]
                category.append(np.mean([row in q["category"] for row in top5]))
                if q["labels"]:
                    label.append(np.mean([row in q["label"] for row in top5]))
            return float(np.mean(category)), float(np.mean(label))

        folds = []
        for seed in range(seeds):
            fold = np.random.default_rng(seed).permutation(len(train)) % FOLDS
            for k in range(FOLDS):
                fitted = fit([q for q, f in zip(train, fold) if f != k])
                folds.append(p5([q for q, f in zip(train, fold) if f == k], fitted))
        cv = np.mean(folds, axis=0)
        final = fit(train)
        return {"train_cv_p@5": [round(float(v), 3) for v in cv],
                **{f"{name}_p@5": [round(v, 3) for v in p5(items, final)] for name, items in sets.items()}}

    def row(self, name: str, figures: dict) -> list[str]:
        """A table row: the variant, then category / label P@5 of the CV and of each set."""
        cells = [figures["train_cv_p@5"], *(figures[f"{s}_p@5"] for s in self.sets)]
        return [name, *(f"{c:.3f} / {l:.3f}" for c, l in cells)]

    def header(self, first: str) -> list[str]:
        return [first, "train CV category / label P@5", *(f"{s} category / label P@5" for s in self.sets)]


def plain_features(lists, full, names):
    """The shipped fusion's features (hybrid.candidate_features): a row outside a list takes its last score."""
    from retrieval.hybrid import candidate_features

    return candidate_features(lists, names)
