"""Looking around a result rather than ranking: why two images are similar (heat maps), and the 2-D map of the
collection with where a query lands on it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .catalogue import Catalogue
from .embedders import IMAGE
from .encoder import QueryEncoder
from .errors import BadQuery
from .images import ImageSource, load_image
from .layout import IndexGeneration
from .policy import ModelPolicy
from .vectorstore import VectorStore

if TYPE_CHECKING:
    from .explain import Explanation


class Explorer:
    """Heat maps and the collection map over one index generation (the rooms it reads are the engine's)."""

    def __init__(self, generation: IndexGeneration, catalogue: Catalogue, policy: ModelPolicy,
                 encoder: QueryEncoder, store: VectorStore, index_dir: Path):
        self.generation, self.catalogue, self.policy = generation, catalogue, policy
        self.encoder, self.store, self.index_dir = encoder, store, index_dir

    def explain(self, query: str | ImageSource, result_id: str, model: str | None = None) -> "Explanation":
        """Why `result_id` is similar to `query` (an id of this index, or an image as search_image takes it): both
        images with heat maps of the regions that drive their similarity under an image model (default: the image
        search's), as a retrieval.explain.Explanation. One forward pass per image; the maps of rows and of
        uploads (by content) are cached. A model without spatial features (a text model) raises NoSpatialFeatures."""
        from . import explain as why  # the heat maps' maths and colour map load on first use
        from .embedders import model_version
        from .errors import NoSpatialFeatures
        from .images import digest

        catalogue = self.catalogue
        catalogue.row(result_id)
        if query is None:
            raise BadQuery("Give a query: an id of this index or an image.")
        query_id = query if query in catalogue else None
        if isinstance(query, str) and query_id is None and not Path(query).is_file():
            catalogue.row(query)  # neither an id here nor a file: the message names the id
        name = model or self.policy.default_model(IMAGE)
        if name in self.policy.models and not self.policy.entries[name].embeds(IMAGE):
            raise NoSpatialFeatures(f"Model {name!r} reads text, not pixels: it has no spatial features, so no map "
                                    f"of the regions that drive a similarity; choose one of "
                                    f"{self.policy.models_for(IMAGE)}.")
        name = self.policy.resolve(name, IMAGE)
        side = self.encoder.decode_side(name)

        def features(item, picture):  # item: a row's id, or an upload's content digest
            return why.CACHE.get((str(self.generation.folder), name, model_version(name), item),
                                 lambda: self.encoder.feature_maps(name, picture()))

        def row_features(item_id: str):  # decoded as the build decoded it, so the map pools to the stored vector
            return features(item_id, lambda: catalogue.image(item_id, max_side=side))

        if query_id is None:
            picture = load_image(query, max_side=side)
            query_features = features(("upload", digest(picture.tobytes())), lambda: picture)
            query_picture = load_image(query)
        else:
            query_features, query_picture = row_features(query_id), catalogue.image(query_id)
        return why.explain(name, query_features, row_features(result_id), query_picture, catalogue.image(result_id),
                           result_id, query_id)

    # --- the map of the collection (2-D, projected at build time: projection.py) ------------------------------
    def map_models(self) -> list[str]:
        """This index's models with a stored 2-D map: its image models (an index built before maps has none)."""
        return [name for name in self.policy.models if self.generation.has_map(name)]

    def collection_map(self, model: str | None = None) -> dict[str, list]:
        """Every row's point on `model`'s map (default: the image search's model, else the first with a map) as
        equal-length columns in row order, ready for a DataFrame: id, x, y, category, label, source."""
        positions = self.generation.read_map(self._map_model(model))
        return {"id": self.catalogue.ids, "x": positions[:, 0].tolist(), "y": positions[:, 1].tolist(),
                **{column: self.catalogue.column(column) for column in ("category", "label", "source")}}

    def locate(self, query: str | np.ndarray | ImageSource, model: str) -> tuple[float, float]:
        """Where a query lands on `model`'s map, as (x, y). An id of this index is its own point. A query vector
        of the model ((dim,) or (1, dim)), or an image (embedded as search_image embeds it), lands at the
        similarity-weighted mean of the points of its nearest rows: t-SNE cannot place a point it was not
        fitted on, so the query sits among the images a search would return for it."""
        from .projection import NEIGHBOURS, place

        name = self._map_model(model)
        positions = self.generation.read_map(name)
        if isinstance(query, str) and (query in self.catalogue or not Path(query).is_file()):
            return tuple(float(v) for v in positions[self.catalogue.row(query)])  # not an id nor a file: names the id
        if isinstance(query, np.ndarray):
            dim = self.policy.entries[name].dim
            vector = np.asarray(query, dtype=np.float32).reshape(-1)
            if query.shape not in ((dim,), (1, dim)) or not np.isfinite(vector).all():
                raise BadQuery(f"A query vector of {name!r} has shape ({dim},) or (1, {dim}) and finite values; "
                               f"got {query.shape}.")
        elif query is None:
            raise BadQuery("Give a query to place on the map: an id of this index, a query vector or an image.")
        else:
            vector = self.encoder.image(self.policy.resolve(name, IMAGE), query)[0]
        return place(positions, self.store.search(name, vector, min(NEIGHBOURS, len(self.catalogue))))

    def _map_model(self, model: str | None) -> str:
        """`model`, or the default for the map; refused clearly when it has no stored map."""
        maps = self.map_models()
        rebuild = f"python -m retrieval build --collection PATH --index {self.index_dir}"
        if model is None:
            if not maps:
                raise BadQuery(f"This index has no map of the collection; rebuild the index to get it ({rebuild}).")
            preferred = self.policy.default_model(IMAGE)
            return preferred if preferred in maps else maps[0]
        name = self.policy.resolve(model, None)
        if name in maps:
            return name
        if self.policy.entries[name].indexes != IMAGE:
            raise BadQuery(f"Model {name!r} indexes metadata text, not images, so it has no map; "
                           f"choose one of {maps}.")
        raise BadQuery(f"This index has no map for {name!r} (built before maps were stored, or copied without "
                       f"it); rebuild the index to get the map ({rebuild}).")


__all__ = ["Explorer"]
