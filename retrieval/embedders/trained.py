"""Models trained by this project (`python -m retrieval train`), registered exactly as any other model.

`xray-lite0` loads from `$XRAY_MODEL_DIR/xray-lite0/`, else from `assets/models/xray-lite0/` in the repository
(embedders/model_folder.py knows that layout). Its version is the sha256 of its weights (written in its
config.json), so a retrained model re-embeds the index without anything being loaded to find out; its training
card says what it was trained on and how it did on sources it never saw. Importing this module reads no file:
the folder is looked at on first need.
"""

from __future__ import annotations

import importlib.util

from . import efficientnet
from .base import IMAGE, TEXT
from .model_folder import ASSET_MODELS, ModelFolder
from .registry import Availability, EmbedderSpec, register
from .xray_lite0 import MODEL_NAME as NAME, backbones_of


def _config() -> dict:
    folder = ModelFolder.find(NAME)
    return folder.read_config() if folder is not None else {}


def _check() -> Availability:
    folder = ModelFolder.find(NAME)
    backbones = [efficientnet.BACKBONE] if folder is None else backbones_of(folder.read_config())
    for backbone in backbones:
        package, module, _, _ = efficientnet.PACKAGES[backbone]
        if importlib.util.find_spec(module) is None:
            return Availability(False, f"package {package} is not installed (its backbone)")
    if folder is None:
        return Availability(False, f"no trained model: run `python -m retrieval train --collection PATH` or put "
                                   f"one in $XRAY_MODEL_DIR/{NAME}/")
    return Availability(True, f"trained model in {folder.path}")


def _card() -> dict | None:
    """The training card (JSON) with its Markdown text, or None when there is no trained model here."""
    folder = ModelFolder.find(NAME)
    card = folder.read_card() if folder is not None else None
    if card is None:
        return None
    held_out = card.get("evaluation", {}).get("cross_source", {})
    decision = card.get("default_image_model") or {}
    return {**card, "markdown": folder.read_card_text(),
            "data_fingerprint": card.get("data", {}).get("fingerprint"),
            "cross_source": held_out.get("trained"),  # figures of fold models that never saw the held-out rows
            # the default rule (training/selection.py): only an outer gain whose interval is above zero earns
            # the default; a card without a nested decision has not earned it
            "default_image_model": bool(decision.get("default", False)),
            "default_reason": decision.get("reason", "its training card holds no nested cross-source decision")}


def _version() -> str:
    """The weights' sha256 and the backbone's precision here: a change of either re-embeds."""
    config = _config()
    if "version" not in config:
        return "none"
    return f"{config['version']}:{efficientnet.precision() if config.get('inference_bf16') else 'fp32'}"


def _factory():
    from .xray_lite0 import XRayLite0Embedder

    return XRayLite0Embedder()


register(EmbedderSpec(
    name=NAME, family="X-Ray (trained here)", modalities=(IMAGE, TEXT), indexes=IMAGE,
    dim=lambda: _config().get("dim"), weights=f"{ASSET_MODELS.as_posix()}/{NAME} (trained on the collection; see "
                                              f"its training card)",
    description="Image search and text-on-pixels search with an EfficientNet-Lite0 adapted to radiographs across "
                "sources (python -m retrieval train).",
    factory=_factory, check=_check, version=NAME, weights_digest=_version,
    card=_card, default_min_score=0.0,
))
