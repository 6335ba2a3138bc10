"""The registry and the contract every offline model keeps: unit-length float32 rows of the declared size."""

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import COLLECTION, require_collection, synthetic_image
from retrieval.embedders import (
    IMAGE, TEXT, availability, embedder_spec, get_embedder, list_embedders,
)
from retrieval.errors import UnknownEmbedder, UnsupportedModality

OFFLINE = ["tfidf", "minilm", "efficientnet-lite0"]
TEXTS = ["knee radiograph kl-2", "chest x-ray pneumonia", "panoramic dental x-ray"]


def loaded(name):
    embedder = get_embedder(name)
    if embedder.needs_fit:
        embedder.fit(TEXTS * 2)
    return embedder


def test_the_registry_lists_the_offline_built_ins_and_they_are_ready_here():
    assert set(OFFLINE) <= set(list_embedders())
    assert set(list_embedders(TEXT)) >= {"tfidf", "minilm"}
    assert "efficientnet-lite0" in list_embedders(IMAGE) and "tfidf" not in list_embedders(IMAGE)
    for name in OFFLINE:
        assert availability(name).ready, availability(name).reason


def test_a_wrong_name_lists_the_right_ones():
    with pytest.raises(UnknownEmbedder, match="efficientnet-lite0"):
        embedder_spec("resnet-9000")


@pytest.mark.parametrize("name", OFFLINE)
def test_vectors_are_unit_length_float32_of_the_declared_size_and_deterministic(name):
    embedder, spec = loaded(name), embedder_spec(name)
    if spec.embeds(TEXT):
        first, second = embedder.embed_texts(TEXTS), embedder.embed_texts(TEXTS)
    else:
        images = [synthetic_image(kind, seed=3) for kind in ("bright", "stripes", "disc")]
        first, second = embedder.embed_images(images), embedder.embed_images(images)
    assert first.dtype == np.float32 and first.shape == (3, embedder.dim)
    assert spec.dim in (None, embedder.dim)
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(first, second)


@pytest.mark.parametrize("name", OFFLINE)
def test_a_model_refuses_the_modality_it_cannot_embed(name):
    embedder = loaded(name)
    with pytest.raises(UnsupportedModality):
        if embedder_spec(name).embeds(TEXT):
            embedder.embed_images([synthetic_image("disc")])
        else:
            embedder.embed_texts(["knee"])


def test_minilm_puts_broken_wrist_nearer_fracture_than_dental():
    vectors = loaded("minilm").embed_texts(["broken wrist", "fracture of the radius", "panoramic dental x-ray"])
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_efficientnet_features_are_pretrained_not_random():
    """Pinned figure: two knee radiographs are closer to each other than to a chest radiograph."""
    if not COLLECTION.is_dir():
        pytest.skip("the real collection is absent")
    from retrieval.images import load_image

    paths = ["knee/oai-knee-kl_0001.jpg", "knee/oai-knee-kl_0002.jpg", "chest/nih-chestxray14_0001.jpg"]
    vectors = loaded("efficientnet-lite0").embed_images([load_image(COLLECTION / p) for p in paths])
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.1


def test_tfidf_state_round_trips(tmp_path):
    embedder = loaded("tfidf")
    embedder.save_state(tmp_path)
    restored = type(embedder)()
    restored.load_state(tmp_path)
    assert np.allclose(restored.embed_texts(TEXTS), embedder.embed_texts(TEXTS))


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


def _real_batch(count: int = 16):
    """A normalised batch of real radiographs from every category, as the image models feed their backbone."""
    from retrieval.collection import local_rows
    from retrieval.images import load_image

    rows = local_rows(require_collection())
    embedder = get_embedder("efficientnet-lite0")
    images = [load_image(row.path) for row in rows[::max(1, len(rows) // count)][:count]]
    return embedder._tensor(images)


def test_the_folded_backbone_computes_what_the_packaged_module_does():
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    from retrieval.embedders import efficientnet as backbone

    packaged = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
    packaged.load_state_dict(torch.load(backbone.backbone_file(), map_location="cpu", weights_only=True))
    batch = _real_batch()
    with torch.inference_mode():
        expected = packaged.eval().extract_features(batch)
        folded = backbone.activation_maps(backbone.load_backbone(), batch)["head"]
    assert torch.allclose(folded, expected, atol=1e-3)  # batch norms folded: the same up to rounding


def test_bf16_after_the_first_block_keeps_each_embedding_beside_fp32():
    import torch

    from retrieval.embedders import efficientnet as backbone

    model, batch = backbone.load_backbone(), _real_batch()
    with torch.inference_mode():
        fp32 = backbone.pooled_features(model, batch, bf16=False)
        mixed = backbone.pooled_features(model, batch, bf16=True)
    cosine = torch.nn.functional.cosine_similarity(fp32, mixed, dim=1)
    # here 0.9992 at worst (0.998 over the whole collection); bf16 from the stem on falls to 0.9948 on these images
    assert float(cosine.min()) > 0.997
