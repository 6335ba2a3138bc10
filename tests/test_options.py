"""The rooms under the engine, on their own: one validated set of query options, and a catalogue that reads an
index built before a schema column existed."""

import io

import numpy as np
import pytest
from PIL import Image

from retrieval.errors import BadQuery
from retrieval.options import K_DEFAULT, K_MAX, K_MIN, QueryOptions
from retrieval.schema import FIELDS


# --- QueryOptions ------------------------------------------------------------------------------------------
def test_the_defaults_are_stated_once_and_valid():
    options = QueryOptions()
    assert (options.k, options.category, options.min_score) == (K_DEFAULT, None, None)
    assert K_MIN <= K_DEFAULT <= K_MAX


@pytest.mark.parametrize("k", [K_MIN, K_MAX, np.int64(7)])
def test_every_whole_k_in_range_is_accepted_as_an_int(k):
    options = QueryOptions(k=k)
    assert options.k == int(k) and type(options.k) is int


@pytest.mark.parametrize("fields, message", [
    ({"k": K_MIN - 1}, f"k must be a whole number from {K_MIN} to {K_MAX}; got 0"),
    ({"k": K_MAX + 1}, f"from {K_MIN} to {K_MAX}; got {K_MAX + 1}"),
    ({"k": 5.0}, "whole number"),
    ({"k": True}, "whole number"),
    ({"k": "5"}, "whole number"),
    ({"k": None}, "whole number"),
    ({"min_score": 1.5}, "minimum score must be a number from -1 to 1; got 1.5"),
    ({"min_score": float("nan")}, "minimum score"),
    ({"min_score": "0.2"}, "minimum score"),
    ({"min_score": False}, "minimum score"),
    ({"category": 3}, "category must be a text"),
])
def test_a_bad_option_is_refused_naming_it(fields, message):
    with pytest.raises(BadQuery, match=message):
        QueryOptions(**fields)


def test_options_are_frozen_and_an_empty_category_means_every_category():
    options = QueryOptions(k=3, category="", min_score=0)
    assert options.category is None and options.min_score == 0.0
    with pytest.raises(AttributeError):
        options.k = 4


def test_the_category_is_checked_against_the_index_and_the_model_default_fills_a_missing_minimum():
    options = QueryOptions(category="knee")
    assert options.check_category(["chest", "knee"]) is options
    with pytest.raises(BadQuery, match="Unknown category 'knee'; choose from \\['chest'\\]"):
        options.check_category(["chest"])
    assert options.with_default_min_score(0.3).min_score == 0.3
    assert QueryOptions(min_score=-0.5).with_default_min_score(0.3).min_score == -0.5  # a given minimum stays


def test_the_cli_refuses_a_bad_k_before_it_loads_any_index(tmp_path, capsys):
    from retrieval import cli

    assert cli.main(["search", "--index", str(tmp_path / "no-index"), "--text", "knee", "--k", "50"]) == 2
    assert f"k must be a whole number from {K_MIN} to {K_MAX}; got 50" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["search", "--help"])
    assert f"{K_MIN}-{K_MAX} (default {K_DEFAULT})" in capsys.readouterr().out


# --- Catalogue ---------------------------------------------------------------------------------------------
def png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8, 6), value).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_catalogue_of_an_index_without_a_schema_column_reads_it_as_empty():
    import datasets

    from retrieval.catalogue import Catalogue
    from retrieval.results import Hit

    older = [name for name in FIELDS if name not in ("body_part", "view")]  # built before these columns existed
    rows = {"id": ["knee/a", "chest/b"], "text": ["knee radiograph", "chest radiograph"],
            "image": [{"bytes": png(40), "path": None}, {"bytes": png(200), "path": None}],
            **{name: [f"{name} a", f"{name} b"] for name in older}}
    rows["category"] = ["knee", "chest"]
    catalogue = Catalogue(datasets.Dataset.from_dict(rows).cast_column("image", datasets.Image()))
    record = catalogue.record("knee/a")
    assert list(record) == ["id", *FIELDS] and record["body_part"] == record["view"] == ""
    assert record["caption"] == "caption a" and catalogue.categories == ["chest", "knee"]
    assert catalogue.column("body_part") == ["", ""] and len(catalogue) == 2 and "chest/b" in catalogue
    hit = Hit(rank=1, score=0.5, row=0, **catalogue.record_at(0))
    assert hit.body_part == "" and hit.to_dict() == {"rank": 1, "score": 0.5, **record}
    assert catalogue.image("chest/b").mode == "L" and np.asarray(catalogue.image("chest/b")).mean() == 200
    assert catalogue.thumbnail("knee/a").size == (8, 6)  # no stored thumbnail column: rendered on demand
    assert catalogue.collection_stats()["categories"] == {"knee": 1, "chest": 1}
    with pytest.raises(BadQuery, match="No image with id 'elbow/c'"):
        catalogue.record("elbow/c")
