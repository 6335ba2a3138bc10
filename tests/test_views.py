"""The grayscale views the trained model reads (embedders/preprocess.py) and is trained on (training/data.py,
training/augment.py): each preprocessing mode, the equalised view's indifference to a film's tone curve, and
augmented views that end with their mode's tone step and share their geometry across the cropped modes."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.embedders.preprocess import CROPPED_MODES, MODES, clean_view, tone
from retrieval.training.augment import acquisition_view
from retrieval.training.data import augmented_view
from retrieval.training.features import _views


def _film(seed: int = 0, h: int = 180, w: int = 150) -> np.ndarray:
    """A synthetic film: smooth anatomy-like structure inside a black letterbox frame."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    body = 90 + 60 * np.sin(x / 11.0) * np.cos(y / 17.0) + 40 * np.exp(-((x - 75) ** 2 + (y - 90) ** 2) / 900.0)
    body = np.clip(body + rng.normal(0, 4, body.shape), 0, 255).astype(np.uint8)
    framed = np.zeros((h + 24, w), np.uint8)
    framed[12:12 + h] = body
    return framed


def _flatness(view: np.ndarray) -> float:
    """Largest share of pixels in any of 8 equal intensity bins: 0.125 when perfectly flat."""
    counts, _ = np.histogram(view, bins=8, range=(0, 256))
    return float(counts.max() / counts.sum())


def test_every_mode_gives_a_square_uint8_view_and_an_unknown_mode_is_refused():
    film = _film()
    for mode in MODES:
        view = clean_view(film, mode, 64)
        assert view.shape == (64, 64) and view.dtype == np.uint8
    with pytest.raises(ValueError, match="equalize"):
        clean_view(film, "clahe")
    with pytest.raises(ValueError, match="unknown preprocessing mode"):
        tone(film, "clahe")


def test_the_equalised_view_flattens_the_histogram_and_ignores_the_tone_curve():
    """Films processed with different tone curves (gamma, contrast) come out nearly alike: the reason for the
    mode. The linear stretch keeps each curve."""
    film = _film()
    curved = (255.0 * (film / 255.0) ** 2.2).astype(np.uint8)  # the same anatomy through a darker tone curve
    equalised = [clean_view(f, "equalize").astype(np.float32) for f in (film, curved)]
    stretched = [clean_view(f, "norm").astype(np.float32) for f in (film, curved)]
    assert _flatness(equalised[0]) < 0.2 < _flatness(stretched[1])
    assert np.abs(equalised[0] - equalised[1]).mean() < 0.4 * np.abs(stretched[0] - stretched[1]).mean()


def test_the_cropped_modes_cut_the_letterbox_and_squash_keeps_it():
    film = _film()
    assert clean_view(film, "squash", 64)[0].max() == 0  # the black bar is still the top row
    for mode in CROPPED_MODES:
        assert clean_view(film, mode, 64)[0].max() > 0


@pytest.mark.parametrize("augment", [augmented_view, acquisition_view])
def test_augmented_views_end_with_their_modes_tone_step(augment):
    """An equalised view is (nearly) a fixed point of equalisation; a stretched view of the same draw is not."""
    film = _film(1)

    def off_equalised(mode: str) -> float:
        views = [augment(film, np.random.default_rng(seed), mode, 64) for seed in range(4)]
        assert all(v.shape == (64, 64) and v.dtype == np.uint8 for v in views)
        return float(np.mean([np.abs(tone(v, "equalize").astype(np.float32) - v).mean() for v in views]))

    assert off_equalised("equalize") < 0.5 * off_equalised("norm")


def test_the_cropped_modes_draw_the_same_augmentation_so_their_views_are_paired():
    """The stretched and equalised training views of one image share crop, flip and rotation: equalising the
    stretched view gives nearly the equalised view (only the stretch's clipped tails differ)."""
    grays = [_film(2), _film(3)]
    stretched = _views(grays, "norm", "basic", 0, seed=5, size=64)
    equalised = _views(grays, "equalize", "basic", 0, seed=5, size=64)
    other_seed = _views(grays, "equalize", "basic", 0, seed=6, size=64)
    for s, e, o in zip(stretched, equalised, other_seed):
        paired = np.abs(tone(s, "equalize").astype(np.float32) - e).mean()
        unpaired = np.abs(o.astype(np.float32) - e).mean()
        assert paired < 0.5 * unpaired


# --- the equalised variants (training/variants.py EQUALIZED, benchmarks/equalized_training.py) -------------------

class SpyCache:
    """A FeatureCache stand-in that records which mode each pass was read in."""

    def __init__(self, n: int = 5) -> None:
        self.n, self.read = n, []

    def one(self, mode: str, kind: str, view: int = -1) -> np.ndarray:
        self.read.append((mode, kind, view))
        from retrieval.embedders.xray_network import SLICES_OF
        from retrieval.training.variants import LITE0

        width = max(stop for _, stop in SLICES_OF[LITE0].values())  # the raw pooled width the slices read
        return np.ones((self.n, width), np.float16)

    def maps(self, mode: str, kind: str, view: int = -1) -> np.ndarray:
        self.read.append((mode, "maps:" + kind, view))
        return np.zeros((self.n, 192, 7, 7), np.float16)


def test_each_equalised_variant_is_its_card_parent_reading_every_pass_in_the_equalised_mode():
    from dataclasses import replace

    from retrieval.training import variants

    card = {v.name: v for v in variants.VARIANTS}
    for variant in variants.EQUALIZED:
        parent = card[variant.name.removesuffix("-eq")]
        assert variant.name not in card and variant.preprocessing == "equalize"
        assert replace(variant, name=parent.name, description=parent.description, preprocessing="norm") == parent
        assert variants.head_config(variant, 10).preprocessing == "equalize"
        spy = SpyCache()
        feats = variants.VariantFeatures({variants.LITE0: spy})
        feats.clean(variant), feats.augmented(variant)
        if variant.flip:
            feats.clean(variant, "flip")
        if variant.tail:
            feats.maps(variant)
        assert spy.read and {mode for mode, _, _ in spy.read} == {"equalize"}
    assert {v.preprocessing for v in variants.VARIANTS} == {"norm"}  # the card's own variants are unchanged
