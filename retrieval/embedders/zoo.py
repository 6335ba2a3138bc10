"""The hub model zoo: CLIP, BiomedCLIP, ResNet-50, DenseNet-121, ViT-B/16 and DINOv2-small, each loaded on first use.

Weights come from `weights.resolve(name, hub_id)`: the folder `$XRAY_MODEL_DIR/<name>/` when present (a copy of
the hub repo), else the Hugging Face cache or hub. Four code paths serve six models: one for transformers vision
backbones (a model class plus a pooling), one for transformers CLIP, one for open_clip and one for timm.
torch, transformers, open_clip and timm are imported inside the loaders, so importing the zoo costs nothing.
Each model also gives its spatial features (`feature_maps`, for "why similar" heat maps): a CNN's last activation
map, a ViT's patch tokens (taken into the joint space by CLIP's projection), from the same preprocessing.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from ..errors import EmbedderUnavailable, NoSpatialFeatures
from ..images import to_rgb
from . import weights
from .base import IMAGE, TEXT, Embedder, FeatureMaps, l2_normalise
from .registry import Availability, EmbedderSpec, register

CLIP_HUB_ID = "openai/clip-vit-base-patch32"
BIOMEDCLIP_HUB_ID = "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
RESNET50_HUB_ID = "microsoft/resnet-50"
DENSENET121_HUB_ID = "timm/densenet121.tv_in1k"
VIT_B16_HUB_ID = "google/vit-base-patch16-224-in21k"
DINOV2_SMALL_HUB_ID = "facebook/dinov2-small"

# Text->image cosines of CLIP-like models sit in a narrow band: the two towers fill different cones of the joint
# space, so even a well-matched caption scores only ~0.25-0.35 and an unrelated one ~0.05-0.15. 0.15 drops
# the clear mismatches without hiding weak matches (image->image cosines are far higher and never near it).
CLIP_MIN_SCORE = 0.15

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json")


class ZooEmbedder(Embedder):
    """Plumbing shared by the hub models: where the weights are, the device, batching and the version string.

    `dim` is read from the loaded model, so a smaller checkpoint of the same architecture reports its own width;
    the registry's `spec.dim` documents the real model's.
    """

    def __init__(self, name: str, hub_id: str, batch_size: int) -> None:
        location, state = weights.resolve(name, hub_id)
        if location is None:
            raise EmbedderUnavailable(f"Model {name!r} is not available here: {state.reason}")
        self.name, self.hub_id, self.batch_size = name, hub_id, batch_size  # name: errors raised while loading
        self.location = location
        self.folder = Path(location) if location != hub_id else None  # None: by hub id (cache or hub)
        # Never let a cached hub model probe an unreachable hub first (each from_pretrained would stall).
        self.local_files_only = self.folder is not None or weights.hub_offline_reason() is not None
        self._device = weights.device()

    def _embed(self, items: Sequence, encode: Callable[[list], Any]) -> np.ndarray:
        """Run `encode` (a batch of items -> (n, d) tensor) over `items` in `batch_size` chunks."""
        import torch

        items = list(items)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(items), self.batch_size):
                chunks.append(encode(items[start:start + self.batch_size]).float().cpu().numpy())
        return l2_normalise(np.concatenate(chunks))

    def _pixels(self, batch: list):
        """The model's own preprocessing: PIL images -> (n, 3, H, W) tensor."""
        raise NotImplementedError

    def _spatial(self, pixels):
        """(maps (n, h, w, dim), embeddings (n, dim)) of one forward pass over preprocessed `pixels`."""
        raise NoSpatialFeatures(f"Model {self.name!r} has no spatial features wired in, so it cannot show the "
                                f"regions that drive a similarity.")

    def feature_maps(self, images: Sequence[Image.Image]) -> FeatureMaps:
        import torch

        images = list(images)
        if not images:
            return FeatureMaps(np.zeros((0, 1, 1, self.dim), np.float32), np.zeros((0, self.dim), np.float32),
                               np.zeros((0, 4), np.float32))
        maps, vectors = [], []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                grid, pooled = self._spatial(self._pixels(images[start:start + self.batch_size]).to(self._device))
                maps.append(grid.float().cpu().numpy())
                vectors.append(pooled.float().cpu().numpy())
        boxes = np.asarray([self._kept_box(image.size) for image in images], np.float32).reshape(-1, 4)
        return FeatureMaps(np.concatenate(maps), l2_normalise(np.concatenate(vectors)), boxes)

    def _kept_box(self, size: tuple[int, int]) -> tuple[float, float, float, float]:
        """The part of an image of `size` that the preprocessing keeps (a centre crop, often), as fractions:
        a horizontal and a vertical ramp go through it, and a black and a white image give its intensity scale."""
        import torch

        width, height = size
        ramps = [np.tile(np.linspace(0, 255, width), (height, 1)),
                 np.tile(np.linspace(0, 255, height)[:, None], (1, width))]
        probes = [*ramps, np.zeros((height, width)), np.full((height, width), 255.0)]
        with torch.inference_mode():
            pixels = self._pixels([Image.fromarray(np.rint(p).astype(np.uint8)) for p in probes])[:, 0].float()
        black, white = pixels[2], pixels[3]
        across, down = ((pixels[:2] - black) / (white - black)).clamp(0, 1)
        (left, right), (top, bottom) = _span(across, width, pixels.shape[-1]), _span(down, height, pixels.shape[-2])
        return left, top, right, bottom


def _span(ramp, size: int, out: int) -> tuple[float, float]:
    """The kept span of one axis, as fractions of it, from the ramp values (0..1 over the `size` input pixel
    centres) that reached the `out` output pixels: the first and last output centres, widened by half a pixel."""
    first, last = ((float(value) * (size - 1) + 0.5) / size for value in (ramp.min(), ramp.max()))
    half = (last - first) / (2 * max(out - 1, 1))
    return max(first - half, 0.0), min(last + half, 1.0)


def _require_all_weights(name: str, location: str, info: dict) -> None:
    """Refuse a transformers model whose checkpoint left parameters at their random initialisation."""
    problems = sorted(info.get("missing_keys") or [])
    problems += sorted(f"{key[0]} (shape)" if isinstance(key, tuple) else str(key)
                       for key in info.get("mismatched_keys") or [])
    if problems:
        shown = ", ".join(problems[:5]) + (", ..." if len(problems) > 5 else "")
        raise RuntimeError(
            f"the weights in {location} do not cover {len(problems)} parameter(s) of {name} ({shown}); "
            f"refusing to run with random weights. Download the complete model again."
        )


@dataclass(frozen=True)
class Pooling:
    """How a transformers vision backbone's output becomes one vector per image, how long it is, and the map of
    features it came from."""

    describe: str
    features: Callable[[Any], Any]  # model output -> (n, dim) tensor
    width: Callable[[Any], int]  # model config -> dim
    maps: Callable[[Any], Any]  # model output -> (n, h, w, dim) tensor in the same space


def _square_grid(tokens):
    """(n, h*w, dim) patch tokens -> (n, h, w, dim); the processors here all give square inputs."""
    side = int(round(tokens.shape[1] ** 0.5))
    return tokens.reshape(tokens.shape[0], side, side, tokens.shape[2])


def _cls_and_mean_patch(output):
    import torch

    tokens = output.last_hidden_state  # already through the final layer norm
    return torch.cat([tokens[:, 0], tokens[:, 1:].mean(dim=1)], dim=1)


def _cls_and_each_patch(output):
    """At each patch: the CLS token next to the patch token, so the grid's average is DINOv2's feature."""
    import torch

    tokens = output.last_hidden_state
    patches = _square_grid(tokens[:, 1:])
    return torch.cat([tokens[:, 0, None, None].expand(-1, *patches.shape[1:3], -1), patches], dim=3)


POOLER_OUTPUT = Pooling("global-average-pooled last stage (pooler_output, flattened)",
                        lambda output: output.pooler_output.flatten(1), lambda config: config.hidden_sizes[-1],
                        lambda output: output.last_hidden_state.permute(0, 2, 3, 1))
CLS_TOKEN = Pooling("CLS token of the last hidden state",
                    lambda output: output.last_hidden_state[:, 0], lambda config: config.hidden_size,
                    lambda output: _square_grid(output.last_hidden_state[:, 1:]))  # patch tokens, same layer norm
# DINOv2's own linear-probe feature: the class token next to the average of the patch tokens.
CLS_AND_MEAN_PATCH = Pooling("CLS token concatenated with the mean patch token",
                             _cls_and_mean_patch, lambda config: 2 * config.hidden_size, _cls_and_each_patch)


class HFVisionEmbedder(ZooEmbedder):
    """A transformers vision backbone (ResNet, ViT, DINOv2) with its own image processor and a pooling."""

    def __init__(self, name: str, hub_id: str, model_class: str, pooling: Pooling, batch_size: int = 32,
                 **model_kwargs) -> None:
        super().__init__(name, hub_id, batch_size)
        import transformers

        cls = getattr(transformers, model_class)
        model, info = cls.from_pretrained(self.location, output_loading_info=True,
                                          local_files_only=self.local_files_only, **model_kwargs)
        _require_all_weights(name, self.location, info)
        self._processor = transformers.AutoImageProcessor.from_pretrained(
            self.location, local_files_only=self.local_files_only)
        self._model = model.eval().to(self._device)
        self._pooling = pooling
        self.dim = pooling.width(model.config)

    def _pixels(self, batch: list):
        return self._processor(images=[to_rgb(image) for image in batch], return_tensors="pt")["pixel_values"]

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self._embed(images, lambda batch: self._pooling.features(
            self._model(pixel_values=self._pixels(batch).to(self._device))))

    def _spatial(self, pixels):
        output = self._model(pixel_values=pixels)
        return self._pooling.maps(output), self._pooling.features(output)


def _projected(output):
    """transformers 5 returns a model output from get_*_features (projection in pooler_output); 4.x a tensor."""
    import torch

    return output if isinstance(output, torch.Tensor) else output.pooler_output


class CLIPEmbedder(ZooEmbedder):
    """transformers CLIPModel: images and texts in one space (true text-to-image search)."""

    def __init__(self, name: str, hub_id: str, batch_size: int = 16) -> None:
        super().__init__(name, hub_id, batch_size)
        from transformers import CLIPModel, CLIPProcessor

        model, info = CLIPModel.from_pretrained(self.location, output_loading_info=True,
                                                local_files_only=self.local_files_only)
        _require_all_weights(name, self.location, info)
        processor = CLIPProcessor.from_pretrained(self.location, local_files_only=self.local_files_only)
        self._image_processor, self._tokenizer = processor.image_processor, processor.tokenizer
        self._model = model.eval().to(self._device)
        self._max_tokens = model.config.text_config.max_position_embeddings  # 77 for OpenAI CLIP
        self.dim = model.config.projection_dim

    def _pixels(self, batch: list):
        return self._image_processor(images=[to_rgb(image) for image in batch], return_tensors="pt")["pixel_values"]

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self._embed(images, lambda batch: _projected(
            self._model.get_image_features(pixel_values=self._pixels(batch).to(self._device))))

    def _spatial(self, pixels):
        """Patch tokens through the same final layer norm and projection as the CLS token: the joint space."""
        vision = self._model.vision_model
        output = vision(pixel_values=pixels)
        patches = self._model.visual_projection(vision.post_layernorm(output.last_hidden_state[:, 1:]))
        return _square_grid(patches), self._model.visual_projection(output.pooler_output)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        def encode(batch):
            tokens = self._tokenizer(batch, padding=True, truncation=True, max_length=self._max_tokens,
                                     return_tensors="pt").to(self._device)
            return _projected(self._model.get_text_features(input_ids=tokens["input_ids"],
                                                            attention_mask=tokens["attention_mask"]))

        return self._embed(texts, encode)


def _open_clip_config(embedder: ZooEmbedder) -> dict:
    if embedder.folder is not None:
        return json.loads((embedder.folder / "open_clip_config.json").read_text())
    from huggingface_hub import hf_hub_download

    path = hf_hub_download(embedder.hub_id, "open_clip_config.json", local_files_only=embedder.local_files_only)
    return json.loads(Path(path).read_text())


class OpenCLIPEmbedder(ZooEmbedder):
    """An open_clip model (BiomedCLIP): its own preprocessing, tokenizer and two towers in one space.

    A local folder holds the hub repo (open_clip_config.json + open_clip_pytorch_model.bin or .safetensors).
    Its text tower is named by another hub id (BiomedCLIP: microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract);
    when that model's config.json and tokenizer files sit in the same folder they are used, so nothing is fetched.
    """

    def __init__(self, name: str, hub_id: str, batch_size: int = 16) -> None:
        super().__init__(name, hub_id, batch_size)
        import open_clip

        config = _open_clip_config(self)
        text_cfg = config["model_cfg"].get("text_cfg", {})
        source = f"local-dir:{self.folder}" if self.folder is not None else f"hf-hub:{hub_id}"
        overrides, external_text = {}, None
        if text_cfg.get("hf_model_name"):
            if self.folder is not None and (self.folder / "config.json").is_file():
                # Build the text tower from the local config; the full checkpoint then fills its weights.
                overrides["text_cfg"] = {**text_cfg, "hf_model_name": str(self.folder), "hf_model_pretrained": False}
            else:
                external_text = text_cfg["hf_model_name"]
        try:
            # create_model_from_pretrained loads the full checkpoint strictly and raises when none is found.
            model, preprocess = open_clip.create_model_from_pretrained(source, device=self._device, **overrides)
            self._tokenizer = self._load_tokenizer(open_clip, source, text_cfg)
        except OSError as error:  # what transformers raises for a config or tokenizer it cannot find
            if external_text is None or self.folder is None:
                raise
            raise RuntimeError(
                f"{error}. The text tower is described by {external_text!r}: put its config.json and tokenizer "
                f"files (vocab.txt, tokenizer_config.json) into {self.folder}."
            ) from error
        self._model, self._preprocess = model.eval(), preprocess
        self.dim = int(config["model_cfg"]["embed_dim"])

    def _load_tokenizer(self, open_clip, source: str, text_cfg: dict):
        folder_has_tokenizer = self.folder is not None and any(
            (self.folder / file).is_file() for file in TOKENIZER_FILES)
        if self.folder is not None and text_cfg.get("hf_tokenizer_name") and not folder_has_tokenizer:
            from open_clip.tokenizer import HFTokenizer  # the tokenizer's own repo, from the HF cache

            return HFTokenizer(text_cfg["hf_tokenizer_name"], context_length=text_cfg.get("context_length"),
                               **(text_cfg.get("tokenizer_kwargs") or {}))
        return open_clip.get_tokenizer(source)

    def _pixels(self, batch: list):
        import torch

        return torch.stack([self._preprocess(to_rgb(image)) for image in batch])

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self._embed(images, lambda batch: self._model.encode_image(self._pixels(batch).to(self._device)))

    def _spatial(self, pixels):
        """A timm image tower (BiomedCLIP's ViT): its patch tokens through the tower's projection head."""
        visual = self._model.visual
        if not hasattr(visual, "trunk"):  # open_clip's own towers are not wired in (none is registered)
            return super()._spatial(pixels)
        grid, pooled = _timm_spatial(visual.trunk, pixels)
        return visual.head(grid), visual.head(pooled)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts, lambda batch: self._model.encode_text(self._tokenizer(batch).to(self._device)))


class TimmEmbedder(ZooEmbedder):
    """A timm backbone (DenseNet-121): classifier removed, timm's pooled features and its own eval transform.

    A local folder holds the hub repo as timm writes it: config.json (architecture + pretrained_cfg) and
    model.safetensors or pytorch_model.bin, loaded with timm's `local-dir:` source.
    """

    def __init__(self, name: str, hub_id: str, batch_size: int = 32) -> None:
        super().__init__(name, hub_id, batch_size)
        import timm
        from timm.data import create_transform, resolve_data_config

        source = f"local-dir:{self.folder}" if self.folder is not None else f"hf-hub:{hub_id}"
        # Created with its classifier so timm loads the checkpoint strictly (a num_classes=0 model makes timm
        # drop the head and load non-strictly); the head is removed afterwards.
        model = timm.create_model(source, pretrained=True)
        model.reset_classifier(0)
        data_config = resolve_data_config({}, model=model)
        self._transform = create_transform(**data_config, is_training=False)
        self._model = model.eval().to(self._device)
        self.dim = int(model.num_features)

    def _pixels(self, batch: list):
        import torch

        return torch.stack([self._transform(to_rgb(image)) for image in batch])

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self._embed(images, lambda batch: self._model(self._pixels(batch).to(self._device)))

    def _spatial(self, pixels):
        return _timm_spatial(self._model, pixels)


def _timm_spatial(model, pixels):
    """A timm model without classifier, in one pass: its map (a CNN's (n, c, h, w) activations, whose average is
    the pooled feature; or a ViT's patch tokens) and its pooled features."""
    features = model.forward_features(pixels)
    pooled = model.forward_head(features)  # classifier removed: timm's own pooling only
    if features.ndim == 4:
        return features.permute(0, 2, 3, 1), pooled
    return _square_grid(features[:, model.num_prefix_tokens:]), pooled


def _check(name: str, hub_id: str, module: str, package: str,
           required_files: tuple[str, ...] = ()) -> Callable[[], Availability]:
    """Cheap availability: the library imports and the weights resolve (no model is loaded)."""

    def check() -> Availability:
        if importlib.util.find_spec(module) is None:
            return Availability(False, f"package {package} is not installed (pip install {package})")
        location, state = weights.resolve(name, hub_id)
        folder = weights.local_folder(name)
        if location is not None and folder is not None:
            missing = [file for file in required_files if not (folder / file).is_file()]
            if missing:
                return Availability(False, f"{folder} has no {', '.join(missing)}; copy the whole {hub_id} repo there")
        return state

    return check


def _register(name: str, family: str, hub_id: str, modalities: tuple[str, ...], dim: int, description: str,
              loader, *loader_args, module: str = "transformers", package: str = "transformers",
              required_files: tuple[str, ...] = (), min_score: float = 0.0, **loader_kwargs) -> None:
    """One zoo entry: the version names the hub repo, and the weights found here are digested cheaply."""
    register(EmbedderSpec(
        name=name, family=family, modalities=modalities, indexes=IMAGE, dim=dim, weights=hub_id,
        description=description, default_min_score=min_score, version=f"{name}:{hub_id}",
        weights_digest=partial(weights.digest, name, hub_id),
        factory=partial(loader, name, hub_id, *loader_args, **loader_kwargs),
        check=_check(name, hub_id, module, package, required_files),
    ))


_register("clip-vit-b32", "CLIP", CLIP_HUB_ID, (IMAGE, TEXT), 512,
          "Text-to-image and image-to-image search in OpenAI CLIP ViT-B/32's joint space (general photos).",
          CLIPEmbedder, min_score=CLIP_MIN_SCORE)
_register("biomedclip", "BiomedCLIP", BIOMEDCLIP_HUB_ID, (IMAGE, TEXT), 512,
          "Text-to-image and image-to-image search with BiomedCLIP (PubMed figures, PubMedBERT text tower).",
          OpenCLIPEmbedder, module="open_clip", package="open-clip-torch",
          required_files=("open_clip_config.json",), min_score=CLIP_MIN_SCORE)
_register("resnet50", "ResNet", RESNET50_HUB_ID, (IMAGE,), 2048,
          "Image-to-image search with ImageNet ResNet-50 pooled features (classifier dropped).",
          HFVisionEmbedder, "ResNetModel", POOLER_OUTPUT, 32)
_register("densenet121", "DenseNet", DENSENET121_HUB_ID, (IMAGE,), 1024,
          "Image-to-image search with ImageNet DenseNet-121 pooled features (timm, the CheXNet backbone).",
          TimmEmbedder, 32, module="timm", package="timm")
_register("vit-b16", "ViT", VIT_B16_HUB_ID, (IMAGE,), 768,
          "Image-to-image search with the CLS token of ImageNet-21k ViT-B/16.",
          HFVisionEmbedder, "ViTModel", CLS_TOKEN, 16, add_pooling_layer=False)
_register("dinov2-small", "DINOv2", DINOV2_SMALL_HUB_ID, (IMAGE,), 768,
          "Image-to-image search with self-supervised DINOv2 ViT-S/14 (CLS + mean patch token).",
          HFVisionEmbedder, "Dinov2Model", CLS_AND_MEAN_PATCH, 32)
