"""xray-lite0's text head (the pixel tower's text side) trained another way, judged through the hybrid by the text
protocol of docs/evaluation.md (benchmarks/fusion_cv.py): 5-fold cross-validation inside the TRAIN queries chooses;
the packaged TEST queries and fresh set C judge. EXPERIMENT.

Why: in the fusion xray-lite0 carries the largest weights, and most of the hybrid's category misses on the
development queries are its text head sending a query it never saw to the wrong anatomy while the three metadata
components agree ("infiltrate in the right lower lobe" → dental films, "PA CXR within normal limits" → pneumonia).
The head is a small MLP from MiniLM's sentence space into the locked image space, trained on a few hundred texts
(templates, paraphrases, captions: training/text_head.py); phrasing it never saw lands where it happens to land.

Variants, fixed before measuring; each head is trained against the index's own xray-lite0 image vectors (all rows,
as `python -m retrieval train` trains the shipped head), seed 0:
* shipped: the index's text head, as the engine searches (the baseline);
* refit: the shipped recipe (60 epochs, hidden 512) refitted here (a check that the harness reproduces it);
* word dropout: each training text also read in 4 other forms, each word dropped with probability 0.25 (at least one
  kept; seeded), one form at random per step (a standard robustness augmentation for text encoders). It ran from
  the code of commit 29944d7 (fit_text_head's `views`), reverted after it: it lost the cross-validation;
* 20 epochs: a third of the training (the head may fit its few hundred texts too closely);
* 4-seed ensemble (added after the seeds showed how much one head varies): the shipped recipe trained with seeds
  0-3, the query's vector the normalised mean of the four heads' (variance reduction, the usual answer to it).

    .venv/bin/python benchmarks/text_head_variants.py --index index [--seeds 10]

Writes results/text_head_variants.json, with xray-lite0's own P@5 on each set beside the hybrid's (information only).
`--head-seeds 1,2,3 --variants refit,"20 epochs"` trains each head with other seeds: how far training noise alone
moves the figures (results/text_head_variants_seeds.json); `--variants "4-seed ensemble" --result
text_head_ensemble` judges the ensemble (results/text_head_ensemble.json).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from common import save
from fusion_cv import Harness, plain_features

VARIANTS = ("shipped", "refit", "20 epochs", "4-seed ensemble")  # "word dropout": commit 29944d7
ENSEMBLE_SEEDS = (0, 1, 2, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--head-seeds", default="0", help="the heads' training seeds, comma-separated: each "
                        "trained variant is trained and judged once per seed (results/text_head_variants_seeds.json "
                        "when not only 0)")
    parser.add_argument("--result", default="", help="the results file's name (default text_head_variants, "
                        "text_head_variants_seeds with --head-seeds)")
    args = parser.parse_args()
    head_seeds = [int(s) for s in args.head_seeds.split(",")]

    from retrieval.evaluation.rows import item_from_row
    from retrieval.training.text_head import build_text_table, embed_text_queries, fit_text_head

    harness = Harness(args.index)
    model = "xray-lite0"
    images = harness.matrices[model]
    items = [item_from_row(r) for r in harness.index.records]
    rows = np.arange(len(items))
    cache: dict = {}
    texts, _ = build_text_table(items, rows)
    print(f"{len(texts)} training texts", flush=True)
    every = [q for q in harness.train] + [q for items_ in harness.sets.values() for q in items_]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows_out, payload = [], {"components": harness.components, "seeds": args.seeds,
                             "training_texts": len(texts), "variants": {}}

    def component_p5(queries):
        category, label = [], []
        for q in queries:
            top5 = [r for r, _ in q["lists"][model][:5]]
            category.append(np.mean([r in q["category"] for r in top5]))
            if q["labels"]:
                label.append(np.mean([r in q["label"] for r in top5]))
        return [round(float(np.mean(category)), 3), round(float(np.mean(label)), 3)]

    runs = [(name, seed) for name in VARIANTS if name in args.variants.split(",")
            for seed in (head_seeds if name not in ("shipped", "4-seed ensemble") else [0])]
    for name, seed in runs:
        began = time.time()
        label = name if head_seeds == [0] else f"{name}, seed {seed}"
        if name == "shipped":
            rework = lambda q: q  # noqa: E731
        else:
            texts_asked = [q["text"] for q in every]
            heads = [fit_text_head(images, items, rows, images.shape[1], epochs=20 if name == "20 epochs" else 60,
                                   hidden=512, seed=one, text_vectors=cache)
                     for one in (ENSEMBLE_SEEDS if name == "4-seed ensemble" else (seed,))]
            vectors = np.mean([embed_text_queries(head, texts_asked, cache) for head in heads], axis=0)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            by_text = {q["text"]: v for q, v in zip(every, vectors)}
            if name == "refit" and seed == 0:  # against the shipped head's query vectors, as the engine made them
                shipped = np.stack([np.asarray(q["vectors"][model], dtype=np.float32).reshape(-1) for q in every])
                payload["refit_vs_shipped_query_cosine_min"] = round(float(np.min(np.sum(
                    shipped * vectors, axis=1) / np.linalg.norm(shipped, axis=1) / np.linalg.norm(vectors, axis=1))), 5)
                print("refit vs shipped, lowest query cosine:", payload["refit_vs_shipped_query_cosine_min"])

            def rework(q, by_text=by_text):
                scores = images @ by_text[q["text"]]
                return {**q, "lists": {**q["lists"], model: harness.top(scores)}, "full": {**q["full"], model: scores}}
        figures = harness.judge(plain_features, args.seeds, rework)
        own = {"train": component_p5([rework(q) for q in harness.train]),
               **{s: component_p5([rework(q) for q in items_]) for s, items_ in harness.sets.items()}}
        payload["variants"][label] = {**figures, f"{model}_alone_p@5": own, "measured": started,
                                     "seconds": round(time.time() - began, 1)}
        rows_out.append(harness.row(label, figures))
        print(rows_out[-1], "xray-lite0 alone", own, flush=True)
    save(args.result or "text_head_variants" + ("" if head_seeds == [0] else "_seeds"), payload,
         harness.header("xray-lite0 text head"), rows_out)


if __name__ == "__main__":
    main()
