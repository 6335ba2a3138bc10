"""Cross-source SupCon positives for the trained head and the anchored tail, judged by the nested cross-source
protocol of the training card. EXPERIMENT, not shipped.

    .venv/bin/python benchmarks/cross_source_positives.py --run A [--work /tmp/xsrc]   # lite0-head, lite0-head-xsrc
    .venv/bin/python benchmarks/cross_source_positives.py --run B [--work /tmp/xsrc]   # lite0-anchored-xsrc

The question (issue 20: "anchored fine-tuning of the last stages (L2-SP ...) with cross-source positives"): every
variant of the training card trains with `HeadConfig.cross_source_positives=False`. With it on, a (category,
label) class present in more than one training source takes its SupCon positives only from OTHER sources (the
instance term is unchanged). Does that move unseen sources, and would the card's selection pick it?

The design, registered before any figure of it existed (retrieval/training/variants.py, `HEAD_XSRC`,
`ANCHORED_XSRC`; each exactly one change from a card variant, nothing else varied):
  1. `lite0-head-xsrc` = `lite0-head` with cross_source_positives=True (epochs chosen inside from 10/20/30);
  2. `lite0-anchored-xsrc` = `lite0-anchored` with cross_source_positives=True (the anchored fitter's loss reads the
     flag through variants.head_config; epochs chosen inside from 5/10).
The protocol is the card's: training.train.select_variants, seed 0, 5 outer whole-source folds that report and 3
inner whole-source folds inside each outer training set that choose (selection.score: category + label P@5, each a
mean over held-out sources); gains over frozen EfficientNet-Lite0 with the card's bootstrap over held-out sources
(2,000 resamples, seed 0). Run A refits `lite0-head` beside `lite0-head-xsrc` as the reference (its outer figures
must reproduce the card's row exactly) and gives the paired gain of the flag; run B fits `lite0-anchored-xsrc` alone
(`lite0-anchored` is not refitted: the card stores no per-source figures of it, so that pair is compared unpaired).
THE DECISION QUESTION, answered from the card's own stored scores (same data fingerprint, same folds, same seed):
  (a) per outer fold, the new variant's best inner score against the highest inner score of any card variant and
      setting in that fold (training_card.json: selection.per_outer_fold[i].inner_scores);
  (b) the final choice, as train_model makes it (selection.inner_choice over every row, 3 whole-source folds),
      applied to the new variants only: its best score against the card's selection.final_choice_scores maximum.
If (b) wins, the shipped model would change (a full retrain with the variant in VARIANTS). Only cached Lite0 passes
are read (--work/features: clean, 2 basic views, their maps, squash); nothing is written but
results/cross_source_positives.json, which keeps each run's block (a rerun of one run replaces only its own).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import nested_variants as nv
from common import RESULTS, machine_snapshot, save

NAME = "cross_source_positives"


def _decision(new: list[str], choices: list[dict], final: dict, card: dict) -> dict:
    """Would the card's selection pick a new variant? Per outer fold and for the final choice."""
    card_folds = card["selection"]["per_outer_fold"]
    per_fold = []
    for mine, theirs in zip(choices, card_folds):
        assert mine["held_out_sources"] == theirs["held_out_sources"], "not the card's outer folds"
        top_key, top = nv.best(theirs["inner_scores"])
        per_fold.append({"fold": mine["fold"], "card_best": [top_key, top], **{
            name: {"best": list(nv.best(mine["inner_scores"], name)),
                   "wins": nv.best(mine["inner_scores"], name)[1] > top} for name in new}})
    top_key, top = nv.best(card["selection"]["final_choice_scores"])
    final_block = {"card_best": [top_key, top], **{name: {"best": list(nv.best(final, name)),
                                                          "wins": nv.best(final, name)[1] > top} for name in new}}
    return {"per_outer_fold": per_fold, "final_choice": final_block}


def _reproduces(table: dict, card: dict, name: str) -> dict:
    """Does the refitted `name` (and frozen Lite0) give the card's outer figures exactly?"""
    rows = card["selection"]["variants"]
    out = {}
    for mine, theirs in ((name, name), ("reference", "reference")):
        pairs = {level: [[table[mine][level][k], rows[theirs][level][k]] for k in ("mean_over_sources", "pooled")]
                 for level in nv.levels()}
        out[mine] = {"identical": all(a == b for p in pairs.values() for a, b in p), "mine_vs_card": pairs}
    return out


def main() -> None:
    import numpy as np

    from retrieval.training import selection, variants

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", choices=("A", "B"), required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/xsrc"))
    args = parser.parse_args()
    started = time.time()
    machine_snapshot()
    by_name = {v.name: v for v in variants.VARIANTS}
    candidates = ([by_name["lite0-head"], variants.HEAD_XSRC] if args.run == "A" else [variants.ANCHORED_XSRC])
    new = [v.name for v in candidates if v.cross_source_positives]
    run = nv.run(candidates, args.work / "features")
    items, nested, table, card = run["items"], run["nested"], run["table"], run["card"]
    order = [v.name for v in candidates] + ["selected", "reference"]
    nv.add_anatomy_gains(items, nested, table, order[:-1])
    paired = ({"lite0-head-xsrc over lite0-head": nv.paired_gain(items, nested, "lite0-head-xsrc", "lite0-head")}
              if args.run == "A" else {})
    nested_seconds = time.time() - started
    # the final choice as train_model makes it (3 whole-source folds over every row), among these candidates only
    _, picked, final = selection.inner_choice(items, np.arange(len(items)), list(run["fitter_of"].values()),
                                              nv.INNER_FOLDS, nv.SEED, None, lambda *a: print(*a, flush=True))
    final_scores = {f"{v}/{k}": round(x, 4) for (v, k), x in sorted(final.items())}
    block = {
        "candidates": [v.to_dict() for v in candidates],
        "protocol": nv.protocol(candidates, nested, card, run["same_data"]),
        "variants": {name: table[name] for name in order},
        "paired_gains": paired,
        "reproduces_card": _reproduces(table, card, "lite0-head") if args.run == "A" else None,
        "per_outer_fold": nested.choices, "final_choice_scores": final_scores, "final_choice": picked,
        "would_the_card_pick_it": _decision(new, nested.choices, final_scores, card),
        "query_ms_per_backbone": run["ms"],
        "wall_seconds": {"nested": round(nested_seconds, 1), "total": round(time.time() - started, 1)},
        "rows": nv.rows(table, order) + nv.gain_rows(paired)}
    previous = RESULTS / f"{NAME}.json"
    runs = json.loads(previous.read_text()).get("runs", {}) if previous.is_file() else {}
    runs[args.run] = nv.plain(block)
    payload = {"question": "do cross-source SupCon positives move unseen sources, and would the card's selection "
                           "pick lite0-head-xsrc or lite0-anchored-xsrc?",
               "design": __doc__.split("The design,")[1].split("If (b) wins")[0].strip(), "runs": runs}
    print(json.dumps(runs[args.run]["would_the_card_pick_it"], indent=1))
    save(NAME, payload, nv.header(), [r for key in sorted(runs) for r in runs[key]["rows"]])


if __name__ == "__main__":
    main()
