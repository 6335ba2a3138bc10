"""retrieval/training/hubness.py: the hub penalty (CSLS) ranks by cos(q, x) - weight * crowding(x), measures crowding
among the index rows only, leaves the ranking alone at weight 0, and wraps a selection fitter without touching its
own answers. Synthetic vectors: milliseconds."""

from __future__ import annotations

import numpy as np

from retrieval.training import hubness


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _vectors(n: int = 14, d: int = 5, seed: int = 0):
    return _unit(np.random.default_rng(seed).normal(size=(n, d))).astype(np.float32)


def test_crowding_is_the_mean_cosine_to_the_k_nearest_other_rows():
    index = _vectors(9)
    sims = index @ index.T
    for k in (1, 3, 8, 50):  # more than there are: every other row
        crowd = hubness.crowding(index, k)
        for i in range(len(index)):
            others = np.sort(np.delete(sims[i], i))[::-1][:min(k, 8)]
            assert np.isclose(crowd[i], others.mean(), atol=1e-6)


def test_the_extra_column_turns_an_inner_product_into_the_penalised_score():
    vectors, index = _vectors(), np.arange(9)
    queries = np.arange(9, 14)
    out = hubness.penalised(vectors, index, [(3, 0.5)])["k3w0.5"]
    crowd = hubness.crowding(vectors[index], 3)
    expected = vectors[queries] @ vectors[index].T - 0.5 * crowd[None, :]
    np.testing.assert_allclose(out[queries] @ out[index].T, expected, atol=1e-6)
    np.testing.assert_array_equal(out[:, :-1], vectors)  # the vectors themselves are untouched


def test_weight_zero_keeps_every_query_s_ranking():
    vectors, index = _vectors(), np.arange(9)
    out = hubness.penalised(vectors, index, [(5, 0.0)])["k5w0"]
    queries = np.arange(9, 14)
    np.testing.assert_array_equal(np.argsort(-(out[queries] @ out[index].T), axis=1, kind="stable"),
                                  np.argsort(-(vectors[queries] @ vectors[index].T), axis=1, kind="stable"))


def test_a_crowded_row_loses_to_a_lonely_row_at_the_same_cosine():
    lonely, crowded = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    near_copies = _unit(crowded + np.random.default_rng(1).normal(scale=0.05, size=(4, 3)))
    query = _unit(np.array([[1.0, 1.0, 0.0]]))  # as close to both
    vectors = np.vstack([lonely, crowded, near_copies, query]).astype(np.float32)
    index = np.arange(6)
    out = hubness.penalised(vectors, index, [(2, 0.5)])["k2w0.5"]
    scores = out[6] @ out[index].T
    assert scores[0] > scores[1]


def test_only_index_rows_are_read_to_measure_crowding():
    vectors, index = _vectors(), np.arange(9)
    moved = vectors.copy()
    moved[9:] = _vectors(5, seed=7)  # the held-out rows change: the index rows' penalties do not
    a = hubness.penalised(vectors, index)
    b = hubness.penalised(moved, index)
    for point in a:
        np.testing.assert_array_equal(a[point][index], b[point][index])
        assert np.all(a[point][9:, -1] == 1.0)


def test_the_wrapper_keeps_the_plain_answers_and_adds_one_per_grid_point():
    vectors = _vectors()
    plain = {("frozen", "gap"): vectors}
    fitted = hubness.penalised_fitter(lambda rows: plain, [(5, 0.0), (5, 0.5)])(np.arange(9))
    assert fitted[("frozen", "gap")] is vectors
    twins = sorted(key for key in fitted if key[0] == "frozen-hub")
    assert twins == [("frozen-hub", "gap/k5w0"), ("frozen-hub", "gap/k5w0.5")]
    assert len(hubness.GRID) == len({hubness.setting(*p) for p in hubness.GRID})
