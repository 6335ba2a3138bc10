"""Which images and which trained models a licence policy lets a published Space or dataset carry.

Licence strings are read as sources write them ("CC-BY-4.0", "CC BY-NC-SA 4.0", "research only", "unknown", "");
the most restrictive reading wins. A trained model is a derivative of its training images, so its card decides.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .errors import RetrievalError

OPEN, NONCOMMERCIAL, UNKNOWN = "open", "noncommercial", "unknown"
POLICIES: dict[str, frozenset[str]] = {
    "open": frozenset({OPEN}),
    "noncommercial": frozenset({OPEN, NONCOMMERCIAL}),
    "all": frozenset({OPEN, NONCOMMERCIAL, UNKNOWN}),
}
POLICY_MEANING = {
    "open": "CC0, public domain, CC-BY and CC-BY-SA (any version), MIT/Apache/BSD-style licences",
    "noncommercial": "the open licences plus CC-BY-NC(-SA/-ND) and research-only or non-commercial terms",
    "all": "every image, including those whose licence is unknown or unstated (check each source's terms "
           "before publishing)",
}
_NONCOMMERCIAL = re.compile(r"(^|[^a-z])(nc|non-?commercial|research|academic|education(al)?)([^a-z]|$)")
_NO_DERIVATIVES = re.compile(r"(^|[^a-z])nd([^a-z]|$)")
_OPEN = re.compile(r"(^|[^a-z])(cc0|cc-zero|public-?domain|pddl|cc-by(-sa)?|creative-commons-attribution"
                   r"(-share-?alike)?|mit|apache|bsd|isc|unlicense|odc-by|odbl|cdla-permissive)([^a-z]|$)")
_UNKNOWN_WORDS = re.compile(r"^(|unknown|none|n/?a|other|unspecified|not-stated|proprietary|custom)$")


def licence_class(licence: str | None) -> str:
    """"open", "noncommercial" or "unknown" for a licence as a source states it ("CC-BY-4.0",
    "CC BY-NC-SA 4.0", "Apache-2.0", "research only", "unknown", "" ...). The most restrictive reading wins:
    any non-commercial or research-only term makes it non-commercial; no-derivatives without NC, and anything
    not recognised, is unknown."""
    text = re.sub(r"[\s_]+", "-", str(licence or "").strip().lower())
    text = text.replace("ccby", "cc-by")
    if _UNKNOWN_WORDS.match(text):
        return UNKNOWN
    if _NONCOMMERCIAL.search(text):
        return NONCOMMERCIAL
    if _NO_DERIVATIVES.search(text):
        return UNKNOWN
    if _OPEN.search(text):
        return OPEN
    return UNKNOWN


def allowed(licence: str | None, policy: str) -> bool:
    return licence_class(licence) in policy_classes(policy)


def policy_classes(policy: str) -> frozenset[str]:
    try:
        return POLICIES[policy]
    except KeyError:
        raise RetrievalError(f"Unknown licence policy {policy!r}; choose from {list(POLICIES)}.") from None


# --- trained models and their training cards -------------------------------------------------------------
def card_licences(card: dict | None, source_licences: dict[str, set[str]] | None = None) -> dict[str, int]:
    """Licence -> training rows, from a training card's "licenses" (dict or list) or "sources" (a dict or list
    of entries), at its top level or under "data". A source entry without a licence takes the licences its
    rows have in `source_licences` (the index's own rows), else counts as "unknown". {} when the card names
    neither licences nor sources."""
    found: Counter = Counter()
    if not isinstance(card, dict):
        return {}
    for block in (card, card.get("data")):
        if isinstance(block, dict):
            _add_licences(found, block.get("licenses", block.get("licences")))
            _add_sources(found, block.get("sources"), source_licences or {})
    return dict(found)


def _add_licences(found: Counter, licences) -> None:
    if isinstance(licences, dict):
        for name, rows in licences.items():
            found[str(name)] += rows if isinstance(rows, int) else 0
    elif isinstance(licences, list):
        for name in licences:
            found[str(name)] += 0


def _add_sources(found: Counter, sources, source_licences: dict[str, set[str]]) -> None:
    if isinstance(sources, dict):
        entries = [(name, entry) for name, entry in sources.items()]
    elif isinstance(sources, list):
        entries = [(entry.get("source", entry.get("name")) if isinstance(entry, dict) else None, entry)
                   for entry in sources]
    else:
        return
    for name, entry in entries:
        if isinstance(entry, str):  # {source: licence}
            found[entry] += 0
            continue
        entry = entry if isinstance(entry, dict) else {}
        rows = entry.get("rows", entry.get("images", 0))
        rows = rows if isinstance(rows, int) else 0
        nested = entry.get("licenses", entry.get("licences"))
        licence = entry.get("license", entry.get("licence"))
        if isinstance(nested, (dict, list)):
            _add_licences(found, nested)
        elif licence is not None:
            found[str(licence)] += rows
        else:  # the card names the source only: its rows in the index say how it is licensed
            known = sorted(source_licences.get(str(name), set())) or [UNKNOWN]
            for value in known:
                found[value] += rows if len(known) == 1 else 0


@dataclass
class ModelDecision:
    name: str
    ships: bool
    why: str
    licences: dict[str, int] = field(default_factory=dict)


def model_decision(name: str, card: dict | None, policy: str, include_research: bool = False,
                   source_licences: dict[str, set[str]] | None = None) -> ModelDecision:
    """A trained model is a derivative of its training images: it ships only when every licence its card
    lists is within the policy (a card without licences counts as unknown), or with --include-research-models."""
    licences = card_licences(card, source_licences)
    classes = {licence_class(licence) for licence in licences} or {UNKNOWN}
    outside = sorted(licence for licence in licences if not allowed(licence, policy))
    if classes <= policy_classes(policy):
        return ModelDecision(name, True, f"trained only on images the {policy!r} policy allows "
                                         f"({', '.join(sorted(licences)) or 'no licences listed'})", licences)
    reason = (f"trained on images outside the {policy!r} policy ({', '.join(outside)})" if outside else
              "its training card does not say what its training images are licensed under")
    if include_research:
        return ModelDecision(name, True, f"{reason}; included by --include-research-models", licences)
    return ModelDecision(name, False, f"left out: {reason}", licences)


def asset_models(repo: Path) -> dict[str, dict | None]:
    """Model folders under assets/models/ and their training cards (None when a folder has none)."""
    from .embedders.model_folder import ModelFolder

    return {folder.name: folder.read_card() for folder in ModelFolder.in_assets(repo)}


def trained_models(repo: Path, index_models: list[str]) -> dict[str, dict | None]:
    """Every trained model the Space would carry or use: the model folders under assets/models/, and models of
    the index whose registry entry has a training card (a model trained here, e.g. xray-lite0)."""
    from .embedders import embedder_spec
    from .errors import UnknownEmbedder

    cards = asset_models(repo)
    for name in index_models:
        if name in cards:
            continue
        try:
            spec = embedder_spec(name)
        except UnknownEmbedder:
            continue
        if spec.card is not None:
            try:
                cards[name] = spec.card()
            except Exception:  # an unreadable card says nothing about licences: treated as unknown
                cards[name] = None
    return cards


__all__ = ["licence_class", "allowed", "POLICIES", "POLICY_MEANING", "OPEN", "NONCOMMERCIAL", "UNKNOWN",
           "card_licences", "model_decision", "ModelDecision", "asset_models", "trained_models"]
