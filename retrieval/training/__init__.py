"""Training and cross-source evaluation of the `xray-lite0` retrieval model (image tower + text head).

Heavy imports (torch, sentence-transformers) happen inside the functions, so importing this package is cheap.
"""

from __future__ import annotations

__all__ = ["train_model", "XRayLite0Embedder", "model_folder"]


def __getattr__(name: str):  # lazy: `from retrieval.training import train_model` without importing torch early
    if name == "train_model":
        from .train import train_model

        return train_model
    if name in ("XRayLite0Embedder", "model_folder"):
        from . import embedder

        return getattr(embedder, name)
    raise AttributeError(name)
