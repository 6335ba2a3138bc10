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
from fusion_cv import Harness, plain_features

AGREEMENT = 10
VARIANTS = ("none", "per component", "mean")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--train-on-development", action="store_true",
                        help="fit on the packaged train queries and fresh sets A and B (judged: packaged test, C)")
    args = parser.parse_args()

    harness = Harness(args.index)
    categories = harness.categories
    if args.train_on_development:  # A and B, read query by query, become training queries; C still judges
        harness.train = harness.train + [q for name, items in harness.sets.items() if "development" in name
                                         for q in items]
        harness.sets = {name: items for name, items in harness.sets.items() if "development" not in name}

    def shares(lists, rows, names):
        """(rows, len(names)): per component, the share of its top AGREEMENT rows in each row's category."""
        out = np.zeros((len(rows), len(names)))
        for c, name in enumerate(names):
            top = [row for row, _ in (lists.get(name) or [])[:AGREEMENT]]
            if top:
                held = categories[top]
                out[:, c] = [(held == categories[row]).mean() for row in rows]
        return out

    def features_of(variant):
        def features(lists, full, names):
            rows, plain = plain_features(lists, full, names)
            if variant == "none" or not len(rows):
                return rows, plain
            extra = shares(lists, rows, names)
            return rows, np.column_stack([plain, extra if variant == "per component" else extra.mean(axis=1)])
        return features

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows, payload = [], {"components": harness.components, "agreement_rows": AGREEMENT,
                         "train_queries": len(harness.train), "variants": {}}
    for variant in VARIANTS:
        figures = harness.judge(features_of(variant), args.seeds)
        payload["variants"][variant] = {**figures, "measured": started}
        rows.append(harness.row(variant, figures))
        print(rows[-1], flush=True)
    name = "fusion_category_share" + ("_train_on_development" if args.train_on_development else "")
    save(name, payload, harness.header("category-share feature"), rows)


if __name__ == "__main__":
    main()
