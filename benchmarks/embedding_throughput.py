"""Embedding throughput per model (images/s, texts/s) at the batch size the index build uses, and MiniLM's
texts/s by batch size and torch thread count.

    .venv/bin/python benchmarks/embedding_throughput.py [--collection DIR] [--models a,b] [--images 256] [--texts 1024]
                                                        [--minilm-batches 16,32,64,128] [--minilm-threads 1,2]
                                                        [--only-minilm]

Inputs are real: images decoded from the collection beforehand (decoding is not timed), and the rows' metadata
texts (`collection.row_text`, what text models index), spread over the whole collection. One warm-up batch per
model is not timed. The MiniLM sweep embeds the same texts once per (threads, batch) pair, after one untimed
warm-up with that pair; the thread count is set with `torch.set_num_threads`, and the count torch picks on its
own (a fresh interpreter that only imports torch) is recorded beside it; at the largest thread count each batch
size is also timed with the texts sorted by length. The sweep's texts are distinct row texts (1,331 of the
2,364 rows' are), in the collection's order. At the best fp32 setting, three reduced-precision variants are measured
with how many of fp32's top-10 neighbours they keep (see minilm_variants): the build uses bf16 autocast where the
CPU computes bf16 natively.
Writes results/embedding_throughput.json.
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
    parser.add_argument("--minilm-batches", default="16,32,64,128", help="MiniLM batch sizes to sweep ('' = none)")
    parser.add_argument("--minilm-threads", default="1,2", help="torch thread counts for the MiniLM sweep")
    parser.add_argument("--only-minilm", action="store_true", help="only the MiniLM sweep")
    args = parser.parse_args()
    machine_snapshot()
    threads_at_import = _threads_at_import()

    import torch

    from retrieval.collection import local_rows, row_text
    from retrieval.embedders import IMAGE, TEXT, availability, embedder_spec, get_embedder, list_embedders
    from retrieval.images import load_image

    rows = local_rows(args.collection)
    texts = [row_text(row) for row in rows]
    unique = list(dict.fromkeys(texts))  # many rows share a text (the same label, no caption)
    sweep_texts = (unique[::max(1, len(unique) // args.texts)] * 2)[:args.texts]  # every category and source
    if args.only_minilm:
        args.images, args.models = 0, ""
    step = max(1, len(rows) // max(1, args.images))
    sample = rows[::step][:args.images]  # spread over every category and source
    images = [load_image(row.path) for row in sample]
    names = [name for name in args.models.split(",") if name] if args.models is not None else list_embedders()
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
    default_threads = torch.get_num_threads()
    sweep = minilm_sweep(sweep_texts, args.minilm_batches, args.minilm_threads) if args.minilm_batches else []
    torch.set_num_threads(default_threads)
    variants = minilm_variants(sweep_texts, unique, sweep) if sweep else []
    for point in sweep + variants:
        table_rows.append(["minilm", f"texts, {point['variant']}, {point['torch_threads']} torch "
                           f"thread(s)", point["batch_size"], point["items"], f"{point['seconds']:.1f}",
                           f"{point['items_per_second']:.1f}", f"{1000 / point['items_per_second']:.1f}"])
    save("embedding_throughput", {"torch_threads": default_threads, "torch_threads_at_import": threads_at_import,
                                  "results": results, "minilm_sweep": sweep, "minilm_variants": variants,
                                  "minilm_batch_size_registered": _registered_minilm_batch(),
                                  "note": "image decoding not timed; texts are the rows' metadata texts"},
         header, table_rows)


def minilm_sweep(texts: list[str], batches: str, threads: str) -> list[dict]:
    """MiniLM texts/s for every (torch threads, batch size) pair over the same texts, with the load average; at
    the largest thread count also with the texts sorted by length first (what sentence-transformers' `encode`
    does: a batch then pads to its own longest text, not to the longest of a random mix)."""
    import os

    import torch

    from retrieval.embedders import get_embedder

    embedder = get_embedder("minilm")
    embedder._model._bf16 = False  # noqa: SLF001 - the sweep is fp32; bf16 is one of minilm_variants
    counts = [int(t) for t in threads.split(",")]
    points = []
    for count in counts:
        torch.set_num_threads(count)
        for size in (int(b) for b in batches.split(",")):
            for ordered in (False, True) if count == max(counts) else (False,):
                embedder.batch_size = size  # an instance attribute: the class default stays as registered
                embedder.embed_texts(texts[:size])  # warm-up at this shape
                began = time.perf_counter()
                if ordered:  # the encoder sorts what it is given by length (the build's way)
                    embedder.embed_texts(texts)
                else:  # one call per batch: the texts in the given order
                    for start in range(0, len(texts), size):
                        embedder.embed_texts(texts[start:start + size])
                seconds = time.perf_counter() - began
                points.append({"variant": "fp32, length-sorted" if ordered else "fp32", "torch_threads": count,
                               "batch_size": size, "items": len(texts), "seconds": round(seconds, 2),
                               "items_per_second": round(len(texts) / seconds, 1),
                               "load_average": [round(x, 2) for x in os.getloadavg()]})
                print(f"minilm threads={count} batch={size} {points[-1]['variant']}: {len(texts) / seconds:.1f} "
                      f"texts/s (load {os.getloadavg()[0]:.2f})", flush=True)
    return points


def minilm_variants(texts: list[str], unique: list[str], sweep: list[dict]) -> list[dict]:
    """Reduced precision: bf16 autocast (what the build uses where native), bf16 weights and int8 dynamic
    quantisation of the Linear layers, at the best fp32 setting (texts in the collection's order), each with how
    well it keeps fp32's rankings: the share of the top-10 rows in common for the 44 evaluation queries over the
    collection's distinct row texts, and for each distinct text's neighbours among the others."""
    import copy
    import os

    import numpy as np
    import torch

    from retrieval.embedders import get_embedder
    from retrieval.evaluation.queries import load_queries

    best = max((p for p in sweep if p["variant"] == "fp32"), key=lambda p: p["items_per_second"])
    torch.set_num_threads(best["torch_threads"])
    embedder = get_embedder("minilm")
    embedder._model._bf16 = False  # noqa: SLF001 - fp32 is the reference; bf16 autocast is switched on below
    embedder.batch_size = best["batch_size"]
    queries = [q.text for q in load_queries()[1]]
    reference = embedder.embed_texts(unique), embedder.embed_texts(queries)
    encoder = embedder._model  # noqa: SLF001 - the benchmark swaps the torch module it measures
    module = encoder._model  # the transformers model (or the SentenceTransformer) inside the encoder
    out = []
    for label in ("bf16 autocast", "bf16 weights", "int8 dynamic"):
        if label == "bf16 weights":
            encoder._model = copy.deepcopy(module).to(torch.bfloat16)
        elif label == "int8 dynamic":
            encoder._model = torch.ao.quantization.quantize_dynamic(copy.deepcopy(module), {torch.nn.Linear},
                                                                    dtype=torch.qint8)
        encoder._bf16 = label == "bf16 autocast"  # the encoder's own switch (an outer autocast it would override)
        embedder.embed_texts(texts[:embedder.batch_size])
        began = time.perf_counter()
        embedder.embed_texts(texts)  # length-sorted by the encoder, as the fp32 reference
        seconds = time.perf_counter() - began
        rows = np.asarray(embedder.embed_texts(unique), dtype=np.float32)
        asked = np.asarray(embedder.embed_texts(queries), dtype=np.float32)
        encoder._model, encoder._bf16 = module, False
        out.append({"variant": label, "torch_threads": best["torch_threads"], "batch_size": best["batch_size"],
                    "items": len(texts), "seconds": round(seconds, 2),
                    "items_per_second": round(len(texts) / seconds, 1),
                    "query_top10_overlap": round(_overlap(reference[1] @ reference[0].T, asked @ rows.T), 4),
                    "row_top10_overlap": round(_overlap(reference[0] @ reference[0].T, rows @ rows.T, True), 4),
                    "load_average": [round(x, 2) for x in os.getloadavg()]})
        print(f"minilm {label}: {out[-1]['items_per_second']} texts/s, top-10 overlap with fp32: queries "
              f"{out[-1]['query_top10_overlap']}, rows {out[-1]['row_top10_overlap']}", flush=True)
    return out


def _overlap(before, after, skip_self: bool = False) -> float:
    import numpy as np

    if skip_self:
        np.fill_diagonal(before, -np.inf)
        np.fill_diagonal(after, -np.inf)
    first = np.argsort(-before, axis=1, kind="stable")[:, :10]
    second = np.argsort(-after, axis=1, kind="stable")[:, :10]
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(first.tolist(), second.tolist())]))


def _threads_at_import() -> int:
    """How many threads torch uses when nobody sets it: a fresh interpreter that only imports torch."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def _registered_minilm_batch() -> int:
    from retrieval.embedders.builtin import MiniLMEmbedder

    return MiniLMEmbedder.batch_size


if __name__ == "__main__":
    main()
