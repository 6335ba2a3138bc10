"""XRayLite0Embedder: a trained xray-lite0 model folder behind the Embedder interface (images and text queries in
one space, and the heat maps' per-location features). Registered by trained.py."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from . import efficientnet
from .base import Embedder, FeatureMaps, averaged, l2_normalise
from .model_folder import ASSET_MODELS, ModelFolder
from .preprocess import CROPPED_MODES, clean_view, crop_border, to_batch, working_copy
from .weights import MODEL_DIR_ENV
from .xray_network import (TEXT_MODEL, apply_tail, backbones_of, encode_texts, load_network, select_features,
                           tail_tensors)

MODEL_NAME = "xray-lite0"
GRID = 7  # the backbone's last grid for a 224-px view: the heat maps' grid (the stages are pooled onto it)


class XRayLite0Embedder(Embedder):
    """EfficientNet-Lite0 (packaged ImageNet weights; frozen, or with a fine-tuned tail) + a head fitted on
    radiographs, and a MiniLM text head trained against it: image search and text-on-pixels search in one space."""

    name = MODEL_NAME  # what it embeds and indexes is its registry entry's (embedders/trained.py)
    batch_size = 8  # the backbone's fastest batch on this CPU
    # decode_side stays WORK_SIDE: the working copies it was trained on came from there (decoding at 448 px,
    # then reducing to 320, moves 7 % of each image's top-10 neighbours: the border crop and stretch notice)

    def __init__(self, folder: str | Path | ModelFolder | None = None) -> None:
        import torch

        if folder is None:
            folder = ModelFolder.find(MODEL_NAME)
        elif not isinstance(folder, ModelFolder):
            folder = ModelFolder(Path(folder))
        if folder is None:
            raise RuntimeError(f"No {MODEL_NAME} model folder: set ${MODEL_DIR_ENV} to a folder holding "
                               f"{MODEL_NAME}/, or train one into {ASSET_MODELS / MODEL_NAME}/ "
                               f"(retrieval.training.train_model).")
        self.folder = folder.path
        self.config, self._image_head, self._text_head = load_network(folder)
        self._backbones = backbones_of(self.config)
        expected = self.config.get("backbone_sha256s") or {efficientnet.BACKBONE: self.config.get("backbone_sha256")}
        for backbone in self._backbones:
            if expected.get(backbone) and expected[backbone] != efficientnet.backbone_sha256(backbone):
                package = efficientnet.PACKAGES[backbone][0]
                raise RuntimeError(f"The installed {package.split('==')[0]} weights ({efficientnet.backbone_file(backbone)})"
                                   f" differ from the ones {folder.path} was trained on; reinstall {package} or "
                                   f"retrain the model.")
        self.dim = int(self.config["dim"])
        self._features = self.config["features"]
        self._mode = self.config["preprocessing"]
        self._flip = bool(self.config.get("test_time_flip", False))
        self._bf16 = bool(self.config.get("inference_bf16", False)) and efficientnet.bf16_here()
        self._models = {backbone: efficientnet.load_backbone(backbone) for backbone in self._backbones}
        tail = tail_tensors(folder.read_weights())
        if tail:  # the fine-tuned last block and head conv (anchored variant) replace the frozen ones
            apply_tail(self._models[efficientnet.BACKBONE], tail)
        if self._bf16:  # once the weights are final
            for model in self._models.values():
                efficientnet.keep_bf16_weights(model)
        self._backbone = self._models[self._backbones[0]]
        self._torch = torch

    def _head_input(self, grays: Sequence[np.ndarray], mirrored: bool):
        """What the image head reads: each backbone's selected features of the clean view (or its mirror),
        side by side, exactly as training/variants.py builds them."""
        parts = []
        for backbone, model in self._models.items():
            views = [clean_view(gray, self._mode, efficientnet.input_size(backbone)) for gray in grays]
            if mirrored:
                views = [np.ascontiguousarray(view[:, ::-1]) for view in views]
            features = efficientnet.inference_pooled(model, to_batch(views), self._bf16)
            parts.append(select_features(features.float(), self._features, backbone))
        return parts[0] if len(parts) == 1 else self._torch.cat(parts, dim=1) / float(np.sqrt(len(parts)))

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        torch = self._torch
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                grays = [working_copy(image) for image in images[start:start + self.batch_size]]
                vectors = self._image_head(self._head_input(grays, False)).float()
                if self._flip:  # test-time flip: the mean of the image's and its mirror's unit vectors
                    vectors = vectors + self._image_head(self._head_input(grays, True)).float()
                out.append(vectors.numpy())
        if not out:
            return np.zeros((0, self.dim), np.float32)
        return l2_normalise(np.concatenate(out))

    def feature_maps(self, images: Sequence[Image.Image]) -> FeatureMaps:
        """The head applied at each location of the backbone's 7x7 grid, in the embedding space: the slices'
        scales (the pooled norms) are the image's, so the grid's average is, exactly, what the head reads pooled
        (for Lite0 alone; a Lite2 grid is pooled onto 7x7, an approximation, and the test-time flip is left out).
        Boxes: the part of each image left after the border crop of the 'norm' view."""
        torch = self._torch
        from torch.nn.functional import adaptive_avg_pool2d

        maps, boxes = [], []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                grays = [working_copy(image) for image in images[start:start + self.batch_size]]
                parts = []
                for backbone, model in self._models.items():
                    batch = to_batch([clean_view(gray, self._mode, efficientnet.input_size(backbone)) for gray in grays])
                    grids = efficientnet.inference_maps(model, batch, self._bf16)
                    parts.append(adaptive_avg_pool2d(_slices_per_location(grids, self._features), GRID))
                stacked = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1) / float(np.sqrt(len(parts)))
                located = _head_per_location(self._image_head, stacked)
                maps.append(located.numpy())
                boxes += [_kept_box(gray, crop_border(gray) if self._mode in CROPPED_MODES else gray) for gray in grays]
        if not maps:
            return averaged(np.zeros((0, GRID, GRID, self.dim), np.float32))
        return averaged(np.concatenate(maps), np.asarray(boxes, np.float32))

    @property
    def text_input(self) -> str | None:
        """The registry model whose vectors the text head can read: MiniLM, where that entry is the same
        all-MiniLM-L6-v2 (its bf16 vectors move 0.010 of the queries' top-10 rows here, docs/evaluation.md)."""
        from ..errors import UnknownEmbedder
        from .registry import embedder_spec

        if self._text_head is None:
            return None
        try:
            return "minilm" if embedder_spec("minilm").weights == TEXT_MODEL else None
        except UnknownEmbedder:  # no such entry: the head reads the text itself
            return None

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if self._text_head is None:
            return super().embed_texts(texts)
        if not len(texts):
            return np.zeros((0, self.dim), np.float32)
        return self.embed_text_vectors(encode_texts(list(texts)))

    def embed_text_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """The text head over unit MiniLM vectors (n, 384) of the texts."""
        if self._text_head is None:
            return super().embed_text_vectors(vectors)
        with self._torch.inference_mode():
            out = self._text_head(self._torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)))
        return l2_normalise(out.numpy())

    def version(self) -> str:
        return str(self.config["version"])


def _slices_per_location(grids: dict, feature_set: str):
    """What `select_features` builds from the pooled features, at each location: (n, width, 7, 7) whose average
    over the grid is `select_features(pooled_features)` (GeM's share of each location is its x^p share)."""
    import torch
    from torch.nn.functional import adaptive_avg_pool2d

    head = grids["head"]
    stages = [adaptive_avg_pool2d(stage, head.shape[-2:]) for stage in grids["stages"]]  # 28 and 14 px onto 7
    located = {"gap": head, "stages": torch.cat(stages, dim=1)}
    if "gem" in feature_set:
        powered = head.clamp(min=1e-6).pow(efficientnet.GEM_P)
        mean_power = powered.mean(dim=(2, 3), keepdim=True)
        located["gem"] = powered / mean_power * mean_power.pow(1.0 / efficientnet.GEM_P)
    names = feature_set.split("+")
    pooled_norms = [located[name].mean(dim=(2, 3), keepdim=True).norm(dim=1, keepdim=True) for name in names]
    parts = [located[name] / norm.clamp(min=1e-12) for name, norm in zip(names, pooled_norms)]
    return torch.cat(parts, dim=1) / float(np.sqrt(len(names)))


def _head_per_location(head, located):
    """(n, 7, 7, dim): the image head's affine part (centring, nuisance projection, linear map) at each location;
    its final normalisation is left out, so the grid's average, normalised, is the embedding."""
    x = located.permute(0, 2, 3, 1) - head.mean
    if head.nuisance.shape[1]:
        x = x - (x @ head.nuisance) @ head.nuisance.T
    if head.linear is not None:
        x = head.linear(x)
    return x


def _kept_box(gray: np.ndarray, kept: np.ndarray) -> tuple[float, float, float, float]:
    """Where `kept` (a slice of `gray`, as `crop_border` returns it) lies in `gray`, as fractions."""
    height, width = gray.shape
    offset = kept.__array_interface__["data"][0] - gray.__array_interface__["data"][0]
    top, left = divmod(offset, gray.strides[0])
    left //= gray.strides[1]
    return (left / width, top / height, (left + kept.shape[1]) / width, (top + kept.shape[0]) / height)
