"""The grayscale views xray-lite0 reads, at query time as in training: working copy, border crop, intensity
stretch or equalisation, the 224-px view and the normalised batch the backbone takes."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

WORK_LONG_SIDE = 320  # working copy kept in memory: enough for 224-px crops, small enough for 2-3k images
INPUT_SIZE = 224
MEAN = (0.485, 0.456, 0.406)  # ImageNet statistics (the backbone was trained with them)
STD = (0.229, 0.224, 0.225)
# The clean view's preprocessing modes: 'squash' = the frozen baseline (the whole image resized); 'norm' = border
# crop + 1-99 % stretch (linear: each source's tone curve stays); 'equalize' = border crop + histogram equalisation
# (every film's intensities mapped to a flat histogram, so differently processed films come out alike).
CROPPED_MODES = ("norm", "equalize")
MODES = ("squash", *CROPPED_MODES)


def working_copy(image: Image.Image) -> np.ndarray:
    """8-bit grayscale array, long side <= WORK_LONG_SIDE, aspect kept."""
    image = image if image.mode == "L" else image.convert("L")
    if max(image.size) > WORK_LONG_SIDE:
        image = image.copy()
        image.thumbnail((WORK_LONG_SIDE, WORK_LONG_SIDE), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8).copy()


def crop_border(gray: np.ndarray, tolerance: float = 6.0, max_share: float = 0.25) -> np.ndarray:
    """Cut uniform letterbox bars / frame borders (rows or columns whose spread is ~0), at most max_share a side."""
    h, w = gray.shape
    data = gray.astype(np.float32)
    row_std, col_std = data.std(axis=1), data.std(axis=0)
    top, bottom, left, right = 0, h, 0, w
    while top < int(h * max_share) and row_std[top] < tolerance:
        top += 1
    while bottom > h - int(h * max_share) and row_std[bottom - 1] < tolerance:
        bottom -= 1
    while left < int(w * max_share) and col_std[left] < tolerance:
        left += 1
    while right > w - int(w * max_share) and col_std[right - 1] < tolerance:
        right -= 1
    if bottom - top < 16 or right - left < 16:
        return gray
    return gray[top:bottom, left:right]


def stretch(gray: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Percentile intensity window to 0..255 (removes scanner-specific brightness/contrast offsets)."""
    lo, hi = np.percentile(gray, [low, high])
    if hi - lo < 1:
        return gray
    return np.clip((gray.astype(np.float32) - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)


def equalize(gray: np.ndarray) -> np.ndarray:
    """Histogram equalisation (PIL's ImageOps.equalize) of an 8-bit grayscale array."""
    from PIL import ImageOps

    return np.asarray(ImageOps.equalize(Image.fromarray(gray)), dtype=np.uint8)


def tone(gray: np.ndarray, mode: str) -> np.ndarray:
    """The intensity step of a mode: stretch ('norm'), equalisation ('equalize'), none ('squash')."""
    if mode not in MODES:
        raise ValueError(f"unknown preprocessing mode {mode!r}; one of {MODES}")
    return stretch(gray) if mode == "norm" else equalize(gray) if mode == "equalize" else gray


def clean_view(gray: np.ndarray, mode: str = "squash", size: int = INPUT_SIZE) -> np.ndarray:
    """The deterministic query-time view of a mode (MODES): border crop for the cropped modes, then its tone step,
    then the square resize."""
    if mode not in MODES:
        raise ValueError(f"unknown preprocessing mode {mode!r}; one of {MODES}")
    if mode in CROPPED_MODES:
        gray = tone(crop_border(gray), mode)
    return np.asarray(Image.fromarray(gray).resize((size, size), Image.Resampling.BICUBIC))


def to_batch(views: Sequence[np.ndarray]):
    """uint8 square grayscale views -> normalised float tensor (n, 3, side, side), channels_last."""
    import torch

    data = torch.from_numpy(np.stack(views)).float().div_(255.0)  # (n, h, w)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    batch = (data[:, None].expand(-1, 3, -1, -1) - mean) / std
    return batch.contiguous(memory_format=torch.channels_last)
