"""Anchored fine-tuning of Lite0's last block (L2-SP toward the pretrained weights), judged on the shipped card's
outer whole-source folds beside frozen EfficientNet-Lite0 and the lite0-head variant. EXPERIMENT, not shipped.

    .venv/bin/python benchmarks/anchored_finetune.py [--work /tmp/anchored-finetune] [--epochs 10]

Why: issue 20 asked whether fine-tuning the last stage, anchored to its ImageNet weights, moves sources the
model never saw, where a linear head on frozen features (lite0-head) did not clearly (its category gain's
interval spans zero). Cheap by design: the frozen backbone runs ONCE per view up to the input of its last block
(the 192-channel 7x7 maps, cached in --work as float16); only the last block (MBConv 192 -> 1152 -> 320), the
1x1 head conv (320 -> 1280; both in their batch-norm-folded inference form, efficientnet.load_backbone) and a
linear head to 256-d are trained on those maps.

Views: the clean 'norm' view (fp32) and 2 'basic' augmented views (bf16 after the first block), made by
training/features.py's own view code with the shipped seed, so they are the views lite0-head was fitted on.
Features: read as lite0-head reads them (select_features 'gap+stages': GAP of the 1280-channel head and GAP of
each of the last five stage ends, 40/80/112/192 frozen, 320 from the fine-tuned block), centred on the training
rows' initial features, linear map (PCA initialised, heads.fit_image_head with 0 epochs), unit vector.
Loss: the shipped head's (heads._losses with variants.head_config('lite0-head'): SupCon on (category, label),
instance term 0.5, temperature 0.1, source-balanced batches of 256, two random views of each image), plus
ALPHA * ||w - w0||^2 over the last block and head conv (w0: their pretrained, folded weights).

Protocol: the card's 5 outer whole-source folds (evaluation.cross_source.fold_sources; checked equal to
assign_source_folds(items, 5, seed 0)). Per outer fold: fit on the other folds' rows, embed every row, the held-out
rows query the other folds' rows (protocols.search_rows, as selection.py judges). The references on the same
folds: frozen EfficientNet-Lite0 as the registry embeds it (GAP, squash to 224 px) and lite0-head refitted with the
epochs the card's inner folds chose for it in each outer fold (selection.per_outer_fold[].chosen). Gains: the
bootstrap over held-out sources of selection.bootstrap_gain.

The hyper-parameters below were FIXED BEFORE any outer-fold figure was seen and nothing was chosen by looking at
them; there are no inner folds here, so this is one pre-registered recipe, not a selected one.
Writes results/anchored_finetune.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import numpy as np
from common import COLLECTION, REPO, machine_snapshot, save

# --- the recipe, fixed in advance ------------------------------------------------------------------------------
ALPHA = 0.01  # L2-SP strength on the SUM of squared deviations (~1.0 M weights): the L2-SP paper's usual 0.01
LR_HEAD = 2e-3  # the linear head's learning rate: the shipped head's (HeadConfig.lr)
LR_TAIL = 1e-4  # the last block + head conv: 20x smaller than the head's, the usual fine-tuning ratio
EPOCHS = 10  # the smallest of the shipped epoch grid; 2 shared cores (about 80 steps of 256 pairs per fold)
VIEWS = 2  # augmented 'basic' views besides the clean one, as the shipped card (augmented_views 2)
SEED = 0
OUTER_FOLDS = 5
CARD = REPO / "assets" / "models" / "xray-lite0" / "training_card.json"
STAGES_FROZEN = 40 + 80 + 112 + 192  # the stage-end GAPs before the last block


def _passes():
    return [("clean", -1)] + [("basic", v) for v in range(VIEWS)]


def extract(grays, work: Path, log=print):
    """Per pass: (maps before the last block (n, 192, 7, 7) float16, pooled features (n, FEATURE_DIM) float32
    as features.view_features computes them). One file pair per pass in `work`; rerun reads them back."""
    import torch
    from tqdm.auto import tqdm

    from retrieval.embedders import efficientnet
    from retrieval.embedders.preprocess import to_batch
    from retrieval.training.features import BATCH, _views

    model, out = None, {}
    for kind, view in _passes():
        maps_path, pooled_path = work / f"maps_{kind}_{view}.npy", work / f"pooled_{kind}_{view}.npy"
        if maps_path.is_file() and pooled_path.is_file():
            out[(kind, view)] = (np.load(maps_path), np.load(pooled_path))
            continue
        model = model or efficientnet.load_backbone()
        bf16 = kind != "clean"  # as view_features: heads fit on fp32 clean views, bf16 training views
        views = _views(grays, "norm", kind, view, SEED, efficientnet.input_size())
        last = len(model._blocks) - 1
        maps = np.zeros((len(views), 192, 7, 7), np.float16)
        pooled = np.zeros((len(views), efficientnet.FEATURE_DIM), np.float32)
        hook = {}
        handle = model._blocks[last].register_forward_pre_hook(lambda m, args: hook.__setitem__("x", args[0]))
        with torch.inference_mode():
            for start in tqdm(range(0, len(views), BATCH), desc=f"{kind} {view}", leave=False):
                batch = to_batch(views[start:start + BATCH])
                pooled[start:start + len(batch)] = efficientnet.pooled_features(model, batch, bf16).numpy()
                maps[start:start + len(batch)] = hook["x"].float().numpy()
        handle.remove()
        work.mkdir(parents=True, exist_ok=True)
        np.save(maps_path, maps)
        np.save(pooled_path, pooled)
        out[(kind, view)] = (maps, pooled)
        log(f"pass {kind} {view} cached")
    squash_path = work / "squash_gap.npy"
    if not squash_path.is_file():
        from retrieval.training.features import view_features

        model = model or efficientnet.load_backbone()
        np.save(squash_path, view_features(model, grays, "squash", -1, SEED, kind="clean")[:, :1280])
    return out, np.load(squash_path)


class _Cache:
    """The duck-typed FeatureCache variants.VariantFeatures reads (pooled features of the cached passes)."""

    def __init__(self, passes: dict) -> None:
        self.passes = passes

    def one(self, mode: str, kind: str, view: int = -1):
        return self.passes[(kind, view)][1]


def tail_of(model):
    """The trainable tail: the last block and the head conv (+ ReLU6), copies with gradients on."""
    import torch

    class Tail(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = copy.deepcopy(model._blocks[-1])
            self.conv = copy.deepcopy(model._conv_head)
            self.requires_grad_(True)

        def forward(self, maps, stages):
            from retrieval.embedders.efficientnet import GEM_P
            from retrieval.embedders.xray_network import select_features

            y = self.block(maps, drop_connect_rate=None)
            head = torch.nn.functional.relu6(self.conv(y))
            gap = head.mean(dim=(2, 3))
            gem = head.clamp(min=1e-6).pow(GEM_P).mean(dim=(2, 3)).pow(1.0 / GEM_P)
            pooled = torch.cat([gap, gem, stages, y.mean(dim=(2, 3))], dim=1)
            return select_features(pooled, "gap+stages")

    return Tail()


def fit_anchored(backbone, items, rows, maps_views, stages_views, x_clean, epochs: int, seed: int = SEED):
    """(tail, head) fitted on `rows`: the loop of heads.fit_image_head with the tail trained too, L2-SP anchored."""
    import torch

    from retrieval.training import heads, variants

    config = variants.head_config(next(v for v in variants.VARIANTS if v.name == "lite0-head"), epochs)
    head = heads.fit_image_head(x_clean, x_clean[:, None], items, rows, replace_epochs(config, 0), seed,
                                select=lambda f: f)  # centring + PCA initialisation, no steps
    head.linear.weight.requires_grad_(True)
    tail = tail_of(backbone)
    anchor = [p.detach().clone() for p in tail.parameters()]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    keys = heads.class_keys([items[r] for r in rows])
    _, key_ids = np.unique(keys, return_inverse=True)
    _, source_ids = np.unique(np.asarray([items[r].source for r in rows], dtype=object), return_inverse=True)
    weights = 1.0 / np.bincount(source_ids)[source_ids]
    weights /= weights.sum()
    multi = torch.from_numpy(np.asarray([len(set(source_ids[key_ids == k].tolist())) > 1
                                         for k in range(key_ids.max() + 1)]))
    key_t, src_t = torch.from_numpy(key_ids), torch.from_numpy(source_ids)
    optimiser = torch.optim.AdamW([{"params": [head.linear.weight], "lr": LR_HEAD, "weight_decay": config.weight_decay},
                                   {"params": list(tail.parameters()), "lr": LR_TAIL, "weight_decay": 0.0}])
    batch = min(config.batch, len(rows))
    steps = max(1, int(np.ceil(len(rows) / config.batch))) * epochs
    tail.train(), head.train()
    for _ in range(steps):
        pick = rng.choice(len(rows), size=batch, replace=True, p=weights)
        v = rng.integers(0, maps_views.shape[1], size=(2, batch))
        r = rows[pick]
        maps = torch.from_numpy(np.concatenate([maps_views[r, v[0]], maps_views[r, v[1]]]).astype(np.float32))
        stages = torch.from_numpy(np.concatenate([stages_views[r, v[0]], stages_views[r, v[1]]]))
        z = head(tail(maps, stages))
        loss = heads._losses(z, key_t[pick].repeat(2), src_t[pick].repeat(2), multi, config)
        loss = loss + ALPHA * sum((p - p0).pow(2).sum() for p, p0 in zip(tail.parameters(), anchor))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return tail.eval(), head.eval()


def replace_epochs(config, epochs: int):
    from dataclasses import replace

    return replace(config, epochs=epochs)


def embed_all(tail, head, maps: np.ndarray, stages: np.ndarray, batch: int = 256) -> np.ndarray:
    import torch

    out = []
    with torch.inference_mode():
        for start in range(0, len(maps), batch):
            m = torch.from_numpy(maps[start:start + batch].astype(np.float32))
            out.append(head(tail(m, torch.from_numpy(stages[start:start + batch]))).numpy())
    return np.concatenate(out).astype(np.float32)


def _ci(block: dict) -> str:
    return f"{block['gain']:+.3f} [{block['ci95'][0]:+.3f}, {block['ci95'][1]:+.3f}]"


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def main() -> None:
    import torch

    from retrieval.embedders import efficientnet
    from retrieval.embedders.xray_network import select_features
    from retrieval.evaluation import protocols
    from retrieval.evaluation.figures import CATEGORY, LABEL, LEVELS
    from retrieval.evaluation.folds import assign_source_folds, source_fold_of_rows
    from retrieval.evaluation.rows import fingerprint
    from retrieval.training import selection, variants
    from retrieval.training.data import load_working_copies, read_items

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/anchored-finetune"))
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args()
    started = time.time()
    machine_snapshot()  # the load average at the start
    card = json.loads(CARD.read_text())
    items = read_items(COLLECTION)
    assert fingerprint(items) == card["data"]["fingerprint"], "the collection is not the one the card was trained on"
    fold_of = {s: int(f) for f, sources in card["evaluation"]["cross_source"]["fold_sources"].items() for s in sources}
    folds = np.asarray([fold_of[i.source] for i in items])
    same_as_selection = bool((folds == source_fold_of_rows(items, assign_source_folds(items, OUTER_FOLDS,
                                                                                      SEED))).all())
    grays = load_working_copies(items)
    passes, squash_gap = extract(grays, args.work)
    # the values FeatureCache hands the shipped training (it keeps every pass as float16)
    passes = {key: (maps, pooled.astype(np.float16).astype(np.float32)) for key, (maps, pooled) in passes.items()}
    squash_gap = squash_gap.astype(np.float16).astype(np.float32)
    print(f"features ready ({time.time() - started:.0f} s)")
    frozen = _unit(select_features(squash_gap, "gap"))
    maps_views = np.stack([passes[p][0] for p in _passes()], axis=1)  # (n, 1 + VIEWS, 192, 7, 7) float16
    stages_views = np.stack([passes[p][1][:, 2560:2560 + STAGES_FROZEN] for p in _passes()], axis=1)
    lite0_head = next(v for v in variants.VARIANTS if v.name == "lite0-head")
    lite0_head = variants.Variant(**{**lite0_head.to_dict(), "views": VIEWS})
    feats = variants.VariantFeatures({efficientnet.BACKBONE: _Cache(passes)})
    x_clean = feats.clean(lite0_head)
    head_fit = variants.fitter(lite0_head, feats, items, SEED)
    backbone = efficientnet.load_backbone()
    with torch.inference_mode():  # the untrained tail on the cached maps must give the cached clean features
        check = tail_of(backbone)(torch.from_numpy(maps_views[:64, 0].astype(np.float32)),
                                  torch.from_numpy(stages_views[:64, 0])).numpy()
    tail_check = float(np.abs(check - x_clean[:64]).max())
    print(f"untrained tail vs cached clean features: max |difference| {tail_check:.2e}")
    chosen = {c["fold"]: c["chosen"]["lite0-head"] for c in card["selection"]["per_outer_fold"]}
    parts = {"anchored": [], "lite0-head": [], "frozen": []}
    timings = []
    for fold in sorted(set(folds.tolist())):
        train, held = np.nonzero(folds != fold)[0], np.nonzero(folds == fold)[0]
        wall, cpu = time.perf_counter(), time.process_time()
        tail, head = fit_anchored(backbone, items, train, maps_views, stages_views, x_clean, args.epochs)
        fit_wall, fit_cpu = time.perf_counter() - wall, time.process_time() - cpu
        anchored = embed_all(tail, head, maps_views[:, 0], stages_views[:, 0])
        parts["anchored"].append(protocols.search_rows(items, anchored, held, train))
        parts["lite0-head"].append(protocols.search_rows(items, head_fit(train)[("lite0-head", chosen[fold])],
                                                         held, train))
        parts["frozen"].append(protocols.search_rows(items, frozen, held, train))
        timings.append({"fold": fold, "train_rows": int(len(train)), "fit_wall_s": round(fit_wall, 1),
                        "fit_cpu_s": round(fit_cpu, 1), "lite0_head_epochs": chosen[fold]})
        s = parts["anchored"][-1].summary(items)
        print(f"fold {fold}: fit {fit_wall:.0f} s wall / {fit_cpu:.0f} s CPU; held-out category P@5 "
              f"{s[CATEGORY]['p@5']}, label {s[LABEL]['p@5']}")
    runs = {name: protocols.concat(results) for name, results in parts.items()}
    summaries = {name: run.summary(items) for name, run in runs.items()}
    gains = {f"{model} over {ref}": {level: selection.bootstrap_gain(selection.per_source_gain(
        items, runs[model], runs[ref], level), seed=SEED) for level in LEVELS}
        for model, ref in (("anchored", "frozen"), ("lite0-head", "frozen"), ("anchored", "lite0-head"))}
    names = {"frozen": "efficientnet-lite0 (frozen, GAP, squash)", "lite0-head": "lite0-head (card's inner epochs)",
             "anchored": f"anchored last block + head (L2-SP, {args.epochs} epochs)"}
    rows = [[names[n], summaries[n][CATEGORY]["p@5"], summaries[n][CATEGORY]["p@5_mean_over_sources"],
             summaries[n][LABEL]["p@5"], summaries[n][LABEL]["p@5_mean_over_sources"]] for n in names]
    for key, block in gains.items():
        rows.append([f"gain {key} (95 % CI)"] + [_ci(block[level][kind]) for level in (CATEGORY, LABEL)
                                                  for kind in ("pooled", "mean_over_sources")])
    payload = {
        "recipe": {"alpha_l2sp": ALPHA, "lr_head": LR_HEAD, "lr_tail": LR_TAIL, "epochs": args.epochs,
                   "augmented_views": VIEWS, "seed": SEED, "trained": "last MBConv block (192->1152->320) + 1x1 head "
                   "conv (320->1280), batch norms folded; linear head 2024->256 (PCA init, centred)",
                   "loss": variants.head_config(lite0_head, args.epochs).to_dict(),
                   "fixed_in_advance": "no figure of the outer folds was looked at to set any of these"},
        "protocol": {"outer_folds": card["evaluation"]["cross_source"]["fold_sources"],
                     "folds_equal_to_selection_assignment": same_as_selection,
                     "untrained_tail_max_abs_difference_first_64_clean": tail_check,
                     "judge": "held-out rows query the other folds' rows (protocols.search_rows)"},
        "summaries": {n: {level: {k: summaries[n][level][k] for k in ("p@5", "p@5_mean_over_sources", "queries",
                                                                      "per_category")} for level in LEVELS}
                      for n in names},
        "per_source": {n: {level: summaries[n][level]["per_source"] for level in LEVELS} for n in names},
        "gains": gains, "fits": timings, "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
        "wall_seconds_total": round(time.time() - started, 1)}
    save("anchored_finetune", payload, ["model (outer whole-source folds)", "category P@5 pooled",
                                        "category P@5 mean over sources", "label P@5 pooled",
                                        "label P@5 mean over sources"], rows)


if __name__ == "__main__":
    main()
