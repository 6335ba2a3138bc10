"""Training and cross-source evaluation of the `xray-lite0` retrieval model (image tower + text head).

What the trained model needs at query time (backbone, preprocessing, network, embedder, model folder) lives in
retrieval/embedders/; this package imports it, never the reverse. Heavy imports (torch, sentence-transformers)
happen inside the functions, so importing this package is cheap.
"""

from __future__ import annotations

__all__ = ["train_model"]


def __getattr__(name: str):  # lazy: `from retrieval.training import train_model` without importing torch early
    if name == "train_model":
        from .train import train_model

        return train_model
    raise AttributeError(name)
