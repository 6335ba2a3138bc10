"""Publishing an index as a Hugging Face Space (or Hub dataset) under a licence policy: what is kept, what the
Space's files say, that the published folder runs on its own, and hf://datasets/... loading."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import yaml

from benchmarks.common import free_port
from conftest import REPO, build_test_index
from retrieval import hub
from retrieval.layout import IndexFolder
from retrieval.collection import metadata_fingerprint
from retrieval.licences import allowed, card_licences, licence_class, model_decision
from retrieval.publish import gitattributes, lfs_covered, publish, push, upload_arguments
from retrieval.space_cards import gradio_pin
from retrieval.search import SearchEngine

BIG = 10 * 2**20


def metadata_by_file(collection: Path) -> dict[str, dict]:
    with (collection / "metadata.csv").open(newline="") as handle:
        return {row["file_name"]: row for row in csv.DictReader(handle)}


def front_matter(readme: Path) -> dict:
    text = readme.read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def file_names(index_dir: Path) -> list[str]:
    return IndexFolder(index_dir).require_current().load_dataset()["file_name"]


@pytest.fixture(scope="module")
def published(subset_index, collection, tmp_path_factory):
    """The subset index published as a Space with the default (open) policy."""
    out = tmp_path_factory.mktemp("publish") / "space"
    source = IndexFolder(subset_index).require_current()
    before = sorted(p.relative_to(source.folder) for p in source.folder.rglob("*"))
    report = publish(subset_index, out, licenses="open", collection=collection, log=lambda *_: None)
    assert sorted(p.relative_to(source.folder) for p in source.folder.rglob("*")) == before  # source untouched
    assert source.damage() is None
    return report, out


# --- the licence policy -------------------------------------------------------------------------------------
LICENCES = {  # every string of the collection's metadata.csv, then other ways sources write licences
    "CC-BY-4.0": "open", "CC-BY-3.0": "open", "CC-BY": "open", "CC-BY-SA": "open", "CC0-1.0": "open",
    "CC-BY-NC-SA": "noncommercial", "CC-BY-NC-SA-4.0": "noncommercial", "CC-BY-NC-ND": "noncommercial",
    "CC-BY-NC-ND-4.0": "noncommercial", "research-only": "noncommercial", "unknown": "unknown", "other": "unknown",
    "": "unknown",
    "CC BY-NC-SA 4.0": "noncommercial", "cc by 4.0": "open", "Apache-2.0": "open", "MIT": "open",
    "BSD-3-Clause": "open", "Public Domain": "open", "research only": "noncommercial",
    "non-commercial research": "noncommercial", "Creative Commons Attribution-NonCommercial 4.0": "noncommercial",
    "Creative Commons Attribution 4.0 International": "open", "CC BY-ND 4.0": "unknown",
    "CC0 (NIH Clinical Center: no restrictions on use; attribution requested)": "open",
    "listed as authorized for everyone": "unknown", "free for research and education": "noncommercial",
    None: "unknown",
}


@pytest.mark.parametrize("licence, expected", list(LICENCES.items()))
def test_licence_strings_are_classified(licence, expected):
    assert licence_class(licence) == expected


def test_every_licence_of_the_collection_is_among_the_examples(collection):
    assert {row["license"] for row in metadata_by_file(collection).values()} <= set(LICENCES)


@pytest.mark.parametrize("licence, policy, expected", [
    ("CC-BY-4.0", "open", True), ("CC-BY-NC-SA", "open", False), ("CC-BY-NC-SA", "noncommercial", True),
    ("research-only", "noncommercial", True), ("unknown", "noncommercial", False), ("unknown", "all", True),
    ("", "all", True),
])
def test_policies_widen_in_order(licence, policy, expected):
    assert allowed(licence, policy) is expected


@pytest.mark.parametrize("card, policy, include, ships", [
    ({"licenses": {"CC-BY-4.0": 900, "CC0-1.0": 250}}, "open", False, True),
    ({"licenses": {"CC-BY-4.0": 900, "research-only": 323}}, "open", False, False),
    ({"licenses": {"CC-BY-4.0": 900, "research-only": 323}}, "open", True, True),
    ({"licenses": {"CC-BY-4.0": 900, "research-only": 323}}, "noncommercial", False, True),
    ({"sources": {"Tufts": {"license": "unknown", "rows": 200}}}, "noncommercial", False, False),
    ({"sources": [{"source": "NIH", "license": "CC0-1.0"}]}, "open", False, True),
    ({"sources": {"Tufts": {"license": "unknown", "rows": 200}}}, "all", False, True),
    ({"model": "card without licences"}, "open", False, False),
    (None, "open", False, False),
])
def test_a_trained_model_ships_only_when_its_training_licences_allow(card, policy, include, ships):
    decision = model_decision("xray-lite0", card, policy, include_research=include)
    assert decision.ships is ships
    assert decision.why


def test_training_card_licences_are_read_from_licenses_or_sources():
    assert card_licences({"licenses": {"CC-BY-4.0": 3, "unknown": 2}}) == {"CC-BY-4.0": 3, "unknown": 2}
    assert card_licences({"sources": {"A": {"licenses": {"CC0-1.0": 4}}, "B": "research-only"}}) == {
        "CC0-1.0": 4, "research-only": 0}


def test_a_card_that_names_only_its_sources_takes_their_licences_from_the_index():
    """The shape `python -m retrieval train` writes: data.sources = {source: {rows, categories}}."""
    card = {"data": {"sources": {"NIH": {"rows": 250, "categories": ["chest"]},
                                 "COVID-19 (ieee8023)": {"rows": 250, "categories": ["chest"]}}}}
    licences = {"NIH": {"CC0-1.0"}, "COVID-19 (ieee8023)": {"CC-BY-4.0", "CC-BY-NC-SA"}}
    assert card_licences(card, licences) == {"CC0-1.0": 250, "CC-BY-4.0": 0, "CC-BY-NC-SA": 0}
    assert not model_decision("xray-lite0", card, "open", source_licences=licences).ships
    assert model_decision("xray-lite0", card, "noncommercial", source_licences=licences).ships
    assert card_licences(card) == {"unknown": 500}  # sources the index does not know: unknown


# --- the published Space --------------------------------------------------------------------------------------
def test_published_rows_are_within_the_policy_and_the_rest_is_counted(published, subset_index, collection):
    report, out = published
    metadata = metadata_by_file(collection)
    kept = file_names(out / "index")
    assert kept and all(licence_class(metadata[name]["license"]) == "open" for name in kept)
    left_out = [metadata[name] for name in file_names(subset_index) if name not in set(kept)]
    expected = Counter((row["source"], row["license"]) for row in left_out)
    assert {(s, l): n for s, licences in report.excluded.items() for l, n in licences.items()} == expected
    assert report.rows == len(kept) and report.excluded_rows == len(left_out) > 0
    readme = (out / "README.md").read_text()
    for (source, licence), count in expected.items():
        assert f"| {source} | {licence} | {count} |" in readme
    assert json.loads((out / "PUBLISH.json").read_text())["excluded_rows"] == len(left_out)


def test_the_space_readme_has_the_front_matter_and_the_attribution(published):
    report, out = published
    meta = front_matter(out / "README.md")
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py"
    assert meta["sdk_version"] == gradio_pin(REPO / "requirements.txt") == "6.31.0"
    assert meta["python_version"] == "3.11" and meta["license"] and meta["title"] and meta["emoji"]
    assert 0 < len(meta["short_description"]) <= 60
    readme = (out / "README.md").read_text()
    for source in report.kept:
        assert source in readme
    assert "#### 2. nih-chestxray14" in readme  # the collection's SOURCES.md section of a kept source
    assert "tufts_dental_db" not in readme  # ... and none of a source that was left out entirely
    for name in ("app.py", "requirements.txt", "retrieval/search.py", "retrieval/hub.py", "ui/render.py"):
        assert (out / name).is_file()


def test_the_published_index_is_whole_refingerprinted_and_has_no_symlinks(published, collection):
    report, out = published
    generation = IndexFolder(out / "index").require_current()
    assert generation.damage() is None
    manifest = generation.manifest
    metadata = metadata_by_file(collection)
    kept = file_names(out / "index")
    assert manifest.rows == len(kept) == report.rows
    assert manifest.fingerprint == metadata_fingerprint([metadata[name] for name in kept])
    assert manifest.categories == dict(Counter(metadata[name]["category"] for name in kept))
    assert not [p for p in out.rglob("*") if p.is_symlink()]
    engine = SearchEngine(out / "index")
    assert len(engine) == len(kept) and set(engine.policy.models) == set(manifest.models)
    assert all(hit.license and hit.source for hit in engine.search_text("knee", model="tfidf"))


def test_gitattributes_route_every_big_file_to_lfs(published, tmp_path):
    _, out = published
    patterns = [line.split()[0] for line in (out / ".gitattributes").read_text().splitlines() if line.strip()]
    assert {"*.arrow", "*.faiss"} <= set(patterns)
    big = [p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.stat().st_size > BIG]
    assert [name for name in big if not lfs_covered(name, patterns)] == []
    # a folder with large weights: every file over 10 MB is named, small ones are left to plain git
    for name, size in (("assets/models/m/model.safetensors", BIG + 1), ("assets/models/m/tiny.safetensors", 10),
                       ("data/big file.bin", BIG + 1)):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            handle.truncate(size)
    lines = gitattributes(tmp_path).splitlines()
    patterns = [line.split(" filter=")[0] for line in lines]
    assert "assets/models/m/model.safetensors" in patterns and "data/big[[:space:]]file.bin" in patterns
    assert not any("tiny" in line for line in lines)
    assert lfs_covered("data/big file.bin", patterns)


def test_the_published_space_runs_on_its_own(published, tmp_path_factory):
    """The Space folder copied where no ../shared exists, started with a clean environment, answers the
    three searches with source and licence on every result."""
    from gradio_client import Client, handle_file

    _, out = published
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    space = elsewhere / "space"
    shutil.copytree(out, space)
    assert not (elsewhere.parent / "shared").exists()
    query = elsewhere / "query.png"
    engine = SearchEngine(space / "index")
    knee = next(item for item in engine.catalogue.ids if item.startswith("knee/"))
    engine.catalogue.image(knee).save(query)
    port = free_port()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(elsewhere), "HF_HUB_OFFLINE": "1",
           "GRADIO_ANALYTICS_ENABLED": "False", "TOKENIZERS_PARALLELISM": "false"}
    log = (elsewhere / "app.log").open("w")
    process = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=space, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 150
        while True:
            assert process.poll() is None, (elsewhere / "app.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the published app did not start in time"
            time.sleep(2)
        client = Client(url, verbose=False, download_files=str(elsewhere / "downloads"))
        gallery, results, status = client.predict("knee osteoarthritis", api_name="/search_text")
        assert results and all(hit["source"] and hit["license"] for hit in results)
        assert all(item["caption"].endswith(hit["license"]) for item, hit in zip(gallery, results))
        gallery, results, suggestion, status = client.predict(handle_file(str(query)), api_name="/search_image")
        assert results[0]["id"] == knee and all(hit["source"] and hit["license"] for hit in results)
        gallery, results, status = client.predict(knee, api_name="/similar")
        assert results and knee not in {hit["id"] for hit in results}
        assert all(hit["source"] and hit["license"] for hit in results)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


# --- trained models ----------------------------------------------------------------------------------------
def test_a_model_left_out_by_the_policy_leaves_the_index_too(subset_index, tmp_path):
    """A repository with two trained model folders: the one trained on research-only images is left out of the
    assets and of the index (vectors and FAISS file); the openly trained one ships."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("app.py", "retrieval", "ui", "requirements.txt"):
        (repo / name).symlink_to(REPO / name)
    cards = {"efficientnet-lite0": {"licenses": {"CC-BY-4.0": 100, "research-only": 20}},
             "minilm": {"sources": {"NIH": {"license": "CC0-1.0", "rows": 50}}}}
    for name, card in cards.items():
        folder = repo / "assets" / "models" / name
        folder.mkdir(parents=True)
        (folder / "training_card.json").write_text(json.dumps(card))
    report = publish(subset_index, tmp_path / "space", repo=repo, log=lambda *_: None)
    out = tmp_path / "space"
    generation = IndexFolder(out / "index").require_current()
    assert set(generation.manifest.models) == {"tfidf", "minilm"} == set(report.models)
    assert "efficientnet-lite0" not in generation.load_dataset().column_names
    assert not generation.faiss_path("efficientnet-lite0").exists() and generation.damage() is None
    assert (out / "assets/models/minilm/training_card.json").is_file()
    assert not (out / "assets/models/efficientnet-lite0").exists()
    readme = (out / "README.md").read_text()
    assert "`efficientnet-lite0` (trained model" in readme and "not included" in readme
    assert "`minilm` (trained model" in readme


# --- the Hub: a dataset of the index, hf:// loading, push ------------------------------------------------------
def test_a_dataset_snapshot_loads_through_hf_location(subset_index, tmp_path, monkeypatch, capsys):
    """`publish --as-dataset --licenses all` keeps every row (same fingerprint as the build); a copy of it laid
    out as a downloaded snapshot (no symlinks) is served by SearchEngine("hf://datasets/owner/name")."""
    from retrieval.cli import main

    out = tmp_path / "dataset"
    assert main(["publish", "--index", str(subset_index), "--out", str(out), "--licenses", "all",
                 "--as-dataset", "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["excluded_rows"] == 0 and "WARNING" in captured.err
    original = IndexFolder(subset_index).require_current().manifest
    assert report["fingerprint"] == original.fingerprint and report["rows"] == original.rows
    card = (out / "README.md").read_text()
    assert front_matter(out / "README.md")["license"] and "## Citation" in card and "Warning" in card
    assert not (out / "app.py").exists() and (out / "CURRENT").is_file()

    snapshot = tmp_path / "hub-cache" / "datasets--owner--xray-index" / "snapshots" / "abc123"
    shutil.copytree(out, snapshot, symlinks=False)
    calls = []

    def fake_download(repo_id, revision=None):
        calls.append((repo_id, revision))
        return str(snapshot)

    monkeypatch.setattr(hub, "download_snapshot", fake_download)
    hub.forget_resolved()
    location = "hf://datasets/owner/xray-index"
    try:
        assert SearchEngine.exists(location)
        engine = SearchEngine(location)
        assert calls == [("owner/xray-index", None)]  # resolved once for both
        assert engine.index_dir == snapshot and len(engine) == original.rows
        assert engine.search_text("chest", model="tfidf").hits
    finally:
        hub.forget_resolved()


def test_publish_takes_an_hf_location_as_the_app_does(synthetic_collection, tmp_path, monkeypatch, fake_models):
    """The index to publish may be `hf://datasets/OWNER/NAME`, resolved as the app resolves it (the download
    is faked by a local snapshot without symlinks). Kept vectors are reused; with every row kept, TF-IDF is
    restored and the maps taken over, with a row left out they are refitted and projected again."""
    metadata = synthetic_collection / "metadata.csv"
    metadata.write_text(metadata.read_text().replace("CC0-1.0", "CC-BY-NC-4.0", 1))  # chest/c0: non-commercial
    build_test_index(synthetic_collection, tmp_path / "index", ["keywords", "brightness", "tfidf"])
    snapshot = tmp_path / "hub-cache" / "datasets--owner--xray-index" / "snapshots" / "abc123"
    publish(tmp_path / "index", snapshot, licenses="all", as_dataset=True, log=lambda *_: None)
    before = sorted(p.relative_to(snapshot) for p in snapshot.rglob("*"))
    source = IndexFolder(snapshot).require_current().manifest
    calls = []
    monkeypatch.setattr(hub, "download_snapshot", lambda repo_id, revision=None: calls.append(repo_id) or snapshot)
    hub.forget_resolved()
    try:
        every = publish("hf://datasets/owner/xray-index", tmp_path / "every", licenses="all", as_dataset=True,
                        log=lambda *_: None)
        open_only = publish("hf://datasets/owner/xray-index", tmp_path / "open", licenses="open",
                            as_dataset=True, log=lambda *_: None)
    finally:
        hub.forget_resolved()
    assert calls == ["owner/xray-index"] and sorted(p.relative_to(snapshot) for p in snapshot.rglob("*")) == before
    whole = IndexFolder(tmp_path / "every").require_current().manifest
    assert every.rows == 6 and whole.fingerprint == source.fingerprint
    assert whole.models["tfidf"].embedded == 0 and whole.models["tfidf"].reused == 6  # restored, not refitted
    assert whole.models["brightness"].map_digest == source.models["brightness"].map_digest
    kept = IndexFolder(tmp_path / "open").require_current()
    assert open_only.rows == 5 and open_only.excluded_rows == 1 and kept.damage() is None
    assert "chest/c0.png" not in kept.load_dataset()["file_name"]
    assert kept.manifest.models["tfidf"].embedded == 5  # refitted on the kept rows only
    assert kept.manifest.models["brightness"].map_digest != source.models["brightness"].map_digest
    assert kept.manifest.fingerprint == metadata_fingerprint(kept.load_dataset().to_list())
    assert SearchEngine(tmp_path / "open").similar("chest/c1", model="brightness", k=1).hits


def test_hub_locations_are_checked_and_failures_explained(monkeypatch):
    from retrieval.errors import NoIndex

    assert hub.resolve_index("index") == Path("index")
    assert hub.parse_location("hf://datasets/owner/name@v1") == ("owner/name", "v1")
    with pytest.raises(NoIndex, match="not a Hub dataset location"):
        hub.resolve_index("hf://datasets/no-owner")

    def offline(repo_id, revision=None):
        raise OSError("offline")

    monkeypatch.setattr(hub, "download_snapshot", offline)
    hub.forget_resolved()
    with pytest.raises(NoIndex, match="Could not download"):
        SearchEngine("hf://datasets/owner/missing")


def test_push_uploads_the_folder_as_a_space_or_a_dataset(tmp_path):
    class FakeApi:
        def __init__(self):
            self.calls = []

        def create_repo(self, repo_id, **options):
            self.calls.append(("create_repo", repo_id, options))

        def upload_folder(self, **options):
            self.calls.append(("upload_folder", options))
            return "https://huggingface.co/spaces/owner/xray"

    api = FakeApi()
    assert push(tmp_path, "owner/xray", api=api) == "https://huggingface.co/spaces/owner/xray"
    assert api.calls[0] == ("create_repo", "owner/xray", {"repo_type": "space", "exist_ok": True,
                                                          "space_sdk": "gradio"})
    assert api.calls[1][1] == upload_arguments(tmp_path, "owner/xray", as_dataset=False)
    assert upload_arguments(tmp_path, "owner/idx", as_dataset=True)["repo_type"] == "dataset"


# --- start-up on a Space ---------------------------------------------------------------------------------------
def test_a_space_builds_behind_a_progress_page_then_serves_the_app():
    """While the index is built, the app's address serves a page with the build's log; then that page is closed
    and the address is free for the app."""
    import gradio as gr

    from ui.startup import build_behind_page, on_space

    assert on_space({"SPACE_ID": "owner/space"}) and not on_space({})
    port = free_port()
    seen = {}

    def build(log):
        log("embedding 3 images")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=20) as response:
            seen["page"] = response.read().decode()
        with gr.Blocks() as app:
            gr.Markdown("the app")
        return app

    served = []
    assert build_behind_page(build, served.append, "owner/collection", "127.0.0.1", port) == 0
    assert "building the index" in seen["page"] and len(served) == 1
    with socket.socket() as probe:  # the progress page is gone: the app can listen here (as uvicorn does)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
        probe.listen()
