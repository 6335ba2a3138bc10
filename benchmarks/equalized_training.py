"""The histogram-equalised view for the TRAINED variants too (`lite0-head-eq`, `lite0-anchored-eq`, and
`lite0-centred-eq`), judged by the nested cross-source protocol of the training card, and asked whether the card's
own selection would pick them. EXPERIMENT, not in VARIANTS, not shipped. The full `train` run with them as candidates
(branch eq-candidates, 2026-12-08; results/equalized_training_card.json) picked `lite0-head-eq` e20, which was not
shipped: its text tower made hybrid text search lose the train-query cross-validation (docs/trained-model.md).

    .venv/bin/python benchmarks/equalized_training.py [--work /tmp/nx/features]

The question: benchmarks/equalized_view.py found the equalised view the largest training-free label gain so far
(lite0-centred-eq over lite0-centred: label +0.084 [+0.038, +0.145]), and a head on its clean pass alone beat the
card's best inner score in 2 of 5 outer folds; but the card's trained variants also learn from augmented views,
which could not be equalised then. Now `embedders/preprocess.py` has the mode ('equalize': border crop, PIL's
ImageOps.equalize, 224 px bicubic) and the augmentations end with it (training/data.py, training/augment.py), so
the card's variants can be run with exactly one change.

The design, fixed before any figure of it existed (retrieval/training/variants.py `EQUALIZED`): the card's
`lite0-centred` (with its test-time flip), `lite0-head` (2 basic views) and `lite0-anchored` (2 basic views, L2-SP
tail), each with the equalised view for its clean, mirrored and augmented passes; the augmented views draw the same
random numbers as the stretched ones (paired geometry). Nothing else changes: features, head, loss, epochs grids,
seed. The protocol is the card's (nested_variants.judge_against_card): seed 0, 5 outer whole-source folds report,
3 inner choose each candidate's setting; gains over frozen Lite0 with the card's bootstrap over held-out sources;
per outer fold, the candidates' best inner score against the card's highest inner score among ALL its variants;
and the final choice over every row against the card's. Writes results/equalized_training.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nested_variants as nv
from common import COLLECTION

CACHE_FILES = ("squash_-1", "equalize_-1", "equalize_0", "equalize_1", "equalize_flip_-1", "maps_equalize_-1",
               "maps_equalize_0", "maps_equalize_1")


def main() -> None:
    from retrieval.training import variants

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/nx/features"))
    parser.add_argument("--collection", type=Path, default=COLLECTION, help="a small one: a smoke test of the script")
    args = parser.parse_args()
    design = {"variants": [v.to_dict() for v in variants.EQUALIZED],
              "view": "border crop, PIL ImageOps.equalize, 224 px bicubic (clean, mirrored and augmented passes)",
              "augmented_views": 2, "paired_geometry": "the augmented views draw the stretched views' random numbers",
              "fixed_in_advance": "one change from each card variant, fixed before any figure of these variants"}
    nv.judge_against_card(list(variants.EQUALIZED), args.work, args.collection, "equalized_training",
                          "does the equalised view, for the trained variants' augmented views too, move unseen "
                          "sources, and would the card's nested selection pick it?", design, CACHE_FILES,
                          card_rows=["lite0-centred", "lite0-centred+flip", "lite0-head", "lite0-anchored"])


if __name__ == "__main__":
    main()
