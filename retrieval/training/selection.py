"""Nested cross-source selection: what is chosen is chosen on training sources only, and judged on sources that
took no part in any choice.

Why: the first xray-lite0 chose its recipe and epochs on the same cross-source folds that reported its gain, and
the gain did not travel to hospitals outside the collection. Here the OUTER folds are whole sources; inside
each outer training set, INNER whole-source folds choose everything (the variant, and each variant's settings
such as epochs or flips); the choice is refitted on the outer training rows and judged on the outer held-out
sources alone (their rows query an index of the outer training rows, as protocols.cross_source does). A
bootstrap over held-out sources turns the per-source gains over a reference (the frozen backbone) into an
interval.

A fitter is `fit(train_rows) -> {(variant, setting): (n, d) unit vectors of EVERY row}`: one fit may answer for
several variants and settings (checkpoints of one run, with and without the test-time flip). It never sees a
row outside `train_rows`; `nested_selection` never hands it an outer held-out row (tests/test_selection.py).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..atomic import write_atomic, write_json_atomic
from ..evaluation import protocols
from ..evaluation.figures import CATEGORY, LABEL, LEVELS
from ..evaluation.folds import assign_source_folds, source_fold_of_rows
from ..evaluation.rows import Item

Key = tuple  # (variant, setting)
Fitter = Callable[[np.ndarray], dict]
BOOTSTRAP_REPS = 2000


def with_twins(fit: Fitter, suffix: str, rework: Callable[[np.ndarray, np.ndarray], dict]) -> Fitter:
    """A fitter that answers for `fit`'s keys and, per key and per {point: vectors} of `rework(vectors, rows)`,
    (variant + suffix, 'setting/point'): the same vectors reworked from the training rows it was given (a
    training-free re-ranker over the index, judged beside its base by the same folds)."""

    def fitted(rows: np.ndarray) -> dict:
        out = dict(fit(rows))
        for (variant, plain_setting), vectors in list(out.items()):
            for point, reworked in rework(vectors, rows).items():
                out[(variant + suffix, f"{plain_setting}/{point}")] = reworked
        return out

    return fitted


def score(summary: dict) -> float:
    """The selection criterion: category + label P@5, each averaged over held-out sources."""
    return float((summary[CATEGORY]["p@5_mean_over_sources"] or 0) + (summary[LABEL]["p@5_mean_over_sources"] or 0))


@dataclass
class NestedResult:
    """What nested selection measured: outer per-query results of every variant (its settings chosen inside),
    of the selected pipeline and of the reference, the choices per outer fold, and the outer folds."""

    items: Sequence[Item]
    outer_folds: np.ndarray  # (n,) outer fold of each row
    choices: list[dict] = field(default_factory=list)  # per outer fold: chosen setting per variant, selected
    outer: dict = field(default_factory=dict)  # variant | "selected" | "reference" -> QueryResults

    def summary(self, name: str) -> dict:
        return self.outer[name].summary(self.items)


def _judge(items: Sequence[Item], vectors: np.ndarray, query_rows: np.ndarray, index_rows: np.ndarray):
    return protocols.search_rows(items, vectors, query_rows, index_rows)


def inner_choice(items: Sequence[Item], train: np.ndarray, fitters: Sequence[Fitter], inner_k: int, seed: int,
                 candidates: set[str] | None, log: Callable,
                 saved: Path | None = None) -> tuple[dict, Key | None, dict]:
    """Inside one outer training set: inner whole-source folds score every (variant, setting). Returns
    ({variant: best setting}, the selected (variant, setting) among candidates, {key: inner score}). `saved`: a
    JSON file that keeps the scores (written atomically), read instead of fitting when it exists."""
    if saved is not None and Path(saved).exists():
        scores = {(v, s): x for v, s, x in json.loads(Path(saved).read_text())["scores"]}
        log(f"  scores resumed from {Path(saved).name}")
    else:
        scores = _inner_scores(items, train, fitters, inner_k, seed)
        if saved is not None:
            write_json_atomic(Path(saved), {"scores": [[v, s, x] for (v, s), x in sorted(scores.items())]})
    best: dict[str, tuple[str, float]] = {}
    for (variant, setting), value in sorted(scores.items()):
        if variant not in best or value > best[variant][1]:
            best[variant] = (setting, value)
    pool = [(value, variant) for variant, (_, value) in best.items() if candidates is None or variant in candidates]
    selected = None
    if pool:
        _, variant = max(pool)
        selected = (variant, best[variant][0])
    log(f"  inner choice: {selected} ({max(pool)[0]:.3f})" if pool else "  inner choice: none")
    return {v: s for v, (s, _) in best.items()}, selected, scores


def _inner_scores(items: Sequence[Item], train: np.ndarray, fitters: Sequence[Fitter], inner_k: int,
                  seed: int) -> dict:
    sub = [items[r] for r in train]
    assignment = assign_source_folds(sub, inner_k, seed)
    folds = source_fold_of_rows(sub, assignment)
    parts: dict[Key, list] = defaultdict(list)
    for fold in sorted(set(folds.tolist())):
        fit_rows, held = train[folds != fold], train[folds == fold]
        for fit in fitters:
            for key, vectors in fit(fit_rows).items():
                parts[key].append(_judge(items, vectors, held, fit_rows))
    return {key: score(protocols.concat(results).summary(items)) for key, results in parts.items()}


def nested_selection(items: Sequence[Item], fitters: Sequence[Fitter], reference: np.ndarray,
                     outer_k: int = 5, inner_k: int = 3, seed: int = 0, candidates: Sequence[str] | None = None,
                     log: Callable = print, progress: bool = False, checkpoints: Path | None = None) -> NestedResult:
    """Outer whole-source folds judge; inner whole-source folds (inside each outer training set) choose.

    `reference`: (n, d) vectors of a model fitted on nothing here (the frozen backbone), judged on the same
    outer folds. `candidates`: the variants the selected pipeline may pick (default: all). `checkpoints`: a
    folder that keeps each finished outer fold (one file each, written atomically), so a run that was stopped
    resumes at the first unfinished fold. The caller names it after everything the result depends on."""
    from tqdm.auto import tqdm

    outer = source_fold_of_rows(items, assign_source_folds(items, outer_k, seed))
    result = NestedResult(items, outer)
    parts: dict[str, list] = defaultdict(list)
    pool = set(candidates) if candidates is not None else None
    for fold in tqdm(sorted(set(outer.tolist())), desc="outer folds", disable=not progress, leave=False):
        train, held = np.nonzero(outer != fold)[0], np.nonzero(outer == fold)[0]
        log(f"outer fold {fold}: {len(held)} held-out rows from "
            f"{len({items[r].source for r in held})} sources")
        saved = None if checkpoints is None else Path(checkpoints) / f"outer-fold-{int(fold)}.npz"
        kept = _read_fold(saved, log) if saved is not None and saved.exists() else None
        if kept is not None:
            judged, choice = kept
            log(f"  resumed from {saved.name}: inner choice {tuple(choice['selected'] or ()) or None}")
        else:
            judged, choice = _outer_fold(items, fitters, reference, train, held, inner_k, seed, pool, log)
            choice = {"fold": int(fold), **choice}
            if saved is not None:
                _write_fold(saved, judged, choice)
        for name, results in judged.items():
            parts[name].append(results)
        result.choices.append(choice)
    result.outer = {name: protocols.concat(results) for name, results in parts.items()}
    return result


def _outer_fold(items, fitters, reference, train, held, inner_k, seed, pool, log) -> tuple[dict, dict]:
    """One outer fold: inner folds choose, the choices are refitted on `train` and judged on `held`. Returns
    ({variant | "selected" | "reference": QueryResults of the held-out rows}, what was chosen)."""
    chosen, selected, scores = inner_choice(items, train, fitters, inner_k, seed, pool, log)
    refit: dict[Key, np.ndarray] = {}
    for fit in fitters:  # every variant refitted on the outer training rows; only chosen settings are kept
        refit.update({key: vectors for key, vectors in fit(train).items() if chosen.get(key[0]) == key[1]})
    judged = {variant: _judge(items, vectors, held, train) for (variant, _), vectors in refit.items()}
    if selected is not None:
        judged["selected"] = _judge(items, refit[selected], held, train)
    judged["reference"] = _judge(items, reference, held, train)
    return judged, {"held_out_sources": sorted({items[r].source for r in held}), "chosen": chosen,
                    "selected": list(selected) if selected else None,
                    "inner_scores": {f"{v}/{s}": round(x, 4) for (v, s), x in sorted(scores.items())}}


def _write_fold(path: Path, judged: dict, choice: dict) -> None:
    """One finished outer fold as one .npz (its arrays, and a JSON header naming them and holding the choice)."""
    arrays, names = {}, []
    for name, results in judged.items():
        arrays[f"a{len(names)}"] = results.rows
        names.append([name, "rows", ""])
        for level, figures in results.per_level.items():
            for metric, values in figures.items():
                arrays[f"a{len(names)}"] = np.asarray(values)
                names.append([name, level, metric])
    header = np.asarray(json.dumps({"arrays": names, "choice": choice}))
    write_atomic(path, lambda temporary: np.savez(temporary, header=header, **arrays))


def _read_fold(path: Path, log: Callable) -> tuple[dict, dict] | None:
    """A kept fold, or None (said in the log) when its file cannot be read: that fold is computed again."""
    try:
        return _read_fold_file(path)
    except (OSError, ValueError, KeyError) as error:
        log(f"  {path.name} is damaged ({error}): this fold is computed again")
        return None


def _read_fold_file(path: Path) -> tuple[dict, dict]:
    with np.load(path, allow_pickle=False) as stored:
        header = json.loads(str(stored["header"]))
        rows: dict[str, np.ndarray] = {}
        per_level: dict[str, dict] = defaultdict(lambda: defaultdict(dict))
        for i, (name, level, metric) in enumerate(header["arrays"]):
            if level == "rows":
                rows[name] = stored[f"a{i}"]
            else:
                per_level[name][level][metric] = stored[f"a{i}"]
    judged = {name: protocols.QueryResults(rows[name], {level: dict(figures) for level, figures in
                                                        per_level[name].items()}) for name in rows}
    return judged, header["choice"]


# --- the bootstrap over held-out sources ----------------------------------------------------------------------
def per_source_gain(items: Sequence[Item], model, reference, level: str) -> dict[str, tuple[float, float, int]]:
    """{source: (sum of model P@5, sum of reference P@5, judged queries)} over the same judged queries."""
    sources = np.asarray([items[r].source for r in model.rows], dtype=object)
    ref_by_row = dict(zip(reference.rows.tolist(), reference.per_level[level]["p@5"].tolist()))
    out: dict[str, list] = defaultdict(lambda: [0.0, 0.0, 0])
    for row, source, value in zip(model.rows.tolist(), sources, model.per_level[level]["p@5"].tolist()):
        other = ref_by_row[row]
        if np.isnan(value) or np.isnan(other):
            continue
        out[source][0] += value
        out[source][1] += other
        out[source][2] += 1
    return {s: (a, b, n) for s, (a, b, n) in out.items() if n}


def bootstrap_gain(per_source: dict[str, tuple[float, float, int]], reps: int = BOOTSTRAP_REPS,
                   seed: int = 0) -> dict:
    """95 % percentile interval of the gain (model - reference) P@5, resampling SOURCES with replacement:
    the mean over sources of each source's mean gain, and the pooled gain (over the resampled sources' queries)."""
    names = sorted(per_source)
    if not names:
        return {"sources": 0}
    model = np.asarray([per_source[s][0] for s in names])
    ref = np.asarray([per_source[s][1] for s in names])
    counts = np.asarray([per_source[s][2] for s in names], dtype=np.float64)
    gains = (model - ref) / counts
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(names), size=(reps, len(names)))
    mean_over = gains[picks].mean(axis=1)
    pooled = (model - ref)[picks].sum(axis=1) / counts[picks].sum(axis=1)

    def block(point: float, draws: np.ndarray) -> dict:
        low, high = np.percentile(draws, [2.5, 97.5])
        return {"gain": round(float(point), 4), "ci95": [round(float(low), 4), round(float(high), 4)]}

    return {"sources": len(names), "reps": reps, "seed": seed,
            "mean_over_sources": block(gains.mean(), mean_over),
            "pooled": block((model - ref).sum() / counts.sum(), pooled)}


def gain_intervals(result: NestedResult, name: str, reps: int = BOOTSTRAP_REPS, seed: int = 0) -> dict:
    """{level: bootstrap_gain} of `name` over the reference on the outer held-out sources."""
    return {level: bootstrap_gain(per_source_gain(result.items, result.outer[name], result.outer["reference"],
                                                  level), reps, seed) for level in LEVELS}


def default_decision(intervals: dict) -> tuple[bool, str]:
    """The trained model is the default image model only when the outer gain's 95 % interval (category P@5, mean
    over sources) lies above zero and the label gain's interval does not lie below zero."""
    cat = intervals[CATEGORY]["mean_over_sources"]
    lab = intervals[LABEL].get("mean_over_sources")
    cat_text = f"category P@5 gain {cat['gain']:+.3f} (95 % CI {cat['ci95'][0]:+.3f} to {cat['ci95'][1]:+.3f})"
    lab_text = (f"label P@5 gain {lab['gain']:+.3f} (95 % CI {lab['ci95'][0]:+.3f} to {lab['ci95'][1]:+.3f})"
                if lab else "label P@5 not measured")
    over = f"over frozen EfficientNet-Lite0 on the outer held-out sources: {cat_text}; {lab_text}"
    if cat["ci95"][0] <= 0:
        return False, f"the category gain's interval is not above zero — {over}"
    if lab and lab["ci95"][1] < 0:
        return False, f"finding-level (label) precision is significantly worse — {over}"
    return True, f"the category gain's interval is above zero and the label gain is not significantly worse — {over}"
