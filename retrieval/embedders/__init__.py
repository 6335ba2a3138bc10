"""Model registry: `list_embedders()`, `get_embedder(name)`; families register themselves on import."""

from .base import IMAGE, TEXT, Embedder, l2_normalise
from .registry import (
    Availability, EmbedderSpec, availability, embedder_spec, forget_loaded, get_embedder,
    list_embedders, register, unregister,
)
from . import builtin  # noqa: F401  (registers tfidf, minilm, efficientnet-lite0)

try:  # the hub model zoo (CLIP, BiomedCLIP, ResNet, DenseNet, ViT, DINOv2)
    from . import zoo  # noqa: F401
except ImportError:  # pragma: no cover - zoo module not present yet
    pass

__all__ = [
    "Embedder", "EmbedderSpec", "Availability", "TEXT", "IMAGE", "l2_normalise", "register", "unregister",
    "list_embedders", "embedder_spec", "availability", "get_embedder", "forget_loaded",
]
