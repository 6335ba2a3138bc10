"""The map of the collection: a model's vectors projected to 2-D with t-SNE, and where a new vector lands on it.

t-SNE keeps neighbours together, so clusters on the map are groups of images the model finds alike (by finding,
body part, or hospital). It runs once per image model at build time (~4 s of one core for ~2,400 rows) and is
stored with the index. It cannot place a point it was not fitted on, so a query lands at the
similarity-weighted mean of the map positions of its nearest rows (`place`): on the map, it sits among the
images that search would return for it.
"""

from __future__ import annotations

import hashlib

import numpy as np

PCA_DIMS = 50  # t-SNE's neighbour search is the cost that grows with the dimension; 50 keeps the neighbours
PERPLEXITY = 30.0  # ~ neighbours each point keeps close; capped below the row count for tiny collections
MAX_ITER = 500  # 250 of them early exaggeration; 1,000 gives the same picture (10-NN category agreement 0.986)
ANGLE = 0.8  # Barnes-Hut accuracy: ~1.4x faster than the default 0.5, the same neighbours kept (trustworthiness 0.987)
SEED = 0
THREADS = 1  # see project()
NEIGHBOURS = 10  # nearest rows whose positions place a query
SETTINGS = f"t-SNE pca={PCA_DIMS} perplexity={PERPLEXITY} max_iter={MAX_ITER} angle={ANGLE} seed={SEED}"


def map_key(vectors: np.ndarray) -> str:
    """What a map is a function of: the vectors, in row order, and the projection settings. Equal keys: the
    stored map is still right (a rebuild that reuses every vector reuses the map)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    digest = hashlib.sha256(f"{SETTINGS} shape={vectors.shape}\n".encode())
    digest.update(vectors.tobytes())
    return digest.hexdigest()


def project(vectors: np.ndarray) -> np.ndarray:
    """Every row's 2-D position, float32 (rows, 2): PCA to `PCA_DIMS`, then t-SNE (fixed seed: the same
    vectors give the same map)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    vectors = np.asarray(vectors, dtype=np.float32)
    rows = len(vectors)
    if rows == 0 or np.allclose(vectors, vectors[0]):  # nothing for t-SNE to arrange: one spot
        return np.zeros((rows, 2), dtype=np.float32)
    if rows == 2:  # too few for t-SNE (perplexity must stay below the row count): two distinct points
        return np.float32([[-1, 0], [1, 0]])
    perplexity = max(1.0, min(PERPLEXITY, (rows - 1) / 3))  # t-SNE needs perplexity < rows
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", max_iter=MAX_ITER,
                angle=ANGLE, random_state=SEED)
    # One thread: each of t-SNE's 500 steps ends in an OpenMP barrier, and on a busy machine a second thread
    # waiting for a core made it 2-3x slower (16 rows: 0.07 s alone, up to 10 s with two threads).
    with threadpool_limits(limits=THREADS):
        if vectors.shape[1] > PCA_DIMS:
            vectors = PCA(n_components=min(PCA_DIMS, rows), random_state=SEED).fit_transform(vectors)
        return tsne.fit_transform(vectors).astype(np.float32)


def place(positions: np.ndarray, neighbours: list[tuple[int, float]]) -> tuple[float, float]:
    """Where a new vector lands: the mean of its nearest rows' positions (`neighbours`: (row, cosine) pairs)
    weighted by similarity (negative similarities weigh nothing; if none is positive, a plain mean)."""
    if not neighbours:
        raise ValueError("place() needs at least one neighbouring row")
    rows = np.asarray([row for row, _ in neighbours], dtype=np.int64)
    weights = np.clip(np.asarray([score for _, score in neighbours], dtype=np.float64), 0.0, None)
    if weights.sum() <= 0:
        weights = np.ones_like(weights)
    x, y = (weights[:, None] * positions[rows]).sum(axis=0) / weights.sum()
    return float(x), float(y)


__all__ = ["NEIGHBOURS", "SETTINGS", "map_key", "place", "project"]
