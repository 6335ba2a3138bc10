"""The map of the collection: each image model's vectors in 2-D (t-SNE), stored with the index at build time,
projected again only when those vectors change, and a query placed among its nearest rows."""

import dataclasses
import os

import numpy as np
import pytest

from conftest import build_test_index, synthetic_image, write_collection
from retrieval.errors import BadQuery, UnknownEmbedder
from retrieval.layout import IndexFolder
from retrieval.projection import place, project
from retrieval.search import SearchEngine

MODELS = ["keywords", "brightness"]  # a text model (no map) and an image model (a map)


def two_kinds(root):
    """Eight bright chest images and eight striped knee images: two clusters any map keeps apart."""
    rows = [{"file_name": f"chest/c{i}.png", "category": "chest", "label": "normal", "caption": "chest radiograph",
             "source": "synthetic", "license": "CC0-1.0", "kind": "bright"} for i in range(8)]
    rows += [{"file_name": f"knee/k{i}.png", "category": "knee", "label": "kl-0", "caption": "knee radiograph",
              "source": "synthetic", "license": "CC0-1.0", "kind": "stripes"} for i in range(8)]
    return write_collection(root, rows)


@pytest.fixture(scope="module")
def index(module_fake_models, tmp_path_factory):
    """Built once and only read by the tests that use it."""
    root = tmp_path_factory.mktemp("map")
    build_test_index(two_kinds(root / "collection"), root / "index", MODELS)
    return root / "index"


@pytest.fixture(scope="module")
def engine(index):
    return SearchEngine(index)


@pytest.fixture
def fresh(module_fake_models, tmp_path):
    """A collection and its index of our own, to change and rebuild."""
    collection = two_kinds(tmp_path / "collection")
    build_test_index(collection, tmp_path / "index", MODELS)
    return collection, tmp_path / "index"


def centre(engine, category, model="brightness"):
    points = engine.explorer.collection_map(model)
    return np.mean([(x, y) for x, y, c in zip(points["x"], points["y"], points["category"]) if c == category], axis=0)


# --- what the build stores -------------------------------------------------------------------------------
def test_each_image_model_stores_one_finite_2d_point_per_row(index):
    generation = IndexFolder(index).current()
    positions = generation.read_map("brightness")
    assert positions.shape == (16, 2) and positions.dtype == np.float32 and np.isfinite(positions).all()
    assert generation.has_map("brightness") and not generation.has_map("keywords")  # text models have no map
    assert generation.manifest.models["brightness"].map_digest


def test_the_map_keeps_the_two_kinds_apart(engine):
    chest, knee = centre(engine, "chest"), centre(engine, "knee")
    points = engine.explorer.collection_map("brightness")
    for x, y, category in zip(points["x"], points["y"], points["category"]):
        own, other = (chest, knee) if category == "chest" else (knee, chest)
        assert np.linalg.norm((x, y) - own) < np.linalg.norm((x, y) - other)


def test_the_collection_map_is_columns_a_dataframe_takes_as_they_are(engine):
    import pandas as pd

    frame = pd.DataFrame(engine.explorer.collection_map("brightness"))
    assert list(frame.columns) == ["id", "x", "y", "category", "label", "source"]
    assert list(frame["id"]) == engine.catalogue.ids and len(frame) == 16
    assert frame.loc[frame["id"] == "knee/k3", ["category", "label", "source"]].values.tolist() == [
        ["knee", "kl-0", "synthetic"]]
    assert engine.explorer.map_models() == ["brightness"]
    explorer = engine.explorer
    assert explorer.collection_map() == explorer.collection_map("brightness")  # the default: the image model's


# --- rebuilt with the vectors, kept without them -----------------------------------------------------------
def test_a_rebuild_that_reuses_every_vector_keeps_the_map_file_as_it_is(fresh):
    collection, index = fresh
    before = IndexFolder(index).current().map_path("brightness")
    content, stamp = before.read_bytes(), before.stat().st_mtime_ns
    report = build_test_index(collection, index, MODELS, force=True)
    after = IndexFolder(index).current().map_path("brightness")
    assert after != before and report.models["brightness"].embedded == 0
    assert after.read_bytes() == content and after.stat().st_mtime_ns == stamp  # copied, not projected again


def test_a_metadata_change_re_embeds_text_but_keeps_the_image_map(fresh):
    collection, index = fresh
    stamp = IndexFolder(index).current().map_path("brightness").stat().st_mtime_ns
    text = (collection / "metadata.csv").read_text().replace("kl-0", "kl-3", 1)
    (collection / "metadata.csv").write_text(text)
    report = build_test_index(collection, index, MODELS)
    assert report.models["keywords"].embedded == 1
    assert IndexFolder(index).current().map_path("brightness").stat().st_mtime_ns == stamp


def test_a_new_image_rebuilds_the_map_with_its_point(fresh):
    collection, index = fresh
    old = IndexFolder(index).current().manifest.models["brightness"].map_digest
    synthetic_image("disc", seed=9).save(collection / "knee" / "k9.png")
    with (collection / "metadata.csv").open("a") as handle:
        handle.write("knee/k9.png,knee,kl-4,,knee radiograph severe,synthetic,,CC0-1.0\n")
    report = build_test_index(collection, index, MODELS)
    generation = IndexFolder(index).current()
    assert report.models["brightness"].embedded == 1 and report.models["brightness"].map_seconds > 0
    assert generation.read_map("brightness").shape == (17, 2)
    assert generation.manifest.models["brightness"].map_digest != old
    assert len(SearchEngine(index).explorer.collection_map("brightness")["id"]) == 17


def test_a_missing_map_file_leaves_the_index_served_and_the_next_build_adds_it(fresh):
    collection, index = fresh
    generation = IndexFolder(index).current()
    os.remove(generation.map_path("brightness"))
    assert generation.damage() is None and not generation.has_map("brightness")
    with pytest.raises(BadQuery, match="rebuild the index to get the map"):
        SearchEngine(index).explorer.collection_map("brightness")
    report = build_test_index(collection, index, MODELS)
    assert not report.up_to_date and report.models["brightness"].embedded == 0
    assert IndexFolder(index).current().read_map("brightness").shape == (16, 2)


def test_a_map_that_does_not_match_the_rows_is_damage(fresh):
    collection, index = fresh
    generation = IndexFolder(index).current()
    generation.write_map("brightness", np.zeros((3, 2), np.float32))
    assert "map of brightness" in generation.damage()
    report = build_test_index(collection, index, MODELS)  # rebuilt, the map projected again
    assert not report.up_to_date and IndexFolder(index).current().read_map("brightness").shape == (16, 2)


def test_an_index_built_before_maps_says_to_rebuild_and_a_plain_build_adds_them(fresh):
    collection, index = fresh
    generation = IndexFolder(index).current()
    manifest = generation.manifest  # as an older program wrote it: no map recorded
    manifest.models = {name: dataclasses.replace(entry, map_digest=None) for name, entry in manifest.models.items()}
    generation.write_manifest(manifest)
    engine = SearchEngine(index)
    assert engine.explorer.map_models() == []
    with pytest.raises(BadQuery, match="rebuild the index to get the map"):
        engine.explorer.collection_map("brightness")
    with pytest.raises(BadQuery, match="no map of the collection; rebuild"):
        engine.explorer.collection_map()
    report = build_test_index(collection, index, MODELS)  # the collection is unchanged
    assert not report.up_to_date and report.models["brightness"].embedded == 0
    assert SearchEngine(index).explorer.map_models() == ["brightness"]


# --- placing a query ---------------------------------------------------------------------------------------
def test_an_id_is_located_at_its_own_point(engine):
    points = engine.explorer.collection_map("brightness")
    row = points["id"].index("knee/k3")
    assert engine.explorer.locate("knee/k3", "brightness") == (points["x"][row], points["y"][row])


def test_a_query_vector_lands_among_its_nearest_rows(engine):
    vector = engine.store.vector("brightness", engine.catalogue.row("chest/c2"))[None, :]  # (1, dim), as a query
    where = np.array(engine.explorer.locate(vector, "brightness"))
    assert np.linalg.norm(where - centre(engine, "chest")) < np.linalg.norm(where - centre(engine, "knee"))
    neighbours = engine.store.search("brightness", vector[0], 10)
    assert tuple(where) == pytest.approx(place(engine.generation.read_map("brightness"), neighbours))


def test_an_uploaded_image_lands_among_images_like_it(engine):
    where = np.array(engine.explorer.locate(synthetic_image("stripes", seed=77), "brightness"))
    assert np.linalg.norm(where - centre(engine, "knee")) < np.linalg.norm(where - centre(engine, "chest"))


def test_a_query_lands_at_the_similarity_weighted_mean_of_its_neighbours():
    positions = np.float32([[0, 0], [10, 0], [0, 10]])
    assert place(positions, [(0, 0.75), (1, 0.25)]) == (2.5, 0.0)
    assert place(positions, [(1, 0.5), (2, -0.3)]) == (10.0, 0.0)  # a dissimilar row weighs nothing
    assert place(positions, [(1, -0.1), (2, -0.1)]) == (5.0, 5.0)  # none similar: a plain mean


@pytest.mark.parametrize("call, error, message", [
    (lambda e: e.collection_map("keywords"), BadQuery, "indexes metadata text.*choose one of \\['brightness'\\]"),
    (lambda e: e.locate("chest/c0", "keywords"), BadQuery, "no map"),
    (lambda e: e.collection_map("tfidf"), UnknownEmbedder, "not in this index"),
    (lambda e: e.locate("chest/nope", "brightness"), BadQuery, "No image with id 'chest/nope'"),
    (lambda e: e.locate(np.zeros((1, 5), np.float32), "brightness"), BadQuery, "shape \\(3,\\) or \\(1, 3\\)"),
    (lambda e: e.locate(np.full(3, np.nan, np.float32), "brightness"), BadQuery, "finite"),
])
def test_a_model_or_query_the_map_cannot_serve_is_refused_clearly(engine, call, error, message):
    with pytest.raises(error, match=message):
        call(engine.explorer)


# --- the projection itself ---------------------------------------------------------------------------------
@pytest.mark.parametrize("rows", [0, 1, 2, 3, 5])
def test_tiny_collections_get_a_map_too(rows):
    positions = project(np.random.default_rng(0).normal(size=(rows, 8)).astype(np.float32))
    assert positions.shape == (rows, 2) and np.isfinite(positions).all()


def test_the_same_vectors_give_the_same_map():
    vectors = np.random.default_rng(1).normal(size=(40, 80)).astype(np.float32)  # through PCA, then t-SNE
    assert np.array_equal(project(vectors), project(vectors))


def test_on_the_real_subset_neighbours_on_the_map_share_a_category(subset_engine):
    from collections import Counter

    for model in subset_engine.explorer.map_models():
        points = subset_engine.explorer.collection_map(model)
        xy, categories = np.column_stack([points["x"], points["y"]]), points["category"]
        agree = 0
        for row in range(len(xy)):
            nearest = np.argsort(np.linalg.norm(xy - xy[row], axis=1))[1:6]
            agree += Counter(categories[i] for i in nearest).most_common(1)[0][0] == categories[row]
        assert agree / len(xy) >= 0.8, model
    assert set(subset_engine.explorer.map_models()) == {"efficientnet-lite0", "xray-lite0"}
