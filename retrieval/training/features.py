"""Run a frozen backbone once over each pass of every image — the clean view (fp32: what bf16 inference is judged
against), its horizontal flip (test-time flip), and N augmented views ('basic' or 'acquisition' style; bf16 after
the first block where the CPU computes bf16 natively, training only) — batch 8, one resumable file per pass in the
work folder, so every head fit and every rerun afterwards takes seconds. For the anchored variant a pass also keeps
the maps its tail trains on."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..atomic import write_atomic
from ..embedders import efficientnet
from ..embedders.preprocess import CROPPED_MODES, clean_view, to_batch
from .augment import acquisition_view
from .data import augmented_view

BATCH = 8
AUGMENTATIONS = {"basic": augmented_view, "acquisition": acquisition_view}


def extract(model, views: Sequence[np.ndarray], batch_size: int = BATCH, bf16: bool = False,
            progress: bool = False, desc: str = "features", width: int = efficientnet.FEATURE_DIM,
            maps: np.ndarray | None = None) -> np.ndarray:
    """Pooled features of square uint8 grayscale views, (n, width) float32. `maps`: an (n, c, h, w) array that
    also receives the input of the backbone's last block (what the anchored variant's tail trains on)."""
    import torch
    from tqdm.auto import tqdm

    out = np.zeros((len(views), width), dtype=np.float32)
    seen = {}
    handle = None if maps is None else model._blocks[-1].register_forward_pre_hook(
        lambda module, args: seen.__setitem__("x", args[0]))
    try:
        with torch.inference_mode():
            for start in tqdm(range(0, len(views), batch_size), desc=desc, disable=not progress, leave=False):
                batch = to_batch(views[start:start + batch_size])
                out[start:start + len(batch)] = efficientnet.pooled_features(model, batch, bf16).numpy()
                if maps is not None:
                    maps[start:start + len(batch)] = seen["x"].float().numpy()
    finally:
        if handle is not None:
            handle.remove()
    return out


def _views(grays: Sequence[np.ndarray], mode: str, kind: str, view: int, seed: int, size: int) -> list[np.ndarray]:
    if kind == "clean":
        return [clean_view(g, mode, size) for g in grays]
    if kind == "flip":
        return [np.ascontiguousarray(clean_view(g, mode, size)[:, ::-1]) for g in grays]
    augment = AUGMENTATIONS[kind]
    salt = 0 if kind == "basic" else 1000
    # each image's augmentation depends only on (seed, image position, view, kind, whether the mode crops): the
    # cropped modes draw the same random numbers (paired views of one geometry); reproducible
    return [augment(g, np.random.default_rng([seed, i, view + salt, int(mode in CROPPED_MODES)]), mode, size)
            for i, g in enumerate(grays)]


def view_features(model, grays: Sequence[np.ndarray], mode: str, view: int, seed: int, bf16: bool | None = None,
                  progress: bool = False, backbone: str = efficientnet.BACKBONE, kind: str | None = None,
                  maps: np.ndarray | None = None) -> np.ndarray:
    """(n, feature_dim) pooled features of one pass: `kind` 'clean', 'flip', 'basic' or 'acquisition' (default:
    'clean' when view < 0, else 'basic'), augmented view number `view` (`maps`: see `extract`)."""
    kind = kind or ("clean" if view < 0 else "basic")
    views = _views(grays, mode, kind, view, seed, efficientnet.input_size(backbone))
    if bf16 is None:  # heads fit on fp32 clean views; augmented views bf16 only where the CPU computes it natively
        bf16 = kind not in ("clean", "flip") and efficientnet.bf16_here()  # (emulated bf16 is ~10x slower)
    return extract(model, views, BATCH, bf16=bf16, progress=progress, desc=f"{backbone} {mode} {kind} {view}",
                   width=efficientnet.feature_dim(backbone), maps=maps)


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
        data = _read(path, (len(self.grays), width))
        if data is not None:
            return data.astype(np.float32)
        return self._run(mode, kind, view, None)

    def maps(self, mode: str, kind: str, view: int = -1) -> np.ndarray:
        """(n, 192, 7, 7) float16: the input of Lite0's last block in one pass (the pass's pooled features are
        kept too, so `one` then reads them from disk)."""
        path = self.path(mode, kind, -1 if kind in ("clean", "flip") else view)
        if path is not None:
            path = path.with_name("maps_" + path.name)
        side = efficientnet.input_size(self.backbone) // 32
        shape = (len(self.grays), efficientnet.STAGE_CHANNELS[-2], side, side)
        data = _read(path, shape)
        if data is None:
            data = np.zeros(shape, np.float16)
            self._run(mode, kind, view, data)
            _write(path, data)
        return data

    def _run(self, mode: str, kind: str, view: int, maps: np.ndarray | None) -> np.ndarray:
        if self._model is None:
            self._model = efficientnet.load_backbone(self.backbone)
        data = view_features(self._model, self.grays, mode, view, self.seed, progress=self.progress,
                             backbone=self.backbone, kind=kind, maps=maps)
        data = data.astype(np.float16).astype(np.float32)  # the values a resumed run reads back
        _write(self.path(mode, kind, -1 if kind in ("clean", "flip") else view), data.astype(np.float16))
        return data

    def augmented(self, mode: str, kind: str, n_views: int) -> np.ndarray:
        """(n, n_views, F); with n_views 0, the clean view as the only view."""
        if not n_views:
            return self.one(mode, "clean")[:, None]
        return np.stack([self.one(mode, kind, v) for v in range(n_views)], axis=1)


def _read(path: Path | None, shape: tuple) -> np.ndarray | None:
    if path is not None and path.is_file():
        data = np.load(path)
        if data.shape == shape:
            return data
    return None


def _write(path: Path | None, data: np.ndarray) -> None:
    """Atomic: a killed run never leaves a half-written pass for the next run to read."""
    if path is not None:
        write_atomic(path, lambda temporary: np.save(temporary, data))


def cached_features(grays: Sequence[np.ndarray], mode: str, n_aug: int, seed: int, work_dir: Path | None,
                    progress: bool = True, log: Callable = print, model=None) -> tuple[np.ndarray, np.ndarray]:
    """(clean (n, F), augmented (n, n_aug, F)) float32 of Lite0 with 'basic' views; passes already on disk in
    work_dir are reused (a killed run resumes at the next pass)."""
    cache = FeatureCache(grays, seed, work_dir, progress=progress, log=log, model=model)
    return cache.one(mode, "clean"), cache.augmented(mode, "basic", n_aug)
