"""Test-time crops for the training-free image variant, judged on the training card's outer whole-source folds.
EXPERIMENT, not shipped.

    .venv/bin/python benchmarks/test_time_crops.py [--work /tmp/test-time-crops]

Why: issue 20 lists test-time flips or crops among what might move sources the model never saw. The flip was a
variant of the nested selection (it changed nothing: docs/trained-model.md); crops were not tried. A crop leaves
out a film's edges, where the burned-in letters, rulers and collimation of each hospital sit.

What: `lite0-centred` (frozen Lite0, GAP + the ends of the last five stages of the border-cropped, stretched view,
centred on the training rows: retrieval/training/variants.py) beside the same with FIVE CROPS: the view made at 280
px (224 / 0.8) and its four corners and centre cut at 224 px, each embedded; the mean of the six feature vectors
(the clean 224 px view and the five crops) is centred and unit-normalised. Also the five crops without the whole
view. Batch 8, fp32, as the clean training view. The crop size (0.8) and the set of crops (the usual five-crop)
were fixed before any figure was seen; there are no inner folds here: no setting is chosen, so the figures only
report (a training-free variant needs none; a head variant would need its heads refitted on crops).

Protocol: the card's 5 outer whole-source folds; per fold the held-out rows query the other folds' rows
(protocols.search_rows, as selection.py judges), centring on the other folds' rows. Gains: the bootstrap over
held-out sources of selection.bootstrap_gain, over frozen EfficientNet-Lite0 as the registry embeds it (GAP, squash
to 224 px) and over lite0-centred. Passes are cached as float16 .npy files in --work.
Writes results/test_time_crops.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from common import COLLECTION, REPO, interval, machine_snapshot, save

SIDE, CROP = 224, 0.8
SEED, OUTER_FOLDS = 0, 5
CARD = REPO / "assets" / "models" / "xray-lite0" / "training_card.json"


def crops_of(view: np.ndarray, side: int = SIDE) -> list[np.ndarray]:
    """The four corners and the centre of a square view, each `side` pixels."""
    big = view.shape[0]
    mid = (big - side) // 2
    return [np.ascontiguousarray(view[y:y + side, x:x + side])
            for y, x in ((0, 0), (0, big - side), (big - side, 0), (big - side, big - side), (mid, mid))]


def passes(grays, work: Path) -> dict[str, np.ndarray]:
    """Pooled features (n, F) float32 of the clean 224 px view, the squash view and each of the five crops."""
    from retrieval.embedders import efficientnet
    from retrieval.embedders.preprocess import clean_view
    from retrieval.training.features import extract

    work.mkdir(parents=True, exist_ok=True)
    model, out = None, {}
    big = round(SIDE / CROP)
    makers = {"clean": lambda g: [clean_view(g, "norm", SIDE)], "squash": lambda g: [clean_view(g, "squash", SIDE)],
              "crops": lambda g: crops_of(clean_view(g, "norm", big))}
    for name, make in makers.items():
        path = work / f"{name}.npy"
        if path.is_file():
            out[name] = np.load(path).astype(np.float32)
            continue
        model = model or efficientnet.load_backbone()
        views = [v for g in grays for v in make(g)]
        data = extract(model, views, progress=True, desc=name).astype(np.float16)
        np.save(path, data)
        out[name] = data.astype(np.float32)
    n = len(grays)
    out["crops"] = out["crops"].reshape(n, 5, -1)
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def main() -> None:
    from retrieval.embedders.xray_network import select_features
    from retrieval.evaluation import protocols
    from retrieval.evaluation.figures import ANATOMY, CATEGORY, LABEL
    from retrieval.evaluation.rows import fingerprint
    from retrieval.training import selection, variants
    from retrieval.training.data import load_working_copies, read_items

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/test-time-crops"))
    args = parser.parse_args()
    started = time.time()
    machine_snapshot()
    card = json.loads(CARD.read_text())
    items = read_items(COLLECTION)
    assert fingerprint(items) == card["data"]["fingerprint"], "the collection is not the one the card was trained on"
    fold_of = {s: int(f) for f, sources in card["evaluation"]["cross_source"]["fold_sources"].items() for s in sources}
    folds = np.asarray([fold_of[i.source] for i in items])
    features = passes(load_working_copies(items), args.work)
    print(f"features ready ({time.time() - started:.0f} s)")
    pick = lambda raw: select_features(raw, variants.FEATURES, variants.LITE0)  # noqa: E731
    clean = pick(features["clean"])
    crops = np.stack([pick(features["crops"][:, i]) for i in range(5)], axis=1)
    inputs = {"lite0-centred": clean, "lite0-centred + five crops": (clean + crops.sum(axis=1)) / 6,
              "lite0-centred, five crops only": crops.mean(axis=1)}
    frozen = _unit(select_features(features["squash"], "gap"))
    parts: dict[str, list] = {name: [] for name in [*inputs, "frozen"]}
    for fold in sorted(set(folds.tolist())):
        train, held = np.nonzero(folds != fold)[0], np.nonzero(folds == fold)[0]
        for name, x in inputs.items():
            parts[name].append(protocols.search_rows(items, _unit(x - x[train].mean(axis=0)), held, train))
        parts["frozen"].append(protocols.search_rows(items, frozen, held, train))
    runs = {name: protocols.concat(results) for name, results in parts.items()}
    summaries = {name: run.summary(items) for name, run in runs.items()}
    levels = [level for level in (CATEGORY, LABEL, ANATOMY) if level in runs["frozen"].per_level]
    gains = {f"{model} over {ref}": {level: selection.bootstrap_gain(selection.per_source_gain(
        items, runs[model], runs[ref], level), seed=SEED) for level in levels}
        for model in inputs for ref in ("frozen", "lite0-centred") if model != ref}
    rows = [[name, *(f"{summaries[name][level]['p@5_mean_over_sources']:.3f} / {summaries[name][level]['p@5']:.3f}"
                     for level in levels)] for name in [*inputs, "frozen"]]
    for key, block in gains.items():
        rows.append([f"gain {key} (95 % CI, mean over sources)",
                     *(interval(block[level]["mean_over_sources"]) if level in block else "–" for level in levels)])
    payload = {
        "recipe": {"view": f"border crop + stretch, {round(SIDE / CROP)} px; four corners and centre at {SIDE} px",
                   "features": variants.FEATURES, "centred_on": "each outer fold's training rows",
                   "fixed_in_advance": "crop size 0.8 and the five crops; no figure chose anything"},
        "protocol": {"outer_folds": card["evaluation"]["cross_source"]["fold_sources"],
                     "judge": "held-out rows query the other folds' rows (protocols.search_rows)"},
        "summaries": {n: {level: {k: summaries[n][level][k] for k in ("p@5", "p@5_mean_over_sources", "queries",
                                                                      "per_category")} for level in levels}
                      for n in summaries},
        "gains": gains, "wall_seconds_total": round(time.time() - started, 1)}
    save("test_time_crops", payload, ["variant (outer whole-source folds)",
                                      *(f"{level} P@5 (mean over sources / pooled)" for level in levels)], rows)


if __name__ == "__main__":
    main()
