"""A big build resumes: killed (kill -9) at any moment, the next build embeds only what is missing and ends with
the same index as a build never interrupted; its checkpoints live outside the generations and go once published."""

import textwrap

import numpy as np
import pytest

from conftest import REPO, kill_when_ready, synthetic_image, write_collection
from retrieval import checkpoints, image_pass
from retrieval.checkpoints import Checkpoints
from retrieval.embedders import model_version
from retrieval.index import build_index
from retrieval.layout import IndexFolder
from retrieval.search import SearchEngine
from retrieval.writer import GenerationWriter

MODELS = ["brightness", "keywords"]
IMAGES = 192
EVERY = 16  # checkpoint and read chunk in these tests: a dozen parts for the collection
quiet = dict(progress=False, log=lambda *_: None)

KILLABLE = textwrap.dedent("""
    import sys, time
    sys.path[:0] = [{repo!r}, {tests!r}]
    from fakes import register_fakes
    register_fakes(delay={delay})
    from retrieval import checkpoints, image_pass
    checkpoints.CHECKPOINT_EVERY = image_pass.CHUNK = {every}
    if {slow_write}:  # hold the build in its writing stage, the read and every checkpoint done
        from retrieval.layout import IndexGeneration
        write_faiss = IndexGeneration.write_faiss
        def slow(self, *args, **kwargs):
            choice = write_faiss(self, *args, **kwargs)
            time.sleep(120)
            return choice
        IndexGeneration.write_faiss = slow
    from retrieval.index import build_index
    build_index({collection!r}, {index!r}, models={models!r}, progress=False)
""")


@pytest.fixture(autouse=True)
def small_parts(fake_models, monkeypatch):
    monkeypatch.setattr(checkpoints, "CHECKPOINT_EVERY", EVERY)
    monkeypatch.setattr(image_pass, "CHUNK", EVERY)


def rows(count: int, start: int = 0) -> list[dict]:
    kinds = {"b": ("bright", "chest"), "s": ("stripes", "knee"), "d": ("disc", "hand")}
    out = []
    for i in range(start, start + count):
        letter = "bsd"[i % 3]
        kind, category = kinds[letter]
        out.append({"file_name": f"img/{letter}{i:03d}.png", "category": category, "label": "normal",
                    "caption": f"{category} radiograph", "source": "synthetic", "license": "CC0-1.0", "kind": kind})
    return out


SAMPLE = [row["file_name"].removesuffix(".png") for row in rows(IMAGES)[::37]]  # ids whose top 10 must not change


def make_collection(root, count: int = IMAGES, start: int = 0):
    listed = rows(start + count)  # every row (the older images written again, byte for byte)
    images = {row["file_name"]: synthetic_image(row["kind"], seed=i) for i, row in enumerate(listed)}  # all distinct
    return write_collection(root, listed, images)


@pytest.fixture
def collection(tmp_path):
    return make_collection(tmp_path / "collection")


@pytest.fixture
def reference(collection, tmp_path):
    """The index of a build never interrupted."""
    build_index(collection, tmp_path / "reference", models=MODELS, **quiet)
    return snapshot(tmp_path / "reference")


def snapshot(index) -> dict:
    """What must be identical between two builds of one collection: ids, every vector, sampled top 10s."""
    generation = IndexFolder(index).require_current()
    dataset = generation.load_dataset()
    engine = SearchEngine(index)
    return {"ids": dataset["id"], **{name: generation.vectors(name, dataset) for name in MODELS},
            "top10": {item: [(hit.id, hit.score) for hit in engine.similar(item, model="brightness", k=10)]
                      for item in SAMPLE}}


def assert_same_index(index, reference) -> None:
    built = snapshot(index)
    assert built["ids"] == reference["ids"]
    for name in MODELS:
        assert np.array_equal(built[name], reference[name]), name
    assert built["top10"] == reference["top10"]


def checkpointed(index) -> dict:
    """The vectors the checkpoints of `index` hold for the image model, as the next build reads them."""
    return Checkpoints(IndexFolder(index), "brightness", model_version("brightness"), 3, log=lambda *_: None).load()


def parts(index) -> int:
    return len(IndexFolder(index).checkpoint_parts("brightness", model_version("brightness")))


def kill_when(collection, index, ready, delay: float = 0.25, slow_write: bool = False, timeout: float = 60) -> None:
    """Build in a subprocess and kill -9 it as soon as `ready()` holds."""
    script = KILLABLE.format(repo=str(REPO), tests=str(REPO / "tests"), delay=delay, every=EVERY,
                             slow_write=slow_write, collection=str(collection), index=str(index), models=MODELS)
    kill_when_ready(script, ready, timeout)


def test_a_build_killed_again_and_again_resumes_embedding_only_what_is_missing(collection, reference, tmp_path):
    index = tmp_path / "index"
    kill_when(collection, index, lambda: parts(index) >= 1)  # right after the first checkpoint
    first = len(checkpointed(index))
    assert EVERY <= first < IMAGES and IndexFolder(index).current() is None
    assert not list((index / "generations").rglob("*.npz"))  # checkpoints are never inside a generation

    kill_when(collection, index, lambda: parts(index) >= first // EVERY + 4)  # mid-embedding, resumed
    second = len(checkpointed(index))
    assert first + 4 * EVERY <= second < IMAGES

    generations = index / "generations"
    kill_when(collection, index, lambda: any(generations.glob("*/faiss/*.faiss")), slow_write=True)  # writing
    assert len(checkpointed(index)) == IMAGES  # every vector was checkpointed before the writing began
    assert IndexFolder(index).current() is None

    report = build_index(collection, index, models=MODELS, **quiet)
    brightness = report.models["brightness"]
    assert (brightness.embedded, brightness.resumed, brightness.reused) == (0, IMAGES, 0)
    assert_same_index(index, reference)
    assert not IndexFolder(index).checkpoints_path.exists()  # removed once the generation holds the vectors
    assert len(list(generations.iterdir())) <= 2  # the killed builds' generations are pruned (one kept)


def test_a_build_killed_midway_embeds_exactly_the_images_no_checkpoint_holds(collection, reference, tmp_path):
    index = tmp_path / "index"
    kill_when(collection, index, lambda: parts(index) >= 3)
    held = len(checkpointed(index))
    report = build_index(collection, index, models=MODELS, **quiet)
    brightness = report.models["brightness"]
    assert 3 * EVERY <= held < IMAGES
    assert (brightness.embedded, brightness.resumed) == (IMAGES - held, held)
    assert_same_index(index, reference)


def fail_after_the_read(monkeypatch):
    """Make the next build stop in its writing stage (every image read, embedded and checkpointed)."""
    def refuse(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(GenerationWriter, "write", refuse)


def test_a_corrupt_partial_or_foreign_checkpoint_is_ignored_never_fatal(collection, reference, tmp_path,
                                                                         monkeypatch):
    index = tmp_path / "index"
    with monkeypatch.context() as patch:
        fail_after_the_read(patch)
        with pytest.raises(OSError, match="disk full"):
            build_index(collection, index, models=MODELS, **quiet)
    folder = IndexFolder(index)
    assert folder.current() is None and len(checkpointed(index)) == IMAGES
    version = model_version("brightness")
    first, second, third = folder.checkpoint_parts("brightness", version)[:3]
    first.write_bytes(first.read_bytes()[:200])  # truncated
    second.write_bytes(b"not a checkpoint at all")  # garbage
    with np.load(third) as part:  # other weights: the same keys with other vectors
        keys, vectors = part["keys"], part["vectors"]
    np.savez(folder.checkpoint_dir("brightness", version) / "part-000999.npz", keys=keys,
             vectors=vectors[:, ::-1].copy(), version=np.asarray("brightness:0"))
    (folder.checkpoint_dir("brightness", version) / ".part-001000.1.tmp.npz").write_bytes(b"half writ")  # killed
    messages = []
    report = build_index(collection, index, models=MODELS, progress=False, log=messages.append)
    assert (report.models["brightness"].embedded, report.models["brightness"].resumed) == (
        2 * EVERY, IMAGES - 2 * EVERY)
    assert sum("Ignoring checkpoint" in message for message in messages) == 3
    assert_same_index(index, reference)


def test_an_archive_that_gains_files_embeds_only_them_even_across_a_failed_build(tmp_path, monkeypatch):
    root, index = tmp_path / "collection", tmp_path / "index"
    make_collection(root)
    build_index(root, index, models=MODELS, **quiet)
    make_collection(root, count=40, start=IMAGES)  # 40 new files
    with monkeypatch.context() as patch:
        fail_after_the_read(patch)
        with pytest.raises(OSError):
            build_index(root, index, models=MODELS, **quiet)
    assert len(checkpointed(index)) == 40  # only the new images were embedded, and they are kept
    report = build_index(root, index, models=MODELS, **quiet)
    brightness = report.models["brightness"]
    assert (brightness.embedded, brightness.resumed, brightness.reused) == (0, 40, IMAGES)
    make_collection(root, count=10, start=IMAGES + 40)
    brightness = build_index(root, index, models=MODELS, **quiet).models["brightness"]
    assert (brightness.embedded, brightness.resumed, brightness.reused) == (10, 0, IMAGES + 40)


def test_no_thumbnail_or_render_outlives_its_chunk_and_one_bar_covers_the_build(collection, tmp_path, capsys,
                                                                               monkeypatch):
    from retrieval.collection import RowWriter

    written = []
    add = RowWriter.add
    monkeypatch.setattr(RowWriter, "add", lambda self, row, facts: (written.append(facts), add(self, row, facts)))
    build_index(collection, tmp_path / "index", models=MODELS, log=lambda *_: None)
    assert len(written) == IMAGES
    assert all(facts.thumbnail is None and facts.rendered is None for facts in written)  # on disk, not in memory
    bar = capsys.readouterr().err
    assert "build: read + embed" in bar and "build: map brightness" in bar and "100%" in bar
