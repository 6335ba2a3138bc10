"""Measure retrieval quality of an index: leave-one-out image queries, text queries, classic baselines.

    python -m retrieval evaluate --index DIR [--models a,b] [--json] [--out DIR]

This module runs the measurement; report.py prints it as tables and plots.py draws it.

Leave-one-out: every row queries all the others through its stored vector (a matrix product over the index's
vectors, ranked exactly as the flat inner-product FAISS index ranks them). A row's near duplicates (the
validator's perceptual hash) are taken out of its ranked list, so a copy of the query cannot inflate the
figures; the figures with them left in are reported as well. Rows are judged two ways: same category, and
same (category, label) where the source gives a label (rows without a label neither query nor count as
relevant at label level). Baselines run in the same pass: a 32x32 raw-pixel thumbnail, the index's TF-IDF
column, and the expectation of a random ranking.

Text queries come from a versioned file (retrieval/queries/text_queries.json) and go through
`SearchEngine.search_text` for every text-capable model of the index.

Besides the tables, the JSON and the PNGs written to --out, a summary for the app's Models tab is written
atomically to `<current generation>/evaluation.json`:

    {"created_at": ..., "rows": ..., "near_duplicate_pairs": ..., "text_queries": ...,
     "models": {name: {"image_category_p@5": ..., "image_label_p@5": ...,   # leave-one-out, image-indexed models
                       "text_category_p@5": ..., "text_label_p@5": ...,     # the query file, text-capable models
                       ...,                                                 # p@1, p@10, map@10, r@10, hit@10
                       "metadata_category_p@5": ..., ...,                   # leave-one-out, text-indexed models
                       "indexes": "image" | "text"}},
     "baselines": {"raw-pixels": {...the same keys...}}}

Every model has every key, in this order, with null where a figure does not apply (a text model has no
image-to-image figures), so the first few keys make aligned columns. A run with --models merges its models
into the figures already there.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import metrics
from .errors import RetrievalError

if TYPE_CHECKING:
    from .search import SearchEngine

KS = (1, 5, 10)
K = max(KS)
RAW_PIXELS = "raw-pixels"
BASELINE_TEXT_MODEL = "tfidf"
THUMBNAIL_SIDE = 32
QUERIES_FILE = Path(__file__).with_name("queries") / "text_queries.json"
QUERIES_VERSION = 1
CATEGORY, LABEL = "category", "label"
LEVELS = (CATEGORY, LABEL)
FIGURES = tuple(f"p@{k}" for k in KS) + (f"map@{K}", f"r@{K}", f"hit@{K}")
_CHUNK = 1024  # query rows scored per matrix product
CROSS_SOURCE_FOLDS = 3  # whole sources per fold
FEEDBACK_JUDGED = 10  # results a person judges in one round of relevance feedback


@dataclass(frozen=True)
class TextQuery:
    text: str
    category: str
    labels: tuple[str, ...] = ()  # any of these labels is relevant at label level; empty: category level only


def load_queries(path: str | Path | None = None) -> tuple[int, list[TextQuery]]:
    """(version, queries) from a query file; the packaged file when `path` is None."""
    path = Path(path) if path is not None else QUERIES_FILE
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise RetrievalError(f"Cannot read the query file {path}: {error}") from error
    if payload.get("version") != QUERIES_VERSION:
        raise RetrievalError(f"{path} has query-file version {payload.get('version')!r}; this program reads "
                             f"version {QUERIES_VERSION}.")
    queries = []
    for position, item in enumerate(payload.get("queries", [])):
        if not isinstance(item, dict) or not str(item.get("text", "")).strip() or not item.get("category"):
            raise RetrievalError(f"{path}: query {position} needs a non-empty 'text' and 'category'; got {item!r}.")
        labels = item.get("label") or ()
        labels = (labels,) if isinstance(labels, str) else tuple(labels)
        queries.append(TextQuery(item["text"], item["category"], labels))
    if not queries:
        raise RetrievalError(f"{path} holds no queries.")
    return payload["version"], queries


@dataclass
class Evaluation:
    """Every figure of one run; `to_dict()` is the JSON, `to_text()` the tables."""

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
    engine: object = field(default=None, repr=False)
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

    def summary(self) -> dict:
        """The per-model figures the app's Models tab shows. Every model lists the same keys in the same
        order, headline figures first (None where a figure does not apply), so a table of the first few
        columns lines up."""
        headline = [f"{prefix}_{level}_p@5" for prefix in ("cross_source", "image", "text") for level in LEVELS]
        models, baselines = {}, {}
        for name, result in self.image.items():
            prefix = "metadata" if result["input"] == "metadata" else "image"
            entry = {key: None for key in headline}
            held_out = self.cross_source.get("models", {}).get(name)
            for level in LEVELS:
                entry[f"cross_source_{level}_p@5"] = held_out["cross_source"][level]["p@5"] if held_out else None
            text = self.text.get("models", {}).get(name)
            seen = result.get("in_sample", False)  # trained on these rows: its leave-one-out is not shown here
            for level in LEVELS:
                entry.update({f"image_{level}_{key}": result[level][key] if prefix == "image" and not seen else None
                              for key in FIGURES})
                entry.update({f"text_{level}_{key}": text[level][key] if text else None for key in FIGURES})
            for level in LEVELS:
                entry.update({f"metadata_{level}_{key}": result[level][key] if prefix == "metadata" else None
                              for key in FIGURES})
            feedback = result.get("feedback") or {}
            for key in ("gain", "residual_gain"):
                entry[f"feedback_{key}_label_p@5"] = None if seen else feedback.get(key)
            entry["indexes"] = "text" if prefix == "metadata" else "image"
            (baselines if name == RAW_PIXELS else models)[name] = entry
        return {"created_at": self.created_at, "rows": self.rows,
                "near_duplicate_pairs": self.near_duplicates["pairs"],
                "text_queries": self.text.get("queries", 0), "models": models, "baselines": baselines}

    def save_summary(self) -> Path:
        """Merge this run's per-model figures into the index generation's summary (for the app)."""
        return self.engine.generation.write_evaluation(self.summary())


def display_name(name: str) -> str:
    """A vector set's name in tables and plots, baselines marked."""
    if name == RAW_PIXELS:
        return f"{RAW_PIXELS} {THUMBNAIL_SIDE}x{THUMBNAIL_SIDE} (baseline)"
    return f"{name} (baseline)" if name == BASELINE_TEXT_MODEL else name


# --- the evaluation ----------------------------------------------------------------------------------------
def evaluate_index(index: "str | Path | SearchEngine" = "index", models: list[str] | None = None,
                   queries_file: str | Path | None = None, progress: bool = True,
                   near_bits: int | None = None) -> Evaluation:
    """Evaluate `models` of the index (default: all), with the TF-IDF and raw-pixel baselines alongside.
    `index`: an index folder, or an engine already serving one."""
    from .search import SearchEngine
    from .validate import NEAR_DUPLICATE_BITS

    started = time.perf_counter()
    near_bits = NEAR_DUPLICATE_BITS if near_bits is None else near_bits
    version, queries = load_queries(queries_file)
    engine = index if isinstance(index, SearchEngine) else SearchEngine(index)
    names = engine.policy.models
    if models:  # the TF-IDF baseline runs whenever the index has it
        names = list(dict.fromkeys(models))
        for name in names:
            engine.vectors(name)  # an unknown name raises the engine's own error, listing the index's models
        if BASELINE_TEXT_MODEL in engine.policy.models and BASELINE_TEXT_MODEL not in names:
            names.append(BASELINE_TEXT_MODEL)
    index_dir = engine.index_dir
    ids = engine.catalogue.ids
    records = [engine.catalogue.record(item) for item in ids]
    categories = np.asarray([r["category"] or "" for r in records], dtype=object)
    labels = np.asarray([f"{r['category']}\x1f{r['label']}" if r["label"] else "" for r in records], dtype=object)
    keys = {CATEGORY: categories, LABEL: labels}

    thumbnails, hashes = _image_features(engine, ids, progress)
    partners, pairs = _near_duplicates(ids, hashes, near_bits)
    evaluation = Evaluation(
        index_dir=str(index_dir), generation=engine.generation.name, rows=len(ids),
        categories=sorted({c for c in categories if c}),
        near_duplicates={"max_bits": near_bits, "pairs": len(pairs), "rows": len(partners),
                         "examples": [[ids[i], ids[j], d] for i, j, d in pairs[:20]]},
        engine=engine, models=names, queries=queries)

    items = _items(records)
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

    engine, categories = evaluation.engine, keys[CATEGORY]
    vector_sets = [(name, "metadata" if _indexes(engine, name) == "text" else "image") for name in evaluation.models]
    vector_sets.append((RAW_PIXELS, "pixels"))
    for name, kind in tqdm(vector_sets, desc="leave-one-out", unit="model", disable=not progress):
        vectors = thumbnails if name == RAW_PIXELS else engine.vectors(name)
        ranked = rank_leave_one_out(vectors, K, partners)
        evaluation.ranked[name] = ranked
        result = {"input": kind, "baseline": name in (RAW_PIXELS, BASELINE_TEXT_MODEL),
                  "in_sample": name in evaluation.trained_here}  # a model trained on these rows: optimistic
        result.update(_judge_leave_one_out(ranked, keys, partners))
        result["with_near_duplicates"] = _judge_leave_one_out(rank_leave_one_out(vectors, K, {}), keys, {})
        result["per_category"] = {
            category: _judge_leave_one_out(ranked, keys, partners, queries=categories == category)
            for category in evaluation.categories}
        found = ranked >= 0
        counts = metrics.confusion_matrix(np.broadcast_to(categories[:, None], ranked.shape)[found],
                                          categories[ranked[found]], evaluation.categories)
        result["confusion"] = {"categories": evaluation.categories, "counts": counts.tolist()}
        if kind == "image":
            result["feedback"] = feedback_gain(vectors, ranked, keys[LABEL], partners)
        evaluation.image[name] = result
    evaluation.random = {level: _random_expectation(keys[level], partners) for level in LEVELS}


def _text_to_image(evaluation: Evaluation, keys: dict, version: int, queries_file, progress: bool) -> None:
    """The query file through `search_text` for every text-capable model of the index."""
    from tqdm.auto import tqdm

    engine, queries, ids = evaluation.engine, evaluation.queries, evaluation.engine.catalogue.ids
    shown_file = Path(queries_file) if queries_file else QUERIES_FILE.relative_to(Path(__file__).parents[1])
    evaluation.text = {"file": shown_file.as_posix(), "version": version, "queries": len(queries), "models": {}}
    targets = {level: np.stack([_text_targets(q, keys[CATEGORY], keys[LABEL], level) for q in queries])
               for level in LEVELS}
    text_models = [name for name in engine.policy.models_for("text") if name in evaluation.models]
    for name in text_models:
        ranked = np.full((len(queries), K), -1, dtype=np.int64)
        for position, query in enumerate(tqdm(queries, desc=f"text queries {name}", unit="query",
                                              disable=not progress)):
            hits = engine.search_text(query.text, model=name, k=K, min_score=-1.0)
            ranked[position, :len(hits)] = [hit.row for hit in hits]
        evaluation.text_ranked[name] = ranked
        result = {"searches": "metadata" if _indexes(engine, name) == "text" else "images"}
        relevant = {level: np.take_along_axis(targets[level], np.maximum(ranked, 0), axis=1) & (ranked >= 0)
                    for level in LEVELS}
        for level in LEVELS:
            result[level] = figures(relevant[level], targets[level].sum(axis=1))
        result["per_query"] = [
            {"text": q.text, "category": q.category, "labels": list(q.labels),
             "relevant_rows": int(targets[LABEL if q.labels else CATEGORY][i].sum()),
             "top": [ids[row] for row in ranked[i] if row >= 0][:5],
             **{f"{level}_p@5": _round(metrics.precision_at_k(relevant[level][i], 5))
                for level in LEVELS if level == CATEGORY or q.labels}}
            for i, q in enumerate(queries)]
        evaluation.text["models"][name] = result
    if not text_models:
        evaluation.text["skipped"] = "no text-capable model in this index"
    evaluation.text["random"] = {level: _random_text(targets[level], len(ids)) for level in LEVELS}


def _items(records: list[dict]):
    """The rows as the training protocols see them (same order as the index)."""
    from .training.data import Item

    return [Item(id=r["id"], file_name=r["file_name"], path="", category=(r["category"] or "").lower(),
                 label=(r["label"] or "").lower(), source=r["source"] or "unknown", caption=r["caption"] or "")
            for r in records]


def _trained_on(items, models: list[str]) -> set[str]:
    """The models whose training card says they were trained on exactly these rows."""
    from .embedders import training_card
    from .training.data import fingerprint

    data = fingerprint(items)
    return {name for name in models if (training_card(name) or {}).get("data_fingerprint") == data}


def _cross_source(evaluation: Evaluation, items: list, k: int = CROSS_SOURCE_FOLDS) -> None:
    """Whole sources held out: each fold's rows query an index of the other folds' rows only. A model that
    was fitted on this collection is judged by the fold models of its training card (never by vectors of a
    model that saw the held-out rows); a model fitted on nothing here, by its stored vectors."""
    from .embedders import training_card
    from .training.protocols import cross_source, cross_source_folds, no_relevant_report

    if len({item.source for item in items}) < 2:
        evaluation.cross_source = {"skipped": "the collection has fewer than 2 sources"}
        return
    folds = cross_source_folds(items, k=k, seed=0)
    evaluation.cross_source = {
        "folds": int(folds.max()) + 1, "seed": 0,
        "sources": {item.source: int(fold) for item, fold in zip(items, folds)},
        "no_relevant_row": no_relevant_report(items, folds), "models": {}}
    engine = evaluation.engine
    for name in evaluation.models:
        if _indexes(engine, name) != "image":
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
        vectors = engine.vectors(name)
        result = cross_source(items, lambda train, vectors=vectors: vectors, folds)
        evaluation.cross_source["models"][name] = {
            "from": "stored vectors (a model fitted on none of these rows)" if not card else
                    "stored vectors of a model trained on another collection (optimistic if it saw these rows)",
            "cross_source": result.summary(items)}


def _variants(protocol: dict) -> dict:
    """The entries of a training card's protocol that are figures of a variant (not folds or notes)."""
    return {variant: figures for variant, figures in protocol.items()
            if isinstance(figures, dict) and all(isinstance(figures.get(level), dict) and "p@5" in figures[level]
                                                 for level in LEVELS)}


def _indexes(engine, name: str) -> str:
    return engine.policy.entries[name].indexes


def _image_features(engine, ids: list[str], progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """Raw-pixel vectors (32x32 grayscale thumbnails, L2-normalised) and 64-bit pHashes of the stored images."""
    import imagehash
    from PIL import Image
    from tqdm.auto import tqdm

    from .embedders import l2_normalise

    def inspect(item_id):
        image = engine.catalogue.image(item_id)  # the stored image, decoded as the validator decodes it
        thumbnail = image.resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BOX)
        return np.asarray(thumbnail, dtype=np.float32).ravel(), imagehash.phash(image).hash.flatten()

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(tqdm(pool.map(inspect, ids), total=len(ids), desc="read images", unit="img",
                            disable=not progress))
    thumbnails = l2_normalise(np.stack([r[0] for r in results]))
    return thumbnails, np.stack([r[1] for r in results])


def _near_duplicates(ids: list[str], hashes: np.ndarray, bits: int):
    """({row: {partner rows}}, [(row, row, distance)]) by the validator's pHash rule."""
    from .validate import near_duplicate_pairs

    position = {item: i for i, item in enumerate(ids)}
    pairs = [(position[a], position[b], d) for a, b, d in near_duplicate_pairs(ids, list(hashes), bits)]
    partners: dict[int, set[int]] = defaultdict(set)
    for i, j, _ in pairs:
        partners[i].add(j)
        partners[j].add(i)
    return dict(partners), pairs


def rank_leave_one_out(vectors: np.ndarray, k: int, exclude: dict[int, set[int]] | None = None) -> np.ndarray:
    """(rows, k) row numbers of each row's k nearest other rows by inner product, best first (ties: lower row).

    `exclude[i]` are rows never returned for query i. Positions with no candidate left hold -1.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    exclude = exclude or {}
    width = min(k, n)
    ranked = np.full((n, k), -1, dtype=np.int64)
    for start in range(0, n, _CHUNK):
        stop = min(n, start + _CHUNK)
        scores = vectors[start:stop] @ vectors.T
        scores[np.arange(stop - start), np.arange(start, stop)] = -np.inf
        for i in range(start, stop):
            if i in exclude:
                scores[i - start, list(exclude[i])] = -np.inf
        top = np.argpartition(-scores, width - 1, axis=1)[:, :width] if width < n else \
            np.tile(np.arange(n), (stop - start, 1))
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.lexsort((top, -top_scores), axis=1)
        top, top_scores = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)
        ranked[start:stop, :width] = np.where(np.isfinite(top_scores), top, -1)
    return ranked


def feedback_gain(vectors: np.ndarray, ranked: np.ndarray, key: np.ndarray, partners: dict[int, set[int]],
                  judged: int = FEEDBACK_JUDGED) -> dict:
    """What one round of relevance feedback gains: every labelled row's top `judged` results are judged by label
    (as a person marking them would), its vector moved by Rocchio (feedback.py) and its neighbours ranked again.

    "p@5" is what the person sees after refining (the judged rows may come back: they are what they marked);
    "residual p@5" leaves the judged rows out of both rankings (the plain one's ranks judged+1..judged+5), the
    usual fair measure, since only rows nobody has looked at yet are new information."""
    from .feedback import rocchio_rows

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    counts = _leave_one_out_counts(key, partners)
    queries = np.flatnonzero((key != "") & (counts > 0) & (ranked[:, judged - 1] >= 0))
    if not len(queries):
        return {"queries": 0}
    seen = ranked[queries, :judged]
    relevant = key[seen] == key[queries][:, None]
    refined = rocchio_rows(vectors, queries, seen, relevant)
    depth = judged + 5
    plain = rank_leave_one_out(vectors, depth, partners)[queries]
    after, residual = np.full((len(queries), 5), -1), np.full((len(queries), 5), -1)
    for start in range(0, len(queries), _CHUNK):
        scores = refined[start:start + _CHUNK] @ vectors.T
        for i, row in enumerate(queries[start:start + _CHUNK]):
            scores[i, [row, *partners.get(row, ())]] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
        after[start:start + _CHUNK] = order[:, :5]
        for i, ranking in enumerate(order):
            fresh = [r for r in ranking if r not in set(seen[start + i])][:5]
            residual[start + i, :len(fresh)] = fresh

    def precision(rows: np.ndarray) -> float:
        return _round(np.mean((rows >= 0) & (key[np.maximum(rows, 0)] == key[queries][:, None])))

    plain_p5, after_p5 = precision(plain[:, :5]), precision(after)
    plain_residual, after_residual = precision(plain[:, judged:depth]), precision(residual)
    return {"queries": int(len(queries)), "judged": judged, "label_p@5": plain_p5, "refined_label_p@5": after_p5,
            "gain": _round(after_p5 - plain_p5), "residual_label_p@5": plain_residual,
            "refined_residual_label_p@5": after_residual, "residual_gain": _round(after_residual - plain_residual)}


def figures(relevant: np.ndarray, n_relevant: np.ndarray) -> dict:
    """P@k, mAP@K, R@K, hit@K over the queries that have at least one relevant candidate."""
    relevant = np.asarray(relevant, dtype=bool).reshape(len(n_relevant), -1)
    n_relevant = np.asarray(n_relevant)
    judged = n_relevant > 0
    result = {"queries": int(judged.sum()), "unjudged": int((~judged).sum())}
    if not judged.any():
        return {**result, **{key: None for key in FIGURES}}
    relevant, n_relevant = relevant[judged], n_relevant[judged]
    for k in KS:
        result[f"p@{k}"] = _round(np.mean(metrics.precision_at_k(relevant, k)))
    result[f"map@{K}"] = _round(metrics.mean_average_precision_at_k(relevant, n_relevant, K))
    result[f"r@{K}"] = _round(np.mean(metrics.recall_at_k(relevant, n_relevant, K)))
    result[f"hit@{K}"] = _round(np.mean(metrics.hit_rate_at_k(relevant, K)))
    return result


def _round(value) -> float:
    return round(float(value), 4)


def _leave_one_out_counts(key: np.ndarray, partners: dict[int, set[int]]) -> np.ndarray:
    """Relevant candidates per query: rows sharing its key, minus itself and its excluded near duplicates."""
    totals = Counter(key.tolist())
    counts = np.asarray([totals[k] - 1 if k else 0 for k in key.tolist()], dtype=np.int64)
    for i, others in partners.items():
        if key[i]:
            counts[i] -= sum(1 for j in others if key[j] == key[i])
    return counts


def _judge_leave_one_out(ranked, keys: dict, partners, queries: np.ndarray | None = None) -> dict:
    out = {}
    for level in LEVELS:
        key = keys[level]
        found = np.where(ranked >= 0, key[np.maximum(ranked, 0)], "")
        relevant = (ranked >= 0) & (found == key[:, None]) & (key[:, None] != "")
        counts = _leave_one_out_counts(key, partners)
        chosen = np.ones(len(key), dtype=bool) if queries is None else queries
        out[level] = figures(relevant[chosen], counts[chosen])
    return out


def _random_expectation(key: np.ndarray, partners: dict[int, set[int]]) -> dict:
    """What a random ranking of the candidates scores on average (P@k, R@K and hit@K in closed form)."""
    counts = _leave_one_out_counts(key, partners)
    candidates = np.asarray([len(key) - 1 - len(partners.get(i, ())) for i in range(len(key))], dtype=np.float64)
    judged = counts > 0
    return _random_figures(counts[judged].astype(np.float64), candidates[judged])


def _random_text(targets: np.ndarray, rows: int) -> dict:
    counts = targets.sum(axis=1).astype(np.float64)
    judged = counts > 0
    return _random_figures(counts[judged], np.full(judged.sum(), float(rows)))


def _random_figures(relevant: np.ndarray, candidates: np.ndarray) -> dict:
    if not len(relevant):
        return {"queries": 0, **{key: None for key in FIGURES}}
    precision = _round(np.mean(relevant / candidates))
    miss = np.ones_like(relevant)
    for i in range(K):  # probability that none of the K drawn candidates is relevant
        miss *= np.clip((candidates - relevant - i) / np.maximum(candidates - i, 1), 0, 1)
    return {"queries": int(len(relevant)), **{f"p@{k}": precision for k in KS}, f"map@{K}": None,
            f"r@{K}": _round(np.mean(np.minimum(K, candidates) / candidates)), f"hit@{K}": _round(np.mean(1 - miss))}


def _text_targets(query: TextQuery, categories: np.ndarray, labels: np.ndarray, level: str) -> np.ndarray:
    """Which rows are relevant to a text query at `level` (none at label level when it names no label)."""
    in_category = categories == query.category
    if level == CATEGORY:
        return in_category
    if not query.labels:
        return np.zeros(len(categories), dtype=bool)
    wanted = {f"{query.category}\x1f{label}" for label in query.labels}
    return np.asarray([key in wanted for key in labels.tolist()], dtype=bool)



__all__ = ["evaluate_index", "load_queries", "rank_leave_one_out", "figures", "display_name", "Evaluation",
           "TextQuery"]
