"""`build` writes a complete index atomically and re-embeds only what changed."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import REPO, build_test_index, kill_when_ready, synthetic_image, write_collection
from retrieval.layout import IndexFolder
from retrieval.errors import CollectionError, EmbedderUnavailable, UnknownEmbedder
from retrieval.index import build_index
from retrieval.policy import model_rows
from retrieval.search import SearchEngine

MODELS = ["keywords", "brightness", "tfidf"]


@pytest.fixture(autouse=True)
def fakes(fake_models):
    """Every test here may build with the test-only models."""


def test_build_writes_dataset_vectors_faiss_indexes_and_manifest(synthetic_collection, tmp_path):
    report = build_test_index(synthetic_collection, tmp_path / "index", MODELS)
    generation = IndexFolder(tmp_path / "index").current()
    manifest = generation.manifest
    assert report.rows == manifest.rows == 6
    assert list(manifest.models) == MODELS
    assert manifest.models["brightness"].dim == 3 and manifest.models["keywords"].dim == 6
    assert manifest.models["brightness"].version == "brightness:1"
    assert manifest.categories == {"chest": 3, "knee": 3}
    assert {"datasets", "faiss-cpu"} <= set(manifest.libraries) and manifest.fingerprint
    assert manifest.collection == "collection" and str(tmp_path) not in json.dumps(manifest.to_dict())
    for name in MODELS:
        assert generation.faiss_path(name).is_file()
    assert (generation.state_path("tfidf") / "tfidf.json").is_file()
    dataset = generation.load_dataset()
    assert dataset["id"][0] == "chest/c0" and dataset["file_name"][0] == "chest/c0.png"
    vectors = np.asarray(dataset.with_format("numpy")["brightness"])
    assert vectors.dtype == np.float32 and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_a_build_reads_the_collection_once_every_image_decoded_and_hashed_once_for_every_purpose(
        synthetic_collection, tmp_path, monkeypatch):
    """Validation, pHash, thumbnail and two image models share one decode per image; metadata.csv is parsed
    once; each distinct text is embedded once."""
    from fakes import BrightnessEmbedder, KeywordEmbedder
    from retrieval import collection, images, validate
    from retrieval.embedders import IMAGE, Availability, EmbedderSpec, register, unregister

    register(EmbedderSpec("brightness-b", "test", (IMAGE,), IMAGE, 3, "tests", "half brightness, again",
                          BrightnessEmbedder, lambda: Availability(True, "tests"), version="brightness-b:1"))
    decoded, hashed, parsed, embedded = [], [], [], []
    decode, digest, read_metadata = images.decode_bytes, images.digest, collection.read_metadata
    embed_texts = KeywordEmbedder.embed_texts

    def counted_decode(data, name, *args, **options):
        decoded.append(name)
        return decode(data, name, *args, **options)

    def counted_digest(data):
        hashed.append(data)
        return digest(data)

    def counted_parse(root):
        parsed.append(root)
        return read_metadata(root)

    def counted_embed(self, texts):
        embedded.extend(texts)
        return embed_texts(self, texts)

    monkeypatch.setattr(images, "decode_bytes", counted_decode)
    monkeypatch.setattr(images, "digest", counted_digest)
    monkeypatch.setattr(collection, "read_metadata", counted_parse)
    monkeypatch.setattr(validate, "read_metadata", counted_parse)
    monkeypatch.setattr(KeywordEmbedder, "embed_texts", counted_embed)
    try:
        build_test_index(synthetic_collection, tmp_path / "index", ["keywords", "brightness", "brightness-b"])
    finally:
        unregister("brightness-b")
    dataset = IndexFolder(tmp_path / "index").current().load_dataset()
    assert sorted(decoded) == sorted(dataset["file_name"])  # once each, though four purposes read them
    assert len(hashed) == len(dataset) and len(parsed) == 1
    assert sorted(embedded) == sorted(set(dataset["text"])) and len(set(dataset["text"])) < len(dataset)
    vectors = dataset.with_format("numpy")
    assert np.allclose(vectors["brightness"], vectors["brightness-b"])  # each model got every image
    import imagehash

    first = IndexFolder(tmp_path / "index").current().load_dataset()[0]
    assert first["phash"] == str(imagehash.phash(images.load_image(synthetic_collection / first["file_name"])))
    assert len(first["phash"]) == 16 and first["thumbnail"][:2] == b"\xff\xd8"  # the pHash, and a JPEG


def test_a_large_collection_gets_an_approximate_index_tuned_to_a_recall_target(synthetic_collection, tmp_path,
                                                                             monkeypatch):
    from retrieval import ann

    monkeypatch.setattr(ann, "EXACT_LIMIT", 3)  # "large" = more than 3 rows, so six synthetic rows qualify
    build_test_index(synthetic_collection, tmp_path / "index", ["brightness"])
    entry = IndexFolder(tmp_path / "index").current().manifest.models["brightness"]
    assert entry.faiss_factory.startswith("HNSW") and entry.recall_at_10 >= ann.RECALL_TARGET
    engine = SearchEngine(tmp_path / "index")
    assert {hit.category for hit in engine.similar("chest/c0", k=2, min_score=-1)} == {"chest"}
    rows = model_rows(engine.policy)
    assert "recall@10" in next(row["index"] for row in rows if row["name"] == "brightness")


def test_each_row_stores_a_small_thumbnail_for_the_gallery(synthetic_collection, tmp_path):
    build_test_index(synthetic_collection, tmp_path / "index", ["brightness"])
    engine = SearchEngine(tmp_path / "index")
    for item_id in engine.catalogue.ids:
        thumbnail = engine.catalogue.thumbnail(item_id)
        assert thumbnail.format == "JPEG" and max(thumbnail.size) <= 384
        assert max(thumbnail.size) == min(384, max(engine.catalogue.image(item_id).size))  # same picture, smaller
    dataset = IndexFolder(tmp_path / "index").current().load_dataset()
    assert max(len(data) for data in dataset["thumbnail"]) <= 25_000


def test_a_second_build_embeds_nothing_and_one_new_image_embeds_one(synthetic_collection, tmp_path):
    index = tmp_path / "index"
    first = build_test_index(synthetic_collection, index, MODELS)
    assert first.models["brightness"].embedded == 6
    again = build_test_index(synthetic_collection, index, MODELS)
    assert again.up_to_date and again.models == {}
    forced = build_test_index(synthetic_collection, index, MODELS, force=True)
    assert {name: m.embedded for name, m in forced.models.items()} == {"keywords": 0, "brightness": 0, "tfidf": 0}

    synthetic_image("disc", seed=9).save(synthetic_collection / "knee" / "k9.png")
    with (synthetic_collection / "metadata.csv").open("a") as handle:
        handle.write("knee/k9.png,knee,kl-4,,knee radiograph severe,synthetic,,CC0-1.0\n")
    grown = build_test_index(synthetic_collection, index, MODELS)
    assert grown.rows == 7
    assert grown.models["brightness"].embedded == 1 and grown.models["brightness"].reused == 6
    assert grown.models["keywords"].embedded == 1
    assert SearchEngine(index).similar("knee/k9", model="brightness", k=3)  # the new row is searchable


def test_changing_metadata_text_re_embeds_that_row_for_text_models_only(synthetic_collection, tmp_path):
    index = tmp_path / "index"
    build_test_index(synthetic_collection, index, MODELS)
    text = (synthetic_collection / "metadata.csv").read_text().replace("kl-0", "kl-3", 1)
    (synthetic_collection / "metadata.csv").write_text(text)
    report = build_test_index(synthetic_collection, index, MODELS)
    assert report.models["keywords"].embedded == 1 and report.models["brightness"].embedded == 0


def test_an_invalid_collection_is_refused_unless_rows_are_skipped_by_name(synthetic_collection, tmp_path):
    (synthetic_collection / "knee" / "k1.png").write_bytes(b"garbage")
    with pytest.raises(CollectionError, match="knee/k1.png"):
        build_test_index(synthetic_collection, tmp_path / "index", MODELS)
    assert IndexFolder(tmp_path / "index").current() is None
    messages = []
    report = build_index(synthetic_collection, tmp_path / "index", models=MODELS, skip_invalid=True,
                         progress=False, log=messages.append)
    assert report.rows == 5 and list(report.skipped_rows) == ["knee/k1.png"]
    assert any("knee/k1.png" in message for message in messages)


def test_a_plain_folder_without_metadata_builds_with_sub_folder_categories(tmp_path):
    root = write_collection(tmp_path / "plain", [{"file_name": "chest/a.png", "kind": "bright"},
                                                  {"file_name": "knee/b.png", "kind": "stripes"}], metadata=False)
    build_test_index(root, tmp_path / "index", ["brightness", "tfidf"])
    engine = SearchEngine(tmp_path / "index")
    assert engine.catalogue.categories == ["chest", "knee"]
    assert engine.catalogue.record("knee/b")["label"] == ""


def test_a_hub_dataset_id_goes_through_load_dataset(synthetic_collection, tmp_path, monkeypatch):
    """The Hub cannot be reached here: the same code path is fed a local dataset under a Hub-style id."""
    import datasets

    real = datasets.load_dataset
    calls = []

    def local_stand_in(name, **kwargs):
        calls.append(name)
        return real("imagefolder", data_dir=str(synthetic_collection), **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", local_stand_in)
    report = build_test_index("someone/xray-demo", tmp_path / "index", ["brightness", "keywords"])
    assert calls == ["someone/xray-demo"] and report.rows == 6
    engine = SearchEngine(tmp_path / "index")
    assert sorted(engine.catalogue.categories) == ["chest", "knee"]
    assert engine.catalogue.record("chest/c1")["caption"] == "chest radiograph"
    assert engine.catalogue.image("knee/k0").mode == "L"


def test_a_build_without_named_models_builds_the_defaults_available_here(synthetic_collection, tmp_path,
                                                                       monkeypatch, real_models):
    from retrieval.embedders import BUILD_DEFAULTS, availability, list_embedders

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    report = build_index(synthetic_collection, tmp_path / "index", progress=False, log=lambda *_: None)  # no models
    expected = [name for name in BUILD_DEFAULTS if name in list_embedders() and availability(name).ready]
    assert list(report.models) == expected and {"tfidf", "minilm", "efficientnet-lite0"} <= set(expected)
    assert set(report.skipped_models) == {name for name in BUILD_DEFAULTS if name in list_embedders()} - set(expected)


def test_unknown_and_unavailable_models_are_refused_before_any_work(synthetic_collection, tmp_path, monkeypatch):
    with pytest.raises(UnknownEmbedder, match="choose from"):
        build_test_index(synthetic_collection, tmp_path / "index", ["nope"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from retrieval.embedders import Availability, EmbedderSpec, register, unregister

    register(EmbedderSpec("ghost", "test", ("image",), "image", 4, "nowhere", "never loads",
                          lambda: None, lambda: Availability(False, "weights not found")))
    try:
        with pytest.raises(EmbedderUnavailable, match="weights not found"):
            build_test_index(synthetic_collection, tmp_path / "index", ["ghost"])
        assert IndexFolder(tmp_path / "index").current() is None
    finally:
        unregister("ghost")


KILLABLE_BUILD = textwrap.dedent("""
    import sys
    sys.path[:0] = [{repo!r}, {tests!r}]
    from fakes import register_fakes
    register_fakes(delay=30.0)
    from retrieval.index import build_index
    build_index({collection!r}, {index!r}, models=["brightness"], force=True, progress=False)
""")


def test_a_build_killed_midway_leaves_the_previous_index_loadable(synthetic_collection, tmp_path):
    index = tmp_path / "index"
    build_test_index(synthetic_collection, index, ["brightness"])
    before = SearchEngine(index).similar("chest/c0", model="brightness", k=2)
    script = KILLABLE_BUILD.format(repo=str(REPO), tests=str(REPO / "tests"),
                                   collection=str(synthetic_collection), index=str(index))
    kill_when_ready(script, lambda: len(list((index / "generations").iterdir())) >= 2,  # the new one is written
                    timeout=120, settle=1.0)
    after = SearchEngine(index).similar("chest/c0", model="brightness", k=2)
    assert [h.id for h in after] == [h.id for h in before]
    build_test_index(synthetic_collection, index, ["brightness"], force=True)
    assert len(list((index / "generations").iterdir())) <= 2  # the abandoned generation was pruned


def test_the_cli_builds_and_reports_as_json(synthetic_collection, tmp_path):
    result = subprocess.run([sys.executable, "-m", "retrieval", "build", "--collection", str(synthetic_collection),
                             "--index", str(tmp_path / "index"), "--models", "tfidf", "--json"],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout[result.stdout.index("{"):])
    assert report["rows"] == 6 and report["models"]["tfidf"]["embedded"] == 6


def test_a_model_whose_weights_changed_since_the_build_answers_no_query_until_the_rebuild(synthetic_collection,
                                                                                           tmp_path, fake_models,
                                                                                           capsys):
    # A retrained model served over the vectors of its old weights would compare a query from one space with rows
    # from another, silently. Such a model says why and how to mend it; the index's other models still answer.
    from dataclasses import replace

    from retrieval import cli
    from retrieval.embedders import embedder_spec, register

    index = tmp_path / "index"
    build_test_index(synthetic_collection, index, ["brightness", "keywords"])
    image = synthetic_image("bright")
    before = [hit.id for hit in SearchEngine(index).search_image(image, model="brightness", k=3).hits]
    register(replace(embedder_spec("brightness"), version="brightness:1:bf16"))  # another CPU's precision only
    assert SearchEngine(index).policy.status("brightness") == "ready"
    register(replace(embedder_spec("brightness"), version="brightness:2"))  # the same name, retrained weights

    engine = SearchEngine(index)
    assert "rebuild the index" in engine.policy.status("brightness")
    assert cli.main(["models", "--index", str(index), "--json"]) == 0  # the CLI's models table says it too
    printed = {row["name"]: row["status"] for row in json.loads(capsys.readouterr().out)}
    assert printed["brightness"] == engine.policy.status("brightness") and printed["keywords"] == "ready"
    with pytest.raises(EmbedderUnavailable, match="weights changed since this index was built"):
        engine.search_image(image, model="brightness")
    assert [hit.id for hit in engine.similar(before[0], model="brightness", k=2).hits]  # stored rows still compare
    assert engine.search_text("chest", model="keywords").hits  # the unchanged model still answers

    report = build_test_index(synthetic_collection, index, ["brightness", "keywords"])
    assert report.models["brightness"].embedded == 6 and report.models["keywords"].embedded == 0
    rebuilt = SearchEngine(index)
    assert rebuilt.policy.status("brightness") == "ready"
    assert [hit.id for hit in rebuilt.search_image(image, model="brightness", k=3).hits] == before
