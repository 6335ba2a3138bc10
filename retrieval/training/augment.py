"""Acquisition-style augmentation: a radiograph as ANOTHER hospital's scanner and PACS would hand it over.

Why: what separates sources is mostly not anatomy but acquisition (resolution and resampling, sharpness, noise,
JPEG, windowing and gamma, inverted polarity, borders and collimation, burned-in letters such as the laterality
"L"/"R"); a head fitted on views that vary these learns to ignore them. Used for the cached training views only
(training/features.py); the query-time view is never augmented.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ..embedders.preprocess import INPUT_SIZE, tone
from .data import random_geometry

MARKERS = ("L", "R", "LT", "RT", "AP", "PA", "PORTABLE", "SUPINE", "ERECT")
_RESAMPLERS = (Image.Resampling.NEAREST, Image.Resampling.BILINEAR, Image.Resampling.BICUBIC,
               Image.Resampling.LANCZOS, Image.Resampling.BOX)


def acquisition_view(gray: np.ndarray, rng: np.random.Generator, mode: str = "norm",
                     size: int = INPUT_SIZE) -> np.ndarray:
    """A random 'other scanner and PACS' view of a grayscale working copy: uint8 (size, size)."""
    image = random_geometry(gray, rng, mode)
    if rng.random() < 0.5:  # resolution loss with a random resampler (224-px copies, thumbnails, PACS exports)
        side = int(rng.integers(56, 200))
        image = image.resize((side, side), _RESAMPLERS[int(rng.integers(len(_RESAMPLERS)))])
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.4, 1.6))))
    image = image.resize((size, size), _RESAMPLERS[int(rng.integers(1, 4))])
    data = np.asarray(image, dtype=np.float32) / 255.0
    if rng.random() < 0.3:
        data = _collimate(data, rng)
    if rng.random() < 0.25:
        data = _frame(data, rng)
    data = np.clip(data, 0, 1) ** float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))  # gamma / windowing
    contrast, brightness = float(rng.uniform(0.65, 1.35)), float(rng.uniform(-0.15, 0.15))
    data = (data - data.mean()) * contrast + data.mean() + brightness
    if rng.random() < 0.1:  # inverted polarity (some PACS exports, MONOCHROME1 read as 2)
        data = 1.0 - data
    if rng.random() < 0.4:  # quantum noise (signal-dependent) plus electronic noise
        sigma = float(rng.uniform(0.005, 0.04))
        data = data + rng.normal(0, 1, data.shape) * sigma * np.sqrt(np.clip(data, 0.02, 1))
    out = np.clip(data * 255.0, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        out = _burn_in(out, rng)
    if rng.random() < 0.4:
        out = _jpeg(out, int(rng.integers(15, 90)))
    return tone(out, mode)


def _collimate(data: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Collimator shutters: the film outside a random rectangle is nearly blank (bright or dark)."""
    h, w = data.shape
    top, left = int(rng.uniform(0, 0.15) * h), int(rng.uniform(0, 0.15) * w)
    bottom, right = h - int(rng.uniform(0, 0.15) * h), w - int(rng.uniform(0, 0.15) * w)
    outside = np.ones_like(data, dtype=bool)
    outside[top:bottom, left:right] = False
    level = float(rng.uniform(0.75, 0.95)) if rng.random() < 0.6 else float(rng.uniform(0.0, 0.1))
    out = data.copy()
    out[outside] = level + 0.05 * (data[outside] - data[outside].mean())  # a faint trace of the anatomy
    return out


def _frame(data: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uniform frame (letterbox bars or a scanned film's border) of random width and level."""
    h, w = data.shape
    out = data.copy()
    level = float(rng.choice([0.0, 1.0, rng.uniform(0, 1)]))
    for axis in range(2):
        n = int(rng.uniform(0.02, 0.12) * (h if axis == 0 else w))
        if axis == 0:
            out[:n], out[h - n:] = level, level
        else:
            out[:, :n], out[:, w - n:] = level, level
    return out


def _burn_in(out: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A burned-in laterality marker or annotation ("L", "R", "PORTABLE", ...) in a random corner."""
    image = Image.fromarray(out)
    draw = ImageDraw.Draw(image)
    text = MARKERS[int(rng.integers(len(MARKERS)))]
    side = out.shape[0]
    try:
        font = ImageFont.load_default(size=int(rng.integers(side // 16, side // 6)))
    except TypeError:  # Pillow without sized default fonts
        font = ImageFont.load_default()
    box = draw.textbbox((0, 0), text, font=font)
    tw, th = box[2] - box[0], box[3] - box[1]
    x = int(rng.uniform(0.02, 0.1) * side) if rng.random() < 0.5 else side - tw - int(rng.uniform(0.02, 0.1) * side)
    y = int(rng.uniform(0.02, 0.1) * side) if rng.random() < 0.5 else side - th - int(rng.uniform(0.02, 0.1) * side)
    draw.text((x - box[0], y - box[1]), text, fill=int(rng.integers(200, 256)) if rng.random() < 0.85 else 0,
              font=font)
    return np.asarray(image, dtype=np.uint8)


def _jpeg(out: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(out).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("L"), dtype=np.uint8)
