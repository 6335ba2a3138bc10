"""X-Ray Search: find radiographs by text or by example. It finds images; it never diagnoses.

    from retrieval import load_collection, build_index, SearchEngine, list_embedders
"""

from .errors import (
    BadImage, BadQuery, BrokenIndex, CollectionError, EmbedderUnavailable, RetrievalError, UnknownEmbedder,
    UnsupportedModality,
)


def __getattr__(name):  # heavy modules load on first use, so `python -m retrieval --help` stays instant
    if name in ("build_index", "DEFAULT_MODELS", "BuildReport"):
        from . import index

        return getattr(index, name)
    if name in ("SearchEngine", "Hit", "ImageSearch"):
        from . import search

        return getattr(search, name)
    if name in ("list_embedders", "get_embedder", "embedder_spec", "availability"):
        from . import embedders

        return getattr(embedders, name)
    if name in ("validate_collection",):
        from .validate import validate_collection

        return validate_collection
    if name in ("collection_rows",):
        from .collection import collection_rows

        return collection_rows
    raise AttributeError(name)


__all__ = [
    "build_index", "SearchEngine", "list_embedders", "get_embedder", "validate_collection", "collection_rows",
    "RetrievalError", "CollectionError", "UnknownEmbedder", "EmbedderUnavailable", "UnsupportedModality",
    "BadQuery", "BadImage", "BrokenIndex",
]
