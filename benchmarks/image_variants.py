"""Copy the shipped training card's variant table (nested cross-source selection) into results/image_variants.json,
so the figures docs/trained-model.md quotes sit beside the other benchmarks' results.

    .venv/bin/python benchmarks/image_variants.py

No measurement of its own: `python -m retrieval train` measured everything (outer folds judge, inner folds choose;
the card records it). Run it after each retraining.
"""

from __future__ import annotations

import json

from common import REPO, RESULTS

CARD = REPO / "assets" / "models" / "xray-lite0" / "training_card.json"
CONFIG = CARD.with_name("config.json")


def main() -> None:
    card, config = json.loads(CARD.read_text()), json.loads(CONFIG.read_text())
    selection, evaluation = card["selection"], card["evaluation"]
    payload = {
        "what": "nested cross-source selection of the image model (python -m retrieval train): outer whole-source "
                "folds judge, inner whole-source folds choose; copied from assets/models/xray-lite0/training_card.json",
        "model_version": config["version"], "data_fingerprint": card["data"]["fingerprint"],
        "rows": card["data"]["rows"], "sources": len(card["data"]["sources"]), "wall_seconds": card["wall_seconds"],
        "machine": card["machine"], "outer_folds": selection["outer_folds"], "inner_folds": selection["inner_folds"],
        "bootstrap": selection["bootstrap"], "fold_sources": evaluation["cross_source"]["fold_sources"],
        "per_outer_fold": [{k: fold[k] for k in ("fold", "held_out_sources", "chosen", "selected")}
                           for fold in selection["per_outer_fold"]],
        "variants": selection["variants"],
        "query_ms_per_backbone": selection["query_ms_per_backbone"], "shipped": card["shipped"],
        "shipped_setting": card["shipped_setting"], "default_image_model": card["default_image_model"],
        "in_source_out_of_fold": {model: {level: evaluation["in_source_out_of_fold"][model][level]["p@5"]
                                          for level in ("category", "label")} for model in ("trained", "frozen")},
    }
    path = RESULTS / "image_variants.json"
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(payload, indent=1) + "\n")
    temp.replace(path)
    for name, row in selection["variants"].items():
        gain = row.get("gain_over_frozen", {}).get("category", {}).get("mean_over_sources", {})
        print(f"{name:24s} category {row['category']['mean_over_sources']}  label {row['label']['mean_over_sources']}"
              f"  gain {gain.get('gain', '–')} {gain.get('ci95', '')}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
