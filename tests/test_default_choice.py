"""The default image model's rule, run nested: each outer fold's pick reads only the other folds, and the reported
figure is the picked models' figures on the folds they did not read."""

from __future__ import annotations

import numpy as np

from retrieval.evaluation.default_choice import nested_default
from retrieval.evaluation.protocols import concat, cross_source, search_rows
from retrieval.evaluation.rows import Item

SOURCES, PER_CATEGORY = 4, 10


def _items() -> list[Item]:
    return [Item(id=f"s{s}-{c}-{i}", file_name="", path="", category=c, label="", source=f"source {s}", caption="")
            for s in range(SOURCES) for c in ("a", "b") for i in range(PER_CATEGORY)]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _models(items: list[Item]) -> dict[str, np.ndarray]:
    """'sharp': each category on its own axis, but source 3's films point the wrong way; 'steady': the right axis
    everywhere, under noise."""
    rng = np.random.default_rng(0)
    axis = np.asarray([[1.0, 0.0] if item.category == "a" else [0.0, 1.0] for item in items])
    last = np.asarray([item.source == f"source {SOURCES - 1}" for item in items])
    sharp = np.where(last[:, None], axis[:, ::-1], axis)
    steady = axis + rng.normal(0, 0.45, axis.shape)
    pad = lambda x: np.hstack([x, np.zeros((len(x), 1))])  # noqa: E731
    return {"sharp": _unit(pad(sharp) + 1e-3), "steady": _unit(pad(steady) + 1e-3)}


def test_each_outer_folds_pick_reads_only_the_other_folds_and_is_judged_on_its_own():
    items = _items()
    folds = np.asarray([int(item.source.split()[-1]) for item in items])
    nested = nested_default(items, _models(items), folds)
    assert nested["candidates"] == ["sharp", "steady"]
    last = nested["per_fold"][SOURCES - 1]
    # the other folds say "sharp" is perfect, so it is picked for source 3, where it finds the wrong category
    assert last["inner_category_p@5"]["sharp"] == 1.0 and last["picked"] == "sharp"
    assert last["held_out_sources"] == [f"source {SOURCES - 1}"]
    # the reported figure is what each pick did on the fold it did not read (source 3: 0)
    models = _models(items)
    judged = concat([search_rows(items, models[f["picked"]], np.nonzero(folds == f["fold"])[0],
                                 np.nonzero(folds != f["fold"])[0]) for f in nested["per_fold"]])
    assert nested["nested"]["category"]["p@5"] == judged.summary(items)["category"]["p@5"]
    assert nested["nested"]["category"]["queries"] == len(items)
    best_read_on_every_fold = max(cross_source(items, lambda train, v=v: v, folds).summary(items)["category"]["p@5"]
                                  for v in models.values())
    assert nested["nested"]["category"]["p@5"] < best_read_on_every_fold  # the rule on every fold flatters itself


def test_no_choice_no_nested_figure():
    items = _items()
    folds = np.asarray([int(item.source.split()[-1]) for item in items])
    models = _models(items)
    assert nested_default(items, {"sharp": models["sharp"]}, folds) is None  # one candidate: nothing is chosen
    assert nested_default(items, models, folds % 2) is None  # two folds: no inner fold to choose on


def test_evaluate_prints_the_nested_figure_beside_the_cross_source_table():
    from retrieval.evaluation.report import cross_source_text

    items = _items()
    folds = np.asarray([int(item.source.split()[-1]) for item in items])
    models = _models(items)
    cross = {"folds": SOURCES, "assignment": "one source per fold",
             "sources": {item.source: int(fold) for item, fold in zip(items, folds)},
             "models": {name: {"from": "stored vectors", "cross_source": cross_source(
                 items, lambda train, v=v: v, folds).summary(items)} for name, v in models.items()},
             "default_rule_nested": nested_default(items, models, folds)}
    text = "\n".join(cross_source_text(cross))
    nested = cross["default_rule_nested"]["nested"]["category"]["p@5"]
    assert "default image model by the app's rule, run nested" in text and f"category P@5 {nested:.3f}" in text
    assert f"fold {SOURCES - 1}: sharp" in text
