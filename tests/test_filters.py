"""Filters on any metadata field: which fields qualify, which rows each filter allows, and that every search
(library, CLI) applies them inside the vector store, still returning k results when k rows match."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import build_test_index
from retrieval.errors import BadQuery
from retrieval.filters import RowFilter, filter_fields
from retrieval.options import QueryOptions
from retrieval.schema import is_filter_field

VIEWS = ("PA", "lateral", "AP")


def archive_like_dataset(rows: int = 30):
    """A Dataset shaped like an index of a DICOM archive: schema columns, the build's own columns, a vector
    column, and extra columns an archive adds (some filters, some identifiers or free text)."""
    import datasets

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(rows, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return datasets.Dataset.from_dict({
        "id": [f"r{i}" for i in range(rows)], "file_name": [f"a/{i}.dcm" for i in range(rows)],
        "category": [("chest", "knee", "hand")[i % 3] for i in range(rows)],
        "view": [VIEWS[i % 3] if i % 5 else "" for i in range(rows)],
        "caption": [f"image {i}" for i in range(rows)], "source_url": ["https://example.org"] * rows,
        "text": [f"text {i}" for i in range(rows)], "image_sha256": [f"{i:064x}" for i in range(rows)],
        "sex": [("F", "M")[i % 2] for i in range(rows)],
        "age_band": [("20-39", "40-59", "60+")[i % 3] for i in range(rows)],
        "manufacturer": [("Acme", "Borealis")[2 * i // rows] for i in range(rows)],
        "study_id": [f"s{i // 3}" for i in range(rows)], "series_uid": [f"1.2.{i}" for i in range(rows)],
        "study_description": ["CHEST PA"] * rows, "frames": [1] * rows,
        "vec": vectors.tolist()})


# --- which fields, which rows ------------------------------------------------------------------------------
def test_every_string_metadata_field_is_a_filter_but_ids_free_text_file_names_and_urls():
    dataset = archive_like_dataset()
    assert filter_fields(dataset) == ("category", "view", "sex", "age_band", "manufacturer")
    for name in ("id", "file_name", "caption", "source_url", "text", "image_sha256", "study_id", "series_uid",
                 "study_description", "SeriesInstanceUID", "source-url", "study"):
        assert not is_filter_field(name), name
    for name in ("label", "body_part", "source", "license", "modality", "body_part_raw", "age_band"):
        assert is_filter_field(name), name


def test_a_filter_intersects_fields_and_unites_the_values_of_one_field():
    views = ["PA", "lateral", "PA", "", "AP", "lateral"]
    sexes = ["F", "F", "M", "F", "F", "M"]
    rows = RowFilter({"view": views, "sex": sexes}, len(views))
    assert rows.values() == {"view": ["AP", "PA", "lateral"], "sex": ["F", "M"]}  # "" is no value
    assert rows.allowed(None) is None and rows.allowed({}) is None  # nothing restricts
    assert rows.allowed({"view": ("PA",)}).tolist() == [0, 2]
    assert rows.allowed({"view": ("lateral", "PA")}).tolist() == [0, 1, 2, 5]
    assert rows.allowed({"view": ("lateral", "PA"), "sex": ("F",)}).tolist() == [0, 1]
    assert rows.allowed({"view": ("PA",)}, exclude=[0]).tolist() == [2]
    assert rows.allowed(None, exclude=3).tolist() == [0, 1, 2, 4, 5]
    assert rows.allowed({"view": ("oblique",)}).tolist() == []


@pytest.mark.parametrize("filters, message", [
    ({"sex": "F"}, r"Unknown filter field 'sex'; this index can filter on \['category', 'view'\]"),
    ({"view": "oblique"}, r"Unknown view 'oblique'; choose from \['AP', 'PA'\]"),
    ({"view": ["PA", "oblique"]}, "Unknown view 'oblique'"),
])
def test_an_unknown_field_or_value_is_refused_naming_what_the_index_has(filters, message):
    with pytest.raises(BadQuery, match=message):
        QueryOptions(filters=filters).check_filters({"category": ["chest"], "view": ["AP", "PA"]})


@pytest.mark.parametrize("filters, message", [
    ([("view", "PA")], "map fields to values"),
    ("{not json", "JSON object"),
    ({"view": 3}, "text or a list of texts"),
    ({"view": {"$ne": "PA"}}, "text or a list of texts"),
    ({"view": ["PA", None]}, "text or a list of texts"),
    ({"": "PA"}, "must be a name"),
    ({"view": ["x"] * 65}, "at most 64 values"),
    ({"view": "x" * 201}, "at most 64 values of at most 200 characters"),
    ({f"f{i}": "x" for i in range(17)}, "At most 16 filter fields"),
])
def test_a_malformed_filter_is_refused_naming_it(filters, message):
    with pytest.raises(BadQuery, match=message):
        QueryOptions(filters=filters)


def test_filters_are_normalised_and_the_category_is_one_of_them():
    assert QueryOptions(filters={"view": ["PA", "PA", ""], "sex": ""}).filters == {"view": ("PA",)}
    assert QueryOptions(filters='{"view": "PA"}').filters == {"view": ("PA",)}  # JSON text, as an API may send
    assert QueryOptions(category="knee").filters == {"category": ("knee",)}
    assert QueryOptions(category="knee", filters={"category": "knee"}) == QueryOptions(category="knee")
    with pytest.raises(BadQuery, match="category is given twice"):
        QueryOptions(category="knee", filters={"category": "hand"})


def test_the_catalogue_counts_each_fields_values_among_results():
    import datasets

    from retrieval.catalogue import Catalogue

    dataset = archive_like_dataset()
    dataset = dataset.add_column("image", [{"bytes": b"", "path": None}] * len(dataset)).cast_column(
        "image", datasets.Image())
    catalogue = Catalogue(dataset)
    assert catalogue.filter_fields == ("category", "view", "sex", "age_band", "manufacturer")
    assert catalogue.filter_values()["manufacturer"] == ["Acme", "Borealis"]
    counts = catalogue.field_counts(["r0", "r1", "r2", "r4"])
    assert counts["category"] == {"knee": 2, "chest": 1, "hand": 1} and list(counts["category"])[0] == "knee"
    assert counts["view"] == {"lateral": 2, "AP": 1}  # r0 has no view: not counted
    assert list(counts["sex"]) == ["F", "M"] and counts["sex"] == {"F": 3, "M": 1}


# --- inside the search -------------------------------------------------------------------------------------
@pytest.fixture
def engine(tmp_path, fake_models):
    from retrieval.search import SearchEngine

    rows = [{"file_name": f"{part}/{part[0]}{i}.png", "category": part, "label": label, "view": VIEWS[i % 3],
             "caption": f"{part} radiograph", "source": "synthetic", "license": "CC0-1.0", "kind": kind}
            for part, label, kind in (("chest", "normal", "bright"), ("knee", "kl-0", "stripes"))
            for i in range(9)]
    build_test_index(rows, tmp_path / "index", ["keywords", "brightness"])
    return SearchEngine(tmp_path / "index")


def test_every_query_keeps_only_rows_that_pass_and_still_returns_k(engine):
    from conftest import synthetic_image

    lateral = {"view": "lateral"}
    # the keyword query prefers knees, but only 3 knees are lateral: k=6 comes back filled with lateral chests
    hits = engine.search_text("knee", model="keywords", k=6, filters=lateral, min_score=-1)
    assert len(hits) == 6 and {hit.view for hit in hits} == {"lateral"}
    assert [hit.category for hit in hits[:3]] == ["knee"] * 3
    image = engine.search_image(synthetic_image("stripes", seed=3), model="brightness", k=6,
                                filters={"view": ["PA", "AP"], "category": "knee"}, min_score=-1)
    assert len(image) == 6 and {(h.category, h.view) for h in image} == {("knee", "PA"), ("knee", "AP")}
    first = engine.catalogue.ids[0]
    more = engine.similar(first, model="brightness", k=5, filters=lateral, min_score=-1)
    assert len(more) == 5 and first not in [h.id for h in more] and {h.view for h in more} == {"lateral"}
    refined = engine.refine("knee", [hits[0].id], [], model="keywords", k=6, filters=lateral, min_score=-1)
    assert len(refined) == 6 and {h.view for h in refined} == {"lateral"}
    assert engine.search_text("knee", model="keywords", k=20, filters={"view": "PA", "category": "knee"},
                              min_score=-1).hits and len(engine.search_text(
                                  "knee", model="keywords", k=20, filters={"view": "PA", "category": "knee"},
                                  min_score=-1)) == 3  # only 3 rows pass: no more


def test_the_category_argument_is_the_category_filter(engine):
    def ranking(**options):
        return [(h.id, h.score) for h in engine.search_text("chest knee", model="keywords", k=8, min_score=-1,
                                                           **options)]

    assert ranking(category="knee") == ranking(filters={"category": "knee"}) == ranking(
        category="knee", filters={"category": ["knee"]})
    assert {h.category for h in engine.search_text("chest", model="keywords", k=8, category="knee")} == {"knee"}


def test_a_bad_filter_names_the_fields_or_the_values_of_this_index(engine):
    with pytest.raises(BadQuery, match=r"Unknown filter field 'sex'; this index can filter on \['category', "
                                       r"'label', 'body_part', 'view', 'source', 'license'\]"):
        engine.search_text("knee", model="keywords", filters={"sex": "F"})
    with pytest.raises(BadQuery, match=r"Unknown view 'oblique'; choose from \['AP', 'PA', 'lateral'\]"):
        engine.similar(engine.catalogue.ids[0], filters={"view": "oblique"})


def test_the_cli_takes_repeated_filters(engine, capsys):
    from retrieval.cli import main

    base = ["search", "--index", str(engine.index_dir), "--text", "knee", "--model", "keywords", "--k", "6",
            "--min-score", "-1", "--json"]
    assert main([*base, "--filter", "view=lateral", "--filter", "view=PA", "--filter", "category=knee"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 6 and {(h["category"], h["view"]) for h in hits} == {("knee", "lateral"), ("knee", "PA")}
    assert main([*base, "--filter", "view"]) == 2
    assert "FIELD=VALUE" in capsys.readouterr().err
    assert main([*base, "--filter", "sex=F"]) == 2
    assert "Unknown filter field 'sex'" in capsys.readouterr().err
