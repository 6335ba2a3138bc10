"""With a configured local folder, every zoo model builds (`--models all`), searches and appears in the app."""

import pytest

import app
from conftest import build_test_index
from retrieval.embedders import forget_loaded, list_embedders
from retrieval.search import SearchEngine
from tiny_models import TINY_MODELS, install_tiny_models

CLIP_LIKE = ["clip-vit-b32", "biomedclip"]
NINE = ["tfidf", "minilm", "efficientnet-lite0", *TINY_MODELS]


@pytest.fixture
def zoo_index(synthetic_collection, tmp_path, monkeypatch, real_models):
    """`--models all`: the tiny zoo stand-ins beside the real built-ins (so: real weights, a slow test)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("XRAY_MODEL_DIR", str(install_tiny_models(tmp_path / "models")))
    forget_loaded()
    report = build_test_index(synthetic_collection, tmp_path / "index", "all")
    yield report, SearchEngine(tmp_path / "index")
    forget_loaded()  # tiny models must not leak into other tests


def test_all_nine_models_build_search_and_show_as_ready_in_the_app(zoo_index, synthetic_collection):
    report, engine = zoo_index
    assert set(report.models) == set(list_embedders()) and report.skipped_models == {}
    assert set(NINE) <= set(report.models)  # (test-only fakes registered by other tests build too)
    query = synthetic_collection / "knee" / "k1.png"
    for name in TINY_MODELS:
        hits = engine.search_image(query, model=name, k=3).hits
        assert hits[0].id == "knee/k1" and hits[0].score == pytest.approx(1.0, abs=1e-3), name
    for name in CLIP_LIKE:  # text-to-image through the model's own text tower
        assert len(engine.search_text("knee radiograph", model=name, k=3, min_score=-1)) == 3
    statuses = {row["name"]: row["status"] for row in app.Handlers(engine).models()}
    assert all(statuses[name] == "ready" for name in NINE), statuses
    assert set(TINY_MODELS) <= set(engine.policy.models_for("image"))
    assert set(CLIP_LIKE) <= set(engine.policy.models_for("text"))
    app.build_demo(engine)  # the dropdowns accept every ready model
