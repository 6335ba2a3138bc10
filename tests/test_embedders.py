"""The registry and the contract every registered model keeps: unit-length float32 rows of the declared size,
the same rows every time; and the stored vectors of the image models, pinned."""

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import marks_of, synthetic_image
from retrieval.embedders import (
    IMAGE, TEXT, availability, embedder_spec, forget_loaded, get_embedder, list_embedders, model_version,
)
from retrieval.embedders.weights import MODEL_DIR_ENV
from retrieval.errors import UnknownEmbedder, UnsupportedModality
from tiny_models import TINY_MODELS, install_tiny_models

REGISTERED = list_embedders()  # read when the tests are collected: a newly registered model is covered too
TEXTS = ["knee radiograph kl-2", "chest x-ray pneumonia", "panoramic dental x-ray"]
IMAGES = [synthetic_image(kind, seed=3) for kind in ("bright", "stripes", "disc")]
PINNED = Path(__file__).parent / "data" / "pinned_vectors.npz"


def with_own_weights(name: str) -> bool:
    """Whether the model's own weights are here (loading them is the slow part), rather than fitted at build time
    (TF-IDF: no width before it is fitted) or stood in for by a tiny model."""
    return availability(name).ready and embedder_spec(name).dim is not None


def contract_cases(names: list[str]) -> list:
    """One case per model; a model that loads its real weights brings what the `real_models` fixture brings."""
    return [pytest.param(name, marks=marks_of("real_models")) if with_own_weights(name) else name for name in names]


ONE_MODALITY = [name for name in REGISTERED if len(embedder_spec(name).modalities) == 1]


def loaded(name):
    embedder = get_embedder(name)
    if embedder.needs_fit:
        embedder.fit(TEXTS * 2)
    return embedder


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny-models")  # filled on demand, one family at a time


@pytest.fixture
def contract_model(request, tiny_model_dir, monkeypatch):
    """(embedder, real): the model with its own weights when they are here; else its family's tiny stand-in
    (tests/tiny_models.py), loaded through the same path; else a skip that gives the registry's reason."""
    name = request.param
    state = availability(name)
    if state.ready:
        yield loaded(name), True
        return
    if name not in TINY_MODELS:
        pytest.skip(f"{name} is not available here: {state.reason}")
    if not (tiny_model_dir / name).is_dir():
        install_tiny_models(tiny_model_dir, [name])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv(MODEL_DIR_ENV, str(tiny_model_dir))
    forget_loaded()
    yield loaded(name), False
    forget_loaded()  # the tiny model must not stand in for the real one in later tests


def test_the_registry_lists_the_offline_built_ins_and_they_are_ready_here():
    from conftest import OFFLINE_MODELS

    assert set(list_embedders(TEXT)) >= {"tfidf", "minilm"}
    assert "efficientnet-lite0" in list_embedders(IMAGE) and "tfidf" not in list_embedders(IMAGE)
    for name in OFFLINE_MODELS:  # the models the quick tests build with: packaged, or in assets/models/
        assert name in REGISTERED and availability(name).ready, availability(name).reason


def test_a_wrong_name_lists_the_right_ones():
    with pytest.raises(UnknownEmbedder, match="efficientnet-lite0"):
        embedder_spec("resnet-9000")


@pytest.mark.parametrize("contract_model", contract_cases(REGISTERED), indirect=True)
def test_vectors_are_unit_length_float32_of_the_declared_size_and_deterministic(contract_model):
    embedder, real = contract_model
    spec = embedder_spec(embedder.name)
    assert spec.modalities and set(spec.modalities) <= {IMAGE, TEXT} and spec.indexes in spec.modalities
    if real:  # a tiny stand-in is narrower than the model its spec documents
        assert spec.dim in (None, embedder.dim)
    for modality in spec.modalities:
        embed = embedder.embed_texts if modality == TEXT else embedder.embed_images
        items = TEXTS if modality == TEXT else IMAGES
        first, second = embed(items), embed(items)
        assert first.dtype == np.float32 and first.shape == (3, embedder.dim), modality
        assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5), modality
        assert np.array_equal(first, second), modality
        assert not np.allclose(first[0], first[1]), modality  # different inputs, different vectors
        assert embed(items[:0]).shape == (0, embedder.dim), modality


@pytest.mark.parametrize("contract_model", contract_cases(ONE_MODALITY), indirect=True)
def test_a_model_refuses_the_modality_it_cannot_embed(contract_model):
    embedder, _ = contract_model
    with pytest.raises(UnsupportedModality, match=embedder.name):
        if embedder_spec(embedder.name).embeds(TEXT):
            embedder.embed_images([synthetic_image("disc")])
        else:
            embedder.embed_texts(["knee"])


@pytest.mark.usefixtures("real_models")
@pytest.mark.parametrize("name", ["efficientnet-lite0", "xray-lite0"])
def test_stored_vectors_do_not_change(name, collection):
    """An index built earlier stays valid only while its models' vectors stay what its versions promise. Pinned per
    version (a model's version names its weights and its precision, bf16 or fp32, so a machine checks the pin of what
    it computes): efficientnet-lite0's bf16 pin from when it was first written, its fp32 pin and xray-lite0's (the
    weights that ship) from 2026-12-07. A version without a pin skips, naming the pinned ones."""
    from retrieval.images import load_image

    pinned = np.load(PINNED)
    version = model_version(name) if availability(name).ready else f"{name}: not available here"
    if f"{version}/images" not in pinned.files:
        pytest.skip(f"no pin for {version}; pinned: {sorted({key.rsplit('/', 1)[0] for key in pinned.files if '/' in key})}")
    embedder = get_embedder(name)
    images = embedder.embed_images([load_image(collection / path) for path in pinned["paths"]])
    assert np.abs(images - pinned[f"{version}/images"]).max() < 1e-6
    if f"{version}/texts" in pinned.files:
        texts = embedder.embed_texts([str(text) for text in pinned["texts"]])
        assert np.abs(texts - pinned[f"{version}/texts"]).max() < 1e-6


@pytest.mark.usefixtures("real_models")
def test_minilm_puts_broken_wrist_nearer_fracture_than_dental():
    vectors = loaded("minilm").embed_texts(["broken wrist", "fracture of the radius", "panoramic dental x-ray"])
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


@pytest.mark.usefixtures("real_models")
def test_efficientnet_features_are_pretrained_not_random(collection):
    """Pinned figure: two knee radiographs are closer to each other than to a chest radiograph."""
    from retrieval.images import load_image

    paths = ["knee/oai-knee-kl_0001.jpg", "knee/oai-knee-kl_0002.jpg", "chest/nih-chestxray14_0001.jpg"]
    vectors = loaded("efficientnet-lite0").embed_images([load_image(collection / p) for p in paths])
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.1


def test_tfidf_state_round_trips(tmp_path):
    embedder = loaded("tfidf")
    embedder.save_state(tmp_path)
    restored = type(embedder)()
    restored.load_state(tmp_path)
    assert np.allclose(restored.embed_texts(TEXTS), embedder.embed_texts(TEXTS))


@pytest.mark.usefixtures("real_models")
def test_minilm_loads_without_sentence_transformers_and_gives_its_vectors():
    from sentence_transformers import SentenceTransformer

    from retrieval.embedders import l2_normalise
    from retrieval.embedders.builtin import MeanPooledEncoder, _minilm_location, load_sentence_encoder

    location = _minilm_location()[0]
    encoder = load_sentence_encoder(location)
    assert isinstance(encoder, MeanPooledEncoder) and encoder.dim == 384
    texts = ["knee osteoarthritis, severe", "chest x-ray " * 200, "a"]  # the long one is truncated as the library does
    reference = SentenceTransformer(location, device="cpu").encode(texts, normalize_embeddings=True)
    # batches of 2: sorted by length for padding, returned in the order given
    assert np.allclose(l2_normalise(encoder.encode(texts, batch_size=2)), reference, atol=1e-5)
    # the registered model (bf16 autocast where the CPU computes bf16 natively) stays beside fp32
    assert np.min(np.sum(get_embedder("minilm").embed_texts(texts) * reference, axis=1)) > 0.99


@pytest.mark.usefixtures("real_models")
def test_minilm_s_linear_weights_cast_once_give_autocast_s_vectors_bit_for_bit():
    import torch

    from retrieval.embedders.builtin import MeanPooledEncoder, _minilm_location

    location = _minilm_location()[0]
    kept = MeanPooledEncoder(location, "cpu", 256, bf16=True)
    autocast = MeanPooledEncoder(location, "cpu", 256, bf16=False)
    autocast._bf16 = True  # autocast over the fp32 weights, as before: it casts them on every call
    assert {m.weight.dtype for m in kept._model.modules() if isinstance(m, torch.nn.Linear)} == {torch.bfloat16}
    assert {m.weight.dtype for m in autocast._model.modules() if isinstance(m, torch.nn.Linear)} == {torch.float32}
    texts = ["hip fracture", "no acute cardiopulmonary disease", "severe knee osteoarthritis, grade 4", "a"]
    for batch in (texts, texts[:1]):  # a batch as the build runs, one text as a query does
        assert np.array_equal(kept.encode(batch, batch_size=16), autocast.encode(batch, batch_size=16))


@pytest.mark.usefixtures("real_models")
@pytest.mark.parametrize("bf16", [True, False])
def test_minilm_s_traced_transformer_gives_the_eager_model_s_vectors_bit_for_bit(bf16):
    from retrieval.embedders.builtin import MeanPooledEncoder, _minilm_location

    traced = MeanPooledEncoder(_minilm_location()[0], "cpu", 256, bf16=bf16)
    eager = MeanPooledEncoder(_minilm_location()[0], "cpu", 256, bf16=bf16)
    eager._trace = (eager._model, bf16, None)  # as where tracing fails: the model runs eagerly
    assert traced.traced and not eager.traced
    texts = ["hip fracture", "no acute cardiopulmonary disease", "severe knee osteoarthritis, grade 4", "a",
             "chest x-ray " * 200]  # the long one is truncated
    for batch, size in ((texts, 16), (texts, 2), (texts[:1], 16), (["no padding here", "no padding now"], 16)):
        assert np.array_equal(traced.encode(batch, batch_size=size), eager.encode(batch, batch_size=size))


def test_a_sentence_model_of_another_kind_goes_through_sentence_transformers(tmp_path, monkeypatch):
    from retrieval.embedders import builtin

    source = builtin._minilm_location()[0]
    folder = tmp_path / "cls-pooled"
    (folder / "1_Pooling").mkdir(parents=True)
    for name in ("modules.json", "sentence_bert_config.json", "config.json"):
        (folder / name).write_text((Path(source) / name).read_text())
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    monkeypatch.setattr(builtin, "_SentenceTransformerEncoder", lambda location, device: ("library", location))
    assert builtin.load_sentence_encoder(str(folder)) == ("library", str(folder))


def _real_batch(collection, count: int = 16):
    """A normalised batch of real radiographs from every category, as the image models feed their backbone."""
    from retrieval.collection import local_rows
    from retrieval.images import load_image

    rows = local_rows(collection)
    embedder = get_embedder("efficientnet-lite0")
    images = [load_image(row.path) for row in rows[::max(1, len(rows) // count)][:count]]
    return embedder._tensor(images)


@pytest.mark.usefixtures("real_models")
def test_the_folded_backbone_computes_what_the_packaged_module_does(collection):
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    from retrieval.embedders import efficientnet as backbone

    packaged = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
    packaged.load_state_dict(torch.load(backbone.backbone_file(), map_location="cpu", weights_only=True))
    batch = _real_batch(collection)
    with torch.inference_mode():
        expected = packaged.eval().extract_features(batch)
        folded = backbone.activation_maps(backbone.load_backbone(), batch)["head"]
    assert torch.allclose(folded, expected, atol=1e-3)  # batch norms folded: the same up to rounding


@pytest.mark.usefixtures("real_models")
def test_bf16_after_the_first_block_keeps_each_embedding_beside_fp32(collection):
    import torch

    from retrieval.embedders import efficientnet as backbone

    model, batch = backbone.load_backbone(), _real_batch(collection)
    with torch.inference_mode():
        fp32 = backbone.pooled_features(model, batch, bf16=False)
        mixed = backbone.pooled_features(model, batch, bf16=True)
    cosine = torch.nn.functional.cosine_similarity(fp32, mixed, dim=1)
    # here 0.9992 at worst (0.998 over the whole collection); bf16 from the stem on falls to 0.9948 on these images
    assert float(cosine.min()) > 0.997


@pytest.mark.usefixtures("real_models")
@pytest.mark.parametrize("bf16", [True, False])
def test_an_embedder_s_traced_backbone_gives_the_eager_maps_bit_for_bit(collection, bf16):
    """The trace is made on the first batch's size and answers for any other (a query is 1 image, a build 8)."""
    import torch

    from retrieval.embedders import efficientnet as backbone

    model, batch = backbone.load_backbone(), _real_batch(collection)
    backbone.keep_bf16_weights(model)
    with torch.inference_mode():
        for stages in (True, False):
            for part in (batch[:1], batch, batch[1:3]):
                traced, eager = backbone.inference_maps(model, part, bf16, stages), \
                    backbone.activation_maps(model, part, bf16, stages)
                assert torch.equal(traced["head"], eager["head"]) and len(traced["stages"]) == len(eager["stages"])
                assert all(torch.equal(a, b) for a, b in zip(traced["stages"], eager["stages"]))
        assert torch.equal(backbone.inference_pooled(model, batch, bf16), backbone.pooled_features(model, batch, bf16))
    assert all(trace is not None for trace in model.__dict__["_traces"].values())  # traced here, not eager
    model.__dict__["_traces"] = {(bf16, True): None}  # where tracing fails: the eager maps
    with torch.inference_mode():
        assert torch.equal(backbone.inference_pooled(model, batch, bf16), backbone.pooled_features(model, batch, bf16))


def test_importing_the_registry_reads_no_model_folder():
    """A trained model's folder is read when it is first needed (its width, version, card), never at import."""
    import subprocess
    import sys

    code = ("import sys; opened = []\n"
            "sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == 'open' else None)\n"
            "from retrieval.embedders import embedder_spec\n"
            "before = [path for path in opened if 'models' in path]\n"
            "dim = embedder_spec('xray-lite0').dim\n"
            "print(before, dim, any('xray-lite0' in path for path in opened))")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1], capture_output=True,
                         text=True, check=True)
    from retrieval.embedders.model_folder import ModelFolder

    folder = ModelFolder.find("xray-lite0")
    expected = folder.read_config()["dim"] if folder else None
    assert out.stdout.split() == ["[]", str(expected), str(folder is not None)]


def test_a_model_folder_is_written_whole_then_read_and_verified(tmp_path):
    import torch

    from retrieval.embedders.model_folder import ModelFolder

    tensors = {"image.linear.weight": torch.arange(6, dtype=torch.float16).reshape(2, 3)}
    folder = ModelFolder.write(tmp_path / "tiny-model", tensors, {"dim": 2}, card='{"weights": "{version}"}',
                               card_text="# card\nversion {version}\n")
    config = folder.verify()
    assert config["dim"] == 2 and config["version"] == folder.weights_version() and len(config["version"]) == 64
    assert folder.read_card() == {"weights": config["version"]}
    assert folder.read_card_text() == f"# card\nversion {config['version']}\n"
    assert torch.equal(folder.read_weights()["image.linear.weight"], tensors["image.linear.weight"])
    assert [p.name for p in tmp_path.iterdir()] == ["tiny-model"]  # no temp folder left beside it

    again = ModelFolder.write(folder.path, {"image.linear.weight": torch.ones(2, 3)}, {"dim": 2}, "{}", "")
    assert again.read_config()["version"] != config["version"]  # replaced whole
    data = bytearray(again.weights_path.read_bytes())
    data[len(data) // 2] ^= 0x01
    again.weights_path.write_bytes(bytes(data))
    with pytest.raises(RuntimeError, match=r"model\.safetensors is truncated or altered.*retrain"):
        again.verify()
    assert ModelFolder(tmp_path / "nothing").read_config() == {} and ModelFolder(tmp_path).read_card() is None


def test_a_model_folder_is_found_in_the_configured_directory_first(tmp_path, monkeypatch):
    from retrieval.embedders.model_folder import REPO, ModelFolder

    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path))
    assert ModelFolder.find("no-such-model") is None
    (tmp_path / "some-model").mkdir()
    assert ModelFolder.find("some-model") is None  # a folder without config.json holds no model
    (tmp_path / "some-model" / "config.json").write_text("{}")
    assert ModelFolder.find("some-model").path == tmp_path / "some-model"
    in_assets = [folder.name for folder in ModelFolder.in_assets(REPO)]
    if "xray-lite0" in in_assets:  # the shipped model, when this checkout carries it
        assert ModelFolder.find("xray-lite0").path == REPO / "assets" / "models" / "xray-lite0"


@pytest.mark.usefixtures("real_models")
def test_bf16_weights_cast_once_give_autocast_s_features_bit_for_bit(collection):
    import torch

    from retrieval.embedders import efficientnet as backbone

    model, batch = backbone.load_backbone(), _real_batch(collection)
    with torch.inference_mode():
        autocast = backbone.activation_maps(model, batch, bf16=True)
        autocast_single = backbone.activation_maps(model, batch[:1], bf16=True)
        backbone.keep_bf16_weights(model)
        kept = backbone.activation_maps(model, batch, bf16=True)
        single = backbone.activation_maps(model, batch[:1], bf16=True)  # batch 1, as a query runs
        fp32 = backbone.activation_maps(model, batch, bf16=False)  # the copies serve bf16 only
    assert torch.equal(kept["head"], autocast["head"]) and torch.equal(single["head"], autocast_single["head"])
    assert all(torch.equal(a, b) for a, b in zip(kept["stages"], autocast["stages"]))
    assert not torch.equal(fp32["head"], kept["head"]) and set(model.state_dict()) == set(
        backbone.load_backbone().state_dict())  # the copies are no part of the model's weights
