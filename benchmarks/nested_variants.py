"""What the benchmarks that judge an experimental image variant by the training card's nested protocol share: the
run (training.train.select_variants with the card's seed and folds), the anatomy gains, paired gains between two
variants, the table rows, the protocol block and JSON-safe values."""

from __future__ import annotations

import json
from pathlib import Path

from common import COLLECTION, REPO, interval

SEED, OUTER_FOLDS, INNER_FOLDS = 0, 5, 3
CARD = REPO / "assets" / "models" / "xray-lite0" / "training_card.json"


def levels() -> tuple[str, str, str]:
    from retrieval.evaluation.figures import ANATOMY, CATEGORY, LABEL

    return CATEGORY, LABEL, ANATOMY


def header() -> list[str]:
    return ["variant (outer whole-source folds)", *(f"{level} P@5 (mean over sources / pooled)" for level in levels()),
            "category gain [95 % CI]", "label gain [95 % CI]", "anatomy gain [95 % CI]",
            "settings chosen per outer fold"]


def run(candidates, features: Path) -> dict:
    """The card's nested selection among `candidates`, backbone passes cached in `features`: select_variants'
    answer plus items, the card, and whether the data is the card's."""
    from retrieval.evaluation.rows import fingerprint
    from retrieval.training.data import load_working_copies, read_items
    from retrieval.training.train import select_variants

    items = read_items(COLLECTION)
    card = json.loads(CARD.read_text()) if CARD.is_file() else {}
    grays = load_working_copies(items, progress=True)
    out = select_variants(items, grays, features, candidates, seed=SEED, outer_folds=OUTER_FOLDS,
                          folds=INNER_FOLDS, progress=True, log=lambda *a: print(*a, flush=True))
    return {**out, "items": items, "card": card,
            "same_data": card.get("data", {}).get("fingerprint") == fingerprint(items)}


def paired_gain(items, nested, model: str, reference: str) -> dict:
    """{level: bootstrap gain of `model` over `reference`} on the same outer queries (descriptive only)."""
    from retrieval.training import selection

    return {level: selection.bootstrap_gain(selection.per_source_gain(items, nested.outer[model],
                                                                      nested.outer[reference], level), seed=SEED)
            for level in levels()}


def add_anatomy_gains(items, nested, table: dict, names) -> None:
    """The card's gains are category and label; anatomy (body_part) over frozen Lite0 the same way."""
    anatomy = levels()[2]
    for name in names:
        table[name]["gain_over_frozen"][anatomy] = paired_gain(items, nested, name, "reference")[anatomy]


def cell(row: dict, level: str) -> str:
    """A variant's outer P@5 at one level as 'mean over sources / pooled' ('–' where not measured)."""
    block = row.get(level) or {}
    if block.get("mean_over_sources") is None:
        return "–"
    return f"{block['mean_over_sources']:.3f} / {block['pooled']:.3f}"


def ci(block: dict | None) -> str:
    if not block or "mean_over_sources" not in block:
        return "–"
    return interval(block["mean_over_sources"])


def rows(table: dict, order) -> list[list]:
    """One table row per variant of `order` ('reference': frozen Lite0)."""
    out = []
    for name in order:
        row = table[name]
        gains = row.get("gain_over_frozen", {})
        chosen = row.get("settings_chosen") or row.get("picked") or ["–"]
        out.append([name if name != "reference" else "frozen efficientnet-lite0 (reference)",
                    *(cell(row, level) for level in levels()), *(ci(gains.get(level)) for level in levels()),
                    ", ".join("/".join(c) if isinstance(c, list) else str(c) for c in chosen)])
    return out


def gain_rows(gains: dict) -> list[list]:
    """Table rows of paired gains ({'A over B': {level: bootstrap block}})."""
    return [[f"gain {key}", "", "", "", *(ci(block[level]) for level in levels()), ""] for key, block in gains.items()]


def protocol(candidates, nested, card: dict, same_data: bool, **more) -> dict:
    """The protocol block of a nested benchmark's JSON: folds, criterion, bootstrap, candidates, card checks."""
    from retrieval.training import selection

    fold_sources = {str(c["fold"]): c["held_out_sources"] for c in nested.choices}
    card_folds = card.get("evaluation", {}).get("cross_source", {}).get("fold_sources")
    return {"seed": SEED, "outer_folds": OUTER_FOLDS, "inner_folds": INNER_FOLDS,
            "criterion": "selection.score: category + label P@5, each a mean over held-out sources",
            "bootstrap": {"reps": selection.BOOTSTRAP_REPS, "seed": SEED, "over": "outer held-out sources"},
            "candidates": [v.name for v in candidates], "fold_sources": fold_sources,
            "same_data_as_card": same_data, "same_outer_folds_as_card": card_folds == fold_sources, **more}


def best(scores: dict, variant: str | None = None) -> tuple[str, float] | None:
    """(key, score) of the highest of {'variant/setting': score} (of `variant`'s settings only, when given), or
    None when there is none."""
    pool = {k: v for k, v in scores.items() if variant is None or k.split("/")[0] == variant}
    return max(pool.items(), key=lambda kv: kv[1]) if pool else None


def plain(payload: dict) -> dict:
    """`payload` with numpy scalars, sets and tuples made JSON values."""
    return json.loads(json.dumps(payload, default=_plain))


def _plain(value):
    import numpy as np

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, (set, tuple)):
        return sorted(value) if isinstance(value, set) else list(value)
    raise TypeError(type(value))
