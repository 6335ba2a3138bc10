"""retrieval/training/nuisance.py: nuisance attribute projection finds the direction along which one finding differs
between sources, removes it so the same finding from two sources become neighbours, reads the training rows only,
and leaves the vectors alone at k 0. Synthetic vectors: milliseconds."""

from __future__ import annotations

import numpy as np

from retrieval.evaluation.rows import Item
from retrieval.training import nuisance

D = 12
SOURCE_AXIS = 5  # the synthetic sources differ along this axis only


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _collection(per_group: int = 8, seed: int = 0):
    """Two findings, each from three sources; a source shifts its films along SOURCE_AXIS by more than the
    findings differ."""
    rng = np.random.default_rng(seed)
    findings = {"normal": np.eye(D)[0] * 2, "pneumonia": np.eye(D)[1] * 2}
    items, vectors = [], []
    for label, centre in findings.items():
        for s, shift in enumerate((-3.0, -2.5, 3.0)):
            for i in range(per_group):
                vectors.append(centre + shift * np.eye(D)[SOURCE_AXIS] + 0.1 * rng.normal(size=D))
                items.append(Item(id=f"{label}{s}{i}", file_name="", path="", category="chest", label=label,
                                  source=f"hospital {s}", caption=""))
    return items, _unit(np.asarray(vectors)).astype(np.float32)


def test_the_strongest_nuisance_direction_is_the_one_the_sources_differ_along():
    items, vectors = _collection()
    directions = nuisance.nuisance_directions(vectors, [f"{i.category}/{i.label}" for i in items],
                                              [i.source for i in items])
    assert abs(directions[0, SOURCE_AXIS]) > 0.95
    np.testing.assert_allclose(directions @ directions.T, np.eye(len(directions)), atol=1e-5)


def test_a_group_from_one_source_gives_no_direction():
    items, vectors = _collection()
    assert nuisance.nuisance_directions(vectors, ["chest"] * len(items), ["one hospital"] * len(items)).shape == (0, D)


def test_projecting_it_out_makes_the_same_finding_from_another_source_the_nearest():
    items, vectors = _collection()
    source = np.asarray([i.source for i in items])
    label = np.asarray([i.label for i in items])
    query = int(np.flatnonzero((source == "hospital 0") & (label == "normal"))[0])
    # an index of the other sources: one that looks like the query's hospital holds the other finding
    others = np.flatnonzero(((source == "hospital 1") & (label == "pneumonia"))
                            | ((source == "hospital 2") & (label == "normal")))
    out = nuisance.projected(vectors, np.arange(len(items)), items, ranks=(0, 1))
    plain_best = others[np.argmax(out["k0"][others] @ out["k0"][query])]
    projected_best = others[np.argmax(out["k1"][others] @ out["k1"][query])]
    assert label[plain_best] == "pneumonia"  # without the projection the look-alike hospital wins
    assert label[projected_best] == "normal"
    np.testing.assert_array_equal(out["k0"], vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    np.testing.assert_allclose(np.linalg.norm(out["k1"], axis=1), 1.0, atol=1e-5)


def test_only_the_training_rows_are_read_to_find_the_directions():
    items, vectors = _collection()
    train = np.arange(0, len(items), 2)
    moved = vectors.copy()
    held_out = np.setdiff1d(np.arange(len(items)), train)
    moved[held_out] = _unit(np.random.default_rng(3).normal(size=(len(held_out), D)))
    a = nuisance.projected(vectors, train, items)
    b = nuisance.projected(moved, train, items)
    for point in a:
        np.testing.assert_allclose(a[point][train], b[point][train], atol=1e-6)


def test_the_wrapper_keeps_the_plain_answers_and_adds_one_per_rank():
    items, vectors = _collection()
    plain = {("frozen", "gap"): vectors}
    fitted = nuisance.projected_fitter(lambda rows: plain, items, ranks=(0, 2))(np.arange(len(items)))
    assert fitted[("frozen", "gap")] is vectors
    assert sorted(key for key in fitted if key[0] == "frozen-nap") == [("frozen-nap", "gap/k0"),
                                                                       ("frozen-nap", "gap/k2")]
