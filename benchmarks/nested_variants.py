"""What the benchmarks that judge an experimental image variant by the training card's nested protocol share: the
run (training.train.select_variants with the card's seed and folds), the anatomy gains, paired gains between two
variants, the table rows, the protocol block, JSON-safe values, and `judge_against_card`: would the card's own
selection pick the candidates (per outer fold, and in the final choice over every row)?"""

from __future__ import annotations

import json
import pickle
import time
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


def log(*parts) -> None:
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


def _files(work: Path) -> dict:
    return {p.name: (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(work.glob("*"))}


def fold_decisions(choices: list[dict], card: dict, names) -> list[dict]:
    """Per outer fold, the candidates' best inner score against the card's best of every variant there (the card
    and the run share data, seed and outer folds: checked by `protocol`)."""
    card_folds = card.get("selection", {}).get("per_outer_fold", [])
    out = []
    for choice, theirs in zip(choices, card_folds):
        ours = {k: v for k, v in choice["inner_scores"].items() if k.split("/")[0].removesuffix("+flip") in names}
        key, value = best(ours)
        card_key, card_value = best(theirs["inner_scores"])
        anchored = best(theirs["inner_scores"], "lite0-anchored")
        out.append({"fold": choice["fold"], "same_sources_as_card": choice["held_out_sources"] ==
                    theirs["held_out_sources"], "inner_scores": choice["inner_scores"], "best": [key, value],
                    "card_best": [card_key, card_value], "card_selected": theirs["selected"],
                    "card_lite0_anchored_best": list(anchored) if anchored else None,
                    "would_be_picked": value > card_value, "margin": round(value - card_value, 4)})
    return out


def judge_against_card(candidates, work: Path, collection: Path, result: str, question: str, design: dict,
                       cache_files=(), card_rows=()) -> dict:
    """Run experimental `candidates` (training.variants.Variant) by the card's protocol and ask whether its own
    selection would pick them. (b) first, the final choice on every row as train_model makes it (3 whole-source
    folds; the cheaper half): the candidates' best score against the card's `final_choice_scores` maximum. (a) the
    nested selection among the candidates (5 outer folds report, 3 inner choose each one's setting), the figures of
    every candidate, and per outer fold their best inner score against the card's best of every variant; the card's
    own rows of `card_rows` are shown beside them (not refitted). Backbone
    passes are read from (or added to) the feature cache `work`; no model folder or text head is written. Saves
    results/<result>.json and its table; returns the payload."""
    import numpy as np

    from retrieval.evaluation.rows import fingerprint
    from retrieval.training import selection, variants
    from retrieval.training.data import load_working_copies, read_items
    from retrieval.training.train import select_variants, variant_features

    from common import machine_snapshot, save

    started = time.time()
    machine_snapshot()
    missing = [name for name in cache_files if not (work / f"{name}.npy").is_file()]
    log(f"feature cache {work}: " + (f"MISSING {missing} (they will be computed)" if missing else "complete"))
    before = _files(work) if work.is_dir() else {}
    items = read_items(collection)
    card = json.loads(CARD.read_text()) if CARD.is_file() else {}
    same_data = card.get("data", {}).get("fingerprint") == fingerprint(items)
    log(f"{len(items)} rows; same data as the card: {same_data}")
    grays = load_working_copies(items, progress=False)
    names = [v.name for v in candidates]

    # (b) the final choice on every row, as train_model makes it, among the candidates alone ---------------------
    chosen, feats, _ = variant_features(grays, work, candidates, seed=SEED, progress=False, log=log)
    fits = [variants.fitter(v, feats, items, SEED) for v in chosen]
    began = time.time()
    _, _, scores = selection.inner_choice(items, np.arange(len(items)), fits, INNER_FOLDS, SEED, None, log)
    scores = {f"{v}/{s}": round(x, 4) for (v, s), x in sorted(scores.items())}
    card_final = best(card.get("selection", {}).get("final_choice_scores", {}))
    final = {"scores": scores, "best": list(best(scores)), "card_best": list(card_final) if card_final else None,
             "would_be_picked": bool(card_final) and best(scores)[1] > card_final[1],
             "seconds": round(time.time() - began, 1)}
    (work.parent / f"{result}_final_choice.json").write_text(json.dumps(final, indent=2))
    log(f"final choice over every row: {final}")
    del feats, fits

    # (a) nested selection: 5 outer folds report, 3 inner folds choose ----------------------------------------------
    run = select_variants(items, grays, work, candidates, seed=SEED, outer_folds=OUTER_FOLDS, folds=INNER_FOLDS,
                          progress=False, log=log)
    nested, table = run["nested"], run["table"]
    with (work.parent / f"{result}_nested.pkl").open("wb") as handle:  # what the figures below are computed from
        pickle.dump({"nested": nested, "table": table, "ms": run["ms"], "final": final}, handle)
    reported = [n for n in table if n not in ("selected", "reference")]
    add_anatomy_gains(items, nested, table, [*reported, "selected"])
    decisions = fold_decisions(nested.choices, card, names)
    card_table = card.get("selection", {}).get("variants", {})
    same_reference = all(cell(table["reference"], level) == cell(card_table.get("reference", {}), level)
                         for level in levels())
    after = _files(work) if work.is_dir() else {}
    table_rows = rows(table, [*reported, "selected", "reference"])
    for name in card_rows:  # the card's own rows, not refitted ('–': the card has no anatomy gain)
        if name in card_table:
            table_rows.append([f"{name} (the card's row, not refitted)", *rows(card_table, [name])[0][1:]])
    payload = {
        "question": question, "design": design,
        "protocol": protocol(candidates, nested, card, same_data, reference_reproduces_card=same_reference,
                             feature_cache=str(work), feature_cache_read_not_recomputed=not missing and before == after),
        "variants": {n: table[n] for n in [*reported, "selected", "reference"]},
        "decision": {"per_outer_fold": decisions, "picked_in_outer_folds": sum(d["would_be_picked"] for d in decisions),
                     "final_choice": final},
        "per_outer_fold": nested.choices, "query_ms_per_backbone": run["ms"],
        "wall_seconds_total": round(time.time() - started, 1)}
    save(result, plain(payload), header(), table_rows)
    for d in decisions:
        print(f"fold {d['fold']}: {d['best']} vs card best {d['card_best']}: picked {d['would_be_picked']}")
    print(f"final choice: {final['best']} vs card {final['card_best']}: picked {final['would_be_picked']}")
    return payload
