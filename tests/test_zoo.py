"""The model zoo's contract, checked offline: tiny random models in each hub repo's folder layout
(tests/tiny_models.py) go through the same `get_embedder(name)` path as the real weights."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import build_test_index
from retrieval.embedders import availability, embedder_spec, forget_loaded, get_embedder, model_version
from retrieval.embedders import weights
from retrieval.errors import EmbedderUnavailable
from tiny_models import TINY_MODELS, install_tiny_models

ZOO = list(TINY_MODELS)
TEXT_AND_IMAGE = ["clip-vit-b32", "biomedclip"]
REPO_ROOT = Path(__file__).resolve().parents[1]


def radiograph(kind: str, seed: int, size: tuple[int, int] = (72, 64)) -> Image.Image:
    """A grayscale picture whose content depends on `kind`: a wide 'chest' blob or a 'knee' of two bars."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray((rng.random(size[::-1]) * 40).astype(np.uint8), mode="L")
    draw = ImageDraw.Draw(image)
    w, h = size
    if kind == "chest":
        draw.ellipse((w * 0.15, h * 0.2, w * 0.85, h * 0.9), fill=200 + seed % 40)
    else:
        draw.rectangle((w * 0.35, 0, w * 0.6, h * 0.45), fill=220)
        draw.rectangle((w * 0.4, h * 0.55, w * 0.62, h), fill=180 + seed % 50)
    return image


IMAGES = [radiograph("chest", 0), radiograph("knee", 1), radiograph("chest", 2)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return install_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    forget_loaded()
    yield monkeypatch
    forget_loaded()  # loaded tiny models must not leak into other tests


@pytest.fixture
def zoo(model_dir, offline) -> Path:
    offline.setenv(weights.MODEL_DIR_ENV, str(model_dir))
    return model_dir


def test_specs_document_the_real_models():
    expected = {
        "clip-vit-b32": ("CLIP", "openai/clip-vit-base-patch32", 512),
        "biomedclip": ("BiomedCLIP", "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224", 512),
        "resnet50": ("ResNet", "microsoft/resnet-50", 2048),
        "densenet121": ("DenseNet", "timm/densenet121.tv_in1k", 1024),
        "vit-b16": ("ViT", "google/vit-base-patch16-224-in21k", 768),
        "dinov2-small": ("DINOv2", "facebook/dinov2-small", 768),
    }
    for name, (family, hub_id, dim) in expected.items():
        spec = embedder_spec(name)
        assert (spec.family, spec.weights, spec.dim, spec.indexes) == (family, hub_id, dim, "image")
        assert spec.description and "\n" not in spec.description
        if name in TEXT_AND_IMAGE:
            assert set(spec.modalities) == {"image", "text"} and spec.default_min_score > 0
        else:
            assert spec.modalities == ("image",) and spec.default_min_score == 0.0


def test_importing_the_zoo_loads_no_deep_learning_library():
    code = ("import sys, retrieval.embedders.zoo; "
            "print(sorted(m for m in ('torch', 'transformers', 'timm', 'open_clip') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", ZOO)
def test_loads_from_the_local_folder_through_the_registry(zoo, name):
    state = availability(name)
    assert state.ready and str(zoo / name) in state.reason
    embedder = get_embedder(name)
    assert get_embedder(name) is embedder  # loaded once per process
    assert embedder.name == name
    assert 0 < embedder.dim < embedder_spec(name).dim  # read from the loaded (tiny) model, not the spec
    version = model_version(name)  # from the registry entry and the files found, without a load
    assert name in version and embedder_spec(name).weights in version and "local-" in version
    assert str(zoo) not in version  # the same weights elsewhere are the same version


@pytest.mark.parametrize("name", ZOO)
def test_batching_splits_the_work_and_never_changes_the_vectors(zoo, name):
    """(Shape, unit length, repeatability and refusing text: the contract in test_embedders.py, for every model.)"""
    embedder = get_embedder(name)
    vectors = embedder.embed_images(IMAGES)
    embedder.batch_size = 2
    np.testing.assert_allclose(embedder.embed_images(IMAGES), vectors, atol=1e-5)


@pytest.mark.parametrize("name", TEXT_AND_IMAGE)
def test_text_queries_land_in_the_image_space(zoo, name):
    embedder = get_embedder(name)
    texts = embedder.embed_texts(["chest x-ray", "lateral knee radiograph"])
    images = embedder.embed_images(IMAGES)
    assert texts.shape == (2, embedder.dim) and texts.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(embedder.embed_texts(["chest x-ray", "lateral knee radiograph"]), texts)
    assert not np.allclose(texts[0], texts[1])
    scores = texts @ images.T  # cosine, since both sides are unit rows of one space
    assert scores.shape == (2, len(IMAGES)) and np.all(np.abs(scores) <= 1.0 + 1e-5)
    assert np.ptp(scores[0]) > 1e-4  # a text tells the images apart: the two towers really share the space
    np.testing.assert_allclose(embedder.embed_texts(["lateral knee radiograph"])[0], texts[1], atol=1e-5)


@pytest.mark.parametrize("name", ZOO)
def test_without_local_weights_offline_the_model_is_unavailable(offline, tmp_path, name):
    offline.setenv(weights.MODEL_DIR_ENV, str(tmp_path / "empty"))
    offline.setattr(weights, "in_hub_cache", lambda hub_id: False)  # a machine that never downloaded it
    state = availability(name)
    assert not state.ready and weights.MODEL_DIR_ENV in state.reason and name in state.reason
    with pytest.raises(EmbedderUnavailable, match=weights.MODEL_DIR_ENV):
        get_embedder(name)


def _drop_one_weight(folder: Path) -> str:
    """Remove one backbone tensor from the folder's checkpoint; returns its key."""
    import torch
    from safetensors.torch import load_file, save_file

    path = next(p for p in sorted(folder.iterdir()) if p.suffix in (".safetensors", ".bin"))
    state = load_file(path) if path.suffix == ".safetensors" else torch.load(path, weights_only=True)
    key = next(k for k in sorted(state) if not k.startswith(("classifier", "pooler")))
    del state[key]
    if path.suffix == ".safetensors":
        save_file(state, path, metadata={"format": "pt"})
    else:
        torch.save(state, path)
    return key


@pytest.mark.parametrize("name", ZOO)
def test_incomplete_weights_are_refused_not_run_at_random(model_dir, offline, tmp_path, name):
    shutil.copytree(model_dir / name, tmp_path / name)
    key = _drop_one_weight(tmp_path / name)
    offline.setenv(weights.MODEL_DIR_ENV, str(tmp_path))
    with pytest.raises(EmbedderUnavailable, match="could not be loaded") as error:
        get_embedder(name)
    assert key.split(".", 1)[-1] in str(error.value)  # names the parameter it would have left random
    assert not availability(name).ready


def test_biomedclip_folder_needs_the_open_clip_config(model_dir, offline, tmp_path):
    shutil.copytree(model_dir / "biomedclip", tmp_path / "biomedclip")
    (tmp_path / "biomedclip" / "open_clip_config.json").unlink()
    offline.setenv(weights.MODEL_DIR_ENV, str(tmp_path))
    state = availability("biomedclip")
    assert not state.ready and "open_clip_config.json" in state.reason


def test_biomedclip_says_where_its_text_tower_config_goes(model_dir, offline, tmp_path):
    import huggingface_hub.constants

    if not huggingface_hub.constants.HF_HUB_OFFLINE:
        pytest.skip("needs HF_HUB_OFFLINE=1 at start-up, so the text tower lookup fails at once")
    shutil.copytree(model_dir / "biomedclip", tmp_path / "biomedclip")
    (tmp_path / "biomedclip" / "config.json").unlink()
    offline.setenv(weights.MODEL_DIR_ENV, str(tmp_path))
    with pytest.raises(EmbedderUnavailable, match="config.json and tokenizer files"):
        get_embedder("biomedclip")


def test_an_index_builds_with_a_zoo_model_and_answers_searches(zoo, synthetic_collection, tmp_path):
    search = pytest.importorskip("retrieval.search")
    build_test_index(synthetic_collection, tmp_path / "index", ["clip-vit-b32"])
    engine = search.SearchEngine(tmp_path / "index")

    query = Image.open(synthetic_collection / "knee" / "k1.png")
    hits = engine.search_image(query, model="clip-vit-b32", k=3).hits
    assert 1 <= len(hits) <= 3
    assert hits[0].category == "knee" and hits[0].score == pytest.approx(1.0, abs=1e-4)  # it finds itself

    # Tiny random towers rank texts arbitrarily (and below CLIP's default minimum score), so ask for every hit.
    hits = engine.search_text("chest", model="clip-vit-b32", k=3, min_score=-1.0)
    assert len(hits) == 3 and all(hit.category in ("chest", "knee") for hit in hits)
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
