"""Answer queries over a built index: text, image, "more like this" and relevance feedback, filters inside the
vector store.

`SearchEngine` loads one index generation and answers queries; what the index holds about its rows is its
`catalogue`, which models answer and by default its `policy`, heat maps and the collection map its `explorer`.
Every query returns a `SearchResult` (its hits, plus the suggested category of an image query and whether its
content is in the collection at all: novelty.py, and over two image models joint_novelty.py).
"""

from __future__ import annotations

import threading
from functools import cached_property
from pathlib import Path

import numpy as np

from . import modalities
from .catalogue import Catalogue
from .embedders import IMAGE, TEXT
from .embedders.base import l2_normalise
from .encoder import QueryEncoder
from .errors import BadQuery
from .explorer import Explorer
from .filters import Filters
from .feedback import rocchio
from .hub import resolve_index
from .hybrid import FEEDBACK_MODEL, HYBRID, component_lists, feedback_list
from .images import ImageSource
from .joint_novelty import load_joint
from .layout import IndexFolder, IndexGeneration
from .novelty import load_novelty
from .query_words import QueryWords, query_words, words_of
from .options import K_DEFAULT, K_MAX, MAX_JUDGED, MAX_QUERY_CHARS, TEXT_WEIGHT_DEFAULT, QueryOptions
from .policy import ModelPolicy
from .ranking import VOTE_NEIGHBOURS, break_ties, nearest_with_ties, spread_duplicates, vote
from .results import Hit, SearchResult
from .vectorstore import VectorStore, VectorStoreFactory, faiss_store


class SearchEngine:
    """Loads an index folder once and answers queries. Safe to share between threads."""

    def __init__(self, index_dir: str | Path = "index", models: list[str] | None = None,
                 vector_store: VectorStoreFactory | None = None, warm_up: bool = False):
        """`models`: the index's models to serve (default: all). `vector_store`: a factory
        `(generation, dataset, models) -> VectorStore`; default FAISS, or Milvus when XRAY_STORE=milvus.
        `warm_up`: load the query models in a background thread now, so the first query does not wait."""
        self.index_dir = resolve_index(index_dir)  # a folder, or hf://datasets/owner/name downloaded once
        self.generation: IndexGeneration = IndexFolder(self.index_dir).require_current()
        self._dataset = self.generation.load_dataset()
        self.catalogue = Catalogue(self._dataset)
        self.policy = ModelPolicy(self.generation, models)
        if vector_store is None:
            from .settings import load_settings

            vector_store = store_from_settings(load_settings())
        self.store: VectorStore = vector_store(self.generation, self._dataset, list(self.policy.models))
        self.encoder = QueryEncoder(self.generation)
        self.explorer = Explorer(self.generation, self.catalogue, self.policy, self.encoder, self.store,
                                 self.index_dir)
        self._scorers: dict = {}  # image model -> its novelty scorer (or None), loaded on first use
        self._joint = load_joint(self.generation)  # the joint judge of its image models, or None
        if warm_up:
            self.warm_up(background=True)

    def warm_up(self, background: bool = False) -> None:
        """Load every model that can embed a query, the default ones first (a failure is left for the query to
        report). `background`: in a daemon thread, returning at once (a server warms up once it is listening)."""
        if background:
            threading.Thread(target=self.warm_up, name="warm-up", daemon=True).start()
            return
        policy = self.policy
        first = [name for name in (policy.default_model(TEXT, fused=False), policy.default_model(IMAGE)) if name]
        for name in dict.fromkeys([*first, *policy.models_for(TEXT, fused=False), *policy.models_for(IMAGE)]):
            try:
                self.encoder.load(name)
                self.store.prepare(name)
            except Exception:  # noqa: BLE001 - the query that needs the model reports why
                pass
        fusion = policy.fusion()
        if fusion and fusion.expanded:  # the hybrid's query expansion reads its vocabularies once
            from .expansion import warm_up

            warm_up()

    @staticmethod
    def exists(index_dir: str | Path) -> bool:
        """True when a build has completed in `index_dir` (cheap: reads no artefact; an hf:// location is
        downloaded here, once per process)."""
        return IndexFolder(resolve_index(index_dir)).current() is not None

    def __len__(self) -> int:
        return len(self.catalogue)

    def vectors(self, model: str) -> np.ndarray:
        """Every row's stored vector of `model`, (rows, dim) float32 in row order (for evaluation)."""
        return self.generation.vectors(self.policy.resolve(model, None), self._dataset)

    def row_vectors(self, model: str, rows: list[int]) -> np.ndarray:
        """The stored vectors of a few rows of `model` (the hybrid's feedback rows)."""
        return self.generation.row_vectors(self.policy.resolve(model, None), rows, self._dataset)

    # --- queries ---------------------------------------------------------------------------------------
    def search_text(self, text: str, model: str | None = None, k: int = K_DEFAULT, category: str | None = None,
                    min_score: float | None = None, filters: Filters | None = None) -> SearchResult:
        """Rows most similar to a text query (keywords for tfidf, meaning for minilm, pictures for CLIP, all of
        them fused for hybrid).

        Every query takes `filters`, {field: value or [values]} over `catalogue.filter_values()` (e.g.
        {"view": "lateral", "sex": ["F", "M"]}), applied inside the vector store; `category` is one of them."""
        if not isinstance(text, str) or not text.strip():
            raise BadQuery("Type a search text: the query is empty.")
        text = " ".join(text.split())
        if len(text) > MAX_QUERY_CHARS:
            raise BadQuery(f"The query is {len(text)} characters long; the limit is {MAX_QUERY_CHARS}.")
        name = self.policy.resolve(model or self.policy.default_model(TEXT), TEXT)
        options = self._options(name, k, category, min_score, filters)
        return SearchResult(self._search(name, self._embed_text(name, text), options), name,
                            query_words=self._query_words(name, text))

    def search_image(self, image: ImageSource, model: str | None = None, k: int = K_DEFAULT,
                     category: str | None = None, min_score: float | None = None, text: str | None = None,
                     text_weight: float = TEXT_WEIGHT_DEFAULT, filters: Filters | None = None) -> SearchResult:
        """Rows most similar to an image (PIL image, file path or bytes), with a suggested category.

        `text` (models that embed both, see `policy.models_for_image_and_text`) adds a direction to the image
        query: (1 - text_weight) * image + text_weight * text, both unit vectors, the sum scaled to unit length.
        No text, or a weight of 0, is the plain image query."""
        if image is None:
            raise BadQuery("Upload an image to search with.")
        name = self.policy.resolve(model or self.policy.default_model(IMAGE), IMAGE)
        options = self._options(name, k, category, min_score, filters)
        if text is not None and not isinstance(text, str):
            raise BadQuery(f"The text added to an image query must be a string; got {text!r}.")
        by_modality = self._modality_judgement(image)  # a foreign DICOM modality: no pixel judges it
        judges = [] if by_modality else self._judge_models(name)
        embedded = self.encoder.images(list(dict.fromkeys([name, *judges])), image)  # side by side (encoder.py)
        vector = embedded[name]
        text = " ".join((text or "").split())
        if text:
            vector = self._add_text(name, vector, text, text_weight)
        neighbours = self.store.search(name, vector[0], min(VOTE_NEIGHBOURS, len(self)))
        judged = by_modality or self._judgement(name, judges, embedded, None if text else neighbours)
        return SearchResult(self._search(name, vector, options), name, vote(neighbours, self.catalogue), *judged)

    def similar(self, item_id: str, model: str | None = None, k: int = K_DEFAULT, category: str | None = None,
                min_score: float | None = None, filters: Filters | None = None) -> SearchResult:
        """"More like this": neighbours of a row already in the index, the row itself excluded."""
        row = self.catalogue.row(item_id)
        name = self.policy.resolve(model or self.policy.row_model(), None)
        options = self._options(name, k, category, min_score, filters)
        vector = self.store.vector(name, row)[None, :]
        return SearchResult(self._search(name, vector, options, exclude=row), name)

    def study(self, item_id: str, model: str | None = None, k: int = K_MAX) -> SearchResult:
        """"More from this study": the other images of the row's study (a DICOM archive links them by a salted
        hash of their StudyInstanceUID), most similar first by `model`; none in an index without studies."""
        row = self.catalogue.row(item_id)
        name = self.policy.resolve(model or self.policy.row_model(), None)
        options = QueryOptions(k=k)
        vector = self.store.vector(name, row)
        scored = [(other, float(vector @ self.store.vector(name, other)))
                  for other in self.catalogue.study_rows(row) if other != row]
        scored.sort(key=lambda pair: (-pair[1], pair[0]))
        return SearchResult([Hit(rank=rank, score=score, row=other, **self.catalogue.record_at(other))
                             for rank, (other, score) in enumerate(scored[:options.k], start=1)], name)

    def refine(self, query: ImageSource, relevant: list[str] = (), irrelevant: list[str] = (),
               model: str | None = None, k: int = K_DEFAULT, category: str | None = None,
               min_score: float | None = None, exclude_judged: bool = False,
               filters: Filters | None = None) -> SearchResult:
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
        policy = self.policy
        if isinstance(query, str) and query in self.catalogue:
            row = self.catalogue.row(query)
            name = policy.resolve(model or policy.row_model(), None)
            vector = self.store.vector(name, row)[None, :]
            exclude.add(row)
        elif isinstance(query, str):
            text = " ".join(query.split())
            if not text:
                raise BadQuery("Give the original query: a text, a collection id or an image.")
            name = policy.vector_model(policy.resolve(model or policy.default_model(TEXT, fused=False), TEXT))
            vector = self.encoder.texts(name, [text])
        elif query is None:
            raise BadQuery("Give the original query: a text, a collection id or an image.")
        else:
            name = policy.resolve(model or policy.default_model(IMAGE), IMAGE)
            vector = self.encoder.image(name, query)
        options = self._options(name, k, category, min_score, filters)
        stored = lambda rows: np.stack([self.store.vector(name, row) for row in rows]) if rows else np.empty(0)
        vector = rocchio(vector, stored(relevant), stored(irrelevant))
        return SearchResult(self._search(name, vector, options, exclude=sorted(exclude) or None), name)

    # --- internals -------------------------------------------------------------------------------------
    def _options(self, name: str, k, category, min_score, filters) -> QueryOptions:
        """The shared options, validated, checked against this index, the model's own minimum score filled in."""
        options = QueryOptions(k=k, category=category, min_score=min_score, filters=filters)
        return options.check_filters(self.catalogue.filter_values()).with_default_min_score(
            self.policy.default_min_score(name))

    def _embed_text(self, name: str, text: str):
        """The query vector of a text model, or for the hybrid one vector per fused model."""
        if name == HYBRID:
            fusion = self.policy.fusion()
            return self.encoder.text_per_model(fusion.searched, text, expanded=fusion.expanded)
        return self.encoder.texts(name, [text])

    def _search(self, name: str, vector, options: QueryOptions, exclude=None) -> list[Hit]:
        k, metadata = options.k, self.policy.indexes(name) != IMAGE  # metadata texts repeat (hybrid fuses them)
        fetch = 2 * k if metadata else k
        nearest = lambda model, query, n: self.store.search(model, query, n,  # noqa: E731
                                                             filters=options.filters or None, exclude=exclude)
        if name == HYBRID:  # each component's own nearest rows, fused (hybrid.py)
            fusion = self.policy.fusion()
            feedback = lambda first: feedback_list(first, vector.get(FEEDBACK_MODEL), self.row_vectors,  # noqa: E731
                                                   nearest, fusion.depth)
            search = lambda n: fusion.rank(component_lists(vector, nearest, max(n, fusion.depth)),  # noqa: E731
                                           feedback)[:n]
        else:
            search = lambda n: nearest(name, vector[0], n)  # noqa: E731
        found = nearest_with_ties(search, fetch, len(self))
        found = break_ties(found, self.catalogue)
        if metadata:  # many rows share one text: show another finding rather than the same text five times
            found = spread_duplicates(found, self.catalogue, k)
        hits = []
        for row, score in found[:k]:
            if score >= options.min_score:
                hits.append(Hit(rank=len(hits) + 1, score=score, row=row, **self.catalogue.record_at(row)))
        return hits

    def _judge_models(self, name: str) -> list[str]:
        """The image models whose embeddings of the query the "no close match" judgement reads: the index's judge's
        (joint_novelty.py: chosen inside the training sources, whichever model ranks, since "is it in the
        collection?" is a question about the query), else, where one of its models cannot embed a query here, the
        ranking model's own scorer's; none where that has no scorer."""
        joint = self._joint_judge()
        models = joint.models if joint is not None else [name]
        return [] if any(self._scorer(model) is None for model in models) else list(models)

    def _judgement(self, name: str, models: list[str], vectors: dict[str, np.ndarray], neighbours) -> tuple:
        """(in_collection, match_score, judged_by) of an image query by `models` (`_judge_models`), from each
        model's embedding of the image (`vectors`, never the words added to it) and its nearest rows; the ranking
        model's `neighbours` are reused (None: search them)."""
        if not models:
            return None, None, None
        joint = self._joint_judge()
        queries = {}
        for model in models:
            own = vectors[model][0]
            found = neighbours if model == name and neighbours is not None else self.store.search(
                model, own, min(VOTE_NEIGHBOURS, len(self)))
            if not found:
                return None, None, None
            queries[model] = (own, [score for _, score in found],
                              [self.catalogue.value(row, "category") for row, _ in found])
        if joint is not None:
            judgement = joint.judge({model: self._scorer(model) for model in models}, queries)
        else:
            judgement = self._scorer(models[0]).judge(*queries[models[0]])
        return judgement.in_collection, round(judgement.match_score, 4), joint.name if joint else models[0]

    @cached_property
    def _collection_words(self) -> frozenset[str]:
        """Every word of the rows' metadata texts (read once)."""
        return words_of(self.catalogue.texts)

    def _query_words(self, name: str, text: str) -> QueryWords:
        """The text's words no row's text has and, for the hybrid, what its word search read them as."""
        fusion = self.policy.fusion() if name == HYBRID else None
        vocabularies = (self.encoder.vocabulary(model) for model in (fusion.expanded if fusion else ()))
        vocabulary = next((terms for terms in vocabularies if terms), None)  # the word TF-IDF's (encoder.py)
        searched = fusion.searched if fusion else [] if name == HYBRID else [name]
        negation = any(self.encoder.marks_negation(model) for model in searched)
        return query_words(text, self._collection_words, vocabulary, negation=negation)

    def _modality_judgement(self, image) -> tuple | None:
        """(False, 0.0, "DICOM modality XA") for a DICOM query whose Modality is no plain radiograph and no
        modality of the index's rows (modalities.py): its pixels would be compared with films it is not like.
        None for anything else (the pixels judge)."""
        from .dicom import modality_of

        modality = modality_of(image)
        if modality is None or not modalities.foreign(modality, self._held_modalities):
            return None
        return False, 0.0, modalities.judged_by(modality)

    @cached_property
    def _held_modalities(self) -> set[str]:
        """The Modality codes of the index's rows (none for a curated collection: plain radiographs)."""
        return set(self.catalogue.column("modality")) if "modality" in self.catalogue.fields else set()

    def _joint_judge(self):
        """The index's joint judge when every model it joins can embed a query here, else None."""
        joint, here = self._joint, set(self.policy.models_for(IMAGE))
        if joint is None or not set(joint.models) <= here or any(self._scorer(m) is None for m in joint.models):
            return None
        return joint

    def _scorer(self, name: str):
        """The model's stored novelty scorer (None: it has none), loaded on first use."""
        if name not in self._scorers:
            self._scorers[name] = load_novelty(self.generation, name)
        return self._scorers[name]

    def _judged(self, ids, what: str) -> list[int]:
        if isinstance(ids, str) or not isinstance(ids, (list, tuple, set, frozenset)):
            raise BadQuery(f"The {what} results must be a list of collection ids; got {ids!r}.")
        if len(ids) > MAX_JUDGED:
            raise BadQuery(f"At most {MAX_JUDGED} {what} ids; got {len(ids)}.")
        return list(dict.fromkeys(self.catalogue.row(item) for item in ids))

    def _add_text(self, name: str, vector: np.ndarray, text: str, weight: float) -> np.ndarray:
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= weight <= 1.0:
            raise BadQuery(f"The text weight must be a number from 0 to 1; got {weight!r}.")
        if len(text) > MAX_QUERY_CHARS:
            raise BadQuery(f"The text is {len(text)} characters long; the limit is {MAX_QUERY_CHARS}.")
        both = self.policy.models_for_image_and_text()
        if name not in both:
            raise BadQuery(f"Model {name!r} cannot add words to an image query; use one of "
                           f"{both or 'the models that embed both (none in this index)'}.")
        if weight == 0:
            return vector
        return l2_normalise((1.0 - weight) * vector + weight * self.encoder.texts(name, [text]))


def store_from_settings(settings) -> VectorStoreFactory:
    """The factory the settings ask for: FAISS unless XRAY_STORE=milvus."""
    if settings.store != "milvus":
        return faiss_store
    from .milvus_store import milvus_store

    return milvus_store(settings.milvus_uri, collection=settings.milvus_collection, sync=settings.milvus_sync,
                        index=settings.milvus_index, token=settings.milvus_token, db_name=settings.milvus_db)


__all__ = ["SearchEngine", "SearchResult", "Hit", "store_from_settings"]
