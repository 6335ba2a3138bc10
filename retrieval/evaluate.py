"""Measure retrieval quality of an index: leave-one-out image queries, text queries, classic baselines, plots.

    python -m retrieval evaluate --index DIR [--models a,b] [--json] [--out DIR]

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
import math
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import metrics
from .errors import RetrievalError

KS = (1, 5, 10)
K = max(KS)
RAW_PIXELS = "raw-pixels"
BASELINE_TEXT_MODEL = "tfidf"
THUMBNAIL_SIDE = 32
QUERIES_FILE = Path(__file__).with_name("queries") / "text_queries.json"
QUERIES_VERSION = 1
SUMMARY_FILE = "evaluation.json"
DEFAULT_OUT = "eval"  # git-ignored
CATEGORY, LABEL = "category", "label"
LEVELS = (CATEGORY, LABEL)
FIGURES = tuple(f"p@{k}" for k in KS) + (f"map@{K}", f"r@{K}", f"hit@{K}")
_CHUNK = 1024  # query rows scored per matrix product


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
    created_at: str = ""
    seconds: float = 0.0
    # kept for the plots and grids, left out of the JSON
    engine: object = field(default=None, repr=False)
    ranked: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    text_ranked: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    queries: list[TextQuery] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        return {"index": self.index_dir, "generation": self.generation, "rows": self.rows,
                "created_at": self.created_at, "seconds": round(self.seconds, 1), "ks": list(KS),
                "categories": self.categories, "near_duplicates": self.near_duplicates,
                "image_queries": self.image, "random": self.random, "text_queries": self.text}

    def summary(self) -> dict:
        """The per-model figures the app's Models tab shows. Every model lists the same keys in the same
        order, headline figures first (None where a figure does not apply), so a table of the first few
        columns lines up."""
        headline = [f"{prefix}_{level}_p@5" for prefix in ("image", "text") for level in LEVELS]
        models, baselines = {}, {}
        for name, result in self.image.items():
            prefix = "metadata" if result["input"] == "metadata" else "image"
            entry = {key: None for key in headline}
            text = self.text.get("models", {}).get(name)
            for level in LEVELS:
                entry.update({f"image_{level}_{key}": result[level][key] if prefix == "image" else None
                              for key in FIGURES})
                entry.update({f"text_{level}_{key}": text[level][key] if text else None for key in FIGURES})
            for level in LEVELS:
                entry.update({f"metadata_{level}_{key}": result[level][key] if prefix == "metadata" else None
                              for key in FIGURES})
            entry["indexes"] = "text" if prefix == "metadata" else "image"
            (baselines if name == RAW_PIXELS else models)[name] = entry
        return {"created_at": self.created_at, "rows": self.rows,
                "near_duplicate_pairs": self.near_duplicates["pairs"],
                "text_queries": self.text.get("queries", 0), "models": models, "baselines": baselines}

    def to_text(self) -> str:
        from .cli import format_table

        duplicates = self.near_duplicates
        lines = [f"Evaluation of {self.index_dir} ({self.rows} rows, generation {self.generation}, "
                 f"{self.created_at}, {self.seconds:.0f} s)",
                 f"Near duplicates (pHash distance <= {duplicates['max_bits']} bits): {duplicates['pairs']} pairs "
                 f"over {duplicates['rows']} rows, taken out of each other's ranked lists.", ""]
        header = ["model", "input", "queries", *(f"P@{k}" for k in KS), f"mAP@{K}", f"R@{K}", f"hit@{K}"]
        for level in LEVELS:
            title = "same category" if level == CATEGORY else "same (category, label), labelled rows only"
            lines.append(f"Leave-one-out (each row queries the others with its stored vector; input = what the "
                         f"vector encodes), relevant = {title}:")
            rows = [[self._name(name), result["input"], *_cells(result[level])]
                    for name, result in self.image.items()]
            rows.append(["random ranking (expected)", "-", *_cells(self.random[level])])
            lines += [format_table(header, rows), ""]
        lines.append("Near duplicates left in (how much they would inflate the figures):")
        rows = [[self._name(name), level, result["with_near_duplicates"][level]["p@1"],
                 result[level]["p@1"], result["with_near_duplicates"][level][f"map@{K}"], result[level][f"map@{K}"]]
                for name, result in self.image.items() for level in LEVELS]
        lines += [format_table(["model", "level", "P@1 with", "P@1 without", f"mAP@{K} with", f"mAP@{K} without"],
                               [[r[0], r[1], *(_fmt(v) for v in r[2:])] for r in rows]), ""]
        lines.append("Per category, leave-one-out P@5 (same category / same label):")
        rows = []
        for category in self.categories:
            cells = [category]
            for result in self.image.values():
                figures = result["per_category"].get(category, {})
                cells.append(f"{_fmt(figures.get(CATEGORY, {}).get('p@5'))} / "
                             f"{_fmt(figures.get(LABEL, {}).get('p@5'))}")
            rows.append(cells)
        lines += [format_table(["category", *(self._name(n) for n in self.image)], rows), ""]
        for name, result in self.image.items():
            confusion = result["confusion"]
            lines.append(f"Category confusion, {self._name(name)} (query category -> categories of its top "
                         f"{K}, share of row):")
            shares = metrics.row_normalise(np.asarray(confusion["counts"]))
            lines += [format_table(["query \\ result", *confusion["categories"]],
                                   [[c, *(f"{v:.2f}" for v in row)] for c, row in
                                    zip(confusion["categories"], shares)]), ""]
        if self.text.get("models"):
            lines.append(f"Text to image, {self.text['queries']} queries from {self.text['file']} "
                         f"(version {self.text['version']}):")
            rows = []
            for name, result in self.text["models"].items():
                for level in LEVELS:
                    rows.append([self._name(name), result["searches"], level, *_cells(result[level])])
            for level in LEVELS:
                rows.append(["random ranking (expected)", "-", level, *_cells(self.text["random"][level])])
            lines += [format_table(["model", "searches", "level", *header[2:]], rows), ""]
        return "\n".join(lines).rstrip() + "\n"

    @staticmethod
    def _name(name: str) -> str:
        if name == RAW_PIXELS:
            return f"{RAW_PIXELS} {THUMBNAIL_SIDE}x{THUMBNAIL_SIDE} (baseline)"
        return f"{name} (baseline)" if name == BASELINE_TEXT_MODEL else name


def _fmt(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def _nan(value) -> float:
    return float("nan") if value is None else float(value)


def _cells(figures: dict) -> list[str]:
    return [str(figures.get("queries", "-")), *(_fmt(figures.get(key)) for key in FIGURES)]


# --- the evaluation ----------------------------------------------------------------------------------------
def evaluate_index(index_dir: str | Path = "index", models: list[str] | None = None,
                   queries_file: str | Path | None = None, progress: bool = True,
                   near_bits: int | None = None) -> Evaluation:
    """Evaluate `models` of the index (default: all), with the TF-IDF and raw-pixel baselines alongside."""
    from .search import SearchEngine
    from .store import current_generation, read_manifest
    from .validate import NEAR_DUPLICATE_BITS

    started = time.perf_counter()
    near_bits = NEAR_DUPLICATE_BITS if near_bits is None else near_bits
    version, queries = load_queries(queries_file)
    generation = current_generation(index_dir)
    wanted = None
    if models:  # the TF-IDF baseline runs whenever the index has it
        wanted = list(dict.fromkeys(models))
        has_baseline = generation is not None and BASELINE_TEXT_MODEL in read_manifest(generation)["models"]
        if has_baseline and BASELINE_TEXT_MODEL not in wanted:
            wanted.append(BASELINE_TEXT_MODEL)
    engine = SearchEngine(index_dir, models=wanted)
    ids = engine.ids
    records = [engine.record(item) for item in ids]
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
        engine=engine, queries=queries)

    _leave_one_out(evaluation, keys, thumbnails, partners, progress)
    _text_to_image(evaluation, keys, version, queries_file, progress)
    evaluation.created_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    evaluation.seconds = time.perf_counter() - started
    return evaluation


def _leave_one_out(evaluation: Evaluation, keys: dict, thumbnails: np.ndarray, partners: dict,
                   progress: bool) -> None:
    """Every row queries the others, for each model's stored vectors and for the raw pixels."""
    from tqdm.auto import tqdm

    engine, categories = evaluation.engine, keys[CATEGORY]
    vector_sets = [(name, "metadata" if _indexes(engine, name) == "text" else "image") for name in engine.models]
    vector_sets.append((RAW_PIXELS, "pixels"))
    for name, kind in tqdm(vector_sets, desc="leave-one-out", unit="model", disable=not progress):
        vectors = thumbnails if name == RAW_PIXELS else _stored_vectors(engine, name)
        ranked = rank_leave_one_out(vectors, K, partners)
        evaluation.ranked[name] = ranked
        result = {"input": kind, "baseline": name in (RAW_PIXELS, BASELINE_TEXT_MODEL)}
        result.update(_judge_leave_one_out(ranked, keys, partners))
        result["with_near_duplicates"] = _judge_leave_one_out(rank_leave_one_out(vectors, K, {}), keys, {})
        result["per_category"] = {
            category: _judge_leave_one_out(ranked, keys, partners, queries=categories == category)
            for category in evaluation.categories}
        found = ranked >= 0
        counts = metrics.confusion_matrix(np.broadcast_to(categories[:, None], ranked.shape)[found],
                                          categories[ranked[found]], evaluation.categories)
        result["confusion"] = {"categories": evaluation.categories, "counts": counts.tolist()}
        evaluation.image[name] = result
    evaluation.random = {level: _random_expectation(keys[level], partners) for level in LEVELS}


def _text_to_image(evaluation: Evaluation, keys: dict, version: int, queries_file, progress: bool) -> None:
    """The query file through `search_text` for every text-capable model of the index."""
    from tqdm.auto import tqdm

    engine, queries, ids = evaluation.engine, evaluation.queries, evaluation.engine.ids
    shown_file = Path(queries_file) if queries_file else QUERIES_FILE.relative_to(Path(__file__).parents[1])
    evaluation.text = {"file": shown_file.as_posix(), "version": version, "queries": len(queries), "models": {}}
    targets = {level: np.stack([_text_targets(q, keys[CATEGORY], keys[LABEL], level) for q in queries])
               for level in LEVELS}
    text_models = engine.models_for("text")
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


def _indexes(engine, name: str) -> str:
    return engine.manifest["models"][name].get("indexes", "image")


def _stored_vectors(engine, name: str) -> np.ndarray:
    """The model's vector column of the index, (rows, dim) float32, in row order."""
    import datasets

    dataset = datasets.load_from_disk(str(engine.generation / "dataset"))
    column = dataset.with_format("numpy", columns=[name])[name]
    return np.ascontiguousarray(np.asarray(column, dtype=np.float32))


def _image_features(engine, ids: list[str], progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """Raw-pixel vectors (32x32 grayscale thumbnails, L2-normalised) and 64-bit pHashes of the stored images."""
    import imagehash
    from PIL import Image
    from tqdm.auto import tqdm

    from .embedders import l2_normalise

    def inspect(item_id):
        image = engine.image(item_id)  # the stored image, decoded as the validator decodes it
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


# --- outputs -------------------------------------------------------------------------------------------------
def write_summary(evaluation: Evaluation) -> Path:
    """Merge this run's per-model figures into `<generation>/evaluation.json` (atomically) for the app."""
    from .store import write_json_atomic

    path = evaluation.engine.generation / SUMMARY_FILE
    previous = {}
    if path.is_file():
        try:
            previous = json.loads(path.read_text())
        except json.JSONDecodeError:
            previous = {}
    summary = evaluation.summary()
    summary["models"] = {**previous.get("models", {}), **summary["models"]}
    write_json_atomic(path, summary)
    return path


def write_outputs(evaluation: Evaluation, out_dir: str | Path, grid_queries: int = 6) -> list[Path]:
    """The table (evaluation.txt), the JSON, the plots and the result grids, in `out_dir`."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "evaluation.txt", out / "evaluation.json"]
    written[0].write_text(evaluation.to_text())
    written[1].write_text(json.dumps(evaluation.to_dict(), indent=2))
    written.append(_plot_precision(evaluation.image, out / "precision_at_k.png",
                                   "Image to image (leave-one-out)", evaluation.random))
    if evaluation.text.get("models"):
        written.append(_plot_precision(evaluation.text["models"], out / "text_precision_at_k.png",
                                       "Text to image", evaluation.text["random"]))
    written.append(_plot_per_category(evaluation, out / "per_category.png"))
    written.append(_plot_confusion(evaluation, out / "confusion.png"))
    samples = _grid_samples(evaluation, grid_queries)
    for name, ranked in evaluation.ranked.items():
        written.append(_plot_grid(evaluation, name, [(row, ranked[row]) for row in samples],
                                  out / f"grid_{name}.png"))
    text_samples = _text_grid_samples(evaluation.queries, grid_queries)
    for name, ranked in evaluation.text_ranked.items():
        written.append(_plot_grid(evaluation, name, [(evaluation.queries[i], ranked[i]) for i in text_samples],
                                  out / f"text_grid_{name}.png"))
    return written


def _plot_precision(results: dict, path: Path, title: str, random: dict) -> Path:
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 2.2 * len(names) + 3), 4), sharey=True)
    width = 0.8 / len(KS)
    for ax, level in zip(axes, LEVELS):
        for j, k in enumerate(KS):
            values = [results[n][level][f"p@{k}"] or 0.0 for n in names]
            bars = ax.bar(np.arange(len(names)) + (j - (len(KS) - 1) / 2) * width, values, width, label=f"P@{k}")
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
        chance = random[level].get("p@1")
        if chance is not None:
            ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="random")
        ax.set_xticks(np.arange(len(names)), [_tick(n, results[n]) for n in names], fontsize=8)
        ax.set_ylim(0, 1.22)  # room for the legend above the bars
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.set_title("same category" if level == CATEGORY else "same (category, label)")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("precision")
    axes[1].legend(loc="upper center", ncol=len(KS) + 1, fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _tick(name: str, result: dict) -> str:
    """'tfidf\n(metadata, baseline)': the model, what it compares, and whether it is a baseline."""
    what = result.get("input") or result.get("searches") or ""
    baseline = name in (RAW_PIXELS, BASELINE_TEXT_MODEL)
    detail = ", ".join(part for part in (what, "baseline" if baseline else "") if part)
    return f"{name}\n({detail})" if detail else name


def _plot_per_category(evaluation: Evaluation, path: Path) -> Path:
    import matplotlib.pyplot as plt

    names, categories = list(evaluation.image), evaluation.categories
    fig, axes = plt.subplots(1, 2, figsize=(0.9 * len(categories) * 2 + 4, 0.55 * len(names) + 2))
    colours = plt.get_cmap("viridis").with_extremes(bad="#dddddd")  # grey: no labelled rows in that category
    for ax, level in zip(axes, LEVELS):
        grid = np.array([[_nan(evaluation.image[n]["per_category"][c][level]["p@5"]) for c in categories]
                         for n in names], dtype=float)
        ax.imshow(np.ma.masked_invalid(grid), cmap=colours, vmin=0, vmax=1, aspect="auto")
        for (i, j), value in np.ndenumerate(grid):
            ax.text(j, i, "-" if np.isnan(value) else f"{value:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if not np.isnan(value) and value <= 0.6 else "black")
        ax.set_xticks(range(len(categories)), categories, rotation=30, ha="right")
        ax.set_yticks(range(len(names)), [Evaluation._name(n) for n in names] if level == CATEGORY else [])
        ax.set_title(f"P@5, same {'category' if level == CATEGORY else '(category, label)'}")
    fig.suptitle("Leave-one-out P@5 per query category")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_confusion(evaluation: Evaluation, path: Path) -> Path:
    import matplotlib.pyplot as plt

    names = list(evaluation.image)
    columns = min(3, math.ceil(math.sqrt(len(names))))
    rows = math.ceil(len(names) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.9 * rows), squeeze=False)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.ravel(), names):
        confusion = evaluation.image[name]["confusion"]
        shares = metrics.row_normalise(np.asarray(confusion["counts"]))
        ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        for (i, j), value in np.ndenumerate(shares):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if value > 0.6 else "black")
        ticks = range(len(confusion["categories"]))
        ax.set_xticks(ticks, confusion["categories"], rotation=40, ha="right", fontsize=8)
        ax.set_yticks(ticks, confusion["categories"], fontsize=8)
        ax.set_title(Evaluation._name(name), fontsize=9)
    fig.suptitle(f"Query category (rows) vs categories of its top {K} results")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _grid_samples(evaluation: Evaluation, count: int) -> list[int]:
    """One query row per category, in turn, picked with a fixed seed (the same rows for every model)."""
    rng = np.random.default_rng(0)
    categories = np.asarray([evaluation.engine.record(i)["category"] for i in evaluation.engine.ids])
    per_category = [list(rng.permutation(np.flatnonzero(categories == c))) for c in evaluation.categories]
    chosen = []
    while len(chosen) < count and any(per_category):
        for rows in per_category:
            if rows and len(chosen) < count:
                chosen.append(int(rows.pop()))
    return chosen


def _text_grid_samples(queries: list[TextQuery], count: int) -> list[int]:
    """The first query of each category, then the next ones, up to `count`."""
    order, seen = [], set()
    for i, query in enumerate(queries):
        if query.category not in seen:
            seen.add(query.category)
            order.append(i)
    order += [i for i in range(len(queries)) if i not in order]
    return order[:count]


GREEN, RED = (26, 150, 65), (215, 25, 28)


def _plot_grid(evaluation: Evaluation, name: str, samples: list, path: Path, shown: int = 5,
               tile: int = 150) -> Path:
    """One row per query: the query (image or text) then its top results, outlined green when relevant
    (same category) and red when not; a tick marks a result with the query's label too. Drawn with PIL:
    a few dozen matplotlib axes per grid would take longer than the whole evaluation."""
    from PIL import Image, ImageDraw, ImageOps

    engine = evaluation.engine
    font, small = _font(13), _font(11)
    pad, border, caption, header = 8, 5, 34, 30
    cell_w, cell_h = tile + 2 * border, tile + 2 * border + caption
    width = pad + (shown + 1) * (cell_w + pad)
    canvas = Image.new("RGB", (width, header + len(samples) * (cell_h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 8), f"{Evaluation._name(name)}: query, then top {shown}. Green outline = same category, "
                        f"red = other category, \u2713 = same label too.", fill="black", font=font)

    def place(column: int, line: int, picture, colour, lines: list[str]) -> None:
        x, y = pad + column * (cell_w + pad), header + line * (cell_h + pad)
        draw.rectangle([x, y, x + cell_w - 1, y + tile + 2 * border - 1], fill=colour)
        canvas.paste(picture, (x + border, y + border))
        for i, text in enumerate(lines):
            draw.text((x + 2, y + tile + 2 * border + 2 + 15 * i), _fit(draw, text, small, cell_w - 4),
                      fill="black", font=small)

    for line, (query, ranked) in enumerate(samples):
        if isinstance(query, TextQuery):
            category, labels = query.category, set(query.labels)
            panel = Image.new("RGB", (tile, tile), (238, 238, 238))
            _wrap(ImageDraw.Draw(panel), f"\u201c{query.text}\u201d", font, tile - 12)
            place(0, line, panel, (120, 120, 120),
                  ["text query: " + category, ", ".join(sorted(labels)) if labels else "(category level)"])
        else:
            record = engine.record(engine.ids[query])
            category, labels = record["category"], {record["label"]} if record["label"] else set()
            picture = ImageOps.pad(engine.image(engine.ids[query]), (tile, tile), color=0).convert("RGB")
            place(0, line, picture, (120, 120, 120), ["query: " + category, record["label"] or "(no label)"])
        for column, row in enumerate([r for r in ranked if r >= 0][:shown], start=1):
            record = engine.record(engine.ids[row])
            same_label = bool(labels) and record["category"] == category and record["label"] in labels
            picture = ImageOps.pad(engine.image(engine.ids[row]), (tile, tile), color=0).convert("RGB")
            place(column, line, picture, GREEN if record["category"] == category else RED,
                  [f"#{column} {record['category']}", (record["label"] or "(no label)")
                   + (" \u2713" if same_label else "")])
    canvas.save(path, optimize=True)
    return path


def _font(size: int):
    from PIL import ImageFont

    try:
        import matplotlib

        return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), size)
    except (ImportError, OSError):
        return ImageFont.load_default(size=size)


def _fit(draw, text: str, font, width: int) -> str:
    while text and draw.textlength(text, font=font) > width:
        text = text[:-2] + "\u2026"
    return text


def _wrap(draw, text: str, font, width: int) -> None:
    lines, current = [], ""
    for word in text.split():
        trial = f"{current} {word}".strip()
        if draw.textlength(trial, font=font) <= width or not current:
            current = trial
        else:
            lines.append(current)
            current = word
    lines.append(current)
    top = max(4, (width + 12 - 17 * len(lines)) // 2)
    for i, line in enumerate(lines[:8]):
        draw.text((6, top + 17 * i), line, fill="black", font=font)


# --- command line --------------------------------------------------------------------------------------------
def cmd_evaluate(args) -> int:
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    evaluation = evaluate_index(args.index, models=models, queries_file=args.queries, progress=True)
    written = write_outputs(evaluation, args.out, grid_queries=args.grid_queries)
    summary = write_summary(evaluation)
    if args.json:
        print(json.dumps(evaluation.to_dict(), indent=2))
    else:
        print(evaluation.to_text())
        print(f"Wrote {len(written)} files to {args.out}/ and the summary for the app to {summary}.")
    return 0


def add_cli(verbs, commands) -> None:
    """Register `python -m retrieval evaluate` (called by retrieval.cli)."""
    p = verbs.add_parser("evaluate", help="measure retrieval quality per model (tables, JSON, plots)")
    p.add_argument("--index", default="index", help="index folder (default: index/)")
    p.add_argument("--models", help="comma-separated models of the index (default: all of them); the TF-IDF "
                                    "and raw-pixel baselines always run alongside")
    p.add_argument("--queries", help="text query file (default: the packaged retrieval/queries/text_queries.json)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"folder for the table, JSON and PNGs (default: {DEFAULT_OUT}/)")
    p.add_argument("--grid-queries", type=int, default=6, help="queries shown in each result grid (default 6)")
    p.add_argument("--json", action="store_true", help="print the JSON instead of the tables")
    commands["evaluate"] = cmd_evaluate


__all__ = ["evaluate_index", "write_outputs", "write_summary", "load_queries", "rank_leave_one_out", "figures",
           "Evaluation", "TextQuery", "add_cli"]
