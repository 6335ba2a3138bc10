"""retrieval/training/neighbours.py: database-side augmentation and alpha-QE read only the index rows as neighbours,
leave the vectors alone at (0, 0), follow the published formulas, and wrap a selection fitter without touching its
own answers. Synthetic vectors: milliseconds."""

from __future__ import annotations

import numpy as np

from retrieval.training import neighbours


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _vectors(n: int = 12, d: int = 6, seed: int = 0):
    return _unit(np.random.default_rng(seed).normal(size=(n, d)))


def test_no_neighbours_is_the_identity():
    vectors, index = _vectors(), np.arange(8)
    out = neighbours.expand(vectors, index, [(0, 0, 0.0)])
    np.testing.assert_array_equal(out["db0q0a0"], vectors)


def test_every_grid_point_answers_once_with_unit_rows():
    vectors = _vectors()
    out = neighbours.expand(vectors, np.arange(8))
    assert sorted(out) == sorted({neighbours.setting(*p) for p in neighbours.GRID})
    assert len(out) == len(neighbours.GRID)
    for result in out.values():
        np.testing.assert_allclose(np.linalg.norm(result, axis=1), 1.0, rtol=1e-6)


def test_database_augmentation_is_the_weighted_mean_of_the_nearest_index_rows():
    vectors, index = _vectors(), np.arange(8)
    out = neighbours.expand(vectors, index, [(3, 0, 1.0)])["db3q0a1"]
    sims = vectors[index] @ vectors[index].T
    for i in index:
        near = np.argsort(-sims[i])[:3]
        assert near[0] == i  # itself first, weight 1
        expected = (np.clip(sims[i, near], 0, None)[:, None] * vectors[index][near]).sum(0)
        np.testing.assert_allclose(out[i], expected / np.linalg.norm(expected), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out[8:], vectors[8:])  # queries untouched without query expansion


def test_query_expansion_moves_a_query_toward_its_nearest_index_row():
    vectors, index = _vectors(), np.arange(8)
    out = neighbours.expand(vectors, index, [(0, 1, 0.0)])["db0q1a0"]
    for query in range(8, 12):
        nearest = index[np.argmax(vectors[index] @ vectors[query])]
        expected = vectors[query] + vectors[nearest]
        np.testing.assert_allclose(out[query], expected / np.linalg.norm(expected), rtol=1e-5, atol=1e-6)
        assert out[query] @ vectors[nearest] > vectors[query] @ vectors[nearest]
    np.testing.assert_array_equal(out[index], vectors[index])


def test_only_index_rows_are_read_as_neighbours():
    """A held-out row changed cannot change what the index rows become, nor another held-out row's expansion."""
    vectors, index = _vectors(), np.arange(8)
    changed = vectors.copy()
    changed[9] = vectors[0]  # a held-out row made identical to an index row
    a = neighbours.expand(vectors, index, [(5, 2, 1.0)])["db5q2a1"]
    b = neighbours.expand(changed, index, [(5, 2, 1.0)])["db5q2a1"]
    np.testing.assert_array_equal(a[index], b[index])
    np.testing.assert_array_equal(np.delete(a, 9, axis=0)[8:], np.delete(b, 9, axis=0)[8:])


def test_the_wrapped_fitter_keeps_the_plain_answers_and_adds_expanded_ones():
    vectors = _vectors()
    seen = []

    def fit(rows):
        seen.append(rows)
        return {("base", "e5"): vectors}

    grid = [(0, 0, 0.0), (3, 1, 1.0)]
    out = neighbours.expanded_fitter(fit, grid)(np.arange(6))
    assert len(seen) == 1 and list(seen[0]) == list(range(6))
    np.testing.assert_array_equal(out[("base", "e5")], vectors)
    assert set(out) == {("base", "e5"), ("base-nx", "e5/db0q0a0"), ("base-nx", "e5/db3q1a1")}
    np.testing.assert_array_equal(out[("base-nx", "e5/db0q0a0")], vectors)
    assert not np.allclose(out[("base-nx", "e5/db3q1a1")], vectors)
