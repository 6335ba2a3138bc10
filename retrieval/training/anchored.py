"""Anchored fine-tuning: Lite0's last block and 1x1 head conv (the 'tail', 1.0 M weights, batch norms folded)
trained with the linear head, pulled toward their ImageNet weights by L2-SP (ALPHA * ||w - w0||^2).

Why: a linear head on frozen features (lite0-head) barely moves sources it never saw; retraining the whole
network on 14 sources would learn the sources. Moving only the last stage, anchored to what ImageNet taught it,
is the middle way (benchmarks/anchored_finetune.py measured one fixed recipe; here it is a variant that nested
selection chooses or not, its epochs chosen by the inner folds). Cheap: the frozen part runs once per view (the
192-channel 7x7 maps before the last block, cached by features.FeatureCache.maps), every fit trains on those.
Training runs bf16 autocast where inference does (efficientnet.bf16_here): 1.6x faster here, and the query-time
tail runs bf16 too. `adapters=True`: the tail's own weights stay frozen and low-rank adapters on its 1x1 convs are
trained instead of L2-SP (training/lora.py); they are merged before the tail is returned, so it ships the same way.
"""

from __future__ import annotations

import copy
from typing import Callable, Sequence

import numpy as np

from ..embedders import efficientnet
from ..embedders.xray_network import select_features
from . import lora
from .heads import HeadConfig, class_keys, fit_image_head, _losses

ALPHA = 0.01  # L2-SP on the SUM of squared deviations (the L2-SP paper's usual 0.01), fixed in advance
LR_TAIL = 1e-4  # 20x below the head's learning rate: the usual fine-tuning ratio, fixed in advance
EPOCH_GRID = (5, 10)  # checkpoints of one run; the inner folds pick one
FROZEN_STAGES = sum(efficientnet.STAGE_CHANNELS[:-1])  # stage-end GAPs before the last block (40+80+112+192)


def make_tail(model, features: str):
    """The trainable tail of a backbone from `efficientnet.load_backbone`: copies of its last block and head conv
    with gradients on. forward(maps, frozen stage GAPs) -> `select_features(pooled, features)`, the head's input."""
    import torch

    class Tail(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = copy.deepcopy(model._blocks[-1])
            self.conv = copy.deepcopy(model._conv_head)
            self.requires_grad_(True)

        def forward(self, maps, stages):
            y = self.block(maps, drop_connect_rate=None)
            head = torch.nn.functional.relu6(self.conv(y)).float()
            gap = head.mean(dim=(2, 3))
            pooled = torch.cat([gap, torch.zeros_like(gap), stages.float(), y.float().mean(dim=(2, 3))], dim=1)
            return select_features(pooled, features)  # GeM is not among the tail's features: zeros stand in

    return Tail()


def recipe(adapters: bool = False) -> dict:
    """The tail's hyper-parameters as the training card states them."""
    if adapters:
        return {"lora_rank": lora.RANK, "lora_alpha": lora.ALPHA, "lr_adapters": lora.LR,
                "trained": "low-rank adapters on Lite0's last block's expand and project convs and the 1x1 head conv "
                           "(batch norms folded; the tail's own weights frozen), merged into the weights, bf16 "
                           "autocast where inference runs bf16"}
    return {"alpha_l2sp": ALPHA, "lr_tail": LR_TAIL,
            "trained": "Lite0's last MBConv block and 1x1 head conv (batch norms folded), bf16 autocast where "
                       "inference runs bf16"}


def tail_weights() -> int:
    """How many weights the tail stores (Lite0: 1,013,696, about 2 MB in fp16)."""
    return sum(p.numel() for p in make_tail(efficientnet.load_backbone(), "gap").parameters())


def views_of(maps_views: np.ndarray, pooled_views: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(maps (n, V, 192, 7, 7) float16, frozen stage GAPs (n, V, 424) float32) from the cached passes."""
    start = efficientnet.FEATURE_SLICES["stages"][0]
    return maps_views, pooled_views[:, :, start:start + FROZEN_STAGES].astype(np.float32)


def embed(tail, head, maps: np.ndarray, stages: np.ndarray, batch: int = 256) -> np.ndarray:
    """(n, dim) unit vectors of the clean view through a fitted (tail, head), fp32 as the heads are judged."""
    import torch

    out = []
    with torch.inference_mode():
        for start in range(0, len(maps), batch):
            m = torch.from_numpy(maps[start:start + batch].astype(np.float32))
            out.append(head(tail(m, torch.from_numpy(stages[start:start + batch]))).numpy())
    return np.concatenate(out).astype(np.float32)


def fit_anchored(backbone, items, rows: np.ndarray, maps_views: np.ndarray, stages_views: np.ndarray,
                 x_clean: np.ndarray, config: HeadConfig, features: str, seed: int = 0,
                 on_epoch: Callable | None = None, bf16: bool | None = None, adapters: bool = False):
    """(tail, head) fitted on `rows` only: the head's loss (heads._losses, source-balanced batches, two random
    views of each image among the clean one and the augmented ones) with the tail trained too, L2-SP anchored
    (`adapters`: frozen, with low-rank adapters trained instead; the returned tail has them merged).
    `x_clean`: (n, W) the frozen head input of the clean view (centring + PCA initialisation of the head).
    `on_epoch(epoch, tail, head)` after each epoch (eval mode inside the call; adapters not merged)."""
    import torch
    from dataclasses import replace

    bf16 = efficientnet.bf16_here() if bf16 is None else bf16
    rows = np.asarray(rows)
    head = fit_image_head(x_clean, x_clean[:, None], items, rows, replace(config, epochs=0), seed,
                          select=lambda f: f)  # centring and PCA initialisation, no steps
    head.linear.weight.requires_grad_(True)
    tail = make_tail(backbone, features)
    anchor = [] if adapters else [p.detach().clone() for p in tail.parameters()]  # L2-SP's reference
    torch.manual_seed(seed)
    trained = lora.adapt(tail) if adapters else list(tail.parameters())
    rng = np.random.default_rng(seed)
    _, key_ids = np.unique(class_keys([items[r] for r in rows]), return_inverse=True)
    _, source_ids = np.unique(np.asarray([items[r].source for r in rows], dtype=object), return_inverse=True)
    weights = 1.0 / np.bincount(source_ids)[source_ids]
    weights /= weights.sum()  # source-balanced sampling, as the head's
    multi = torch.from_numpy(np.asarray([len(set(source_ids[key_ids == k].tolist())) > 1
                                         for k in range(key_ids.max() + 1)]))
    key_t, src_t = torch.from_numpy(key_ids), torch.from_numpy(source_ids)
    optimiser = torch.optim.AdamW([{"params": [head.linear.weight], "lr": config.lr,
                                    "weight_decay": config.weight_decay},
                                   {"params": trained, "lr": lora.LR if adapters else LR_TAIL,
                                    "weight_decay": 0.0}])
    batch = min(config.batch, len(rows))
    per_epoch = max(1, int(np.ceil(len(rows) / config.batch)))
    tail.train(), head.train()
    for step in range(per_epoch * config.epochs):
        pick = rng.choice(len(rows), size=batch, replace=True, p=weights)
        v = rng.integers(0, maps_views.shape[1], size=(2, batch))
        r = rows[pick]
        maps = torch.from_numpy(np.concatenate([maps_views[r, v[0]], maps_views[r, v[1]]]).astype(np.float32))
        stages = torch.from_numpy(np.concatenate([stages_views[r, v[0]], stages_views[r, v[1]]]))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            x = tail(maps, stages)
        z = head(x.float())
        loss = _losses(z, key_t[pick].repeat(2), src_t[pick].repeat(2), multi, config)
        if not adapters:
            loss = loss + ALPHA * sum((p - p0).pow(2).sum() for p, p0 in zip(tail.parameters(), anchor))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if on_epoch is not None and (step + 1) % per_epoch == 0:
            tail.eval(), head.eval()
            on_epoch((step + 1) // per_epoch, tail, head)
            tail.train(), head.train()
    return (lora.merged(tail) if adapters else tail.eval().requires_grad_(False)), head.eval()


def fitter(name: str, backbone, items, maps_views: np.ndarray, stages_views: np.ndarray, x_clean: np.ndarray,
           config_of: Callable[[int], HeadConfig], features: str, seed: int = 0, grid: Sequence[int] = EPOCH_GRID,
           adapters: bool = False):
    """fit(train_rows) -> {(name, 'e<epochs>'): unit vectors of every row} for each epoch of `grid`, from one run.
    Remembered per set of rows: train.py asks again for the same folds (the text head's cross-source folds are
    the final choice's inner folds); each answer is (rows x 256) floats per setting."""
    memo: dict[bytes, dict] = {}

    def fit(rows: np.ndarray) -> dict:
        key = np.asarray(rows, dtype=np.int64).tobytes()
        if key not in memo:
            out: dict = {}

            def keep(epoch, tail, head):
                if epoch in grid:
                    out[(name, f"e{epoch}")] = embed(tail, head, maps_views[:, 0], stages_views[:, 0])

            fit_anchored(backbone, items, rows, maps_views, stages_views, x_clean, config_of(max(grid)), features,
                         seed, keep, adapters=adapters)
            memo[key] = out
        return memo[key]

    return fit
