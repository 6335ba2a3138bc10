"""The hybrid with and without query expansion (retrieval/expansion.py: its word TF-IDF, then also MiniLM; with and
without misspelt words respelled) and with pseudo-relevance feedback on top (hybrid.feedback_list), chosen the way
docs/evaluation.md requires: 5-fold cross-validation inside the TRAIN queries (3 seeds) first, the TEST queries
judged once with the fusion fitted on every train query. `--only TEXT` reruns the variants whose name contains
TEXT; every other row keeps the figures (and date) of the run that measured it.

    .venv/bin/python benchmarks/text_expansion.py --index DIR

P@5 of the raw fused top 5 (without the engine's tie-breaking and label diversity, as in the cross-validation of
the evaluation page), category and label level. The index needs the fusion's components (tfidf, tfidf-chars,
minilm, xray-lite0 on the real collection). Writes results/text_expansion.json.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from common import RESULTS, save

FOLDS = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", help="run only the variants whose name contains this text")
    args = parser.parse_args()

    from retrieval.evaluation.index_access import IndexAccess
    from retrieval.evaluation.queries import TEST, TRAIN, load_queries
    from retrieval import expansion
    from retrieval.expansion import sources
    from retrieval.hybrid import DEPTH, fit_fusion, fit_with_feedback

    index = IndexAccess.open(args.index)
    _, queries = load_queries()
    components = index.fusion_components()
    categories = np.asarray([r["category"].lower() for r in index.records], dtype=object)
    labels = np.asarray([r["label"].lower() for r in index.records], dtype=object)
    # name: (expanded components, feedback, misspelt words respelled)
    variants = {"hybrid (before)": ((), False, False), "hybrid, TF-IDF query expanded": (("tfidf",), False, False),
                "hybrid, expanded + feedback": (("tfidf",), True, False),
                "hybrid, TF-IDF + MiniLM expanded, + feedback": (("tfidf", "minilm"), True, False),
                "hybrid, TF-IDF + MiniLM expanded, + feedback, misspellings respelled": (("tfidf", "minilm"), True,
                                                                                        True)}
    # measured with switches since removed (results/text_expansion.json keeps their rows): "the same, abbreviation
    # meanings the vocabulary mostly has" (commit 2857cdc), "respelled, and xray-lite0 reads the expanded query
    # when no typed word is known" (commit 892f7a8)
    variants = {name: v for name, v in variants.items() if not args.only or args.only in name}

    def spelt(name, run):  # the variant's respelling rule while `run` runs
        expansion.SPELLING = variants[name][2]
        try:
            return run()
        finally:
            expansion.SPELLING = True

    def lists(text, name):
        return spelt(name, lambda: index.component_lists(text, components, DEPTH, variants[name][0]))

    judged = []
    for query in queries:
        judged.append({"text": query.text, "split": query.split, "labels": bool(query.labels),
                       "category": set(np.flatnonzero(query.relevant(categories, labels, "category")).tolist()),
                       "label": set(np.flatnonzero(query.relevant(categories, labels, "label")).tolist()),
                       "lists": {name: lists(query.text, name) for name in variants}})

    def feedback(q, name):
        return lambda first: spelt(name, lambda: index.feedback_list(q["text"], first, DEPTH, variants[name][0]))

    def fit(items, name):
        examples = [(q["lists"][name], q["label"] if q["labels"] else q["category"]) for q in items]
        if variants[name][1]:
            return fit_with_feedback(examples, components, lambda i, first: feedback(items[i], name)(first),
                                     expanded=variants[name][0])
        return fit_fusion(examples, components)

    def p5(items, fusion, name):
        category, label = [], []
        for q in items:
            top = [row for row, _ in fusion.rank(q["lists"][name], feedback(q, name))[:5]]
            category.append(np.mean([row in q["category"] for row in top]))
            if q["labels"]:
                label.append(np.mean([row in q["label"] for row in top]))
        return float(np.mean(category)), float(np.mean(label))

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    train = [q for q in judged if q["split"] == TRAIN]
    test = [q for q in judged if q["split"] == TEST]
    rows, payload = [], {"components": components, "vocabularies": sources(), "variants": {}}
    for name in variants:
        folds = []
        for seed in range(args.seeds):
            fold = np.random.default_rng(seed).permutation(len(train)) % FOLDS
            for k in range(FOLDS):
                fusion = fit([q for q, f in zip(train, fold) if f != k], name)
                folds.append(p5([q for q, f in zip(train, fold) if f == k], fusion, name))
        cv = np.mean(folds, axis=0)
        held_out = p5(test, fit(train, name), name)
        payload["variants"][name] = {"train_cv_p@5": [round(float(v), 3) for v in cv],
                                     "test_p@5": [round(v, 3) for v in held_out], "measured": started}
        rows.append([name, f"{cv[0]:.3f} / {cv[1]:.3f}", f"{held_out[0]:.3f} / {held_out[1]:.3f}"])
    # the variants not run now (--only, or measured with switches since removed) keep their own run's figures
    kept = earlier_variants()
    payload["variants"] = {**{n: v for n, v in kept.items() if n not in payload["variants"]}, **payload["variants"]}
    rows = [[n, *(f"{v[key][0]:.3f} / {v[key][1]:.3f}" for key in ("train_cv_p@5", "test_p@5"))]
            for n, v in payload["variants"].items()]
    save("text_expansion", payload, ["fusion", "train CV category / label P@5", "test category / label P@5"], rows)


def earlier_variants() -> dict:
    """The variants of the last run (results/text_expansion.json), each with the date it was measured."""
    path = RESULTS / "text_expansion.json"
    if not path.is_file():
        return {}
    earlier = json.loads(path.read_text())
    return {name: {"measured": earlier["machine"]["date"], **figures} for name, figures in earlier["variants"].items()}


if __name__ == "__main__":
    main()
