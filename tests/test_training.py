"""retrieval.training: one epoch on a small real subset writes a loadable, verified model folder; same seed,
same weights; the embedder puts images and texts in one unit-vector space; folds keep sources whole."""

from __future__ import annotations

import json
import os
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from conftest import make_subset

PER_CATEGORY = 8

pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")


@pytest.fixture(scope="module")
def subset(collection, tmp_path_factory) -> Path:
    """PER_CATEGORY rows per category, dealt from its sources in turn (every source of a category is in)."""
    return make_subset(tmp_path_factory.mktemp("subset"), PER_CATEGORY, round_robin_sources=True)


def _train(subset: Path, out: Path, keep_features: bool = False, log=lambda *a: None) -> dict:
    from retrieval.training import train_model
    from retrieval.training.variants import LITE0, LITE2, Variant

    # one small variant that exercises both backbones, a head, acquisition views and the test-time flip twin
    fused = Variant("test-fused-head", (LITE0, LITE2), 16, "acquisition", 1, flip=True)
    return train_model(subset, out, epochs=1, folds=2, seed=0, progress=False, log=log,
                       augmented_views=1, in_source_folds=2, keep_features=keep_features, bootstrap_reps=200,
                       outer_folds=3, variants=[fused], timing_repeats=1)


@pytest.fixture(scope="module")
def model_dir(subset, real_models, tmp_path_factory) -> Path:
    """One epoch from the pretrained EfficientNet-Lite0 backbone (real weights)."""
    out = tmp_path_factory.mktemp("models") / "xray-lite0"
    report = _train(subset, out)
    assert report["data"]["rows"] == 6 * PER_CATEGORY
    return out


def test_one_epoch_writes_a_complete_folder(model_dir: Path):
    names = {p.name for p in model_dir.iterdir()}
    assert {"model.safetensors", "config.json", "training_card.md", "training_card.json"} <= names
    assert not any(name.startswith(".") for name in os.listdir(model_dir.parent))  # no temp/work folders left
    assert (model_dir / "model.safetensors").stat().st_size <= 10 * 2**20
    config = json.loads((model_dir / "config.json").read_text())
    assert len(config["version"]) == 64 and config["dim"] > 0
    card = (model_dir / "training_card.md").read_text()
    assert "Research and education only: trained on research-only images; not a diagnostic device." in card
    assert config["version"] in card
    report = json.loads((model_dir / "training_card.json").read_text())
    assert report["evaluation"]["cross_source"]["frozen"]["category"]["queries"] > 0
    decision = report["default_image_model"]
    assert isinstance(decision["default"], bool) and "interval" in decision and decision["reason"]
    assert config["default_image_model"] == decision["default"]
    assert set(report["selection"]["variants"]) >= {"test-fused-head", "test-fused-head+flip", "selected", "reference"}


@pytest.mark.parametrize("flip, preprocessing", [(False, "norm"), (True, "norm"), (False, "equalize")])
def test_the_embedder_reproduces_the_training_time_vectors(subset, model_dir: Path, tmp_path: Path, flip: bool,
                                                           preprocessing: str):
    """The index's vectors (XRayLite0Embedder) are the vectors selection judged: the same views (the model's
    preprocessing mode), features, fusion of backbones, head and flip as training/variants.py, on real images."""
    from retrieval.embedders.xray_lite0 import XRayLite0Embedder
    from retrieval.embedders.xray_network import load_network
    from retrieval.embedders.model_folder import ModelFolder
    from retrieval.images import load_image
    from retrieval.training.data import load_working_copies, read_items
    from retrieval.training.features import FeatureCache
    from retrieval.training.variants import Variant, VariantFeatures, embed

    copy = tmp_path / "xray-lite0"
    shutil.copytree(model_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    config["test_time_flip"] = flip
    config["preprocessing"] = preprocessing
    (copy / "config.json").write_text(json.dumps(config))
    items = read_items(subset)[::9][:4]
    grays = load_working_copies(items, progress=False)
    feats = VariantFeatures({b: FeatureCache(grays, 0, None, b, progress=False) for b in config["backbones"]})
    variant = Variant("shipped", tuple(config["backbones"]), config["head_dim"], preprocessing=preprocessing)
    _, head, _ = load_network(ModelFolder(copy))
    expected = embed(head, feats.clean(variant))
    if flip:
        expected = expected + embed(head, feats.clean(variant, "flip"))
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    embedder = XRayLite0Embedder(copy)
    embedder._bf16 = False  # training's clean passes are fp32 (bf16 at query time is judged against them)
    got = embedder.embed_images([load_image(item.path) for item in items])
    assert np.abs(got - expected).max() < 1e-4


def test_same_seed_gives_identical_weights(subset, model_dir: Path, tmp_path: Path):
    again = tmp_path / "xray-lite0"
    _train(subset, again)
    assert (again / "model.safetensors").read_bytes() == (model_dir / "model.safetensors").read_bytes()


def test_a_stopped_run_resumes_at_its_first_unfinished_outer_fold(subset, model_dir: Path, tmp_path: Path):
    out = tmp_path / "xray-lite0"
    first = _train(subset, out, keep_features=True)
    kept = sorted(tmp_path.glob(".xray-lite0.features-*/outer-folds-*/outer-fold-*.npz"))
    assert [p.name for p in kept] == [f"outer-fold-{k}.npz" for k in range(3)]
    kept[-1].unlink()  # as if the run had been stopped during its last outer fold
    logs: list[str] = []
    again = _train(subset, out, keep_features=True, log=logs.append)
    assert sum("resumed from outer-fold" in line for line in logs) == 2
    assert sum("scores resumed from final-choice.json" in line for line in logs) == 1  # the choice of what ships
    assert again["selection"]["per_outer_fold"] == first["selection"]["per_outer_fold"]
    assert again["evaluation"]["cross_source"] == first["evaluation"]["cross_source"]
    assert (out / "model.safetensors").read_bytes() == (model_dir / "model.safetensors").read_bytes()


def test_embedder_puts_images_and_texts_in_one_unit_space(subset, model_dir: Path):
    from retrieval.images import load_image
    from retrieval.embedders.xray_lite0 import XRayLite0Embedder

    embedder = XRayLite0Embedder(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    assert embedder.name == "xray-lite0" and embedder.dim == config["dim"] and embedder.version() == config["version"]
    from retrieval.embedders import embedder_spec

    spec = embedder_spec("xray-lite0")  # what it embeds and indexes is said once, by its registry entry
    assert set(spec.modalities) == {"image", "text"} and spec.indexes == "image"
    paths = sorted(subset.rglob("*.jpg"))[:3] + sorted(subset.rglob("*.png"))[:2]
    images = embedder.embed_images([load_image(p) for p in paths])
    texts = embedder.embed_texts(["knee osteoarthritis", "a chest x-ray"])
    for vectors, n in ((images, len(paths)), (texts, 2)):
        assert vectors.shape == (n, config["dim"]) and vectors.dtype == np.float32
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert np.isfinite(texts @ images.T).all()


@pytest.mark.parametrize("damage", ["truncated", "altered"])
def test_damaged_weights_are_refused(model_dir: Path, tmp_path: Path, damage: str):
    from retrieval.embedders.xray_lite0 import XRayLite0Embedder

    copy = tmp_path / "xray-lite0"
    shutil.copytree(model_dir, copy)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(RuntimeError, match=r"model\.safetensors is truncated or altered.*retrain"):
        XRayLite0Embedder(copy)


def test_source_folds_keep_sources_whole_and_spread_categories(collection):
    from retrieval.evaluation.folds import assign_source_folds, source_fold_of_rows
    from retrieval.training.data import read_items

    items = read_items(collection)
    for seed in (0, 1, 2):
        assignment = assign_source_folds(items, 3, seed)
        assert assignment == assign_source_folds(items, 3, seed)  # deterministic
        folds = source_fold_of_rows(items, assignment)
        by_source, by_category = defaultdict(set), defaultdict(set)
        sources_of = defaultdict(set)
        for item, fold in zip(items, folds.tolist()):
            by_source[item.source].add(fold)
            by_category[item.category].add(fold)
            sources_of[item.category].add(item.source)
        assert all(len(f) == 1 for f in by_source.values())
        assert len(set(folds.tolist())) == 3
        for category, sources in sources_of.items():
            if len(sources) >= 2:
                assert len(by_category[category]) >= 2, category


# --- the anchored variant: a fine-tuned tail ships in the folder and the embedder runs it ------------------------
@pytest.fixture(scope="module", params=["l2sp", "lora"])
def anchored_dir(request, subset, real_models, tmp_path_factory) -> Path:
    """One epoch of an anchored variant alone (so it is the one that ships): L2-SP, or low-rank adapters (merged
    into the tail before it is stored)."""
    from retrieval.training import train_model
    from retrieval.training.variants import LITE0, Variant

    out = tmp_path_factory.mktemp("anchored") / "xray-lite0"
    train_model(subset, out, epochs=1, folds=2, seed=0, progress=False, log=lambda *a: None, augmented_views=1,
                in_source_folds=2, keep_features=False, bootstrap_reps=200, outer_folds=3, timing_repeats=1,
                variants=[Variant("test-anchored", (LITE0,), 16, "basic", 1, tail=True, lora=request.param == "lora")])
    return out


def test_the_untrained_tail_on_the_cached_maps_gives_the_frozen_features(subset):
    """The tail trains on the maps cached before the last block: untouched, it must give exactly what the whole
    backbone gives (else the tail would be trained on something the query never computes)."""
    import torch

    from retrieval.embedders import efficientnet
    from retrieval.training import anchored
    from retrieval.training.data import load_working_copies, read_items
    from retrieval.training.features import FeatureCache
    from retrieval.training.variants import LITE0, Variant, VariantFeatures

    grays = load_working_copies(read_items(subset)[::7][:6], progress=False)
    feats = VariantFeatures({LITE0: FeatureCache(grays, 0, None, LITE0, progress=False)})
    variant = Variant("v", (LITE0,), 16, "basic", 1, tail=True)
    maps, stages = feats.maps(variant)
    assert maps.shape[:2] == (6, 2) and stages.shape[:2] == (6, 2)
    tail = anchored.make_tail(efficientnet.load_backbone(), "gap+stages")
    with torch.inference_mode():
        got = tail(torch.from_numpy(maps[:, 0].astype(np.float32)), torch.from_numpy(stages[:, 0])).numpy()
    assert np.abs(got - feats.clean(variant)).max() < 2e-3  # float16 maps and cached features


def test_an_anchored_model_ships_its_tail_and_the_embedder_runs_it(subset, anchored_dir: Path):
    import torch

    from retrieval.embedders import efficientnet
    from retrieval.embedders.model_folder import ModelFolder
    from retrieval.embedders.xray_lite0 import XRayLite0Embedder
    from retrieval.embedders.xray_network import tail_tensors
    from retrieval.images import load_image
    from retrieval.training import anchored
    from retrieval.training.data import load_working_copies, read_items
    from retrieval.training.features import FeatureCache
    from retrieval.training.variants import LITE0, Variant, VariantFeatures

    config = json.loads((anchored_dir / "config.json").read_text())
    report = json.loads((anchored_dir / "training_card.json").read_text())
    assert config["fine_tuned_tail"] and report["shipped"] == "test-anchored"
    assert (anchored_dir / "model.safetensors").stat().st_size <= 10 * 2**20
    tail = tail_tensors(ModelFolder(anchored_dir).read_weights())
    frozen = efficientnet.load_backbone()
    moved = [k for k, v in tail.items() if k.startswith("block.") and
             not torch.allclose(v.float(), frozen._blocks[-1].state_dict()[k[6:]].half().float())]
    assert moved  # the last block was trained, not only copied
    if "lora_rank" in report["hyperparameters"]["tail"]:  # adapters: the depthwise conv and the biases stay frozen
        assert all(torch.equal(tail[k], frozen._blocks[-1].state_dict()[k[6:]].half()) for k in tail
                   if k.startswith("block.") and ("_depthwise_conv" in k or k.endswith(".bias")))
    items = read_items(subset)[::9][:4]
    feats = VariantFeatures({LITE0: FeatureCache(load_working_copies(items, progress=False), 0, None, LITE0,
                                                 progress=False)})
    maps, stages = feats.maps(Variant("v", (LITE0,), 16, "basic", 0, tail=True))
    embedder = XRayLite0Embedder(anchored_dir)
    embedder._bf16 = False  # training judges the fp32 clean view
    got = embedder.embed_images([load_image(item.path) for item in items])
    module = anchored.make_tail(frozen, config["features"])
    module.load_state_dict({k: v.float() for k, v in tail.items()}, strict=True)
    expected = anchored.embed(module, embedder._image_head, maps[:, 0], stages[:, 0])
    assert np.abs(got - expected).max() < 5e-3  # the float16 maps the tail was judged on
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)


def test_unknown_tail_tensors_are_refused():
    import torch

    from retrieval.embedders import efficientnet
    from retrieval.embedders.xray_network import apply_tail

    with pytest.raises(RuntimeError, match="Unknown tail tensors"):
        apply_tail(efficientnet.load_backbone(), {"stem.weight": torch.zeros(1)})


@pytest.mark.parametrize("native", [True, False])
def test_augmented_passes_run_bf16_only_where_the_cpu_computes_it(monkeypatch, native: bool):
    """Emulated bf16 is about ten times slower than fp32 (an AVX2-only CPU): training's augmented passes take bf16
    only where inference does; clean passes are fp32 everywhere."""
    from retrieval.embedders import efficientnet
    from retrieval.training import features

    asked = {}
    monkeypatch.setattr(efficientnet, "bf16_here", lambda: native)
    monkeypatch.setattr(features, "extract", lambda model, views, batch, bf16, **kw: bf16)
    gray = np.random.default_rng(0).integers(0, 255, (96, 80), dtype=np.uint8)
    for kind in ("clean", "basic", "acquisition"):
        asked[kind] = features.view_features(None, [gray], "norm", -1 if kind == "clean" else 0, 0, kind=kind)
    assert asked == {"clean": False, "basic": native, "acquisition": native}
