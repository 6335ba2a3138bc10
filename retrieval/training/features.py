"""Run the frozen backbone once over the clean view (fp32: what bf16 inference is judged against) and N augmented
views (bf16 after the first block, training only) of every image, batch 8, with one resumable checkpoint file per
pass, so every head fit afterwards takes seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..embedders import efficientnet
from ..embedders.preprocess import clean_view, to_batch
from .data import augmented_view

BATCH = 8


def extract(model, views: Sequence[np.ndarray], batch_size: int = BATCH, bf16: bool = False,
            progress: bool = False, desc: str = "features") -> np.ndarray:
    """Pooled features of 224x224 uint8 grayscale views, (n, FEATURE_DIM) float32."""
    import torch
    from tqdm.auto import tqdm

    out = np.zeros((len(views), efficientnet.FEATURE_DIM), dtype=np.float32)
    with torch.inference_mode():
        for start in tqdm(range(0, len(views), batch_size), desc=desc, disable=not progress, leave=False):
            batch = to_batch(views[start:start + batch_size])
            out[start:start + len(batch)] = efficientnet.pooled_features(model, batch, bf16).numpy()
    return out


def view_features(model, grays: Sequence[np.ndarray], mode: str, view: int, seed: int, bf16: bool | None = None,
                  progress: bool = False) -> np.ndarray:
    """(n, FEATURE_DIM) pooled features of pass `view` (-1: the clean view; else augmented view `view`)."""
    if view < 0:
        views = [clean_view(g, mode) for g in grays]
    else:  # each image's augmentation depends only on (seed, image position, view, mode): reproducible
        views = [augmented_view(g, np.random.default_rng([seed, i, view, int(mode == "norm")]), mode)
                 for i, g in enumerate(grays)]
    label = "clean" if view < 0 else f"view {view + 1}"
    bf16 = view >= 0 if bf16 is None else bf16  # the heads fit on fp32 clean views (what bf16 is judged against)
    return extract(model, views, BATCH, bf16=bf16, progress=progress, desc=f"features {mode} {label}")


def cached_features(grays: Sequence[np.ndarray], mode: str, n_aug: int, seed: int, work_dir: Path | None,
                    progress: bool = True, log: Callable = print, model=None) -> tuple[np.ndarray, np.ndarray]:
    """(clean (n, F), augmented (n, n_aug, F)) float32; passes already on disk in work_dir are reused
    (a killed run resumes at the next pass)."""
    model = model if model is not None else efficientnet.load_backbone()
    passes = []
    for view in range(-1, n_aug):
        path = work_dir / f"{mode}_{view}.npy" if work_dir is not None else None
        if path is not None and path.is_file():
            data = np.load(path)
            if data.shape == (len(grays), efficientnet.FEATURE_DIM):
                passes.append(data.astype(np.float32))
                continue
        data = view_features(model, grays, mode, view, seed, progress=progress)
        data = data.astype(np.float16).astype(np.float32)  # the values a resumed run reads back
        if path is not None:
            temp = path.with_name(path.stem + ".tmp.npy")
            np.save(temp, data.astype(np.float16))
            temp.replace(path)
        passes.append(data)
    clean = passes[0]
    aug = np.stack(passes[1:], axis=1) if n_aug else clean[:, None]
    return clean, aug
