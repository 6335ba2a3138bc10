"""The build's embedding path, decode included, beside the previous path and a naive loop, in one process.

    .venv/bin/python benchmarks/build_embedding.py [--collection DIR] [--images 512] [--texts 2048]

Images are the collection's stored bytes read beforehand (disk not timed); everything after that is: decode,
resize, the model. Paths, each over the same images:
  - current build: `index._embed_rows` with the registered efficientnet-lite0 (one decode thread ahead of the
    model, JPEG draft decode at 448 px, channels_last, batches of 8, bf16 autocast where the CPU has it);
  - previous build: 2 decode threads at full size, NCHW fp32 batches of 32 (as the build ran before);
  - naive loop: decode, resize and a fp32 batch of 16, one after the other.
Rankings: the top-10 neighbours of every sampled image among the others, current vs previous (fp32) vectors;
the share they have in common must stay >= 0.95 for bf16 to be kept. MiniLM texts/s: current vs batch 64.
Writes results/build_embedding.json.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from common import COLLECTION, machine_snapshot, save

MEAN, STD = np.asarray((0.485, 0.456, 0.406), np.float32), np.asarray((0.229, 0.224, 0.225), np.float32)


def _fp32_vectors(model, images, batch_size: int):
    """The previous path's model step: NCHW fp32 batches."""
    import torch

    from retrieval.embedders import l2_normalise

    chunks = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = np.stack([np.asarray(image.convert("RGB").resize((224, 224), 3), np.float32) / 255.0
                              for image in images[start:start + batch_size]])
            tensor = torch.from_numpy(((batch - MEAN) / STD).transpose(0, 3, 1, 2).copy())
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
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--texts", type=int, default=2048)
    args = parser.parse_args()
    machine_snapshot()

    import datasets
    import torch

    from retrieval.collection import local_rows, row_text
    from retrieval.embedders import get_embedder
    from retrieval.images import load_image
    from retrieval.index import _embed_rows

    rows = local_rows(args.collection)
    step = max(1, len(rows) // args.images)
    sample = rows[::step][:args.images]  # spread over every category and source
    raw = datasets.Dataset.from_dict({"id": [row.id for row in sample],
                                      "image": [{"bytes": row.path.read_bytes(), "path": None} for row in sample]},
                                     features=datasets.Features({"id": datasets.Value("string"),
                                                                 "image": datasets.Image(decode=False)}))
    blobs = [item["bytes"] for item in raw["image"]]
    embedder = get_embedder("efficientnet-lite0")
    model = embedder._model.to(memory_format=torch.contiguous_format)  # the previous path's layout
    results, table = {}, []

    def timed(label: str, run) -> np.ndarray:
        run(slice(0, 16))  # warm-up
        began = time.perf_counter()
        vectors = run(slice(None))
        seconds = time.perf_counter() - began
        results[label] = {"images": len(blobs), "seconds": round(seconds, 2),
                          "images_per_second": round(len(blobs) / seconds, 1)}
        print(f"{label}: {len(blobs) / seconds:.1f} images/s")
        return vectors

    def previous(part):
        with ThreadPoolExecutor(max_workers=2) as pool:
            images = list(pool.map(lambda pair: load_image(pair[0], pair[1]), zip(blobs[part], raw["id"][part])))
        return _fp32_vectors(model, images, 32)

    def naive(part):
        chunks = []
        ids = raw["id"][part]
        data = blobs[part]
        for start in range(0, len(data), 16):
            images = [load_image(blob, item) for blob, item in zip(data[start:start + 16], ids[start:start + 16])]
            chunks.append(_fp32_vectors(model, images, 16))
        return np.concatenate(chunks)

    before = timed("previous build path (2 decode threads, NCHW fp32, batch 32)", previous)
    timed("naive loop (decode, resize, fp32 batch 16)", naive)
    embedder._model = model.to(memory_format=torch.channels_last)

    def current(part):
        positions = list(range(len(blobs)))[part]
        out = np.zeros((len(positions), embedder.dim), np.float32)
        _embed_rows(embedder, "image", raw.select(positions), list(range(len(positions))), out, False, "bench")
        return out

    after = timed(f"current build path (1 decode thread, channels_last, batch {embedder.batch_size}, "
                  f"{'bf16' if embedder._bf16 else 'fp32'})", current)
    overlap = top10_overlap(before, after)
    print(f"top-10 neighbour overlap, current vs fp32: {overlap:.3f}")

    texts = [row_text(row) for row in rows]
    texts = (texts * (1 + args.texts // len(texts)))[:args.texts]
    minilm = get_embedder("minilm")
    minilm.embed_texts(texts[:64])
    began = time.perf_counter()
    minilm.embed_texts(texts)
    text_rate = len(texts) / (time.perf_counter() - began)
    print(f"minilm: {text_rate:.1f} texts/s")

    naive_rate = results["naive loop (decode, resize, fp32 batch 16)"]["images_per_second"]
    for label, figures in results.items():
        table.append([label, figures["images"], f"{figures['seconds']:.1f}", f"{figures['images_per_second']:.1f}",
                      f"{figures['images_per_second'] / naive_rate:.2f}x"])
    table.append([f"minilm texts (batch {minilm.batch_size})", len(texts), "", f"{text_rate:.1f}", ""])
    save("build_embedding", {"torch_threads": torch.get_num_threads(), "results": results,
                             "top10_overlap_vs_fp32": round(overlap, 4), "minilm_texts_per_second": round(text_rate, 1)},
         ["path", "items", "seconds", "items/s", "vs naive"], table)


if __name__ == "__main__":
    main()
