"""Run a frozen backbone once over each pass of every image — the clean view (fp32: what bf16 inference is judged
against), its horizontal flip (test-time flip), and N augmented views ('basic' or 'acquisition' style; bf16 after
the first block, training only) — batch 8, one resumable file per pass in the work folder, so every head fit and
every rerun afterwards takes seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..embedders import efficientnet
from ..embedders.preprocess import clean_view, to_batch
from .augment import acquisition_view
from .data import augmented_view

BATCH = 8
AUGMENTATIONS = {"basic": augmented_view, "acquisition": acquisition_view}


def extract(model, views: Sequence[np.ndarray], batch_size: int = BATCH, bf16: bool = False,
            progress: bool = False, desc: str = "features", width: int = efficientnet.FEATURE_DIM) -> np.ndarray:
    """Pooled features of square uint8 grayscale views, (n, width) float32."""
    import torch
    from tqdm.auto import tqdm

    out = np.zeros((len(views), width), dtype=np.float32)
    with torch.inference_mode():
        for start in tqdm(range(0, len(views), batch_size), desc=desc, disable=not progress, leave=False):
            batch = to_batch(views[start:start + batch_size])
            out[start:start + len(batch)] = efficientnet.pooled_features(model, batch, bf16).numpy()
    return out


def _views(grays: Sequence[np.ndarray], mode: str, kind: str, view: int, seed: int, size: int) -> list[np.ndarray]:
    if kind == "clean":
        return [clean_view(g, mode, size) for g in grays]
    if kind == "flip":
        return [np.ascontiguousarray(clean_view(g, mode, size)[:, ::-1]) for g in grays]
    augment = AUGMENTATIONS[kind]
    salt = 0 if kind == "basic" else 1000
    # each image's augmentation depends only on (seed, image position, view, mode, kind): reproducible
    return [augment(g, np.random.default_rng([seed, i, view + salt, int(mode == "norm")]), mode, size)
            for i, g in enumerate(grays)]


def view_features(model, grays: Sequence[np.ndarray], mode: str, view: int, seed: int, bf16: bool | None = None,
                  progress: bool = False, backbone: str = efficientnet.BACKBONE, kind: str | None = None) -> np.ndarray:
    """(n, feature_dim) pooled features of one pass: `kind` 'clean', 'flip', 'basic' or 'acquisition' (default:
    'clean' when view < 0, else 'basic'), augmented view number `view`."""
    kind = kind or ("clean" if view < 0 else "basic")
    views = _views(grays, mode, kind, view, seed, efficientnet.input_size(backbone))
    bf16 = kind not in ("clean", "flip") if bf16 is None else bf16  # heads fit on fp32 clean views
    return extract(model, views, BATCH, bf16=bf16, progress=progress, desc=f"{backbone} {mode} {kind} {view}",
                   width=efficientnet.feature_dim(backbone))


class FeatureCache:
    """Passes of one backbone over one list of images, each kept as a float16 .npy file in `work_dir` (None:
    memory only). The backbone is loaded on the first pass that is not on disk."""

    def __init__(self, grays: Sequence[np.ndarray], seed: int, work_dir: Path | None, backbone: str =
                 efficientnet.BACKBONE, progress: bool = True, log: Callable = print, model=None) -> None:
        self.grays, self.seed, self.work_dir, self.backbone = grays, seed, work_dir, backbone
        self.progress, self.log, self._model = progress, log, model

    def path(self, mode: str, kind: str, view: int) -> Path | None:
        prefix = "" if self.backbone == efficientnet.BACKBONE else f"{self.backbone}_"
        name = f"{mode}_{view}" if kind in ("clean", "basic") else f"{mode}_{kind}_{view}"  # old names kept
        return self.work_dir / f"{prefix}{name}.npy" if self.work_dir is not None else None

    def one(self, mode: str, kind: str, view: int = -1) -> np.ndarray:
        """(n, F) features of one pass, from disk when it is there."""
        path = self.path(mode, kind, -1 if kind in ("clean", "flip") else view)
        width = efficientnet.feature_dim(self.backbone)
        if path is not None and path.is_file():
            data = np.load(path)
            if data.shape == (len(self.grays), width):
                return data.astype(np.float32)
        if self._model is None:
            self._model = efficientnet.load_backbone(self.backbone)
        data = view_features(self._model, self.grays, mode, view, self.seed, progress=self.progress,
                             backbone=self.backbone, kind=kind)
        data = data.astype(np.float16).astype(np.float32)  # the values a resumed run reads back
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            temp = path.with_name(path.stem + ".tmp.npy")
            np.save(temp, data.astype(np.float16))
            temp.replace(path)
        return data

    def augmented(self, mode: str, kind: str, n_views: int) -> np.ndarray:
        """(n, n_views, F); with n_views 0, the clean view as the only view."""
        if not n_views:
            return self.one(mode, "clean")[:, None]
        return np.stack([self.one(mode, kind, v) for v in range(n_views)], axis=1)


def cached_features(grays: Sequence[np.ndarray], mode: str, n_aug: int, seed: int, work_dir: Path | None,
                    progress: bool = True, log: Callable = print, model=None) -> tuple[np.ndarray, np.ndarray]:
    """(clean (n, F), augmented (n, n_aug, F)) float32 of Lite0 with 'basic' views; passes already on disk in
    work_dir are reused (a killed run resumes at the next pass)."""
    cache = FeatureCache(grays, seed, work_dir, progress=progress, log=log, model=model)
    return cache.one(mode, "clean"), cache.augmented(mode, "basic", n_aug)
