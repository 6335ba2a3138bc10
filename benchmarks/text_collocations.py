"""The hybrid with and without WordNet collocations in its query expansion (expansion.COLLOCATIONS: two adjacent
query words, either unknown to the word TF-IDF vocabulary, looked up as one WordNet entry: "white lungs" ->
white_lung -> ARDS, "tooth decay" -> caries, "chicken pox" -> chickenpox -> varicella), chosen the way
docs/evaluation.md requires: 5-fold cross-validation inside the TRAIN queries (10 seeds) chooses; the packaged
TEST queries and fresh set C judge the fusion fitted on every train query, once per variant. Fresh sets A and B
(read query by query; A's "chicken pox lungs" gave the idea) are shown as development data.

    .venv/bin/python benchmarks/text_collocations.py --index DIR

P@5 of the raw fused top 5. Writes results/text_collocations.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from common import save

FOLDS = 5
SETS = {"fresh A (development)": "retrieval/queries/text_queries_fresh.json",
        "fresh B (development)": "retrieval/queries/text_queries_fresh_b.json",
        "fresh C (judges)": "retrieval/queries/text_queries_fresh_c.json"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()

    from retrieval import expansion
    from retrieval.evaluation.index_access import IndexAccess
    from retrieval.evaluation.queries import TEST, TRAIN, load_queries
    from retrieval.hybrid import DEPTH, EXPANDED, fit_with_feedback

    index = IndexAccess.open(args.index)
    components = index.fusion_components()
    expanded = tuple(name for name in EXPANDED if name in components)
    categories = np.asarray([r["category"].lower() for r in index.records], dtype=object)
    labels = np.asarray([r["label"].lower() for r in index.records], dtype=object)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows, payload = [], {"components": components, "variants": {}}
    for name, collocations in (("shipped (single words)", False), ("+ WordNet collocations", True)):
        expansion.COLLOCATIONS = collocations
        try:
            def judged(queries):
                return [{"text": q.text, "split": q.split, "labels": bool(q.labels),
                         "category": set(np.flatnonzero(q.relevant(categories, labels, "category")).tolist()),
                         "label": set(np.flatnonzero(q.relevant(categories, labels, "label")).tolist()),
                         "lists": index.component_lists(q.text, components, DEPTH, expanded)} for q in queries]

            packaged = judged(load_queries()[1])
            train = [q for q in packaged if q["split"] == TRAIN]
            sets = {"packaged test": [q for q in packaged if q["split"] == TEST],
                    **{label: judged(load_queries(path)[1]) for label, path in SETS.items()}}

            def feedback(q):
                return lambda first: index.feedback_list(q["text"], first, DEPTH, expanded)

            def fit(items):
                examples = [(q["lists"], q["label"] if q["labels"] else q["category"]) for q in items]
                return fit_with_feedback(examples, components, lambda i, first: feedback(items[i])(first),
                                         expanded=expanded)

            def p5(items, fusion):
                category, label = [], []
                for q in items:
                    top = [row for row, _ in fusion.rank(q["lists"], feedback(q))[:5]]
                    category.append(np.mean([row in q["category"] for row in top]))
                    if q["labels"]:
                        label.append(np.mean([row in q["label"] for row in top]))
                return float(np.mean(category)), float(np.mean(label))

            folds = []
            for seed in range(args.seeds):
                fold = np.random.default_rng(seed).permutation(len(train)) % FOLDS
                for k in range(FOLDS):
                    fusion = fit([q for q, f in zip(train, fold) if f != k])
                    folds.append(p5([q for q, f in zip(train, fold) if f == k], fusion))
            cv = np.mean(folds, axis=0)
            final = fit(train)
            held = {label: p5(items, final) for label, items in sets.items()}
        finally:
            expansion.COLLOCATIONS = False
        payload["variants"][name] = {"train_cv_p@5": [round(float(v), 3) for v in cv],
                                     **{f"{s}_p@5": [round(v, 3) for v in f] for s, f in held.items()},
                                     "measured": started}
        rows.append([name, f"{cv[0]:.3f} / {cv[1]:.3f}", *(f"{f[0]:.3f} / {f[1]:.3f}" for f in held.values())])
        print(rows[-1], flush=True)
    save("text_collocations", payload, ["query expansion", "train CV category / label P@5",
                                        *(f"{s} category / label P@5" for s in sets)], rows)


if __name__ == "__main__":
    main()
