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
from pathlib import Path

import nested_variants as nv
from common import COLLECTION

CACHE_FILES = ("squash_-1", "norm_-1", "norm_0", "norm_1", "maps_norm_-1", "maps_norm_0", "maps_norm_1")


def main() -> None:
    from retrieval.embedders import efficientnet
    from retrieval.training import anchored, lora, variants

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/lora/features"))
    parser.add_argument("--collection", type=Path, default=COLLECTION, help="a small one: a smoke test of the script")
    args = parser.parse_args()
    design = {"variant": variants.LORA_TAIL.to_dict(), "rank": lora.RANK, "alpha": lora.ALPHA,
              "lr_adapters": lora.LR, "weight_decay_adapters": 0.0,
              "adapted": ["block._expand_conv (192->1152)", "block._project_conv (1152->320)", "conv (head, 320->1280)"],
              "frozen": "the tail's own weights, the depthwise conv, every bias; no L2-SP term",
              "init": "A kaiming_uniform_(a=sqrt(5)) as peft/LoRA, B zeros",
              "adapter_weights": lora.adapter_weights(anchored.make_tail(efficientnet.load_backbone(), "gap")),
              "fixed_in_advance": "every value above fixed before any figure of lite0-lora; never tuned",
              "epoch_grid": list(variants.LORA_TAIL.epochs), "augmented_views": 2, "flip": False}
    nv.judge_against_card([variants.LORA_TAIL], args.work, args.collection, "lora_tail",
                          "do low-rank adapters on the anchored tail (instead of L2-SP) move unseen sources, and would "
                          "the card's nested selection pick them?", design, CACHE_FILES, card_rows=["lite0-anchored"])


if __name__ == "__main__":
    main()
