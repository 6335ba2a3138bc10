"""The hybrid's fusion with a category-agreement feature, chosen the way docs/evaluation.md requires: 5-fold
cross-validation inside the TRAIN queries (10 seeds) chooses; the packaged TEST queries and the fresh query sets
judge the fusion fitted on every train query, each once per variant.

Why: the fusion weighs each component by its raw score, gap and z-score. For a vague query the metadata
components' scores are flat and xray-lite0's spread is wide, so when the three metadata components agree on one
category and xray-lite0's top rows are of another, xray-lite0 wins ("infiltrate in the right lower lobe" listed
dental films). The feature: per component, the share of its top AGREEMENT rows that have the candidate's category
("how much does this component's list back this row's category"), fitted with the rest. AGREEMENT = 10, the rows
feedback reads, fixed before measuring. Variants: none (the shipped fusion, reproduced), one column per component,
and their mean as one column.

    .venv/bin/python benchmarks/fusion_category_share.py --index DIR

Fresh sets (retrieval/queries/text_queries_fresh*.json), each written before the one before it was read query by
query: A and B are development data here (their misses were read; B's led to this feature); C judges. With
`--train-on-development` A and B join the train queries (fitted on and cross-validated over), and the packaged
test queries and C judge. P@5 of the raw fused top 5. Writes results/fusion_category_share[_train_on_development].json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from common import save

FOLDS = 5
AGREEMENT = 10
SETS = {"fresh A (development)": "retrieval/queries/text_queries_fresh.json",
        "fresh B (development)": "retrieval/queries/text_queries_fresh_b.json",
        "fresh C (judges)": "retrieval/queries/text_queries_fresh_c.json"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--train-on-development", action="store_true",
                        help="fit on the packaged train queries and fresh sets A and B (judged: packaged test, C)")
    args = parser.parse_args()

    from sklearn.linear_model import LogisticRegression

    from retrieval.evaluation.index_access import IndexAccess
    from retrieval.evaluation.queries import TEST, TRAIN, load_queries
    from retrieval.hybrid import DEPTH, EXPANDED, FEEDBACK, REGULARISATION, candidate_features

    index = IndexAccess.open(args.index)
    components = index.fusion_components()
    expanded = tuple(name for name in EXPANDED if name in components)
    categories = np.asarray([r["category"].lower() for r in index.records], dtype=object)
    labels = np.asarray([r["label"].lower() for r in index.records], dtype=object)

    def shares(lists, rows, names):
        """(rows, len(names)): per component, the share of its top AGREEMENT rows in each row's category."""
        out = np.zeros((len(rows), len(names)))
        for c, name in enumerate(names):
            top = [row for row, _ in (lists.get(name) or [])[:AGREEMENT]]
            if top:
                held = categories[top]
                out[:, c] = [(held == categories[row]).mean() for row in rows]
        return out

    def features(lists, names, variant):
        rows, plain = candidate_features(lists, names)
        if variant == "none" or not len(rows):
            return rows, plain
        extra = shares(lists, rows, names)
        return rows, np.column_stack([plain, extra if variant == "per component" else extra.mean(axis=1)])

    class Fit:
        def __init__(self, model, names, variant):
            self.model, self.names, self.variant = model, names, variant

        def fuse(self, lists):
            rows, x = features(lists, self.names, self.variant)
            if not len(rows):
                return []
            scores = self.model.decision_function(x)
            order = np.lexsort((rows, -scores))
            return list(zip(rows[order].tolist(), scores[order].tolist()))

    def fit_one(examples, names, variant):
        blocks, targets = [], []
        for lists, relevant in examples:
            rows, x = features(lists, names, variant)
            blocks.append(x)
            targets.append(np.isin(rows, list(relevant)))
        model = LogisticRegression(C=REGULARISATION, max_iter=2000).fit(np.concatenate(blocks), np.concatenate(targets))
        return Fit(model, names, variant)

    def feedback(q, first):
        # feedback_list reads the first pass's fused scores as weights: pass them as probabilities, as Fusion does
        return index.feedback_list(q["text"], [(row, 1 / (1 + np.exp(-s))) for row, s in first], DEPTH, expanded)

    def fit(items, variant):
        examples = [(q["lists"], q["label"] if q["labels"] else q["category"]) for q in items]
        first = fit_one(examples, components, variant)
        second = [({**lists, FEEDBACK: feedback(items[i], first.fuse(lists))}, relevant)
                  for i, (lists, relevant) in enumerate(examples)]
        return first, fit_one(second, [*components, FEEDBACK], variant)

    def p5(items, fitted):
        first, second = fitted
        category, label = [], []
        for q in items:
            lists = {**q["lists"], FEEDBACK: feedback(q, first.fuse(q["lists"]))}
            top = [row for row, _ in second.fuse(lists)[:5]]
            category.append(np.mean([row in q["category"] for row in top]))
            if q["labels"]:
                label.append(np.mean([row in q["label"] for row in top]))
        return float(np.mean(category)), float(np.mean(label))

    def judged(queries):
        return [{"text": q.text, "split": q.split, "labels": bool(q.labels),
                 "category": set(np.flatnonzero(q.relevant(categories, labels, "category")).tolist()),
                 "label": set(np.flatnonzero(q.relevant(categories, labels, "label")).tolist()),
                 "lists": index.component_lists(q.text, components, DEPTH, expanded)} for q in queries]

    packaged = judged(load_queries()[1])
    train = [q for q in packaged if q["split"] == TRAIN]
    sets = {"packaged test": [q for q in packaged if q["split"] == TEST],
            **{name: judged(load_queries(path)[1]) for name, path in SETS.items()}}
    if args.train_on_development:  # A and B, read query by query, become training queries; C still judges
        train = train + [q for name, items in sets.items() if "development" in name for q in items]
        sets = {name: items for name, items in sets.items() if "development" not in name}

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows, payload = [], {"components": components, "agreement_rows": AGREEMENT, "train_queries": len(train),
                         "variants": {}}
    for variant in ("none", "per component", "mean"):
        folds = []
        for seed in range(args.seeds):
            fold = np.random.default_rng(seed).permutation(len(train)) % FOLDS
            for k in range(FOLDS):
                fitted = fit([q for q, f in zip(train, fold) if f != k], variant)
                folds.append(p5([q for q, f in zip(train, fold) if f == k], fitted))
        cv = np.mean(folds, axis=0)
        final = fit(train, variant)
        held = {name: p5(items, final) for name, items in sets.items()}
        payload["variants"][variant] = {"train_cv_p@5": [round(float(v), 3) for v in cv],
                                        **{f"{s}_p@5": [round(v, 3) for v in f] for s, f in held.items()},
                                        "measured": started}
        rows.append([variant, f"{cv[0]:.3f} / {cv[1]:.3f}", *(f"{f[0]:.3f} / {f[1]:.3f}" for f in held.values())])
        print(rows[-1], flush=True)
    name = "fusion_category_share" + ("_train_on_development" if args.train_on_development else "")
    save(name, payload, ["category-share feature", "train CV category / label P@5",
                         *(f"{s} category / label P@5" for s in sets)], rows)


if __name__ == "__main__":
    main()
