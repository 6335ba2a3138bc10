"""Fitting the image head on CACHED backbone features (clean + augmented views): centring, the within-fold
nuisance projection and a contrastive linear map. Seconds per fit, so every fold x variant is affordable."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from ..embedders.xray_network import make_image_head, select_features
from ..evaluation.rows import Item


@dataclass
class HeadConfig:
    """Hyper-parameters of the image head (defaults: the shipped variant; see the training card)."""

    features: str = "gap"  # pooled slices read: gap | gem | stages, joined by '+'
    preprocessing: str = "squash"  # clean view: a mode of embedders/preprocess.py's MODES
    head_dim: int = 0  # 0: no trained map (frozen features, centred and projected)
    nuisance_rank: int = 0  # directions of within-class source differences projected out (fit on train rows)
    epochs: int = 40
    batch: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    temperature: float = 0.1
    supervised_weight: float = 1.0  # SupCon on (category, label)
    instance_weight: float = 0.5  # SimCLR between two views of one image (self-supervised)
    cross_source_positives: bool = True  # same class from ANOTHER source is the positive, when one exists
    l2sp: float = 0.0  # pull the map towards its PCA initialisation
    category_weight: float = 0.0  # extra SupCon term on the category alone (hierarchy: body part, then finding)
    mask_unlabeled: bool = False  # an unlabeled row is neither positive nor negative to its category's rows

    def to_dict(self) -> dict:
        return asdict(self)


def class_keys(items: Sequence[Item]) -> np.ndarray:
    """Class used for supervision: category + label ('category|' for rows without a label)."""
    return np.asarray([f"{i.category}|{i.label}" for i in items], dtype=object)


def fit_nuisance(x: np.ndarray, items: Sequence[Item], rows: np.ndarray, rank: int) -> np.ndarray:
    """(d, rank) orthonormal basis of source-mean offsets within each class and within each category,
    estimated on `rows` only (groups with >= 2 sources); zeros when nothing can be estimated.
    x[j] holds the features of row rows[j]."""
    d = x.shape[1]
    if rank <= 0:
        return np.zeros((d, 0), np.float32)
    directions = []
    for keyer in (lambda i: f"{i.category}|{i.label}", lambda i: i.category):
        groups: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        for j, r in enumerate(rows):
            groups[keyer(items[r])][items[r].source].append(j)
        for by_source in groups.values():
            if len(by_source) < 2:
                continue
            means = {s: x[idx].mean(axis=0) for s, idx in by_source.items() if len(idx) >= 2}
            if len(means) < 2:
                continue
            centre = np.mean(list(means.values()), axis=0)
            for s, m in means.items():
                directions.append((m - centre) * np.sqrt(min(len(by_source[s]), 50)))
    basis = np.zeros((d, rank), np.float32)
    if directions:
        u, s, _ = np.linalg.svd(np.stack(directions).T.astype(np.float64), full_matrices=False)
        keep = min(rank, int((s > 1e-8 * s[0]).sum()))
        basis[:, :keep] = u[:, :keep]
    return basis


def fit_image_head(clean: np.ndarray, aug: np.ndarray, items: Sequence[Item], rows: np.ndarray,
                   config: HeadConfig, seed: int = 0, on_epoch=None, select=None):
    """An ImageHead fitted on `rows` only. clean: (n, F) pooled features; aug: (n, V, F) augmented views.
    `select`: features -> the head's input (default: Lite0's `select_features` of config.features; identity for
    features already selected, e.g. Lite2's or Lite0+Lite2 fused)."""
    import torch

    rows = np.asarray(rows)
    select = select or (lambda x: select_features(x, config.features))
    x_clean = select(clean[rows])
    head = make_image_head(x_clean.shape[1], config.head_dim, config.nuisance_rank)
    mean = x_clean.mean(axis=0)
    basis = fit_nuisance(x_clean - mean, items, rows, config.nuisance_rank)
    head.mean.copy_(torch.from_numpy(mean))
    head.nuisance.copy_(torch.from_numpy(basis))
    if not config.head_dim:
        return head.eval()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    projected = x_clean - mean
    projected = projected - (projected @ basis) @ basis.T
    # PCA initialisation: the trained map starts as the frozen geometry's main directions
    q = min(config.head_dim, *projected.shape)
    _, _, v = torch.svd_lowrank(torch.from_numpy(projected.astype(np.float32)), q=q, niter=4)
    init = torch.zeros(config.head_dim, projected.shape[1])
    init[:q] = v.T
    head.linear.weight.data.copy_(init)
    w0 = head.linear.weight.detach().clone()
    views = np.concatenate([x_clean[:, None], np.stack([select(aug[rows, v]) for v in range(aug.shape[1])],
                                                       axis=1)], axis=1)
    views_t = torch.from_numpy(views.astype(np.float32))
    keys = class_keys([items[r] for r in rows])
    _, key_ids = np.unique(keys, return_inverse=True)
    sources = np.asarray([items[r].source for r in rows], dtype=object)
    _, source_ids = np.unique(sources, return_inverse=True)
    counts = np.bincount(source_ids)
    weights = 1.0 / counts[source_ids]
    weights /= weights.sum()  # source-balanced sampling
    key_t, src_t = torch.from_numpy(key_ids), torch.from_numpy(source_ids)
    _, cat_ids = np.unique(np.asarray([items[r].category for r in rows], dtype=object), return_inverse=True)
    cat_t = torch.from_numpy(cat_ids)
    labeled_t = torch.from_numpy(np.asarray([bool(items[r].label) for r in rows]))
    multi_cat = np.zeros(cat_ids.max() + 1, dtype=bool)
    for c in range(cat_ids.max() + 1):
        multi_cat[c] = len(set(source_ids[cat_ids == c].tolist())) > 1
    multi_cat_t = torch.from_numpy(multi_cat)
    # classes present in more than one training source get cross-source positives only
    multi = np.zeros(key_ids.max() + 1, dtype=bool)
    for key in range(key_ids.max() + 1):
        multi[key] = len(set(source_ids[key_ids == key].tolist())) > 1
    multi_t = torch.from_numpy(multi)
    optimiser = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    per_epoch = max(1, int(np.ceil(len(rows) / config.batch)))
    steps = per_epoch * config.epochs
    batch = min(config.batch, len(rows))
    head.train()
    for step in range(steps):
        pick = torch.from_numpy(rng.choice(len(rows), size=batch, replace=True, p=weights))
        v = torch.from_numpy(rng.integers(0, views.shape[1], size=(2, batch)))
        x = torch.cat([views_t[pick, v[0]], views_t[pick, v[1]]])
        z = head(x)
        loss = _losses(z, key_t[pick].repeat(2), src_t[pick].repeat(2), multi_t, config,
                       cat_t[pick].repeat(2), labeled_t[pick].repeat(2), multi_cat_t)
        if config.l2sp:
            loss = loss + config.l2sp * (head.linear.weight - w0).pow(2).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if on_epoch is not None and (step + 1) % per_epoch == 0:
            on_epoch((step + 1) // per_epoch, head.eval())
            head.train()
    return head.eval()


def _supcon(sim, eye, same, src, multi, key, cross_source: bool, ignore=None):
    """Multi-positive InfoNCE; `ignore` pairs are left out of the denominator (neither positive nor negative)."""
    import torch

    if cross_source:
        other = src[:, None] != src[None, :]
        same = same & torch.where(multi[key][:, None], other, torch.ones_like(other))
    logits = sim if ignore is None else sim.masked_fill(ignore & ~same, -1e9)
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    has = same.any(dim=1)
    if not has.any():
        return sim.new_zeros(())
    return -((log_prob * same).sum(dim=1)[has] / same.sum(dim=1)[has]).mean()


def _losses(z, key, src, multi, config: HeadConfig, cat=None, labeled=None, multi_cat=None):
    import torch

    n = len(z)
    half = n // 2
    sim = z @ z.T / config.temperature
    eye = torch.eye(n, dtype=torch.bool)
    sim = sim.masked_fill(eye, -1e9)
    loss = z.new_zeros(())
    if config.instance_weight:
        log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
        partner = torch.cat([torch.arange(half, n), torch.arange(0, half)])
        loss = loss + config.instance_weight * -log_prob[torch.arange(n), partner].mean()
    if config.supervised_weight:
        same = (key[:, None] == key[None, :]) & ~eye
        ignore = None
        if config.mask_unlabeled and cat is not None:
            same_cat = cat[:, None] == cat[None, :]
            unlabeled_pair = ~(labeled[:, None] & labeled[None, :])
            ignore = same_cat & unlabeled_pair & ~eye
            same = same & labeled[:, None] & labeled[None, :]
        loss = loss + config.supervised_weight * _supcon(sim, eye, same, src, multi, key,
                                                         config.cross_source_positives, ignore)
    if config.category_weight and cat is not None:
        same = (cat[:, None] == cat[None, :]) & ~eye
        loss = loss + config.category_weight * _supcon(sim, eye, same, src, multi_cat, cat,
                                                       config.cross_source_positives)
    return loss


def embed_features(head, clean: np.ndarray, features: str) -> np.ndarray:
    """Unit vectors of every row through a fitted head."""
    import torch

    with torch.inference_mode():
        out = head(torch.from_numpy(select_features(clean, features).astype(np.float32)))
    return out.numpy().astype(np.float32)
