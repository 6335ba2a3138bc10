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
from fusion_cv import Harness, plain_features

VARIANTS = ("none", "exact")


def exact_features(lists, full, names):
    """candidate_features, except that a row outside a component's list takes that component's own score; the gap
    and z-score still against the list's best, mean and spread."""
    from retrieval.hybrid import FEATURES

    rows, x = plain_features(lists, full, names)
    width = len(FEATURES)
    for c, name in enumerate(names):
        found = lists.get(name) or []
        if not found or not len(rows):
            continue
        listed = np.asarray([s for _, s in found])
        column = full[name][rows].astype(np.float64)
        inside = np.isin(rows, [r for r, _ in found])
        column[inside] = x[inside, width * c]  # the list's own scores, as the store returned them
        x[:, width * c] = column
        x[:, width * c + 1] = column - listed.max()
        x[:, width * c + 2] = (column - listed.mean()) / (listed.std() + 1e-6)
    return rows, x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"of {', '.join(VARIANTS)}")
    parser.add_argument("--result", default="fusion_exact_scores", help="the results file's name (another index)")
    args = parser.parse_args()

    harness = Harness(args.index)
    print(f"largest difference between a list's score and the full score: {harness.largest_score_difference:.2e}",
          flush=True)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows, payload = [], {"components": harness.components, "train_queries": len(harness.train), "seeds": args.seeds,
                         "store_vs_full_score_max_difference": harness.largest_score_difference, "variants": {}}
    for variant in [v for v in VARIANTS if v in args.variants.split(",")]:
        figures = harness.judge(exact_features if variant == "exact" else plain_features, args.seeds)
        payload["variants"][variant] = {**figures, "measured": started}
        rows.append(harness.row(variant, figures))
        print(rows[-1], flush=True)
    payload["index"] = str(args.index)
    save(args.result, payload, harness.header("missing rows' scores"), rows)


if __name__ == "__main__":
    main()
