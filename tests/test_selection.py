"""training/selection.py: nested cross-source selection never lets an outer held-out row reach a choice or a
fit; the bootstrap over sources finds known intervals; the default rule follows the interval. Tiny synthetic
features only (no model, no collection)."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.evaluation.rows import Item
from retrieval.training import selection


def _items(sources: int = 8, per_source: int = 12) -> list[Item]:
    items = []
    for s in range(sources):
        for i in range(per_source):
            category = f"c{(s + i) % 3}"
            items.append(Item(f"s{s}-{i}", "", "", category, f"l{i % 2}", f"source{s}", ""))
    return items


def _features(items, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = {c: rng.normal(size=16) for c in {i.category for i in items}}
    x = np.stack([centres[i.category] + rng.normal(scale=1.5, size=16) for i in items])
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class SpyFitter:
    """Records every row set it is fitted on; two variants, two settings each (centring on the rows it sees)."""

    def __init__(self, x: np.ndarray) -> None:
        self.x, self.calls = x, []

    def __call__(self, rows: np.ndarray) -> dict:
        self.calls.append(np.asarray(rows).copy())
        mean = self.x[rows].mean(axis=0)
        centred = self.x - mean
        out = {}
        for setting, scale in (("a", 1.0), ("b", 0.5)):
            for variant, v in (("plain", self.x), ("centred", centred)):
                y = v * scale + (0 if variant == "plain" else 0.01 * mean)
                out[(variant, setting)] = y / np.linalg.norm(y, axis=1, keepdims=True)
        return out


def test_no_outer_held_out_row_ever_reaches_selection_or_fitting():
    items = _items()
    x = _features(items)
    spy = SpyFitter(x)
    result = selection.nested_selection(items, [spy], x, outer_k=4, inner_k=3, seed=0, log=lambda *a: None)
    outer = result.outer_folds
    folds = sorted(set(outer.tolist()))
    assert len(folds) == 4
    per_fold = len(spy.calls) // len(folds)  # calls come in order: inner fits, then the refit, per outer fold
    assert per_fold * len(folds) == len(spy.calls) and per_fold >= 3
    for fold, start in zip(folds, range(0, len(spy.calls), per_fold)):
        held = set(np.nonzero(outer == fold)[0].tolist())
        calls = spy.calls[start:start + per_fold]
        for rows in calls:
            assert not held & set(rows.tolist()), f"outer fold {fold}'s held-out rows reached a fit"
        assert set(calls[-1].tolist()) == set(range(len(items))) - held  # the refit: every outer training row
        sources_inner = [{items[r].source for r in rows} for rows in calls[:-1]]
        assert all(len(s) < len({items[r].source for r in calls[-1]}) for s in sources_inner)
    # every held-out row is judged exactly once, by every reported pipeline
    for name in ("plain", "centred", "selected", "reference"):
        assert sorted(result.outer[name].rows.tolist()) == list(range(len(items)))
    for choice in result.choices:
        assert choice["selected"][0] in ("plain", "centred") and choice["selected"][1] in ("a", "b")


def test_candidates_limit_what_the_selected_pipeline_may_pick():
    items = _items()
    x = _features(items)
    result = selection.nested_selection(items, [SpyFitter(x)], x, outer_k=3, inner_k=2, candidates=["plain"],
                                        log=lambda *a: None)
    assert all(c["selected"][0] == "plain" for c in result.choices)


class StopAfter(SpyFitter):
    """A SpyFitter that raises on its `limit`-th call: a training run killed part-way."""

    def __init__(self, x: np.ndarray, limit: int) -> None:
        super().__init__(x)
        self.limit = limit

    def __call__(self, rows: np.ndarray) -> dict:
        if len(self.calls) + 1 >= self.limit:
            raise KeyboardInterrupt("killed")
        return super().__call__(rows)


def test_a_stopped_run_resumes_at_its_first_unfinished_outer_fold(tmp_path):
    items = _items()
    x = _features(items)
    whole = selection.nested_selection(items, [SpyFitter(x)], x, outer_k=4, inner_k=3, log=lambda *a: None)
    per_fold = 4  # 3 inner fits and the refit
    with pytest.raises(KeyboardInterrupt):  # killed during the third outer fold
        selection.nested_selection(items, [StopAfter(x, 2 * per_fold + 2)], x, outer_k=4, inner_k=3,
                                   log=lambda *a: None, checkpoints=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outer-fold-0.npz", "outer-fold-1.npz"]  # no partial file
    spy = SpyFitter(x)
    resumed = selection.nested_selection(items, [spy], x, outer_k=4, inner_k=3, log=lambda *a: None,
                                         checkpoints=tmp_path)
    assert len(spy.calls) == 2 * per_fold  # only the two unfinished folds were fitted
    assert resumed.choices == whole.choices
    for name, results in whole.outer.items():
        np.testing.assert_array_equal(resumed.outer[name].rows, results.rows)
        for level, figures in results.per_level.items():
            for metric, values in figures.items():
                np.testing.assert_array_equal(resumed.outer[name].per_level[level][metric], values)
    assert resumed.summary("selected") == whole.summary("selected")
    (tmp_path / "outer-fold-1.npz").write_bytes(b"not a fold")  # a damaged file: that fold is fitted again
    spy = SpyFitter(x)
    again = selection.nested_selection(items, [spy], x, outer_k=4, inner_k=3, log=lambda *a: None,
                                       checkpoints=tmp_path)
    assert len(spy.calls) == per_fold and again.choices == whole.choices


def test_the_checkpoint_folder_is_named_after_what_the_folds_depend_on():
    from dataclasses import replace

    from retrieval.training import variants
    from retrieval.training.train import selection_key

    card = variants.VARIANTS[:2]
    assert selection_key(card, None, 5, 3) == selection_key(card, None, 5, 3)
    changed = [selection_key(card, (10,), 5, 3), selection_key(card, None, 4, 3), selection_key(card, None, 5, 2),
               selection_key(card[:1], None, 5, 3),
               selection_key((card[0], replace(card[1], preprocessing="equalize")), None, 5, 3)]
    assert len({selection_key(card, None, 5, 3), *changed}) == 1 + len(changed)


def test_bootstrap_of_identical_gains_is_that_gain():
    per_source = {f"s{i}": (0.9 * 10, 0.8 * 10, 10) for i in range(12)}
    out = selection.bootstrap_gain(per_source, reps=1000, seed=1)
    assert out["mean_over_sources"]["gain"] == pytest.approx(0.1)
    assert out["mean_over_sources"]["ci95"] == pytest.approx([0.1, 0.1])
    assert out["pooled"]["ci95"] == pytest.approx([0.1, 0.1])


def test_bootstrap_interval_matches_the_normal_theory_on_many_sources():
    rng = np.random.default_rng(3)
    gains = rng.normal(0.05, 0.1, size=400)
    per_source = {f"s{i}": (0.5 + g, 0.5, 1) for i, g in enumerate(gains)}
    out = selection.bootstrap_gain(per_source, reps=4000, seed=0)["mean_over_sources"]
    half = 1.96 * gains.std(ddof=1) / np.sqrt(len(gains))
    assert out["gain"] == pytest.approx(gains.mean(), abs=1e-4)
    assert out["ci95"][0] == pytest.approx(gains.mean() - half, abs=0.15 * half)
    assert out["ci95"][1] == pytest.approx(gains.mean() + half, abs=0.15 * half)
    assert selection.bootstrap_gain(per_source, reps=500, seed=7) == selection.bootstrap_gain(per_source, 500, 7)


def test_default_rule_needs_the_category_interval_above_zero_and_label_not_worse():
    def iv(low, high):
        return {"mean_over_sources": {"gain": (low + high) / 2, "ci95": [low, high]}}

    assert selection.default_decision({"category": iv(0.01, 0.05), "label": iv(-0.02, 0.04)})[0]
    no, why = selection.default_decision({"category": iv(-0.01, 0.05), "label": iv(0.0, 0.1)})
    assert not no and "not above zero" in why and "-0.010" in why
    worse, why = selection.default_decision({"category": iv(0.02, 0.05), "label": iv(-0.08, -0.01)})
    assert not worse and "significantly worse" in why


def test_the_models_table_and_the_image_default_read_the_cards_decision(monkeypatch):
    import retrieval.policy as policy_module

    cards = {"xray-lite0": {"default_image_model": False, "default_reason": "the category gain's interval is not "
                                                                            "above zero (-0.010 to +0.030)"}}
    monkeypatch.setattr(policy_module, "training_card", lambda name: cards.get(name))
    assert not policy_module._earned("xray-lite0", "image") and policy_module._earned("xray-lite0", "text")
    assert policy_module._earned("efficientnet-lite0", "image")  # no card: pretrained keeps its place
    assert policy_module._decision("xray-lite0").startswith("not the default image model: the category gain")
    cards["xray-lite0"]["default_image_model"] = True
    assert policy_module._earned("xray-lite0", "image")
    assert policy_module._decision("xray-lite0").startswith("default image model: ")
    assert policy_module._decision("efficientnet-lite0") == ""


def test_evaluate_takes_a_training_card_s_outer_folds_only_when_they_place_every_source_once():
    from retrieval.evaluation.folds import folds_of_sources
    from retrieval.evaluation.rows import item_from_row

    items = [item_from_row({"id": f"r{i}", "category": "chest", "source": source})
             for i, source in enumerate(["north", "south", "east", "north"])]
    folds = folds_of_sources(items, {"0": ["north"], "1": ["south", "east"]})
    assert folds.tolist() == [0, 1, 1, 0]
    assert folds_of_sources(items, {"0": ["north"], "1": ["south"]}) is None  # east is in no fold
    assert folds_of_sources(items, {"0": ["north", "east"], "1": ["south", "east"]}) is None  # east twice
    assert folds_of_sources(items, {"0": "north"}) is None  # not a list of sources
