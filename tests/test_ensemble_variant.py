"""training/variants.py's `lite0-head+centred` (benchmarks/ensemble_centred.py): its vectors are unit length and
their cosine is the mean of the head's and the centred features' cosines; its fit reads no row outside the
training rows; it is not shipped. Tiny synthetic features only (no model, no collection)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from retrieval.evaluation.rows import Item
from retrieval.training import variants

GRID = (1, 2)


def _items(sources: int = 4, per_source: int = 10) -> list[Item]:
    return [Item(f"s{s}-{i}", "", "", f"c{(s + i) % 3}", f"l{i % 2}", f"source{s}", "")
            for s in range(sources) for i in range(per_source)]


class Features:
    """What a fitter reads of VariantFeatures: the clean view's head input and the augmented views."""

    def __init__(self, clean: np.ndarray, aug: np.ndarray) -> None:
        self.x, self.aug = clean, aug

    def clean(self, variant, kind: str = "clean") -> np.ndarray:
        assert kind == "clean", "the ensemble has no flip"
        return self.x

    def augmented(self, variant) -> np.ndarray:
        return self.aug


def _features(n: int, width: int = 12, seed: int = 0) -> Features:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, width)).astype(np.float32) + 2.0
    return Features(x, (x[:, None] + 0.1 * rng.normal(size=(n, 2, width))).astype(np.float32))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _small(variant):
    return replace(variant, head_dim=6, views=2)


def test_vectors_are_unit_and_their_cosine_is_the_mean_of_the_head_s_and_the_centred_features():
    items = _items()
    feats = _features(len(items))
    rows = np.arange(len(items))[: 2 * len(items) // 3]
    ensemble = variants.fitter(_small(variants.HEAD_AND_CENTRED), feats, items, seed=0, grid=GRID)(rows)
    head_only = variants.fitter(_small(replace(variants.HEAD_AND_CENTRED, name="head", centred_too=False)), feats,
                                items, seed=0, grid=GRID)(rows)
    centred = _unit(feats.x - feats.x[rows].mean(axis=0))
    assert sorted(ensemble) == [("lite0-head+centred", f"e{e}") for e in GRID]
    for epoch in GRID:
        v, h = ensemble[("lite0-head+centred", f"e{epoch}")], head_only[("head", f"e{epoch}")]
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
        expected = 0.5 * (h @ h.T) + 0.5 * (centred @ centred.T)
        np.testing.assert_allclose(v @ v.T, expected, atol=1e-5)
        assert not np.allclose(v @ v.T, h @ h.T, atol=1e-3)  # the centred half does count


def test_the_fit_reads_no_row_outside_the_training_rows():
    items = _items()
    feats = _features(len(items))
    rows = np.arange(len(items))[::2]
    held = np.setdiff1d(np.arange(len(items)), rows)
    spoiled = Features(feats.x.copy(), feats.aug.copy())
    spoiled.x[held] = np.nan  # a held-out row's features, class and source must not reach the fit
    spoiled.aug[held] = np.nan
    relabelled = [replace(item, category="other", label="other", source="elsewhere") if r in set(held.tolist())
                  else item for r, item in enumerate(items)]
    variant = _small(variants.HEAD_AND_CENTRED)
    clean_fit = variants.fitter(variant, feats, items, seed=0, grid=GRID)(rows)
    spoiled_fit = variants.fitter(variant, spoiled, relabelled, seed=0, grid=GRID)(rows)
    for key, vectors in clean_fit.items():
        assert np.isfinite(spoiled_fit[key][rows]).all()
        np.testing.assert_allclose(spoiled_fit[key][rows], vectors[rows], atol=1e-6)


def test_the_ensemble_is_an_experiment_not_a_shipped_variant():
    assert variants.HEAD_AND_CENTRED.name not in {v.name for v in variants.VARIANTS}
    items = _items()
    with pytest.raises(NotImplementedError, match="experiment"):
        variants.fit_final(variants.HEAD_AND_CENTRED, "e10", _features(len(items)), items, np.arange(len(items)))
    with pytest.raises(ValueError, match="centred_too"):
        variants.fitter(replace(variants.HEAD_AND_CENTRED, head_dim=0), _features(len(items)), items)
