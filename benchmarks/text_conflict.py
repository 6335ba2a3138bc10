"""The hybrid with and without its contradiction feature (hybrid.Fusion.conflict: whether a row denies a word the
query affirms, negation.py), chosen the way docs/evaluation.md requires: 5-fold cross-validation inside the TRAIN
queries (10 seeds) chooses; the packaged TEST queries and the two fresh query sets judge the fusion fitted on every
train query, each once per variant.

    .venv/bin/python benchmarks/text_conflict.py --index DIR

The fresh sets (retrieval/queries/text_queries_fresh.json, "A", and text_queries_fresh_b.json, "B") were written
on 2026-12-07 after every earlier text choice: A was judged once before this feature existed and its misses were
then read (the feature came from them), so A is development data here; B was written before A's misses were read
and judges this feature. P@5 of the raw fused top 5 (without the engine's tie-breaking and label diversity), as in
the evaluation page's cross-validation. Writes results/text_conflict.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from common import save

FOLDS = 5
FRESH = {"fresh A (development)": "retrieval/queries/text_queries_fresh.json",
         "fresh B (judges)": "retrieval/queries/text_queries_fresh_b.json"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()

    from retrieval.evaluation.index_access import IndexAccess
    from retrieval.evaluation.queries import TEST, TRAIN, load_queries
    from retrieval.hybrid import DEPTH, EXPANDED, fit_with_feedback

    index = IndexAccess.open(args.index)
    components = index.fusion_components()
    expanded = tuple(name for name in EXPANDED if name in components)
    categories = np.asarray([r["category"].lower() for r in index.records], dtype=object)
    labels = np.asarray([r["label"].lower() for r in index.records], dtype=object)

    def judged(queries):
        return [{"text": q.text, "split": q.split, "labels": bool(q.labels),
                 "category": set(np.flatnonzero(q.relevant(categories, labels, "category")).tolist()),
                 "label": set(np.flatnonzero(q.relevant(categories, labels, "label")).tolist()),
                 "lists": index.component_lists(q.text, components, DEPTH, expanded),
                 "conflicts": index.conflicts(q.text, expanded)} for q in queries]

    packaged = judged(load_queries()[1])
    sets = {"packaged test": [q for q in packaged if q["split"] == TEST],
            **{name: judged(load_queries(path)[1]) for name, path in FRESH.items()}}
    train = [q for q in packaged if q["split"] == TRAIN]

    def feedback(q):
        return lambda first: index.feedback_list(q["text"], first, DEPTH, expanded)

    def fit(items, conflict):
        examples = [(q["lists"], q["label"] if q["labels"] else q["category"]) for q in items]
        return fit_with_feedback(examples, components, lambda i, first: feedback(items[i])(first),
                                 expanded=expanded, conflicts=[q["conflicts"] for q in items] if conflict else None)

    def p5(items, fusion):
        category, label = [], []
        for q in items:
            top = [row for row, _ in fusion.rank(q["lists"], feedback(q), q["conflicts"])[:5]]
            category.append(np.mean([row in q["category"] for row in top]))
            if q["labels"]:
                label.append(np.mean([row in q["label"] for row in top]))
        return float(np.mean(category)), float(np.mean(label))

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    variants = {"shipped (no contradiction feature)": False, "+ contradiction feature": True}
    rows, payload = [], {"components": components, "variants": {}}
    for name, conflict in variants.items():
        folds = []
        for seed in range(args.seeds):
            fold = np.random.default_rng(seed).permutation(len(train)) % FOLDS
            for k in range(FOLDS):
                fusion = fit([q for q, f in zip(train, fold) if f != k], conflict)
                folds.append(p5([q for q, f in zip(train, fold) if f == k], fusion))
        cv = np.mean(folds, axis=0)
        final = fit(train, conflict)
        held = {set_name: p5(items, final) for set_name, items in sets.items()}
        payload["variants"][name] = {"train_cv_p@5": [round(float(v), 3) for v in cv],
                                     **{f"{s}_p@5": [round(v, 3) for v in f] for s, f in held.items()},
                                     "conflict_weight": final.conflict, "measured": started}
        rows.append([name, f"{cv[0]:.3f} / {cv[1]:.3f}", *(f"{f[0]:.3f} / {f[1]:.3f}" for f in held.values())])
        print(rows[-1], flush=True)
    save("text_conflict", payload, ["fusion", "train CV category / label P@5",
                                    *(f"{s} category / label P@5" for s in sets)], rows)


if __name__ == "__main__":
    main()
