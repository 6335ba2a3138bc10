"""Answer queries over a built index: text, image, and "more like this", with filters inside FAISS.

`SearchEngine` is the one entry point of the app, the CLI, evaluation, benchmarks and Milvus; every query
returns a `SearchResult` (its hits, plus the suggested category of an image query).
"""

from __future__ import annotations

import io
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Iterator

import numpy as np
from PIL import Image

from .schema import FIELDS
from .embedders import (
    IMAGE, QUERY_PREFERENCE, TEXT, availability, embedder_spec, get_embedder, list_embedders, training_card,
)
from .embedders.base import l2_normalise
from .errors import BadQuery, EmbedderUnavailable, UnknownEmbedder
from .feedback import rocchio
from .hub import resolve_index
from .images import MAX_FILE_BYTES, SUPPORTED_FORMATS, ImageSource, load_image, thumbnail_bytes
from .layout import IndexFolder, IndexGeneration, Manifest
from .vectorstore import VectorStore, VectorStoreFactory, faiss_store

K_MIN, K_MAX, K_DEFAULT = 1, 20, 5
MAX_QUERY_CHARS = 1000
TIE = 1e-6  # scores this close are a tie (identical vectors: identical metadata text, duplicate images)
TEXT_WEIGHT_DEFAULT = 0.5  # an image query's words weigh this much when given (the image the rest): a slider
DUPLICATE_MARGIN = 0.05  # a repeated metadata text yields to another text scoring at most this much lower
VOTE_NEIGHBOURS = 10  # neighbours that vote for the suggested category of an image query
SUGGESTION_NOTE = ("Share of similarity-weighted votes among the nearest images: a retrieval statistic, "
                   "not a diagnosis.")
# The evaluation figure that picks a modality's default model when the index has been evaluated. Image
# models are ranked by how they do on sources they have not seen, never by in-collection figures.
DEFAULT_BY_FIGURE = {IMAGE: "cross_source_category_p@5", TEXT: "text_category_p@5"}
MODEL_TABLE_FIGURES = 6  # evaluation figures shown per model in `model_table` (headline first)


@dataclass
class Hit:
    """One result: where it ranks, how similar it is, and every metadata field of the row."""

    id: str
    rank: int
    score: float
    file_name: str
    category: str
    label: str
    body_part: str
    view: str
    caption: str
    source: str
    source_url: str
    license: str
    row: int = field(repr=False, default=-1)

    def to_dict(self) -> dict:
        return {"id": self.id, "rank": self.rank, "score": round(self.score, 6),
                **{name: getattr(self, name) for name in FIELDS}}


@dataclass
class SearchResult:
    """What every query returns: the hits, best first, the model that ranked them and, for an image query,
    the suggested category (category -> share of the vote, largest first). Iterates over its hits."""

    hits: list[Hit]
    model: str
    suggestion: dict[str, float] = field(default_factory=dict)
    note: ClassVar[str] = SUGGESTION_NOTE

    @property
    def suggested_category(self) -> str | None:
        return next(iter(self.suggestion), None)

    def records(self) -> list[dict]:
        return [hit.to_dict() for hit in self.hits]

    def __iter__(self) -> Iterator[Hit]:
        return iter(self.hits)

    def __len__(self) -> int:
        return len(self.hits)

    def __getitem__(self, position):
        return self.hits[position]


class SearchEngine:
    """Loads an index folder once and answers queries. Safe to share between threads."""

    TEXT, IMAGE = TEXT, IMAGE  # the query modalities
    K_MIN, K_MAX, K_DEFAULT = K_MIN, K_MAX, K_DEFAULT
    MAX_UPLOAD_BYTES, UPLOAD_FORMATS = MAX_FILE_BYTES, SUPPORTED_FORMATS
    SUGGESTION_NOTE = SUGGESTION_NOTE
    TEXT_WEIGHT_DEFAULT = TEXT_WEIGHT_DEFAULT

    def __init__(self, index_dir: str | Path = "index", models: list[str] | None = None,
                 vector_store: VectorStoreFactory | None = None, warm_up: bool = False):
        """`models`: the index's models to serve (default: all). `vector_store`: a factory
        `(generation, dataset, models) -> VectorStore`; default FAISS, or Milvus when XRAY_STORE=milvus.
        `warm_up`: load the query models in a background thread now, so the first query does not wait."""
        import datasets

        self.index_dir = resolve_index(index_dir)  # a folder, or hf://datasets/owner/name downloaded once
        self.generation: IndexGeneration = IndexFolder(self.index_dir).require_current()
        self.manifest: Manifest = self.generation.manifest
        dataset = self.generation.load_dataset()
        self._images = dataset.cast_column("image", datasets.Image(decode=False)).select_columns(["image"])
        self._thumbnails = dataset.select_columns(["thumbnail"]) if "thumbnail" in dataset.column_names else None
        self._meta = {name: list(dataset[name]) if name in dataset.column_names else [""] * len(dataset)
                      for name in ("id", *FIELDS)}  # plain lists, read per hit; an older index lacks new fields
        self._texts = list(dataset["text"])
        self._row_of = {row_id: row for row, row_id in enumerate(self._meta["id"])}
        self._rows_in: dict[str, np.ndarray] = defaultdict(lambda: np.empty(0, dtype=np.int64))
        for category, rows in _group(self._meta["category"]).items():
            self._rows_in[category] = np.asarray(rows, dtype=np.int64)
        self.unavailable: dict[str, str] = {}
        self._models: list[str] = []
        for name in models if models is not None else list(self.manifest.models):
            if name not in self.manifest.models:
                raise UnknownEmbedder(f"Model {name!r} is not in this index; it has {list(self.manifest.models)}.")
            self._models.append(name)
            self._check_model(name)
        if vector_store is None:
            from .settings import load_settings

            vector_store = store_from_settings(load_settings())
        self.store: VectorStore = vector_store(self.generation, dataset, list(self._models))
        self._dataset = dataset
        self._locks = defaultdict(threading.Lock)
        self._fitted: dict = {}
        self._evaluation: tuple | None = None  # (file stamp, figures)
        if warm_up:
            self.warm_up(background=True)

    def warm_up(self, background: bool = False) -> None:
        """Load every model that can embed a query, the default ones first (a failure is left for the query to
        report). `background`: in a daemon thread, returning at once (a server warms up once it is listening)."""
        if background:
            threading.Thread(target=self.warm_up, name="warm-up", daemon=True).start()
            return
        first = [name for name in (self.default_model(TEXT), self.default_model(IMAGE)) if name]
        for name in dict.fromkeys([*first, *self.models_for(TEXT), *self.models_for(IMAGE)]):
            try:
                self._embed(name, lambda embedder: np.zeros(0))
            except Exception:  # noqa: BLE001 - the query that needs the model reports why
                pass

    def _check_model(self, name: str) -> None:
        try:
            embedder_spec(name)
        except UnknownEmbedder:
            self.unavailable[name] = "not registered in this program"
            return
        state = availability(name)
        if not state.ready:  # vectors stay searchable ("more like this"), but new queries cannot be embedded
            self.unavailable[name] = state.reason

    @staticmethod
    def exists(index_dir: str | Path) -> bool:
        """True when a build has completed in `index_dir` (cheap: reads no artefact; an hf:// location is
        downloaded here, once per process)."""
        return IndexFolder(resolve_index(index_dir)).current() is not None

    # --- what the index offers -------------------------------------------------------------------------
    @property
    def models(self) -> list[str]:
        return list(self._models)

    def models_for(self, modality: str) -> list[str]:
        """Models in this index that can embed a query of `modality` right now."""
        return [name for name in self._models
                if self.manifest.models[name].embeds(modality) and name not in self.unavailable]

    @property
    def categories(self) -> list[str]:
        return sorted(category for category in self._rows_in if category)

    def __len__(self) -> int:
        return len(self._meta["id"])

    @property
    def ids(self) -> list[str]:
        return list(self._meta["id"])

    def default_model(self, modality: str) -> str | None:
        """The usable model with the best evaluation figure for `modality` (image: cross-source), else the
        registry's preference order, else the first usable one."""
        usable = self.models_for(modality)
        figure = DEFAULT_BY_FIGURE[modality]
        scored = {name: figures.get(figure) for name, figures in self.evaluation().items()
                  if name in usable and isinstance(figures, dict)}
        scored = {name: value for name, value in scored.items() if _is_figure(value)}
        if scored:
            return max(scored, key=scored.get)
        preferred = [name for name in QUERY_PREFERENCE[modality] if name in usable and self._earned(name, modality)]
        return next(iter(preferred), usable[0] if usable else None)

    @staticmethod
    def _earned(name: str, modality: str) -> bool:
        """A model trained here leads the image search only if its card shows it beat the frozen baseline on
        held-out sources; pretrained models keep their place in the preference order."""
        card = training_card(name)
        return card is None or modality != IMAGE or bool(card.get("beats_frozen_cross_source"))

    def default_min_score(self, model: str | None) -> float:
        entry = self.manifest.models.get(model or "")
        return float(entry.default_min_score) if entry else 0.0

    def describe(self, model: str | None) -> str | None:
        """One line on what a model does (None for a model this program does not know)."""
        try:
            return embedder_spec(model).description if model else None
        except UnknownEmbedder:
            return None

    def family(self, model: str) -> str:
        return self.manifest.models[model].family

    def evaluation(self) -> dict[str, dict]:
        """Per-model figures of `python -m retrieval evaluate` on this index ({} before it has run); read again
        only when the file changes (a query without a model asks for it)."""
        try:
            stamp = self.generation.evaluation_path.stat().st_mtime_ns
        except OSError:
            stamp = None
        if self._evaluation is None or self._evaluation[0] != stamp:
            models = self.generation.read_evaluation().get("models", {}) if stamp is not None else {}
            self._evaluation = (stamp, models if isinstance(models, dict) else {})
        return self._evaluation[1]

    def model_table(self) -> list[dict]:
        """Every registered model and every model of the index: family, what it embeds, dimension, weights,
        status here, and the headline evaluation figures (None where a figure does not apply)."""
        evaluation = {name: entry for name, entry in self.evaluation().items() if isinstance(entry, dict)}
        keys = dict.fromkeys(key for entry in evaluation.values() for key in entry)  # headline figures first
        figures = [key for key in keys if any(_is_figure(entry.get(key)) for entry in evaluation.values())]
        figures = figures[:MODEL_TABLE_FIGURES]
        rows = []
        for name in dict.fromkeys([*list_embedders(), *self._models]):
            built = self.manifest.models.get(name)
            try:
                spec = embedder_spec(name)
                family, embeds, dim, weights = spec.family, list(spec.modalities), spec.dim, spec.weights
            except UnknownEmbedder:  # in the index, but no longer registered in this program
                family, embeds, dim, weights = built.family, built.modalities, None, ""
            row = {"name": name, "family": family, "embeds": " + ".join(embeds),
                   "dim": built.dim if built else dim, "weights": weights, "status": self._status(name),
                   "index": _index_description(built)}
            measured = evaluation.get(name, {})
            row.update({key: round(measured[key], 3) if _is_figure(measured.get(key)) else None for key in figures})
            rows.append(row)
        return rows

    def training_cards(self) -> dict[str, str]:
        """{model: its training card as Markdown} for the index's models that were trained by this project."""
        cards = {name: training_card(name) for name in self._models}
        return {name: card.get("markdown", "") for name, card in cards.items() if card}

    def _status(self, name: str) -> str:
        if name in self.unavailable:
            return f"not available here: {self.unavailable[name]}"
        if name in self._models:
            return "ready"
        state = availability(name)
        if not state.ready:
            return f"not available here: {state.reason}"
        return f"not in this index (add it: python -m retrieval build --models ...,{name})"

    def record(self, item_id: str) -> dict:
        row = self._row(item_id)
        return {"id": item_id, **{name: self._meta[name][row] for name in FIELDS}}

    def image(self, item_id: str) -> Image.Image:
        """The stored image of a row, normalised to 8-bit grayscale (never a file path)."""
        row = self._row(item_id)
        data = self._images[row]["image"]["bytes"]
        return load_image(data, item_id)  # stored bytes are PNG/JPEG, never DICOM: named by id, not file name

    def thumbnail(self, item_id: str) -> Image.Image:
        """A gallery-sized copy of the stored image (long side <= 384 px), rendered when the index was built."""
        return Image.open(io.BytesIO(self.thumbnail_jpeg(item_id)))

    def thumbnail_jpeg(self, item_id: str) -> bytes:
        """The thumbnail as stored (JPEG bytes): what a gallery serves without encoding anything per query."""
        row = self._row(item_id)
        if self._thumbnails is None:  # an index built before thumbnails were stored: rendered now
            return thumbnail_bytes(self._images[row]["image"]["bytes"], item_id)
        return self._thumbnails[row]["thumbnail"]

    def image_bytes(self, item_id: str) -> bytes:
        buffer = io.BytesIO()
        self.image(item_id).save(buffer, format="PNG")
        return buffer.getvalue()

    @staticmethod
    def query_image(source: ImageSource) -> Image.Image:
        """An uploaded file (any supported format, DICOM included) as the image search reads it."""
        return load_image(source)

    def stored_vector(self, item_id: str, model: str) -> np.ndarray:
        return self.store.vector(self._model(model, None), self._row(item_id))

    def vectors(self, model: str) -> np.ndarray:
        """Every row's stored vector of `model`, (rows, dim) float32 in row order (for evaluation)."""
        return self.generation.vectors(self._model(model, None), self._dataset)

    # --- queries ---------------------------------------------------------------------------------------
    def search_text(self, text: str, model: str | None = None, k: int = K_DEFAULT, category: str | None = None,
                    min_score: float | None = None) -> SearchResult:
        """Rows most similar to a text query (keywords for tfidf, meaning for minilm, pictures for CLIP)."""
        if not isinstance(text, str) or not text.strip():
            raise BadQuery("Type a search text: the query is empty.")
        text = " ".join(text.split())
        if len(text) > MAX_QUERY_CHARS:
            raise BadQuery(f"The query is {len(text)} characters long; the limit is {MAX_QUERY_CHARS}.")
        name = self._model(model or self.default_model(TEXT), TEXT)
        vector = self._embed(name, lambda embedder: embedder.embed_texts([text]))
        return SearchResult(self._search(name, vector, k, category, min_score), name)

    def search_image(self, image: ImageSource, model: str | None = None, k: int = K_DEFAULT,
                     category: str | None = None, min_score: float | None = None, text: str | None = None,
                     text_weight: float = TEXT_WEIGHT_DEFAULT) -> SearchResult:
        """Rows most similar to an image (PIL image, file path or bytes), with a suggested category.

        `text` (models that embed both, see `models_for_image_and_text`) adds a direction to the image query:
        (1 - text_weight) * image + text_weight * text, both unit vectors, the sum scaled to unit length. No
        text, or a weight of 0, is the plain image query."""
        if image is None:
            raise BadQuery("Upload an image to search with.")
        name = self._model(model or self.default_model(IMAGE), IMAGE)
        vector = self._image_vector(name, image)
        if text is not None and not isinstance(text, str):
            raise BadQuery(f"The text added to an image query must be a string; got {text!r}.")
        text = " ".join((text or "").split())
        if text:
            vector = self._add_text(name, vector, text, text_weight)
        hits = self._search(name, vector, k, category, min_score)
        return SearchResult(hits, name, self._vote(name, vector))

    def models_for_image_and_text(self) -> list[str]:
        """Models that embed both images and texts in one space: an image query can take words too."""
        return [name for name in self.models_for(IMAGE) if self.manifest.models[name].embeds(TEXT)]

    def refine(self, query: ImageSource, relevant: list[str] = (), irrelevant: list[str] = (),
               model: str | None = None, k: int = K_DEFAULT, category: str | None = None,
               min_score: float | None = None, exclude_judged: bool = False) -> SearchResult:
        """One round of relevance feedback (Rocchio, weights in feedback.py): the query's vector moved toward
        the rows marked relevant and away from those marked irrelevant, searched again.

        `query`: the original query — a collection id, a text (a string that is not an id), or an image (PIL
        image, path or bytes). `exclude_judged` leaves the judged rows (and an id query's own row) out of the
        results, to see new ones."""
        relevant, irrelevant = self._judged(relevant, "relevant"), self._judged(irrelevant, "irrelevant")
        if set(relevant) & set(irrelevant):
            raise BadQuery("An image cannot be marked both relevant and not relevant.")
        if not relevant and not irrelevant:
            raise BadQuery("Mark at least one result as relevant or not relevant to refine the search.")
        exclude = {*relevant, *irrelevant} if exclude_judged else set()
        if isinstance(query, str) and query in self._row_of:
            row = self._row(query)
            name = self._model(model or self._any_model(), None)
            vector = self.store.vector(name, row)[None, :]
            exclude.add(row)
        elif isinstance(query, str):
            text = " ".join(query.split())
            if not text:
                raise BadQuery("Give the original query: a text, a collection id or an image.")
            name = self._model(model or self.default_model(TEXT), TEXT)
            vector = self._embed(name, lambda embedder: embedder.embed_texts([text]))
        elif query is None:
            raise BadQuery("Give the original query: a text, a collection id or an image.")
        else:
            name = self._model(model or self.default_model(IMAGE), IMAGE)
            vector = self._image_vector(name, query)
        stored = lambda rows: np.stack([self.store.vector(name, row) for row in rows]) if rows else np.empty(0)
        vector = rocchio(vector, stored(relevant), stored(irrelevant))
        hits = self._search(name, vector, k, category, min_score, exclude=sorted(exclude) or None)
        return SearchResult(hits, name)

    def similar(self, item_id: str, model: str | None = None, k: int = K_DEFAULT, category: str | None = None,
                min_score: float | None = None) -> SearchResult:
        """"More like this": neighbours of a row already in the index, the row itself excluded."""
        row = self._row(item_id)
        name = self._model(model or self._any_model(), None)
        vector = self.store.vector(name, row)[None, :]
        return SearchResult(self._search(name, vector, k, category, min_score, exclude=row), name)

    def explain(self, query: str | ImageSource, result_id: str, model: str | None = None) -> "Explanation":
        """Why `result_id` is similar to `query` (an id of this index, or an image as search_image takes it): both
        images with heat maps of the regions that drive their similarity under an image model (default: the image
        search's), as a retrieval.explain.Explanation. One forward pass per image; the maps of rows and of
        uploads (by content) are cached. A model without spatial features (a text model) raises NoSpatialFeatures."""
        from . import explain as why  # the heat maps' maths and colour map load on first use
        from .embedders import model_version
        from .errors import NoSpatialFeatures
        from .images import digest

        self._row(result_id)
        if query is None:
            raise BadQuery("Give a query: an id of this index or an image.")
        query_id = query if isinstance(query, str) and query in self._row_of else None
        if isinstance(query, str) and query_id is None and not Path(query).is_file():
            self._row(query)  # neither an id here nor a file: the message names the id
        name = model or self.default_model(IMAGE)
        if name in self._models and not self.manifest.models[name].embeds(IMAGE):
            raise NoSpatialFeatures(f"Model {name!r} reads text, not pixels: it has no spatial features, so no map "
                                    f"of the regions that drive a similarity; choose one of {self.models_for(IMAGE)}.")
        name = self._model(name, IMAGE)
        embedder = get_embedder(name)

        def features(item, picture):  # item: a row's id, or an upload's content digest
            def run():
                with self._locks[name]:
                    return embedder.feature_maps([picture()])

            return why.CACHE.get((str(self.generation.folder), name, model_version(name), item), run)

        def row_features(item_id: str):  # decoded as the build decoded it, so the map pools to the stored vector
            data = self._images[self._row(item_id)]["image"]["bytes"]
            return features(item_id, lambda: load_image(data, item_id, max_side=embedder.decode_side))

        if query_id is None:
            picture = load_image(query, max_side=embedder.decode_side)
            query_features = features(("upload", digest(picture.tobytes())), lambda: picture)
            query_picture = self.query_image(query)
        else:
            query_features, query_picture = row_features(query_id), self.image(query_id)
        return why.explain(name, query_features, row_features(result_id), query_picture, self.image(result_id),
                           result_id, query_id)

    # --- internals -------------------------------------------------------------------------------------
    def _row(self, item_id: str) -> int:
        try:
            return self._row_of[item_id]
        except (KeyError, TypeError):
            raise BadQuery(f"No image with id {item_id!r} in this index.") from None

    def _any_model(self) -> str | None:
        """The model that compares collection rows when none is named: the best image model, else text."""
        return self.default_model(IMAGE) or self.default_model(TEXT) or next(iter(self._models), None)

    def _judged(self, ids, what: str) -> list[int]:
        if isinstance(ids, str) or not isinstance(ids, (list, tuple, set, frozenset)):
            raise BadQuery(f"The {what} results must be a list of collection ids; got {ids!r}.")
        if len(ids) > K_MAX * 5:
            raise BadQuery(f"At most {K_MAX * 5} {what} ids; got {len(ids)}.")
        return list(dict.fromkeys(self._row(item) for item in ids))

    def _image_vector(self, name: str, image: ImageSource) -> np.ndarray:
        picture = load_image(image, max_side=get_embedder(name).decode_side)  # decoded as the build decoded
        return self._embed(name, lambda embedder: embedder.embed_images([picture]))

    def _add_text(self, name: str, vector: np.ndarray, text: str, weight: float) -> np.ndarray:
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= weight <= 1.0:
            raise BadQuery(f"The text weight must be a number from 0 to 1; got {weight!r}.")
        if len(text) > MAX_QUERY_CHARS:
            raise BadQuery(f"The text is {len(text)} characters long; the limit is {MAX_QUERY_CHARS}.")
        if name not in self.models_for_image_and_text():
            raise BadQuery(f"Model {name!r} cannot add words to an image query; use one of "
                           f"{self.models_for_image_and_text() or 'the models that embed both (none in this index)'}.")
        if weight == 0:
            return vector
        words = self._embed(name, lambda embedder: embedder.embed_texts([text]))
        return l2_normalise((1.0 - weight) * vector + weight * words)

    def _model(self, name: str | None, modality: str | None) -> str:
        if name is None:
            raise BadQuery(f"This index has no model that embeds {modality or 'queries'}.")
        if name not in self._models:
            spec = embedder_spec(name)  # unknown names raise UnknownEmbedder with the registered list
            raise UnknownEmbedder(f"Model {spec.name!r} is not in this index; it has {self.models}.")
        if modality is not None:
            if not self.manifest.models[name].embeds(modality):
                raise BadQuery(f"Model {name!r} cannot embed {modality} queries; use one of "
                               f"{self.models_for(modality)}.")
            if name in self.unavailable:
                raise EmbedderUnavailable(f"Model {name!r} is not available here: {self.unavailable[name]}")
        return name

    def _embed(self, name: str, run) -> np.ndarray:
        embedder = get_embedder(name)
        with self._locks[name]:
            if embedder.needs_fit:  # fitted on this index's collection: this engine keeps its own copy
                if name not in self._fitted:
                    fitted = embedder_spec(name).factory()
                    fitted.load_state(self.generation.state_path(name))
                    self._fitted[name] = fitted
                embedder = self._fitted[name]
            return np.asarray(run(embedder), dtype=np.float32)

    def _check(self, k, category, min_score, name) -> tuple[int, str | None, float]:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not K_MIN <= int(k) <= K_MAX:
            raise BadQuery(f"k must be a whole number from {K_MIN} to {K_MAX}; got {k!r}.")
        category = category or None
        if category is not None and category not in self._rows_in:
            raise BadQuery(f"Unknown category {category!r}; choose from {self.categories}.")
        if min_score is None:
            min_score = self.default_min_score(name)
        if isinstance(min_score, bool) or not isinstance(min_score, (int, float)) or not -1.0 <= min_score <= 1.0:
            raise BadQuery(f"The minimum score must be a number from -1 to 1; got {min_score!r}.")
        return int(k), category, float(min_score)

    def _search(self, name, vector, k, category, min_score, exclude: int | None = None) -> list[Hit]:
        k, category, min_score = self._check(k, category, min_score, name)
        metadata = self.manifest.models[name].indexes == TEXT
        found = self._break_ties(self._complete_ties(name, vector[0], 2 * k if metadata else k, category, exclude))
        if metadata:  # many rows share one text: show another finding rather than the same text five times
            found = self._spread_duplicates(found, k)
        hits = []
        for row, score in found[:k]:
            if score >= min_score:
                hits.append(self._hit(row, score, len(hits) + 1))
        return hits

    def _complete_ties(self, name, vector, k, category, exclude) -> list[tuple[int, float]]:
        """The k nearest rows and every row tied with the k-th (rows with identical text tie exactly)."""
        fetch = min(len(self), 2 * k)
        while True:
            found = self.store.search(name, vector, fetch, category=category, exclude=exclude)
            if len(found) <= k or found[-1][1] < found[k - 1][1] - TIE or fetch >= len(self):
                return found
            fetch = min(len(self), 4 * fetch)

    def _spread_duplicates(self, found: list[tuple[int, float]], k: int) -> list[tuple[int, float]]:
        """The first k: a row whose text is already shown waits behind a row with another text scoring within
        DUPLICATE_MARGIN of it."""
        pending, ordered, shown = list(found), [], set()
        while pending and len(ordered) < k:
            choice = 0
            if self._texts[pending[0][0]] in shown:
                choice = next((i for i, (row, score) in enumerate(pending) if self._texts[row] not in shown
                               and score >= pending[0][1] - DUPLICATE_MARGIN), 0)
            row, score = pending.pop(choice)
            shown.add(self._texts[row])
            ordered.append((row, score))
        return ordered

    def _break_ties(self, found: list[tuple[int, float]]) -> list[tuple[int, float]]:
        """Best first; rows tied on score alternate between labels (then sources), then go by id, so a tie
        shows different findings rather than five identical texts, in the same order on every store."""
        ordered, start = [], 0
        while start < len(found):
            stop = start
            while stop < len(found) and found[stop][1] >= found[start][1] - TIE:
                stop += 1
            group = sorted(found[start:stop], key=lambda item: self._meta["id"][item[0]])
            by_label: dict[str, list] = defaultdict(list)
            for item in group:
                by_label[self._meta["label"][item[0]]].append(item)
            turns = []
            for lane, members in enumerate(by_label.values()):  # each label's rows alternate sources
                seen: Counter = Counter()
                spread = []
                for position, item in enumerate(members):
                    spread.append((seen[self._meta["source"][item[0]]], position, item))
                    seen[self._meta["source"][item[0]]] += 1
                turns += [(turn, lane, item) for turn, (*_, item) in enumerate(sorted(spread, key=lambda s: s[:2]))]
            ordered += [item for *_, item in sorted(turns, key=lambda turn: turn[:2])]
            start = stop
        return ordered

    def _hit(self, row: int, score: float, rank: int) -> Hit:
        return Hit(id=self._meta["id"][row], rank=rank, score=score, row=row,
                   **{name: self._meta[name][row] or "" for name in FIELDS})

    def _vote(self, name: str, vector: np.ndarray) -> dict[str, float]:
        weights = Counter()
        for row, score in self.store.search(name, vector[0], min(VOTE_NEIGHBOURS, len(self))):
            weights[self._meta["category"][row] or "(none)"] += max(score, 0.0)
        total = sum(weights.values())
        if total <= 0:
            return {}
        return {category: weight / total for category, weight in weights.most_common()}

    # --- the map of the collection (2-D, projected at build time: projection.py) ------------------------------
    def map_models(self) -> list[str]:
        """This index's models with a stored 2-D map: its image models (an index built before maps has none)."""
        return [name for name in self._models if self.generation.has_map(name)]

    def collection_map(self, model: str | None = None) -> dict[str, list]:
        """Every row's point on `model`'s map (default: the image search's model, else the first with a map) as
        equal-length columns in row order, ready for a DataFrame: id, x, y, category, label, source."""
        positions = self.generation.read_map(self._map_model(model))
        return {"id": list(self._meta["id"]), "x": positions[:, 0].tolist(), "y": positions[:, 1].tolist(),
                **{column: [value or "" for value in self._meta[column]] for column in ("category", "label", "source")}}

    def locate(self, query: str | np.ndarray | ImageSource, model: str) -> tuple[float, float]:
        """Where a query lands on `model`'s map, as (x, y). An id of this index is its own point. A query vector
        of the model ((dim,) or (1, dim)), or an image (embedded as search_image embeds it), lands at the
        similarity-weighted mean of the points of its nearest rows: t-SNE cannot place a point it was not
        fitted on, so the query sits among the images a search would return for it."""
        from .projection import NEIGHBOURS, place

        name = self._map_model(model)
        positions = self.generation.read_map(name)
        if isinstance(query, str) and (query in self._row_of or not Path(query).is_file()):
            return tuple(float(v) for v in positions[self._row(query)])  # not an id nor a file: names the id
        if isinstance(query, np.ndarray):
            dim = self.manifest.models[name].dim
            vector = np.asarray(query, dtype=np.float32).reshape(-1)
            if query.shape not in ((dim,), (1, dim)) or not np.isfinite(vector).all():
                raise BadQuery(f"A query vector of {name!r} has shape ({dim},) or (1, {dim}) and finite values; "
                               f"got {query.shape}.")
        elif query is None:
            raise BadQuery("Give a query to place on the map: an id of this index, a query vector or an image.")
        else:
            vector = self._image_vector(self._model(name, IMAGE), query)[0]
        return place(positions, self.store.search(name, vector, min(NEIGHBOURS, len(self))))

    def _map_model(self, model: str | None) -> str:
        """`model`, or the default for the map; refused clearly when it has no stored map."""
        maps = self.map_models()
        if model is None:
            if not maps:
                raise BadQuery("This index has no map of the collection; rebuild the index to get it "
                               f"(python -m retrieval build --collection PATH --index {self.index_dir}).")
            preferred = self.default_model(IMAGE)
            return preferred if preferred in maps else maps[0]
        name = self._model(model, None)
        if name in maps:
            return name
        if self.manifest.models[name].indexes != IMAGE:
            raise BadQuery(f"Model {name!r} indexes metadata text, not images, so it has no map; "
                           f"choose one of {maps}.")
        raise BadQuery(f"This index has no map for {name!r} (built before maps were stored, or copied without "
                       f"it); rebuild the index to get the map (python -m retrieval build --collection PATH "
                       f"--index {self.index_dir}).")

    def collection_stats(self) -> dict:
        """Counts per category, label and source, and each source's licence and link."""
        sources = {}
        for source, url, licence in zip(self._meta["source"], self._meta["source_url"], self._meta["license"]):
            entry = sources.setdefault(source or "(unknown)", {"images": 0, "url": url, "licenses": Counter()})
            entry["images"] += 1
            entry["licenses"][licence or "unknown"] += 1
        return {
            "rows": len(self),
            "categories": dict(Counter(self._meta["category"]).most_common()),
            "labels": dict(Counter(f"{c} / {l}" for c, l in zip(self._meta["category"], self._meta["label"]) if l)
                           .most_common()),
            "sources": {name: {**entry, "licenses": dict(entry["licenses"])} for name, entry in sources.items()},
        }


def store_from_settings(settings) -> VectorStoreFactory:
    """The factory the settings ask for: FAISS unless XRAY_STORE=milvus."""
    if settings.store != "milvus":
        return faiss_store
    from .milvus_store import milvus_store

    return milvus_store(settings.milvus_uri, collection=settings.milvus_collection, sync=settings.milvus_sync,
                        index=settings.milvus_index, token=settings.milvus_token, db_name=settings.milvus_db)


def _index_description(entry) -> str:
    """How a model's vectors are searched: "exact" or the approximate index with its measured recall."""
    if entry is None:
        return ""
    if entry.recall_at_10 is None:
        return f"{entry.faiss_factory} (exact)"
    return f"{entry.faiss_factory}, recall@10 {entry.recall_at_10:.3f} (measured at build)"


def _is_figure(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _group(values: list[str]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for position, value in enumerate(values):
        groups[value].append(position)
    return groups


__all__ = ["SearchEngine", "SearchResult", "Hit", "K_MIN", "K_MAX", "K_DEFAULT", "SUGGESTION_NOTE"]
