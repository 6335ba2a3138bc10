"""The library's own exceptions: every message says what went wrong and what to do next.

Edges (CLI, app) catch `RetrievalError` once and show `str(error)` to the person.
"""


class RetrievalError(Exception):
    """Base of every error the library raises on purpose."""


class CollectionError(RetrievalError):
    """The collection cannot be read or did not validate."""


class UnknownEmbedder(RetrievalError, KeyError):
    """A model name that is not in the registry (or not in this index)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class EmbedderUnavailable(RetrievalError):
    """A registered model whose weights cannot be loaded on this machine."""


class UnsupportedModality(RetrievalError):
    """A model asked to embed something it cannot (e.g. text with an image-only model)."""


class NoSpatialFeatures(RetrievalError):
    """A model with no map of where in the image its features come from (a text model), so no heat map."""


class BadQuery(RetrievalError, ValueError):
    """A query or search option that cannot be answered (empty text, k out of range, unknown category...)."""


class BadImage(BadQuery):
    """An uploaded or indexed file that is not a usable image."""


class BrokenIndex(RetrievalError):
    """The index on disk is missing, incomplete or does not match its manifest."""


class NoIndex(BrokenIndex):
    """No build has completed in the index folder yet."""
