"""X-Ray Search: find radiographs by text or by example. It finds images; it never diagnoses.

    from retrieval import SearchEngine, build_index
    build_index("../shared/xray-collection", "index")
    result = SearchEngine("index").search_text("knee osteoarthritis")

The public API is the names below; everything else is internal and may change.
"""

from .errors import RetrievalError


def __getattr__(name):  # heavy modules load on first use, so `python -m retrieval --help` stays instant
    if name in ("SearchEngine", "SearchResult"):
        from . import search

        return getattr(search, name)
    if name == "build_index":
        from .index import build_index

        return build_index
    if name == "validate_collection":
        from .validate import validate_collection

        return validate_collection
    if name == "list_models":
        from .embedders import list_models

        return list_models
    if name == "load_settings":
        from .settings import load_settings

        return load_settings
    raise AttributeError(f"module 'retrieval' has no attribute {name!r}; its public names are {__all__}")


__all__ = ["SearchEngine", "SearchResult", "build_index", "validate_collection", "list_models", "load_settings",
           "RetrievalError"]
