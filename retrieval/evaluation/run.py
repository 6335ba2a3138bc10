"""Measure retrieval quality of an index: leave-one-out image queries, text queries, classic baselines and
whole sources held out, in one run.

    python -m retrieval evaluate --index DIR [--models a,b] [--json] [--out DIR]

This module runs the measurement; report.py prints it as tables, plots.py draws it, summary.py is what the app
reads back from `<current generation>/evaluation.json`. Every read of the index goes through index_access.py.

Leave-one-out: every row queries all the others through its stored vector (a matrix product over the index's
vectors, ranked exactly as the flat inner-product FAISS index ranks them). A row's near duplicates (the
validator's perceptual hash) are taken out of its ranked list, so a copy of the query cannot inflate the
figures; the figures with them left in are reported as well. Rows are judged two ways: same category, and
same (category, label) where the source gives a label (rows without a label neither query nor count as
relevant at label level). Baselines run in the same pass: a 32x32 raw-pixel thumbnail, the index's TF-IDF
column, and the expectation of a random ranking.

Text queries come from the versioned query file (queries.py) and go through the engine's text search for every
text-capable model of the index. The hybrid text model is first fitted on the TRAIN queries (hybrid_fit.py); every
text model's headline figures are then those of the TEST queries (all queries beside them), so the hybrid is never
judged on a query that chose its weights. Cross-source: whole sources held out (protocols.py), as training judges.

A run with --models merges its models into the figures already in the summary.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import metrics
from .figures import ANATOMY, CATEGORY, FIGURES, K, KS, LABEL, LEVELS, figures, round_figure
from .index_access import IndexAccess
from .leave_one_out import feedback_gain, judge, random_expectation, random_text_expectation
from .pixels import THUMBNAIL_SIDE, image_features, near_duplicates
from .queries import TEST, TRAIN, TextQuery, in_split, load_queries, shown_path
from .rows import Item, fingerprint, item_from_row
from ..hybrid import HYBRID
from ..evaluation_summary import (
    CROSS_SOURCE, FEEDBACK_GAIN, FEEDBACK_RESIDUAL_GAIN, IMAGE, METADATA, MODEL_FIGURES, TEXT, TEXT_TRAIN,
    EvaluationSummary, ModelFigures, figure_key,
)

if TYPE_CHECKING:
    from ..search import SearchEngine

RAW_PIXELS = "raw-pixels"
BASELINE_TEXT_MODEL = "tfidf"
CROSS_SOURCE_FOLDS = 3  # whole sources per fold


@dataclass
class Evaluation:
    """Every figure of one run; `to_dict()` is the JSON, `summary()` what the app reads, report.py the tables."""

    index_dir: str
    generation: str
    rows: int
    categories: list[str]
    near_duplicates: dict
    image: dict[str, dict] = field(default_factory=dict)  # model -> leave-one-out figures
    random: dict = field(default_factory=dict)
    text: dict = field(default_factory=dict)
    cross_source: dict = field(default_factory=dict)  # folds, and per image model the held-out-source figures
    trained_here: set = field(default_factory=set)  # models trained on exactly these rows (their card says so)
    created_at: str = ""
    seconds: float = 0.0
    # kept for the plots and grids, left out of the JSON
    index: IndexAccess | None = field(default=None, repr=False)
    models: list[str] = field(default_factory=list, repr=False)  # the index's models this run evaluates
    ranked: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    text_ranked: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    queries: list[TextQuery] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        return {"index": self.index_dir, "generation": self.generation, "rows": self.rows,
                "created_at": self.created_at, "seconds": round(self.seconds, 1), "ks": list(KS),
                "categories": self.categories, "near_duplicates": self.near_duplicates,
                "image_queries": self.image, "random": self.random, "text_queries": self.text,
                "cross_source": self.cross_source}

    def summary(self) -> EvaluationSummary:
        """The per-model figures the app reads: every model has every key of MODEL_FIGURES (None where a figure
        does not apply: a text model has no image-to-image figures)."""
        models, baselines = {}, {}
        for name, result in self.image.items():
            measure = METADATA if result["input"] == "metadata" else IMAGE
            values = dict.fromkeys(MODEL_FIGURES)
            held_out = self.cross_source.get("models", {}).get(name)
            text = self.text.get("models", {}).get(name)
            seen = result.get("in_sample", False)  # trained on these rows: its leave-one-out is not shown here
            anatomy = (held_out or {}).get("cross_source", {}).get(ANATOMY)  # absent: no body part, or an older card
            values[figure_key(CROSS_SOURCE, ANATOMY)] = anatomy["p@5"] if anatomy else None
            for level in LEVELS:
                values[figure_key(CROSS_SOURCE, level)] = held_out["cross_source"][level]["p@5"] if held_out else None
                chosen_on = (text or {}).get("train_queries")
                values[figure_key(TEXT_TRAIN, level)] = chosen_on[level]["p@5"] if chosen_on else None
                for key in FIGURES:
                    values[figure_key(TEXT, level, key)] = text[level][key] if text else None
                    values[figure_key(measure, level, key)] = None if seen and measure == IMAGE else result[level][key]
            feedback = result.get("feedback") or {}
            values[FEEDBACK_GAIN] = None if seen else feedback.get("gain")
            values[FEEDBACK_RESIDUAL_GAIN] = None if seen else feedback.get("residual_gain")
            entry = ModelFigures(values, indexes="text" if measure == METADATA else "image")
            (baselines if name == RAW_PIXELS else models)[name] = entry
        for name, text in self.text.get("models", {}).items():  # a text model without vectors: the hybrid
            if name not in models:
                values = dict.fromkeys(MODEL_FIGURES)
                values.update({figure_key(TEXT, level, key): text[level][key] for level in LEVELS for key in FIGURES})
                models[name] = ModelFigures(values, indexes=text["searches"])
        return EvaluationSummary(created_at=self.created_at, rows=self.rows,
                                 near_duplicate_pairs=self.near_duplicates["pairs"],
                                 text_queries=self.text.get("queries", 0), models=models, baselines=baselines)

    def save_summary(self) -> Path:
        """Merge this run's per-model figures into the index generation's summary (for the app)."""
        return self.summary().write(self.index.generation)



def display_name(name: str) -> str:
    """A vector set's name in tables and plots, baselines marked."""
    if name == RAW_PIXELS:
        return f"{RAW_PIXELS} {THUMBNAIL_SIDE}x{THUMBNAIL_SIDE} (baseline)"
    return f"{name} (baseline)" if name == BASELINE_TEXT_MODEL else name


# --- the evaluation ----------------------------------------------------------------------------------------
def evaluate_index(index: "str | Path | SearchEngine | IndexAccess" = "index", models: list[str] | None = None,
                   queries_file: str | Path | None = None, progress: bool = True,
                   near_bits: int | None = None) -> Evaluation:
    """Evaluate `models` of the index (default: all), with the TF-IDF and raw-pixel baselines alongside.
    `index`: an index folder, or an engine already serving one."""
    from ..validate import NEAR_DUPLICATE_BITS

    started = time.perf_counter()
    near_bits = NEAR_DUPLICATE_BITS if near_bits is None else near_bits
    version, queries = load_queries(queries_file)
    index = IndexAccess.open(index)
    names = index.models
    hybrid = HYBRID in index.text_models() and (not models or HYBRID in models)
    if models:  # the TF-IDF baseline runs whenever the index has it
        names = [name for name in dict.fromkeys(models) if name != HYBRID]
        for name in names:
            index.vectors(name)  # an unknown name raises the engine's own error, listing the index's models
        if BASELINE_TEXT_MODEL in index.models and BASELINE_TEXT_MODEL not in names:
            names.append(BASELINE_TEXT_MODEL)
    records = index.records
    categories = np.asarray([r["category"] or "" for r in records], dtype=object)
    labels = np.asarray([f"{r['category']}\x1f{r['label']}" if r["label"] else "" for r in records], dtype=object)
    keys = {CATEGORY: categories, LABEL: labels}

    thumbnails, hashes = image_features(index, progress)
    partners, pairs = near_duplicates(index.ids, hashes, near_bits)
    ids = index.ids
    evaluation = Evaluation(
        index_dir=str(index.root), generation=index.generation.name, rows=len(ids),
        categories=sorted({c for c in categories if c}),
        near_duplicates={"max_bits": near_bits, "pairs": len(pairs), "rows": len(partners),
                         "examples": [[ids[i], ids[j], d] for i, j, d in pairs[:20]]},
        index=index, models=names + [HYBRID] * hybrid, queries=queries)

    items = [item_from_row(r) for r in records]  # the rows as the training protocols see them, in index order
    evaluation.trained_here = _trained_on(items, evaluation.models)
    _leave_one_out(evaluation, keys, thumbnails, partners, progress)
    _text_to_image(evaluation, keys, version, queries_file, progress)
    _cross_source(evaluation, items)
    evaluation.created_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    evaluation.seconds = time.perf_counter() - started
    return evaluation


def _leave_one_out(evaluation: Evaluation, keys: dict, thumbnails: np.ndarray, partners: dict,
                   progress: bool) -> None:
    """Every row queries the others, for each model's stored vectors and for the raw pixels."""
    from tqdm.auto import tqdm

    index, categories = evaluation.index, keys[CATEGORY]
    vector_sets = [(name, "metadata" if index.indexes(name) == "text" else "image") for name in evaluation.models
                   if name != HYBRID]  # the hybrid has no vectors: it is judged by text queries only
    vector_sets.append((RAW_PIXELS, "pixels"))
    for name, kind in tqdm(vector_sets, desc="leave-one-out", unit="model", disable=not progress):
        vectors = thumbnails if name == RAW_PIXELS else index.vectors(name)
        ranked = metrics.rank_leave_one_out(vectors, K, partners)
        evaluation.ranked[name] = ranked
        result = {"input": kind, "baseline": name in (RAW_PIXELS, BASELINE_TEXT_MODEL),
                  "in_sample": name in evaluation.trained_here}  # a model trained on these rows: optimistic
        result.update(judge(ranked, keys, partners))
        result["with_near_duplicates"] = judge(metrics.rank_leave_one_out(vectors, K), keys, {})
        result["per_category"] = {category: judge(ranked, keys, partners, queries=categories == category)
                                  for category in evaluation.categories}
        found = ranked >= 0
        counts = metrics.confusion_matrix(np.broadcast_to(categories[:, None], ranked.shape)[found],
                                          categories[ranked[found]], evaluation.categories)
        result["confusion"] = {"categories": evaluation.categories, "counts": counts.tolist()}
        if kind == "image":
            result["feedback"] = feedback_gain(vectors, ranked, keys[LABEL], partners)
        evaluation.image[name] = result
    evaluation.random = {level: random_expectation(keys[level], partners) for level in LEVELS}


def _text_to_image(evaluation: Evaluation, keys: dict, version: int, queries_file, progress: bool) -> None:
    """The query file through the engine's text search for every text-capable model of the index, the hybrid
    fitted first on the TRAIN queries. Headline figures: the TEST queries when the file has splits, else all."""
    from tqdm.auto import tqdm

    from .hybrid_fit import fit_hybrid

    index, queries, ids = evaluation.index, evaluation.queries, evaluation.index.ids
    held_out = in_split(queries, TEST) or list(range(len(queries)))
    train = in_split(queries, TRAIN)
    evaluation.text = {"file": shown_path(queries_file), "version": version, "queries": len(queries),
                       "judged_on": TEST if len(held_out) < len(queries) else "all", "judged_queries": len(held_out),
                       "models": {}}
    row_labels = np.asarray([r["label"] or "" for r in index.records], dtype=object)
    targets = {level: np.stack([q.relevant(keys[CATEGORY], row_labels, level) for q in queries])
               for level in LEVELS}
    text_models = [name for name in index.text_models() if name in evaluation.models]
    for name in sorted(text_models, key=lambda name: name == HYBRID):  # the hybrid last: after its fit
        if name == HYBRID:
            fusion = fit_hybrid(index, queries, keys[CATEGORY], row_labels, evaluation.text["file"])
            evaluation.text["fusion"] = fusion.to_dict() if fusion else "default (no training queries)"
        ranked = np.full((len(queries), K), -1, dtype=np.int64)
        for position, query in enumerate(tqdm(queries, desc=f"text queries {name}", unit="query",
                                              disable=not progress)):
            rows = index.search_text(query.text, name, K)
            ranked[position, :len(rows)] = rows
        evaluation.text_ranked[name] = ranked
        searches = index.indexes(name)
        result = {"searches": {"text": "metadata", "image": "images"}.get(searches, searches)}
        relevant = {level: np.take_along_axis(targets[level], np.maximum(ranked, 0), axis=1) & (ranked >= 0)
                    for level in LEVELS}
        for level in LEVELS:
            result[level] = figures(relevant[level][held_out], targets[level][held_out].sum(axis=1))
        if train and name != HYBRID:  # the figures that choose among text models (the hybrid was fitted on them)
            result["train_queries"] = {level: figures(relevant[level][train], targets[level][train].sum(axis=1))
                                       for level in LEVELS}
        result["all_queries"] = {level: figures(relevant[level], targets[level].sum(axis=1)) for level in LEVELS}
        result["per_query"] = [
            {"text": q.text, "category": q.category, "labels": list(q.labels), "split": q.split,
             "relevant_rows": int(targets[LABEL if q.labels else CATEGORY][i].sum()),
             "top": [ids[row] for row in ranked[i] if row >= 0][:5],
             **{f"{level}_p@5": round_figure(metrics.precision_at_k(relevant[level][i], 5))
                for level in LEVELS if level == CATEGORY or q.labels}}
            for i, q in enumerate(queries)]
        evaluation.text["models"][name] = result
    judged = {level: np.isin(np.arange(len(queries)), held_out) & (targets[level].sum(axis=1) > 0)
              for level in LEVELS}
    hindsight = _best_model_per_query(evaluation.text["models"], judged)
    if hindsight:
        evaluation.text["best_model_per_query"] = hindsight
    if not text_models:
        evaluation.text["skipped"] = "no text-capable model in this index"
    evaluation.text["random"] = {level: random_text_expectation(targets[level][held_out], len(ids))
                                 for level in LEVELS}


def _best_model_per_query(models: dict, judged: dict[str, np.ndarray]) -> dict | None:
    """Held-out P@5 when, for each query, the one text model (not the hybrid) that did best on it is taken,
    known only in hindsight: the ceiling of any fusion that picks one model per query, so a missed target
    can be told apart as the fusion's fault or every model's. `judged`: per level, the held-out queries that
    have relevant rows (the ones the models' own figures average over)."""
    singles = {name: result["per_query"] for name, result in models.items() if name != HYBRID}
    if len(singles) < 2:
        return None
    best = [max((per_query[i] for per_query in singles.values()),
                key=lambda q: (q.get("label_p@5") or 0) + q["category_p@5"]) for i in range(len(judged[CATEGORY]))]
    out = {"models": list(singles), "queries": int(judged[CATEGORY].sum())}
    for level in LEVELS:
        chosen = [q[f"{level}_p@5"] for q, counted in zip(best, judged[level]) if counted]
        out[f"{level}_p@5"] = round_figure(float(np.mean(chosen))) if chosen else None
    return out


def _trained_on(items: list[Item], models: list[str]) -> set[str]:
    """The models whose training card says they were trained on exactly these rows."""
    from ..embedders import training_card

    data = fingerprint(items)
    return {name for name in models if (training_card(name) or {}).get("data_fingerprint") == data}


def _cross_source(evaluation: Evaluation, items: list[Item], k: int = CROSS_SOURCE_FOLDS) -> None:
    """Whole sources held out: each fold's rows query an index of the other folds' rows only. A model that
    was fitted on this collection is judged by the fold models of its training card (never by vectors of a
    model that saw the held-out rows); a model fitted on nothing here, by its stored vectors."""
    from ..embedders import training_card
    from .default_choice import nested_default
    from .protocols import cross_source, cross_source_folds, no_relevant_report

    if len({item.source for item in items}) < 2:
        evaluation.cross_source = {"skipped": "the collection has fewer than 2 sources"}
        return
    folds, origin = _card_folds(items, evaluation), "the outer folds of a model trained here (its training card)"
    if folds is None:
        folds, origin = cross_source_folds(items, k=k, seed=0), f"{k} folds of whole sources, seed 0"
    evaluation.cross_source = {
        "folds": int(folds.max()) + 1, "seed": 0, "assignment": origin,
        "sources": {item.source: int(fold) for item, fold in zip(items, folds)},
        "no_relevant_row": no_relevant_report(items, folds), "models": {}}
    index = evaluation.index
    stored: dict[str, np.ndarray] = {}  # the candidates of the default rule: image models fitted on nothing here
    for name in evaluation.models:
        if index.indexes(name) != "image":
            continue
        card = training_card(name)
        if name in evaluation.trained_here and card.get("cross_source"):
            protocols = card.get("evaluation", {})
            evaluation.cross_source["models"][name] = {
                "from": "the training card's fold models (each fold's rows unseen by the model that embedded them)",
                "cross_source": card["cross_source"],
                # what the training run compared on the same folds, and its in-source out-of-fold protocol
                "compared": _variants(protocols.get("cross_source", {})),
                "in_source_out_of_fold": _variants(protocols.get("in_source_out_of_fold", {}))}
            continue
        vectors = index.vectors(name)
        result = cross_source(items, lambda train, vectors=vectors: vectors, folds)
        evaluation.cross_source["models"][name] = {
            "from": "stored vectors (a model fitted on none of these rows)" if not card else
                    "stored vectors of a model trained on another collection (optimistic if it saw these rows)",
            "cross_source": result.summary(items)}
        if not card:
            stored[name] = vectors
    nested = nested_default(items, stored, folds)
    if nested:
        evaluation.cross_source["default_rule_nested"] = nested


def _card_folds(items: list[Item], evaluation: Evaluation) -> np.ndarray | None:
    """The outer folds a model trained on these very rows was judged on (its card's `fold_sources`), so that every
    model of the cross-source table is judged on the same held-out sources; None where no such card is here."""
    from ..embedders import training_card
    from .folds import folds_of_sources

    for name in sorted(evaluation.trained_here):
        card = training_card(name) or {}
        recorded = card.get("evaluation", {}).get("cross_source", {}).get("fold_sources")
        folds = folds_of_sources(items, recorded) if isinstance(recorded, dict) and recorded else None
        if folds is not None and len(set(folds.tolist())) >= 2:
            return folds
    return None


def _variants(protocol: dict) -> dict:
    """The entries of a training card's protocol that are figures of a variant (not folds or notes)."""
    return {variant: figures for variant, figures in protocol.items()
            if isinstance(figures, dict) and all(isinstance(figures.get(level), dict) and "p@5" in figures[level]
                                                 for level in LEVELS)}


__all__ = ["evaluate_index", "Evaluation", "display_name", "RAW_PIXELS", "BASELINE_TEXT_MODEL"]
