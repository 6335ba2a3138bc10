"""Database-side augmentation and alpha-weighted query expansion (retrieval/training/neighbours.py) on top of frozen
Lite0, `lite0-centred` and `lite0-anchored`, judged by the nested cross-source protocol of the training card, and
asked whether the card's selection would pick them. EXPERIMENT, not shipped.

    .venv/bin/python benchmarks/neighbour_expansion.py [--work /tmp/nx/features] [--variants lite0-centred,...]
                                                     [--method expansion|csls|nap]

`--method csls` judges the other training-free re-ranker over the index the same way: a hub penalty (CSLS,
retrieval/training/hubness.py: each index row's score lowered by its mean cosine to its K nearest index rows, times
a weight; K and the weight chosen by the inner folds). It writes results/hub_penalty.json, with `-hub` twins (a run
over some bases only: results/hub_penalty-<bases>.json).

The question: training-free re-ranking over the index (each index vector averaged with its nearest index vectors;
each query moved toward its nearest index vectors) is the standard companion of a retrieval embedding. Does it
move sources the index has never seen, on top of the frozen backbone or of the card's variants?

The design: three bases, each one change away from the card: the frozen reference itself (`frozen`), `lite0-centred`
(its test-time flip left out) and `lite0-anchored` (what ships), exactly as the card fits them. Each gets a `-nx`
twin whose setting is the base's setting plus one point of the grid neighbours.GRID: database neighbours 0/3/5/8/12/20,
query neighbours 0/1/2/3, weight cosine ** 0/1/3 — chosen per outer fold by the inner folds like the epochs.
The grid: a first look (frozen only, database 0/2/3/5, query 0/1/2/3/5, alpha 1/3) had its inner folds choose
the largest database size in three of five outer folds, so the grid was widened to the one above before any
other figure existed; the outer figures of that first look are in the payload (`first_look`).

The protocol, identical to the card's: seed 0, 5 outer whole-source folds that report, 3 inner whole-source folds
inside each outer training set that choose; gains over frozen EfficientNet-Lite0 with the card's bootstrap over
held-out sources (2,000 resamples, seed 0). `selected` here picks among this benchmark's six candidates only. The
decision question, answered from the card: (a) per outer fold, each `-nx` variant's best inner score against the
card's highest inner score of that fold among all its variants and settings; (b) the final choice on every row (3
whole-source folds over every row, `selection.inner_choice`), each `-nx` variant's best score against the card's
`final_choice_scores` maximum. Writes results/neighbour_expansion.json.
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import nested_variants as nv
from common import COLLECTION, machine_snapshot, save
from nested_variants import INNER_FOLDS, OUTER_FOLDS, SEED

BASES = ("frozen", "lite0-centred", "lite0-anchored")
FIRST_LOOK = {"grid": {"database": [0, 2, 3, 5], "query": [0, 1, 2, 3, 5], "alpha": [1, 3]}, "base": "frozen",
              "outer": {"category": [0.702, 0.710], "label": [0.327, 0.299], "anatomy": [0.728, 0.761]},
              "gain_category": [0.0219, -0.0044, 0.0511], "gain_label": [0.0652, -0.0099, 0.1557],
              "chosen": ["db3q1a1", "db5q2a1", "db5q2a1", "db5q1a1", "db5q1a1"],
              "note": "mean over sources / pooled; gains: mean over sources [95 % CI]; measured 2026-12-07 06:35 UTC"}


def _expansion() -> SimpleNamespace:
    from retrieval.training import neighbours

    return SimpleNamespace(
        fitter=lambda fit, items: neighbours.expanded_fitter(fit), suffix=neighbours.SUFFIX, result="neighbour_expansion",
        question="does training-free DBA / alpha-QE over the index move unseen sources, on frozen Lite0 or on the "
                 "card's variants, and would the card's nested selection pick it?",
        design={"grid": {"database": list(neighbours.DATABASE), "query": list(neighbours.QUERY),
                         "alpha": list(neighbours.ALPHA), "points": len(neighbours.GRID)},
                "flip": False, "reference": "Radenovic, Tolias & Chum 2018 (TPAMI), DBA and alpha-QE",
                "first_look": FIRST_LOOK})


def _csls() -> SimpleNamespace:
    from retrieval.training import hubness

    return SimpleNamespace(
        fitter=lambda fit, items: hubness.penalised_fitter(fit), suffix=hubness.SUFFIX, result="hub_penalty",
        question="does a hub penalty over the index (CSLS) move unseen sources, on frozen Lite0 or on the card's "
                 "variants, and would the card's nested selection pick it?",
        design={"grid": {"neighbours": list(hubness.NEIGHBOURS), "weight": list(hubness.WEIGHT),
                         "points": len(hubness.GRID)},
                "flip": False, "reference": "Conneau, Lample, Ranzato, Denoyer & Jegou 2018 (ICLR), CSLS",
                "first_look": CSLS_FIRST_LOOK})


def _nap() -> SimpleNamespace:
    from retrieval.training import nuisance

    return SimpleNamespace(
        fitter=nuisance.projected_fitter, suffix=nuisance.SUFFIX, result="nuisance_projection",
        question="does projecting the directions along which one finding differs between training sources out of "
                 "the vectors (NAP) move unseen sources, on frozen Lite0 or on the card's variants, and would the "
                 "card's nested selection pick it?",
        design={"grid": {"ranks": list(nuisance.RANKS)}, "groups": "(category, label), from two sources or more",
                "flip": False,
                "reference": "Solomonoff, Campbell & Boardman 2005 (ICASSP), nuisance attribute projection",
                "first_look": None})


METHODS = {"expansion": _expansion, "csls": _csls, "nap": _nap}
# Before the protocol ran: leave-one-source-out on the built index's efficientnet-lite0 vectors (no selection,
# every setting judged on the held-out sources; category / label P@5, mean over sources), to decide whether to run it.
CSLS_FIRST_LOOK = {"protocol": "leave-one-source-out, efficientnet-lite0 vectors of the index, no selection",
                   "plain": [0.675, 0.244],
                   "k5": {"w0.25": [0.691, 0.301], "w0.5": [0.692, 0.340], "w1": [0.651, 0.374]},
                   "k10": {"w0.25": [0.691, 0.300], "w0.5": [0.691, 0.338], "w1": [0.650, 0.375]},
                   "k20": {"w0.25": [0.692, 0.297], "w0.5": [0.691, 0.334], "w1": [0.647, 0.367]},
                   "note": "measured 2026-12-07 09:50 UTC"}


def _log(*parts) -> None:
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


def fitters_of(names, grays, items, work: Path):
    """{base name: selection fitter} as the card fits them (flip off), and the frozen reference's vectors."""
    from retrieval.training import variants
    from retrieval.training.train import variant_features

    card = {v.name: replace(v, flip=False) for v in variants.VARIANTS}
    chosen, feats, frozen = variant_features(grays, work, [card[n] for n in names if n != "frozen"], seed=SEED,
                                             progress=False, log=_log)
    out = {v.name: variants.fitter(v, feats, items, SEED) for v in chosen}
    if "frozen" in names:
        out["frozen"] = lambda rows: {("frozen", "gap"): frozen}
    return out, frozen


def row(nested, name: str) -> dict:
    from retrieval.training import selection

    summary = nested.summary(name)
    out = {level: {"mean_over_sources": summary[level]["p@5_mean_over_sources"], "pooled": summary[level]["p@5"],
                   "queries": summary[level]["queries"],
                   "per_category": {c: v["p@5"] for c, v in summary[level]["per_category"].items()}}
           for level in nv.levels()}
    if name != "reference":
        out["gain_over_frozen"] = selection.gain_intervals(nested, name, seed=SEED)
    if name == "selected":
        out["picked"] = [c["selected"] for c in nested.choices]
    elif name != "reference":
        out["settings_chosen"] = [c["chosen"].get(name) for c in nested.choices]
    return out


def main() -> None:
    import numpy as np

    from retrieval.evaluation.rows import fingerprint
    from retrieval.training import selection
    from retrieval.training.data import load_working_copies, read_items

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/nx/features"))
    parser.add_argument("--variants", default=",".join(BASES), help=f"bases, comma-separated, of {BASES}")
    parser.add_argument("--collection", type=Path, default=COLLECTION, help="a small one: a smoke test of the script")
    parser.add_argument("--method", choices=sorted(METHODS), default="expansion")
    args = parser.parse_args()
    method = METHODS[args.method]()
    names = [n for n in args.variants.split(",") if n]
    if not names or set(names) - set(BASES):
        parser.error(f"--variants: one or more of {', '.join(BASES)}, comma-separated; got {args.variants!r}")
    started = time.time()
    machine_snapshot()
    items = read_items(args.collection)
    card = json.loads(nv.CARD.read_text()) if nv.CARD.is_file() else {}
    same_data = card.get("data", {}).get("fingerprint") == fingerprint(items)
    _log(f"{len(items)} rows; same data as the card: {same_data}; bases {names}")
    grays = load_working_copies(items, progress=False)
    plain, frozen = fitters_of(names, grays, items, args.work)
    fitters = [method.fitter(plain[n], items) for n in names]
    expanded = [n + method.suffix for n in names]

    # (b) the final choice on every row, as train_model makes it ---------------------------------------------
    began = time.time()
    _, _, scores = selection.inner_choice(items, np.arange(len(items)), fitters, INNER_FOLDS, SEED, None, _log)
    scores = {f"{v}/{s}": round(x, 4) for (v, s), x in sorted(scores.items())}
    card_final = nv.best(card.get("selection", {}).get("final_choice_scores", {}))
    final = {"best": {n: list(nv.best(scores, n)) for n in [*names, *expanded]},
             "card_best": list(card_final) if card_final else None, "seconds": round(time.time() - began, 1)}
    final["would_be_picked"] = {n: bool(card_final) and final["best"][n][1] > card_final[1] for n in expanded}
    _log(f"final choice over every row: {final}")

    # (a) nested selection: 5 outer folds report, 3 inner folds choose each variant's setting ----------------
    nested = selection.nested_selection(items, fitters, frozen, OUTER_FOLDS, INNER_FOLDS, SEED, log=_log)
    # what the figures below are computed from
    with (args.work.parent / f"nested-{args.method}.pkl").open("wb") as handle:
        pickle.dump({"nested": nested, "final": final}, handle)
    table = {name: row(nested, name) for name in nested.outer}
    decisions = {}
    card_folds = card.get("selection", {}).get("per_outer_fold", [])
    for name in expanded:
        decisions[name] = []
        for choice, theirs in zip(nested.choices, card_folds):
            key, value = nv.best(choice["inner_scores"], name)
            card_key, card_value = nv.best(theirs["inner_scores"])
            decisions[name].append({"fold": choice["fold"], "best": [key, value], "card_best": [card_key, card_value],
                                    "same_sources_as_card": choice["held_out_sources"] == theirs["held_out_sources"],
                                    "would_be_picked": value > card_value})
    for name in names:  # paired: what the re-ranker adds to its own base, on the same queries
        table[name + method.suffix]["gain_over_base"] = nv.paired_gain(items, nested, name + method.suffix, name)
    card_table = card.get("selection", {}).get("variants", {})
    same_reference = all(nv.cell(table["reference"], level) == nv.cell(card_table.get("reference", {}), level)
                         for level in nv.levels())
    order = [n for name in names for n in (name, name + method.suffix)] + ["selected", "reference"]
    rows = nv.rows(table, order)
    payload = {
        "question": method.question,
        "design": {"bases": names, **method.design},
        "protocol": nv.protocol([SimpleNamespace(name=n) for n in [*names, *expanded]], nested, card, same_data,
                                reference_reproduces_card=same_reference, feature_cache=str(args.work)),
        "variants": table,
        "decision": {"per_outer_fold": decisions,
                     "picked_in_outer_folds": {n: sum(d["would_be_picked"] for d in decisions[n]) for n in expanded},
                     "final_choice": final},
        "per_outer_fold": nested.choices, "wall_seconds_total": round(time.time() - started, 1)}
    # a run over some of the bases keeps its own file (the bases' figures do not depend on each other; `selected`
    # picks among the run's candidates)
    result = method.result if names == list(BASES) else "-".join([method.result, *names])
    save(result, nv.plain(payload), nv.header(), rows)
    for name in expanded:
        picks = [d["would_be_picked"] for d in decisions[name]]
        print(f"{name}: picked in outer folds {picks}; final {final['best'][name]} vs card {final['card_best']}")


if __name__ == "__main__":
    main()
