"""One registry of named models. Built-ins join it exactly as any new model would: `register(spec)`.

A spec is the whole description of a model before it is loaded, including the identity of its weights
(`model_version`), so deciding whether stored vectors are stale never loads a model. The default models
per modality are defined here and nowhere else.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

from ..errors import EmbedderUnavailable, UnknownEmbedder
from .base import IMAGE, TEXT, Embedder


@dataclass(frozen=True)
class Availability:
    ready: bool
    reason: str  # where the weights come from when ready, why not otherwise


class _ReadOnFirstUse:
    """A spec field given as its value or as a function that returns it: the function runs on the first read and
    its answer is kept. A trained model's width is in its config file, which importing the registry must not read."""

    def __set_name__(self, owner, name: str) -> None:
        self._slot = f"_{name}"

    def __get__(self, spec, owner=None):
        if spec is None:
            raise AttributeError(self._slot)  # no class default: the dataclass keeps the field required
        value = spec.__dict__[self._slot]
        if callable(value):
            value = spec.__dict__[self._slot] = value()
        return value

    def __set__(self, spec, value) -> None:
        spec.__dict__[self._slot] = value


@dataclass(frozen=True)
class EmbedderSpec:
    """What is known about a model before loading it (shown in the Models tab and `retrieval models`)."""

    name: str
    family: str
    modalities: tuple[str, ...]  # ("text",), ("image",) or ("image", "text")
    indexes: str  # what a collection row contributes: "image" or "text"
    # None when fitted on the collection (TF-IDF vocabulary); a function when only the model's files say it
    dim: int | None = _ReadOnFirstUse()  # type: ignore[assignment]
    weights: str  # hub id, package or "fitted on the collection"
    description: str
    factory: Callable[[], Embedder] = field(repr=False, compare=False)
    check: Callable[[], Availability] = field(repr=False, compare=False)
    default_min_score: float = 0.0
    version: str = ""  # identity of the weights; vectors made with another version are re-embedded
    # For weights that live in a folder chosen at run time: a cheap digest of what is there (no load).
    weights_digest: Callable[[], str] | None = field(default=None, repr=False, compare=False)
    # For a model trained on a collection: its training card (data fingerprint, sources, fold figures).
    card: Callable[[], dict | None] | None = field(default=None, repr=False, compare=False)

    def embeds(self, modality: str) -> bool:
        return modality in self.modalities


# The models a build indexes when none are named (those not available here are skipped, with the reason),
# and the order in which a query picks its model when the index has no evaluation to choose by.
BUILD_DEFAULTS = ("tfidf", "tfidf-chars", "minilm", "efficientnet-lite0", "xray-lite0", "biomedclip", "dinov2-small")
QUERY_PREFERENCE = {  # text: a row's own words beat any image-text model while the collection has them
    TEXT: ("minilm", "biomedclip", "xray-lite0", "tfidf", "tfidf-chars"),
    IMAGE: ("xray-lite0", "biomedclip", "dinov2-small", "efficientnet-lite0"),
}


_SPECS: dict[str, EmbedderSpec] = {}
_LOADED: dict[str, Embedder] = {}
_AVAILABILITY: dict[str, Availability] = {}
_VERSIONS: dict[str, str] = {}
_CARDS: dict[str, dict | None] = {}
_LOCK = threading.RLock()


def register(spec: EmbedderSpec) -> EmbedderSpec:
    """Add a model to the registry (a later registration of the same name replaces the earlier one)."""
    with _LOCK:
        _SPECS[spec.name] = spec
        _LOADED.pop(spec.name, None)
        _AVAILABILITY.pop(spec.name, None)
        _VERSIONS.pop(spec.name, None)
        _CARDS.pop(spec.name, None)
    return spec


def unregister(name: str) -> None:
    with _LOCK:
        _SPECS.pop(name, None)
        _LOADED.pop(name, None)
        _AVAILABILITY.pop(name, None)
        _VERSIONS.pop(name, None)


def list_embedders(modality: str | None = None) -> list[str]:
    """Registered model names, in registration order; only those that embed `modality` when given."""
    return [name for name, spec in _SPECS.items() if modality is None or spec.embeds(modality)]


def embedder_spec(name: str) -> EmbedderSpec:
    try:
        return _SPECS[name]
    except KeyError:
        raise UnknownEmbedder(f"Unknown model {name!r}; choose from {sorted(_SPECS)}.") from None


def availability(name: str, refresh: bool = False) -> Availability:
    """Whether the model's weights can be loaded here. Decided once per process (hub probes are slow)."""
    spec = embedder_spec(name)
    with _LOCK:
        if refresh or name not in _AVAILABILITY:
            if name in _LOADED:
                _AVAILABILITY[name] = Availability(True, spec.weights)
            else:
                try:
                    _AVAILABILITY[name] = spec.check()
                except Exception as error:  # a check must never take the app down
                    _AVAILABILITY[name] = Availability(False, f"availability check failed: {error}")
        return _AVAILABILITY[name]


def model_version(name: str) -> str:
    """The identity of the model's weights as they are here, without loading them (cached per process)."""
    spec = embedder_spec(name)
    with _LOCK:
        if name not in _VERSIONS:
            version = spec.version or name
            if spec.weights_digest is not None:
                try:
                    version = f"{version}:{spec.weights_digest()}"
                except Exception as error:  # unreadable weights: a version that matches nothing stored
                    version = f"{version}:unreadable({error.__class__.__name__})"
            _VERSIONS[name] = version
        return _VERSIONS[name]


def get_embedder(name: str) -> Embedder:
    """The loaded model, created once per process and shared (models are read-only at query time)."""
    spec = embedder_spec(name)
    with _LOCK:
        if name in _LOADED:
            return _LOADED[name]
        state = availability(name)
        if not state.ready:
            raise EmbedderUnavailable(f"Model {name!r} is not available here: {state.reason}")
        try:
            embedder = spec.factory()
        except EmbedderUnavailable:
            raise
        except Exception as error:
            _AVAILABILITY[name] = Availability(False, f"loading failed: {error}")
            raise EmbedderUnavailable(f"Model {name!r} could not be loaded: {error}") from error
        embedder.name = name
        _LOADED[name] = embedder
        _AVAILABILITY[name] = Availability(True, spec.weights)
        return embedder


def training_card(name: str) -> dict | None:
    """The training card of a model trained on a collection (None for pretrained or fitted-at-build models).
    Read once per process, like the model it describes."""
    try:
        spec = embedder_spec(name)
    except UnknownEmbedder:
        return None
    with _LOCK:
        if name not in _CARDS:
            try:
                _CARDS[name] = spec.card() if spec.card is not None else None
            except Exception:  # an unreadable card is no card
                _CARDS[name] = None
        return _CARDS[name]


def list_models(modality: str | None = None) -> list[dict]:
    """Every registered model as a record: name, family, embeds, dim, weights, status ("ready" or
    "unavailable"), detail (where the weights come from, or why not) and description."""
    rows = []
    for name in list_embedders(modality):
        spec, state = embedder_spec(name), availability(name)
        rows.append({"name": name, "family": spec.family, "embeds": " + ".join(spec.modalities),
                     "dim": spec.dim if spec.dim else "vocabulary", "weights": spec.weights,
                     "status": "ready" if state.ready else "unavailable", "detail": state.reason,
                     "description": spec.description})
    return rows


def forget_loaded() -> None:
    """Drop loaded models and cached availability (tests re-point model folders)."""
    with _LOCK:
        _LOADED.clear()
        _AVAILABILITY.clear()
        _VERSIONS.clear()
        _CARDS.clear()


__all__ = [
    "Availability", "EmbedderSpec", "register", "unregister", "list_embedders", "embedder_spec",
    "availability", "get_embedder", "model_version", "list_models", "training_card", "forget_loaded", "TEXT", "IMAGE", "BUILD_DEFAULTS",
    "QUERY_PREFERENCE",
]
