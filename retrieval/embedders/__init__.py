"""Model registry: `list_embedders()`, `get_embedder(name)`; families register themselves on import."""

from .base import IMAGE, TEXT, Embedder, l2_normalise
from .registry import (
    BUILD_DEFAULTS, QUERY_PREFERENCE, Availability, EmbedderSpec, availability, embedder_spec, forget_loaded,
    get_embedder, list_embedders, list_models, model_version, register, unregister,
)
from . import builtin  # noqa: F401  (registers tfidf, minilm, efficientnet-lite0)
from . import zoo  # noqa: F401  (registers the hub models: CLIP, BiomedCLIP, ResNet, DenseNet, ViT, DINOv2)

__all__ = [
    "Embedder", "EmbedderSpec", "Availability", "TEXT", "IMAGE", "l2_normalise", "register", "unregister",
    "list_embedders", "embedder_spec", "availability", "get_embedder", "model_version", "list_models", "forget_loaded",
    "BUILD_DEFAULTS", "QUERY_PREFERENCE",
]
