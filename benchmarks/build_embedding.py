"""The build's embedding path, decode included, beside the previous path and a naive loop, in one process.

    .venv/bin/python benchmarks/build_embedding.py [--collection DIR] [--images 512] (0: the whole collection)

Images are the collection's stored bytes read beforehand (disk not timed); everything after that is: decode,
resize, the model. Paths, each over the same images:
  - current build, EfficientNet-Lite0 alone: the build's one read of the images (`image_pass.read_images`: each
    image hashed, decoded once, its pHash and thumbnail taken; two decode threads a chunk ahead of the model)
    feeding `index._ImageEmbedding` with the registered efficientnet-lite0 (the backbone with its batch norms
    folded, channels_last, batches of 8, bf16 after the stem and first block where the CPU computes bf16 natively);
  - the same path in fp32 (what the bf16 bar compares with);
  - current build, both image models: efficientnet-lite0 and xray-lite0 from one decode of each image (what a
    full build does), counted in images per second per model;
  - previous build path (until 2026-12-03): the packaged module as it comes (batch norms, padding copies),
    channels_last fp32 batches of 8, one decode thread at 448 px;
  - naive loop: decode, resize and a fp32 batch of 16 with the packaged module, one after the other.
Rankings: for each image model, the top-10 neighbours of every image among the others, bf16 path vs the same path
in fp32; the share they have in common must stay >= 0.95 for bf16 to be kept (efficientnet.FP32_BLOCKS).
MiniLM texts/s over the collection's distinct row texts: the build's encoder (length-sorted batches of 16, bf16
autocast where native) against fp32 in the given order (the previous encoder), and its top-10 overlap with fp32.
Writes results/build_embedding.json.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from common import COLLECTION, machine_snapshot, save

MEAN, STD = np.asarray((0.485, 0.456, 0.406), np.float32), np.asarray((0.229, 0.224, 0.225), np.float32)


def packaged_module():
    """EfficientNet-Lite0 exactly as the package builds it (no folding): the previous paths' model."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    from retrieval.embedders.efficientnet import backbone_file

    model = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
    model.load_state_dict(torch.load(backbone_file(), map_location="cpu", weights_only=True), strict=True)
    return model.eval().to(memory_format=torch.channels_last)


def _fp32_vectors(model, images, batch_size: int):
    """The previous paths' model step: packaged module, fp32, RGB resize in numpy."""
    import torch

    from retrieval.embedders import l2_normalise

    chunks = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = np.stack([np.asarray(image.convert("RGB").resize((224, 224), 3), np.float32) / 255.0
                              for image in images[start:start + batch_size]])
            tensor = torch.from_numpy((batch - MEAN) / STD).permute(0, 3, 1, 2)  # channels_last view
            chunks.append(model.extract_features(tensor).mean(dim=(2, 3)).numpy())
    return l2_normalise(np.concatenate(chunks))


def top10_overlap(a: np.ndarray, b: np.ndarray) -> float:
    def neighbours(vectors):
        scores = vectors @ vectors.T
        np.fill_diagonal(scores, -np.inf)
        return np.argsort(-scores, axis=1, kind="stable")[:, :10]

    first, second = neighbours(a), neighbours(b)
    return float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(first, second)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", default=str(COLLECTION))
    parser.add_argument("--images", type=int, default=512, help="0: every image of the collection")
    args = parser.parse_args()
    machine_snapshot()

    import dataclasses

    import datasets
    import torch

    from retrieval.collection import local_rows, row_text
    from retrieval.embedders import get_embedder
    from retrieval.image_pass import read_images
    from retrieval.images import load_image
    from retrieval.index import _ImageEmbedding, _Plan

    rows = local_rows(args.collection)
    count = args.images or len(rows)
    step = max(1, len(rows) // count)
    sample = rows[::step][:count]  # spread over every category and source
    raw = datasets.Dataset.from_dict({"id": [row.id for row in sample],
                                      "image": [{"bytes": row.path.read_bytes(), "path": None} for row in sample]},
                                     features=datasets.Features({"id": datasets.Value("string"),
                                                                 "image": datasets.Image(decode=False)}))
    blobs, ids = [item["bytes"] for item in raw["image"]], raw["id"]
    in_memory = [dataclasses.replace(row, image_bytes=blob) for row, blob in zip(sample, blobs)]  # as a Hub row
    module = packaged_module()
    results, vectors = {}, {}

    def timed(label: str, run, models: int = 1) -> None:
        run(slice(0, 16))  # warm-up
        began = time.perf_counter()
        vectors[label] = run(slice(None))
        seconds = time.perf_counter() - began
        rate = models * len(blobs) / seconds
        results[label] = {"images": len(blobs), "models": models, "seconds": round(seconds, 2),
                          "images_per_second": round(rate, 1), "load_average": [round(x, 2) for x in _load()]}
        print(f"{label}: {rate:.1f} images/s (load {_load()[0]:.2f})", flush=True)

    def naive(part):
        chunks = []
        data, names = blobs[part], ids[part]
        for start in range(0, len(data), 16):
            images = [load_image(blob, item) for blob, item in zip(data[start:start + 16], names[start:start + 16])]
            chunks.append(_fp32_vectors(module, images, 16))
        return np.concatenate(chunks)

    def previous(part):
        with ThreadPoolExecutor(max_workers=1) as pool:
            images = list(pool.map(lambda pair: load_image(pair[0], pair[1], max_side=448),
                                   zip(blobs[part], ids[part])))
        return _fp32_vectors(module, images, 8)

    embedders = {name: get_embedder(name) for name in ("efficientnet-lite0", "xray-lite0")}
    bf16 = {name: embedder._bf16 for name, embedder in embedders.items()}  # noqa: SLF001 - the path measured

    def build_path(names: tuple[str, ...], fp32: bool = False):
        def run(part):
            rows = in_memory[part]
            plans = []
            for name in names:
                embedder = embedders[name]
                embedder._bf16 = bf16[name] and not fp32  # noqa: SLF001
                plans.append(_Plan(name, embedder, {}, 0.0))
            images = _ImageEmbedding(plans, skip_invalid=False)
            facts, _ = read_images(rows, sides=images.sides, thumbnails=True, on_chunk=images)
            keys = [facts[row.file_name].sha256 for row in rows]
            return {plan.name: np.stack([plan.computed[key] for key in keys]) for plan in plans}
        return run

    timed("naive loop (decode, resize, packaged module fp32, batch 16)", naive)
    timed("previous build path (1 decode thread at 448 px, packaged module, channels_last fp32, batch 8)",
          previous)
    current = (f"current build path, efficientnet-lite0 (folded, channels_last, batch 8, "
               f"{'bf16 after block 1' if bf16['efficientnet-lite0'] else 'fp32'})")
    timed(current, build_path(("efficientnet-lite0",)))
    timed("current build path in fp32, efficientnet-lite0", build_path(("efficientnet-lite0",), fp32=True))
    both = "current build path, efficientnet-lite0 + xray-lite0 from one decode (per model)"
    timed(both, build_path(("efficientnet-lite0", "xray-lite0")), models=2)
    timed("current build path in fp32, efficientnet-lite0 + xray-lite0 (per model)",
          build_path(("efficientnet-lite0", "xray-lite0"), fp32=True), models=2)

    overlaps = {}
    fp32_both = vectors["current build path in fp32, efficientnet-lite0 + xray-lite0 (per model)"]
    for name in embedders:
        overlaps[name] = round(top10_overlap(fp32_both[name], vectors[both][name]), 4)
        print(f"{name}: top-10 neighbour overlap, build path vs the same in fp32: {overlaps[name]:.4f} "
              f"(bar 0.95; {len(blobs)} images)")
    overlaps["efficientnet-lite0 vs the previous path"] = round(top10_overlap(
        vectors["previous build path (1 decode thread at 448 px, packaged module, channels_last fp32, batch 8)"],
        vectors[current]["efficientnet-lite0"]), 4)

    texts = sorted({row_text(row) for row in rows})
    minilm = get_embedder("minilm")
    encoder = minilm._model  # noqa: SLF001 - the benchmark switches the encoder's precision
    native = encoder._bf16
    text_rates = {}
    for label, run, use_bf16 in (("previous: fp32, texts in the given order", _encode_in_order, False),
                                 ("current: length-sorted, " + ("bf16 autocast" if native else "fp32"),
                                  lambda model, items: model.embed_texts(items), native)):
        encoder._bf16 = use_bf16
        minilm.embed_texts(texts[:32])
        began = time.perf_counter()
        out = run(minilm, texts)
        text_rates[label] = {"texts": len(texts), "vectors": out,
                             "texts_per_second": round(len(texts) / (time.perf_counter() - began), 1)}
        print(f"minilm {label}: {text_rates[label]['texts_per_second']} texts/s", flush=True)
    encoder._bf16 = native
    first, second = (value.pop("vectors") for value in text_rates.values())
    text_overlap = round(top10_overlap(first, second), 4)
    print(f"minilm: top-10 neighbour overlap of the {len(texts)} distinct texts, current vs fp32: {text_overlap}")

    naive_rate = results["naive loop (decode, resize, packaged module fp32, batch 16)"]["images_per_second"]
    table = [[label, figures["images"] * figures["models"], f"{figures['seconds']:.1f}",
              f"{figures['images_per_second']:.1f}", f"{figures['images_per_second'] / naive_rate:.2f}x"]
             for label, figures in results.items()]
    table += [[f"minilm {label}", figures["texts"], "", f"{figures['texts_per_second']:.1f}", ""]
              for label, figures in text_rates.items()]
    save("build_embedding", {"torch_threads": torch.get_num_threads(), "results": results,
                             "top10_overlap_vs_fp32": overlaps, "minilm": text_rates,
                             "minilm_top10_overlap_vs_fp32": text_overlap},
         ["path", "items", "seconds", "items/s", "vs naive"], table)


def _encode_in_order(minilm, texts: list[str]) -> np.ndarray:
    """The previous encoder: batches in the order given (each call is one batch: nothing to sort)."""
    size = minilm.batch_size
    return np.concatenate([minilm.embed_texts(texts[start:start + size]) for start in range(0, len(texts), size)])


def _load() -> tuple[float, float, float]:
    import os

    return os.getloadavg()


if __name__ == "__main__":
    main()
