"""`lite0-centred` on a histogram-equalised view, judged by the nested cross-source protocol of the training card.
EXPERIMENT, not shipped.

Why: sources differ in how their films were processed (contrast curves, windowing, bit depth). The radiograph
view (`preprocess.clean_view(mode="norm")`) crops uniform borders and stretches the 1-99 % percentiles linearly,
which leaves each source's tone curve as it was. Histogram equalisation maps every film's intensities to a flat
histogram, so films processed differently come out alike: a common normalisation for chest radiographs from
several hospitals (CLAHE, its local form, would need OpenCV, which the project does not install; PIL's global
`ImageOps.equalize` is used). Fixed before measuring: the border crop, then equalisation in place of the stretch,
then the same 224 px resize, backbone pass, stage features and centring as `lite0-centred`.

Variants: `lite0-centred` (as the card fits it, flip off), `lite0-centred-eq` (the equalised view), and
`lite0-centred-view`, one variant whose two settings are the two views, so the inner folds choose the view per outer
fold. The card's protocol: seed 0, 5 outer whole-source folds report, 3 inner choose; bootstrap over held-out
sources for gains over frozen Lite0 and over `lite0-centred`. Writes results/equalized_view.json.

`--heads` (run after the first result, fixed before it ran): the card's linear head (SupCon + instance, 256-d,
epochs 10/20/30 chosen inside) on each view's clean pass only — `lite0-head-clean` on the stretched view,
`lite0-head-eq` on the equalised one (no augmented views: those would need the equalised mode in
training/augment.py) — beside the two training-free variants, and whether the card's selection would pick
`lite0-head-eq` (its best inner score against the card's per outer fold). Writes results/equalized_view_heads.json.

    .venv/bin/python benchmarks/equalized_view.py [--work /tmp/nx/features] [--heads]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

import nested_variants as nv
from common import COLLECTION, machine_snapshot, save
from neighbour_expansion import fitters_of, row
from nested_variants import INNER_FOLDS, OUTER_FOLDS, SEED

MODE = "equalize"  # embedders/preprocess.py's mode (border crop, ImageOps.equalize, 224 px bicubic); this
# benchmark first ran with its own copy of that view, patched into training/features.py for the run


def main() -> None:
    from retrieval.embedders import efficientnet
    from retrieval.evaluation.rows import fingerprint
    from retrieval.embedders.xray_network import select_features
    from retrieval.training import features, selection
    from retrieval.training.data import load_working_copies, read_items
    from retrieval.training.variants import FEATURES, LITE0, PREPROCESSING

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/nx/features"))
    parser.add_argument("--heads", action="store_true", help="heads on each view's clean pass as well")
    args = parser.parse_args()
    started = time.time()
    machine_snapshot()
    items = read_items(COLLECTION)
    card = json.loads(nv.CARD.read_text()) if nv.CARD.is_file() else {}
    grays = load_working_copies(items, progress=False)
    plain, frozen = fitters_of(["lite0-centred"], grays, items, args.work)

    cache = features.FeatureCache(grays, SEED, args.work, LITE0, progress=True)
    x = {name: select_features(cache.one(mode, "clean"), FEATURES, LITE0)
         for name, mode in (("norm", PREPROCESSING), (MODE, MODE))}
    assert efficientnet.input_size(LITE0) == 224

    def unit(v):
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    def fit(rows):
        out = dict(plain["lite0-centred"](rows))
        centred = {name: unit(v - v[rows].mean(axis=0)) for name, v in x.items()}
        out[("lite0-centred-eq", "centred")] = centred[MODE]
        for name, vectors in centred.items():
            out[("lite0-centred-view", name)] = vectors
        return out

    fitters, heads = [fit], []
    if args.heads:
        fitters, heads = head_fitters(cache, items)
    nested = selection.nested_selection(items, fitters, frozen, OUTER_FOLDS, INNER_FOLDS, SEED,
                                        log=lambda *a: print(time.strftime("%H:%M:%S"), *a, flush=True))
    table = {name: row(nested, name) for name in nested.outer}
    pairs = ([("lite0-centred-eq", "lite0-centred"), ("lite0-head-eq", "lite0-head-clean")] if args.heads
             else [("lite0-centred-eq", "lite0-centred"), ("lite0-centred-view", "lite0-centred")])
    for name, base in pairs:
        table[name]["gain_over_base"] = nv.paired_gain(items, nested, name, base)
    decision = {}
    if args.heads:
        for choice, theirs in zip(nested.choices, card.get("selection", {}).get("per_outer_fold", [])):
            key, value = nv.best(choice["inner_scores"], "lite0-head-eq")
            card_key, card_value = nv.best(theirs["inner_scores"])
            decision[str(choice["fold"])] = {"best": [key, value], "card_best": [card_key, card_value],
                                             "would_be_picked": value > card_value}
    order = ([*heads, "selected", "reference"] if args.heads
             else ["lite0-centred", "lite0-centred-eq", "lite0-centred-view", "selected", "reference"])
    payload = {"question": "does a histogram-equalised view move unseen sources for the training-free variant?",
               "design": {"mode": "border crop, PIL ImageOps.equalize, 224 px bicubic", "flip": False},
               "protocol": nv.protocol([SimpleNamespace(name=n) for n in order[:3]], nested, card,
                                       card.get("data", {}).get("fingerprint") == fingerprint(items),
                                       feature_cache=str(args.work)),
               "variants": table, "per_outer_fold": nested.choices, "decision_against_the_card": decision,
               "wall_seconds_total": round(time.time() - started, 1)}
    save("equalized_view_heads" if args.heads else "equalized_view", nv.plain(payload), nv.header(),
         nv.rows(table, order))
    for fold, d in decision.items():
        print(f"outer fold {fold}: lite0-head-eq best inner {d['best']} vs the card's {d['card_best']}")


def head_fitters(cache, items):
    """(fitters, names): the card's head on each view's clean pass, and the two training-free variants."""
    from retrieval.training import variants
    from retrieval.training.variants import LITE0, PREPROCESSING, Variant

    feats = variants.VariantFeatures({LITE0: cache})
    plan = [Variant("lite0-centred", (LITE0,)), Variant("lite0-centred-eq", (LITE0,), preprocessing=MODE),
            Variant("lite0-head-clean", (LITE0,), 256, preprocessing=PREPROCESSING),
            Variant("lite0-head-eq", (LITE0,), 256, preprocessing=MODE)]
    return [variants.fitter(v, feats, items, SEED) for v in plan], [v.name for v in plan]


if __name__ == "__main__":
    main()
