"""Low-rank adapters on the anchored tail (`lite0-lora`), judged by the nested cross-source protocol of the training
card, and asked whether the card's selection would pick it. EXPERIMENT, not in VARIANTS, not shipped.

    .venv/bin/python benchmarks/lora_tail.py [--work /tmp/lora/features]

The question: issue 20 lists "anchored fine-tuning of the last stages (L2-SP toward the pretrained weights, or
low-rank adapters)". L2-SP was judged (`lite0-anchored`, in the card); low-rank adapters never were. Would they
move unseen sources more, and would the card's own selection pick them?

The design, pre-registered before any figure of it existed (retrieval/training/variants.py `LORA_TAIL`,
retrieval/training/lora.py), exactly one change from `lite0-anchored`: the same tail (Lite0's last MBConv block +
1x1 head conv, batch norms folded; anchored.make_tail), the same 256-d head, loss (SupCon on (category, label) +
instance 0.5, temperature 0.1), views (2 basic + clean), source-balanced batches of 256, seed, head learning rate
(2e-3) and epoch grid (5/10, chosen by the inner folds) -- but the tail's own weights stay FROZEN and each of its
three 1x1 convolutions (the block's expand conv 192->1152, its project conv 1152->320, the head conv 320->1280)
gets a low-rank adapter W + (alpha / r) B A with r = 8, alpha = 8 (scale 1), A initialised as peft/LoRA do
(kaiming_uniform_, a = sqrt(5)), B zeros (training starts exactly at the frozen model); the depthwise conv and all
biases frozen; no L2-SP term; adapters trained with AdamW at 1e-3, weight decay 0. These values were fixed in
advance and not tuned. The adapters are merged (W + B A) into an ordinary tail, so `lite0-lora` would ship in the
existing tail format (model.safetensors `tail.*`) with no embedder change; its own weights are therefore the same
3.07 MB as `lite0-anchored`'s (the adapters alone: 35,328 weights).

The protocol, identical to the card's: training.train.select_variants, seed 0, 5 outer whole-source folds that
report, 3 inner whole-source folds inside each outer training set that choose (here only lite0-lora's epochs:
it is the only candidate; lite0-anchored is not refitted, its figures are the card's). Gains over frozen
EfficientNet-Lite0 with the card's bootstrap over held-out sources (2,000 resamples, seed 0). The decision
question, answered from the card: (a) per outer fold, lite0-lora's best inner score (selection.score: category +
label P@5, each a mean over held-out sources) against the card's highest inner score of that fold among all its
variants and settings (same data fingerprint and outer folds checked); (b) the final choice on every row (3
whole-source folds over every row, `selection.inner_choice` as train_model calls it), lite0-lora's best score
against the card's `final_choice_scores` maximum. (b) runs first (its 3 fits are the cheaper half). Backbone passes
are read from the card run's feature cache in --work (checked: no file written or changed); no model folder and no
text head are written. Writes results/lora_tail.json.
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from pathlib import Path

import nested_variants as nv
from common import COLLECTION, machine_snapshot, save
from nested_variants import INNER_FOLDS, OUTER_FOLDS, SEED
CACHE_FILES = ("squash_-1", "norm_-1", "norm_0", "norm_1", "maps_norm_-1", "maps_norm_0", "maps_norm_1")


def _log(*parts) -> None:
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


def _files(work: Path) -> dict:
    return {p.name: (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(work.glob("*"))}


def fold_decisions(choices: list[dict], card: dict, name: str) -> list[dict]:
    """(a): per outer fold, the candidate's best inner score against the card's best of every variant there."""
    card_folds = card.get("selection", {}).get("per_outer_fold", [])
    out = []
    for choice, theirs in zip(choices, card_folds):
        key, value = nv.best(choice["inner_scores"], name)
        card_key, card_value = nv.best(theirs["inner_scores"])
        anchored = nv.best(theirs["inner_scores"], "lite0-anchored")
        out.append({"fold": choice["fold"], "same_sources_as_card": choice["held_out_sources"] ==
                    theirs["held_out_sources"], "inner_scores": choice["inner_scores"], "best": [key, value],
                    "card_best": [card_key, card_value], "card_selected": theirs["selected"],
                    "card_lite0_anchored_best": list(anchored) if anchored else None,
                    "would_be_picked": value > card_value, "margin": round(value - card_value, 4)})
    return out


def main() -> None:
    import numpy as np

    from retrieval.embedders import efficientnet
    from retrieval.evaluation.rows import fingerprint
    from retrieval.training import anchored, lora, selection, variants
    from retrieval.training.data import load_working_copies, read_items
    from retrieval.training.train import select_variants, variant_features

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/lora/features"))
    parser.add_argument("--collection", type=Path, default=COLLECTION, help="a small one: a smoke test of the script")
    args = parser.parse_args()
    started = time.time()
    machine_snapshot()
    missing = [name for name in CACHE_FILES if not (args.work / f"{name}.npy").is_file()]
    _log(f"feature cache {args.work}: " + (f"MISSING {missing} (they will be computed)" if missing else "complete"))
    before = _files(args.work) if args.work.is_dir() else {}
    items = read_items(args.collection)
    card = json.loads(nv.CARD.read_text()) if nv.CARD.is_file() else {}
    same_data = card.get("data", {}).get("fingerprint") == fingerprint(items)
    _log(f"{len(items)} rows; same data as the card: {same_data}")
    grays = load_working_copies(items, progress=False)
    name = variants.LORA_TAIL.name

    # (b) the final choice on every row, as train_model makes it, for lite0-lora alone ---------------------------
    chosen, feats, _ = variant_features(grays, args.work, [variants.LORA_TAIL], seed=SEED, progress=False, log=_log)
    fit = variants.fitter(chosen[0], feats, items, SEED)
    began = time.time()
    _, _, scores = selection.inner_choice(items, np.arange(len(items)), [fit], INNER_FOLDS, SEED, None, _log)
    scores = {f"{v}/{s}": round(x, 4) for (v, s), x in sorted(scores.items())}
    card_final = nv.best(card.get("selection", {}).get("final_choice_scores", {}))
    final = {"scores": scores, "best": list(nv.best(scores)), "card_best": list(card_final) if card_final else None,
             "would_be_picked": bool(card_final) and nv.best(scores)[1] > card_final[1],
             "seconds": round(time.time() - began, 1)}
    (args.work.parent / "final_choice.json").write_text(json.dumps(final, indent=2))
    _log(f"final choice over every row: {final}")
    del feats, fit

    # (a) nested selection: 5 outer folds report, 3 inner folds choose lite0-lora's epochs -------------------------
    run = select_variants(items, grays, args.work, [variants.LORA_TAIL], seed=SEED, outer_folds=OUTER_FOLDS,
                          folds=INNER_FOLDS, progress=False, log=_log)
    nested, table = run["nested"], run["table"]
    with (args.work.parent / "nested.pkl").open("wb") as handle:  # what the figures below are computed from
        pickle.dump({"nested": nested, "table": table, "ms": run["ms"], "final": final}, handle)
    nv.add_anatomy_gains(items, nested, table, [name, "selected"])
    decisions = fold_decisions(nested.choices, card, name)
    card_table = card.get("selection", {}).get("variants", {})
    same_reference = all(nv.cell(table["reference"], level) == nv.cell(card_table.get("reference", {}), level)
                         for level in nv.levels())
    after = _files(args.work) if args.work.is_dir() else {}
    rows = nv.rows(table, [name, "reference"])
    if "lite0-anchored" in card_table:  # the card has no anatomy gain: '–'
        rows.insert(1, ["lite0-anchored (the card's row, not refitted)",
                        *nv.rows(card_table, ["lite0-anchored"])[0][1:]])
    payload = {
        "question": "do low-rank adapters on the anchored tail (instead of L2-SP) move unseen sources, and would the "
                    "card's nested selection pick them?",
        "design": {"variant": variants.LORA_TAIL.to_dict(), "rank": lora.RANK, "alpha": lora.ALPHA,
                   "lr_adapters": lora.LR, "weight_decay_adapters": 0.0,
                   "adapted": ["block._expand_conv (192->1152)", "block._project_conv (1152->320)",
                               "conv (head, 320->1280)"],
                   "frozen": "the tail's own weights, the depthwise conv, every bias; no L2-SP term",
                   "init": "A kaiming_uniform_(a=sqrt(5)) as peft/LoRA, B zeros",
                   "adapter_weights": lora.adapter_weights(anchored.make_tail(efficientnet.load_backbone(), "gap")),
                   "fixed_in_advance": "every value above fixed before any figure of lite0-lora; never tuned",
                   "epoch_grid": list(variants.LORA_TAIL.epochs), "augmented_views": 2, "flip": False},
        "protocol": nv.protocol([variants.LORA_TAIL], nested, card, same_data,
                                reference_reproduces_card=same_reference, feature_cache=str(args.work),
                                feature_cache_read_not_recomputed=not missing and before == after),
        "variants": {n: table[n] for n in (name, "reference")},
        "decision": {"per_outer_fold": decisions,
                     "picked_in_outer_folds": sum(d["would_be_picked"] for d in decisions),
                     "final_choice": final},
        "per_outer_fold": nested.choices, "query_ms_per_backbone": run["ms"],
        "wall_seconds_total": round(time.time() - started, 1)}
    save("lora_tail", nv.plain(payload), nv.header(), rows)
    for d in decisions:
        print(f"fold {d['fold']}: lite0-lora {d['best']} vs card best {d['card_best']}: picked {d['would_be_picked']}")
    print(f"final choice: lite0-lora {final['best']} vs card {final['card_best']}: picked {final['would_be_picked']}")


if __name__ == "__main__":
    main()
