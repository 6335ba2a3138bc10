"""training/variants.py's cross-source-positive experiments (benchmarks/cross_source_positives.py): each is its
parent with one change, the flag reaches the head's and the anchored tail's loss through head_config, the card's
variants keep training as before, and both ship like their parents. Tiny synthetic features (no model, no
collection; the anchored fit is a spy)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from retrieval.evaluation.rows import Item
from retrieval.training import anchored, variants

NEW = (variants.HEAD_XSRC, variants.ANCHORED_XSRC)
PARENTS = {"lite0-head-xsrc": "lite0-head", "lite0-anchored-xsrc": "lite0-anchored"}


def _items(sources: int = 4, per_source: int = 10) -> list[Item]:
    return [Item(f"s{s}-{i}", "", "", f"c{(s + i) % 3}", f"l{i % 2}", f"source{s}", "")
            for s in range(sources) for i in range(per_source)]


class Features:
    """What the fitters read of VariantFeatures (synthetic)."""

    def __init__(self, n: int, width: int = 12, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.x = rng.normal(size=(n, width)).astype(np.float32) + 2.0
        self.aug = (self.x[:, None] + 0.1 * rng.normal(size=(n, 2, width))).astype(np.float32)

    def clean(self, variant, kind: str = "clean") -> np.ndarray:
        return self.x

    def augmented(self, variant) -> np.ndarray:
        return self.aug

    def maps(self, variant):
        return np.zeros((len(self.x), 3, 1), np.float16), np.zeros((len(self.x), 3, 1), np.float32)


def test_each_is_its_parent_with_cross_source_positives_on_and_the_card_s_variants_are_unchanged():
    card = {v.name: v for v in variants.VARIANTS}
    for variant in NEW:
        parent = card[PARENTS[variant.name]]
        assert variant.name not in card
        assert replace(variant, name=parent.name, description=parent.description,
                       cross_source_positives=False) == parent
        assert variants.head_config(variant, 10).cross_source_positives is True
        assert variants.head_config(variant, 10).to_dict() == {
            **variants.head_config(parent, 10).to_dict(), "cross_source_positives": True}
    assert not any(variants.head_config(v).cross_source_positives for v in variants.VARIANTS)


def test_the_flag_changes_the_head_s_training():
    items = _items()
    feats = Features(len(items))
    rows = np.arange(len(items))[: 3 * len(items) // 4]
    small = replace(variants.HEAD_XSRC, head_dim=6)
    on = variants.fitter(small, feats, items, grid=(2,))(rows)[("lite0-head-xsrc", "e2")]
    off = variants.fitter(replace(small, cross_source_positives=False), feats, items, grid=(2,))(rows)[
        ("lite0-head-xsrc", "e2")]
    np.testing.assert_allclose(np.linalg.norm(on, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(on, off, atol=1e-4)


def test_the_anchored_fit_receives_the_flag_and_both_ship_like_their_parents(monkeypatch):
    seen = []

    def spy(backbone, items, rows, maps, stages, x, config, features, seed=0, on_epoch=None, **more):
        seen.append(config.cross_source_positives)
        return "tail", "head"

    monkeypatch.setattr(anchored, "fit_anchored", spy)
    monkeypatch.setattr(variants.efficientnet, "load_backbone", lambda *a: None)
    items = _items()
    feats = Features(len(items))
    rows = np.arange(len(items))
    variants.fitter(variants.ANCHORED_XSRC, feats, items)(rows)
    assert variants.fit_final(variants.ANCHORED_XSRC, "e10", feats, items, rows) == ("head", "tail")
    variants.fitter(replace(variants.ANCHORED_XSRC, cross_source_positives=False), feats, items)(rows)
    assert seen == [True, True, False]
    head, tail = variants.fit_final(replace(variants.HEAD_XSRC, head_dim=6), "e2", feats, items, rows)
    assert tail is None and variants.embed_final(variants.HEAD_XSRC, head, None, feats, False).shape == (len(items), 6)
