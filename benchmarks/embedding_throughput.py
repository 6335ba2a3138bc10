"""Embedding throughput per model (images/s, texts/s) at the batch size the index build uses.

    .venv/bin/python benchmarks/embedding_throughput.py [--collection DIR] [--models a,b] [--images 256] [--texts 1024]

Inputs are real: images decoded from the collection beforehand (decoding is not timed), and the rows' metadata
texts (what text models index). One warm-up batch per model is not timed. Writes results/embedding_throughput.json.
"""

from __future__ import annotations

import argparse
import time

from common import COLLECTION, machine_snapshot, save


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", default=str(COLLECTION))
    parser.add_argument("--models", help="comma-separated (default: every registered model that can load here)")
    parser.add_argument("--images", type=int, default=256, help="images embedded per image model")
    parser.add_argument("--texts", type=int, default=1024, help="texts embedded per text model")
    args = parser.parse_args()
    machine_snapshot()

    import torch

    from retrieval.collection import local_rows, row_text
    from retrieval.embedders import IMAGE, TEXT, availability, embedder_spec, get_embedder, list_embedders
    from retrieval.images import load_image

    rows = local_rows(args.collection)
    texts = [row_text(row) for row in rows]
    step = max(1, len(rows) // args.images)
    sample = rows[::step][:args.images]  # spread over every category and source
    images = [load_image(row.path) for row in sample]
    names = args.models.split(",") if args.models else list_embedders()
    header = ["model", "input", "batch", "items", "seconds", "items/s", "ms/item"]
    results, table_rows = [], []
    for name in names:
        state = availability(name)
        if not state.ready:
            print(f"skip {name}: {state.reason}")
            results.append({"model": name, "skipped": state.reason})
            continue
        embedder = get_embedder(name)
        spec = embedder_spec(name)
        if embedder.needs_fit:
            embedder.fit(texts)
        for modality in (IMAGE, TEXT):
            if not spec.embeds(modality):
                continue
            items = images if modality == IMAGE else (texts * (1 + args.texts // len(texts)))[:args.texts]
            run = embedder.embed_images if modality == IMAGE else embedder.embed_texts
            size = embedder.batch_size
            run(items[:size])  # warm-up: lazy initialisation, caches
            began = time.perf_counter()
            for start in range(0, len(items), size):
                run(items[start:start + size])
            seconds = time.perf_counter() - began
            per_second = len(items) / seconds
            results.append({"model": name, "input": f"{modality}s", "batch_size": size, "items": len(items),
                            "seconds": round(seconds, 2), "items_per_second": round(per_second, 1)})
            table_rows.append([name, f"{modality}s", size, len(items), f"{seconds:.1f}", f"{per_second:.1f}",
                               f"{1000 / per_second:.1f}"])
            print(f"{name} {modality}s: {per_second:.1f}/s")
    save("embedding_throughput", {"torch_threads": torch.get_num_threads(), "results": results,
                                  "note": "image decoding not timed; texts are the rows' metadata texts"},
         header, table_rows)


if __name__ == "__main__":
    main()
