"""The hybrid's fusion with every candidate scored exactly by every component, chosen the way docs/evaluation.md
requires: 5-fold cross-validation inside the TRAIN queries (10 seeds) chooses; the packaged TEST queries and the
fresh query set C judge the fusion fitted on every train query, once per variant.

Why: each component contributes its top DEPTH rows, and a candidate that a component did not return takes that
list's LAST score (hybrid.candidate_features). When a query matches a whole category broadly (chest has ~700 rows,
more than DEPTH), the last score of word TF-IDF or MiniLM is close to its best, so a row of another category that
those components would score near zero is imputed almost as high as the rows they ranked: "infiltrate in the right
lower lobe" (word TF-IDF best 0.197, last 0.063; MiniLM 0.411 / 0.334) listed dental films that xray-lite0's text
tower ranked first, although the three metadata components put 200 chest rows first. The variant "exact" scores a
candidate outside a component's list with that component's own score (the query vector against the row's stored
vector; for the feedback list, its mixed vector against the row's word TF-IDF vector), as rankers that compute every
feature of every candidate do. The gap and the z-score keep the list's statistics (best, mean, spread of the top
DEPTH), so the only change is the value a missing row gets. Fixed before measuring; nothing else is varied.

    .venv/bin/python benchmarks/fusion_exact_scores.py --index DIR [--seeds 10]

Fresh sets (retrieval/queries/text_queries_fresh*.json): A and B are development data (their misses were read; B's
"infiltrate" query is where this came from), shown for information; C judges (its misses have not been read).
P@5 of the raw fused top 5. Writes results/fusion_exact_scores.json (`--result NAME`: results/NAME.json; with
`--variants none` the script judges the shipped fusion's recipe on another index, such as one whose row texts
changed).
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
VARIANTS = ("none", "exact")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"of {', '.join(VARIANTS)}")
    parser.add_argument("--result", default="fusion_exact_scores", help="the results file's name (another index)")
    args = parser.parse_args()

    from sklearn.linear_model import LogisticRegression

    from retrieval.evaluation.index_access import IndexAccess
    from retrieval.evaluation.queries import TEST, TRAIN, load_queries
    from retrieval.hybrid import (DEPTH, EXPANDED, FEATURES, FEEDBACK, FEEDBACK_MODEL, REGULARISATION,
                                  candidate_features, feedback_list)

    index = IndexAccess.open(args.index)
    engine = index._engine
    components = index.fusion_components()
    expanded = tuple(name for name in EXPANDED if name in components)
    categories = np.asarray([r["category"].lower() for r in index.records], dtype=object)
    labels = np.asarray([r["label"].lower() for r in index.records], dtype=object)
    matrices = {name: np.asarray(index.vectors(name), dtype=np.float32) for name in components}

    def top(scores, n=DEPTH):
        order = np.lexsort((np.arange(len(scores)), -scores))[:n]
        return [(int(i), float(scores[i])) for i in order]

    def features(lists, full, names, variant):
        """candidate_features; with "exact", a row outside a component's list takes its own score."""
        rows, x = candidate_features(lists, names)
        if variant == "none" or not len(rows):
            return rows, x
        width = len(FEATURES)
        for c, name in enumerate(names):
            found = lists.get(name) or []
            if not found:
                continue
            listed = np.asarray([s for _, s in found])
            column = full[name][rows].astype(np.float64)
            inside = np.isin(rows, [r for r, _ in found])
            column[inside] = x[inside, width * c]  # the list's own scores, as the store returned them
            x[:, width * c] = column
            x[:, width * c + 1] = column - listed.max()
            x[:, width * c + 2] = (column - listed.mean()) / (listed.std() + 1e-6)
        return rows, x

    class Fit:
        def __init__(self, model, names, variant):
            self.model, self.names, self.variant = model, names, variant

        def fuse(self, lists, full):
            rows, x = features(lists, full, self.names, self.variant)
            if not len(rows):
                return []
            scores = self.model.decision_function(x)
            order = np.lexsort((rows, -scores))
            return list(zip(rows[order].tolist(), scores[order].tolist()))

    def fit_one(examples, names, variant):
        blocks, targets = [], []
        for lists, full, relevant in examples:
            rows, x = features(lists, full, names, variant)
            blocks.append(x)
            targets.append(np.isin(rows, list(relevant)))
        model = LogisticRegression(C=REGULARISATION, max_iter=2000).fit(np.concatenate(blocks), np.concatenate(targets))
        return Fit(model, names, variant)

    def feedback(q, first):
        """(the feedback list, its full scores): hybrid.feedback_list over the stored word TF-IDF vectors, the first
        pass's fused scores read as probabilities, as Fusion does."""
        mixed = {}

        def nearest(name, vector, n):
            mixed["scores"] = matrices[name] @ np.asarray(vector, dtype=np.float32).reshape(-1)
            return top(mixed["scores"], n)

        found = feedback_list([(row, 1 / (1 + np.exp(-s))) for row, s in first], q["vectors"][FEEDBACK_MODEL],
                              lambda name, rows: matrices[name][rows], nearest, DEPTH)
        return found, mixed.get("scores", np.zeros(len(categories), np.float32))

    def second(q, first):
        found, scores = feedback(q, first.fuse(q["lists"], q["full"]))
        return {**q["lists"], FEEDBACK: found}, {**q["full"], FEEDBACK: scores}

    def fit(items, variant):
        examples = [(q["lists"], q["full"], q["label"] if q["labels"] else q["category"]) for q in items]
        first = fit_one(examples, components, variant)
        more = [(*second(q, first), relevant) for q, (_, _, relevant) in zip(items, examples)]
        return first, fit_one(more, [*components, FEEDBACK], variant)

    def p5(items, fitted):
        first, final = fitted
        category, label = [], []
        for q in items:
            top5 = [row for row, _ in final.fuse(*second(q, first))[:5]]
            category.append(np.mean([row in q["category"] for row in top5]))
            if q["labels"]:
                label.append(np.mean([row in q["label"] for row in top5]))
        return float(np.mean(category)), float(np.mean(label))

    worst = [0.0]

    def judged(queries):
        out = []
        for q in queries:
            vectors = engine.encoder.text_per_model(components, q.text, expanded=expanded)
            full = {name: matrices[name] @ np.asarray(vectors[name], dtype=np.float32).reshape(-1)
                    for name in components}
            lists = index.component_lists(q.text, components, DEPTH, expanded)
            for name, found in lists.items():  # the full scores are the store's scores
                worst[0] = max(worst[0], max((abs(full[name][r] - s) for r, s in found), default=0.0))
            out.append({"text": q.text, "split": q.split, "labels": bool(q.labels), "vectors": vectors,
                        "full": full, "lists": lists,
                        "category": set(np.flatnonzero(q.relevant(categories, labels, "category")).tolist()),
                        "label": set(np.flatnonzero(q.relevant(categories, labels, "label")).tolist())})
        return out

    packaged = judged(load_queries()[1])
    train = [q for q in packaged if q["split"] == TRAIN]
    sets = {"packaged test": [q for q in packaged if q["split"] == TEST],
            **{name: judged(load_queries(path)[1]) for name, path in SETS.items()}}
    print(f"largest difference between a list's score and the full score: {worst[0]:.2e}", flush=True)

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows, payload = [], {"components": components, "train_queries": len(train), "seeds": args.seeds,
                         "store_vs_full_score_max_difference": float(worst[0]), "variants": {}}
    for variant in [v for v in VARIANTS if v in args.variants.split(",")]:
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
    payload["index"] = str(args.index)
    save(args.result, payload, ["missing rows' scores", "train CV category / label P@5",
                                          *(f"{s} category / label P@5" for s in sets)], rows)


if __name__ == "__main__":
    main()
