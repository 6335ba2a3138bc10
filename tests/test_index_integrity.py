"""A missing, truncated or mismatched index is detected at load with a clear message and a rebuild path."""

import json
import shutil

import pytest

from conftest import build_test_index
from retrieval.layout import IndexFolder
from retrieval.errors import BrokenIndex
from retrieval.search import SearchEngine


@pytest.fixture
def index(synthetic_collection, tmp_path, fake_models):
    index_dir = tmp_path / "index"
    build_test_index(synthetic_collection, index_dir, ["keywords", "brightness"])
    return index_dir


def generation(index_dir):
    return IndexFolder(index_dir).current().folder


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("damage, message", [
    (lambda g: (g / "faiss" / "brightness.faiss").unlink(), "missing"),
    (lambda g: truncate(g / "faiss" / "brightness.faiss"), "cannot be read|does not match"),
    (lambda g: (g / "manifest.json").unlink(), "no manifest"),
    (lambda g: truncate(g / "manifest.json"), "damaged"),
    (lambda g: shutil.rmtree(g / "dataset"), "cannot be read"),
    (lambda g: [truncate(p) for p in (g / "dataset").glob("*.arrow")], "cannot be read|inconsistent"),
])
def test_damage_is_reported_with_a_rebuild_path(index, damage, message):
    damage(generation(index))
    with pytest.raises(BrokenIndex, match=message) as caught:
        SearchEngine(index)
    assert "build" in str(caught.value)


def test_a_manifest_whose_row_count_disagrees_is_refused(index):
    path = generation(index) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["rows"] += 1
    path.write_text(json.dumps(manifest))
    with pytest.raises(BrokenIndex, match="manifest says 7 rows"):
        SearchEngine(index)


def test_a_dangling_current_link_reads_as_no_index(index):
    shutil.rmtree(generation(index))
    with pytest.raises(BrokenIndex, match="No index"):
        SearchEngine(index)


def test_a_plain_rebuild_notices_the_damage_and_repairs_it(index, synthetic_collection):
    truncate(generation(index) / "faiss" / "brightness.faiss")
    report = build_test_index(synthetic_collection, index, ["keywords", "brightness"])
    assert not report.up_to_date and report.models["brightness"].reused == 6
    assert SearchEngine(index).similar("chest/c0", model="brightness", k=2)
