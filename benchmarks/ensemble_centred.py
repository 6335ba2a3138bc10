"""A score-level ensemble of the trained head and the training-free centred features, judged by the nested
cross-source protocol of the training card. EXPERIMENT, not shipped.

    .venv/bin/python benchmarks/ensemble_centred.py [--work /tmp/ensemble-centred]

The question: on the card's outer whole-source folds, training-free `lite0-centred` (frozen Lite0 'gap+stages' of
the border-cropped, stretched view, centred on the training rows) has the best category and anatomy P@5 (category
gain interval above zero) but a low label P@5; `lite0-head` (the SupCon head on the same features) has a high label
P@5 but a category gain interval that spans zero. Does the mean of their two cosines carry both across sources?

The design, fixed before any figure of it was seen (retrieval/training/variants.py, `HEAD_AND_CENTRED`):
`lite0-head+centred` gives each row [unit(head(x)), unit(x - mu)] / sqrt(2), so its cosine is the mean of the head's
and the centred features' cosines; x is `lite0-head`'s input (Lite0 'gap+stages', 'norm' preprocessing), mu the mean
of x over the fit's training rows (the head's own centring vector), the head exactly `lite0-head`'s recipe (2 basic
views as train.py clamps them, SupCon + instance), its epochs chosen by the inner folds from 10/20/30 with the
card's criterion (selection.score: category + label P@5, each a mean over held-out sources). No flip; the weights
0.5 / 0.5 are fixed and never varied. But it was designed AFTER the card's outer table was known, so its outer
figures are not free of that knowledge, even though nothing in it is chosen on them.

The protocol: training.train.select_variants, the card's nested selection (seed 0, 5 outer whole-source folds that
report, 3 inner whole-source folds inside each outer training set that choose), with the three candidates
`lite0-centred` (without its flip), `lite0-head` and `lite0-head+centred`, so the two references are refitted on the
same folds and seeds; 'selected' is the pipeline the inner folds pick among these three. Gains over frozen
EfficientNet-Lite0 (the registry's: GAP, squash to 224 px) with the card's bootstrap over held-out sources (2,000
resamples, seed 0); the ensemble's gains over each of its parts are reported the same way (descriptive only). Only
Lite0 passes are run (clean, 2 basic views, squash), cached as float16 .npy files in --work/features (not in the
repo); no model folder and no text head are written. Writes results/ensemble_centred.json.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from common import (COLLECTION, TRAINING_CARD, add_anatomy_gains, gain_cell, json_plain, machine_snapshot,
                    nested_protocol, save, variant_header, variant_rows)

SEED, OUTER_FOLDS, INNER_FOLDS = 0, 5, 3


def main() -> None:
    from retrieval.evaluation.figures import ANATOMY, CATEGORY, LABEL
    from retrieval.evaluation.rows import fingerprint
    from retrieval.training import selection, variants
    from retrieval.training.data import load_working_copies, read_items
    from retrieval.training.train import select_variants

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/ensemble-centred"))
    args = parser.parse_args()
    started = time.time()
    machine_snapshot()
    items = read_items(COLLECTION)
    card = json.loads(TRAINING_CARD.read_text()) if TRAINING_CARD.is_file() else {}
    same_data = card.get("data", {}).get("fingerprint") == fingerprint(items)
    by_name = {v.name: v for v in variants.VARIANTS}
    candidates = [replace(by_name["lite0-centred"], flip=False), by_name["lite0-head"], variants.HEAD_AND_CENTRED]
    grays = load_working_copies(items, progress=True)
    run = select_variants(items, grays, args.work / "features", candidates, seed=SEED, outer_folds=OUTER_FOLDS,
                          folds=INNER_FOLDS, progress=True, log=lambda *a: print(*a, flush=True))
    nested, table = run["nested"], run["table"]
    levels = (CATEGORY, LABEL, ANATOMY)
    ensemble = variants.HEAD_AND_CENTRED.name
    over_parts = {f"{ensemble} over {part}": {level: selection.bootstrap_gain(selection.per_source_gain(
        items, nested.outer[ensemble], nested.outer[part], level), seed=SEED) for level in levels}
        for part in ("lite0-centred", "lite0-head")}
    order = [v.name for v in candidates] + ["selected", "reference"]
    add_anatomy_gains(items, nested, table, order[:-1], SEED)
    rows = variant_rows(table, order, levels)
    for key, block in over_parts.items():
        rows.append([f"gain {key}", "", "", "", *(gain_cell(block[level]) for level in levels), ""])
    payload = {
        "question": "does the mean of lite0-head's and lite0-centred's cosines carry both the head's label P@5 and "
                    "the centred features' category P@5 across sources?",
        "design": {"variant": variants.HEAD_AND_CENTRED.to_dict(),
                   "vector": "[unit(head(x)), unit(x - mu)] / sqrt(2): cosine = mean of the two cosines",
                   "weights": [0.5, 0.5], "fixed_in_advance": "weights, parts, grid and criterion fixed before any "
                   "figure of the ensemble; designed after the card's outer table was known",
                   "epoch_grid": list(variants.EPOCH_GRID), "augmented_views": 2, "flip": False},
        "protocol": nested_protocol(card, nested, SEED, OUTER_FOLDS, INNER_FOLDS, [v.name for v in candidates],
                                    same_data),
        "variants": {name: table[name] for name in order},
        "gains_of_the_ensemble_over_its_parts": over_parts,
        "per_outer_fold": nested.choices, "query_ms_per_backbone": run["ms"],
        "wall_seconds_total": round(time.time() - started, 1)}
    save("ensemble_centred", json.loads(json.dumps(payload, default=json_plain)), variant_header(levels), rows)


if __name__ == "__main__":
    main()
