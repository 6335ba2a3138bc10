"""Model registry: `list_embedders()`, `get_embedder(name)`; families register themselves on import."""

from .base import IMAGE, TEXT, Embedder, l2_normalise
from .registry import (
    BUILD_DEFAULTS, QUERY_PREFERENCE, Availability, EmbedderSpec, availability, embedder_spec, forget_loaded,
    get_embedder, list_embedders, list_models, model_version, register, training_card, unregister,
)
from . import builtin  # noqa: F401  (registers tfidf, minilm, efficientnet-lite0)
from . import zoo  # noqa: F401  (registers the hub models: CLIP, BiomedCLIP, ResNet, DenseNet, ViT, DINOv2)
from . import trained  # noqa: F401  (registers xray-lite0, trained by `python -m retrieval train`)

__all__ = [
    "Embedder", "EmbedderSpec", "Availability", "TEXT", "IMAGE", "l2_normalise", "register", "unregister",
    "list_embedders", "embedder_spec", "availability", "get_embedder", "model_version", "list_models", "training_card", "forget_loaded",
    "BUILD_DEFAULTS", "QUERY_PREFERENCE",
]
