"""Model passes as frozen TorchScript traces (embedders/tracing.py) against the same models run eagerly: MiniLM on a
hybrid query's two texts (the expanded and the typed query), EfficientNet-Lite0 on one query image (bf16 after the
first block, as efficientnet-lite0 and xray-lite0 run it here) and on a build batch of 8.

    .venv/bin/python benchmarks/traced_passes.py [--rounds 30]

Why: at batch 1 a pass is short enough that its Python (module calls, transformers' wrappers) is a large share of
it. The two forms run interleaved, round by round, on the same inputs, so both see the same load: wall-clock
median per pass and this process's CPU time; every output of the traced form is compared with the eager one, bit
for bit. Inputs: a query of typical length, expanded and as typed, and 8 real radiographs of the collection.
Writes results/traced_passes.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from common import COLLECTION, machine_snapshot, save

TEXTS = ["knee arthritis osteoarthritis arthritic joint", "knee arthritis"]  # a query expanded, and as typed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--collection", default=str(COLLECTION))
    args = parser.parse_args()
    machine_snapshot()

    import torch

    from retrieval.collection import local_rows
    from retrieval.embedders import efficientnet, get_embedder
    from retrieval.embedders.builtin import MeanPooledEncoder, _minilm_bf16, _minilm_location
    from retrieval.images import load_image

    location = _minilm_location()[0]
    traced_text = MeanPooledEncoder(location, "cpu", 256, bf16=_minilm_bf16())
    eager_text = MeanPooledEncoder(location, "cpu", 256, bf16=_minilm_bf16())
    eager_text._trace = (eager_text._model, eager_text._bf16, None)  # as where tracing fails
    rows = local_rows(args.collection)
    images = [load_image(row.path) for row in rows[::max(1, len(rows) // 8)][:8]]
    batch = get_embedder("efficientnet-lite0")._tensor(images)
    model, bf16 = efficientnet.load_backbone(), efficientnet.bf16_here()
    efficientnet.keep_bf16_weights(model)
    cases = {  # name -> (traced, eager)
        "MiniLM, a hybrid query's two texts": (lambda: traced_text.encode(TEXTS, 16),
                                               lambda: eager_text.encode(TEXTS, 16)),
        "EfficientNet-Lite0, 1 image (a query)": (lambda: efficientnet.inference_pooled(model, batch[:1], bf16),
                                                  lambda: efficientnet.pooled_features(model, batch[:1], bf16)),
        "EfficientNet-Lite0, 8 images (a build batch)": (lambda: efficientnet.inference_pooled(model, batch, bf16),
                                                         lambda: efficientnet.pooled_features(model, batch, bf16)),
    }
    results, rows_out = [], []
    with torch.inference_mode():
        for name, (traced, eager) in cases.items():
            same = np.array_equal(np.asarray(traced()), np.asarray(eager()))  # also the warm-up (and the trace)
            wall, cpu = {"traced": [], "eager": []}, {"traced": [], "eager": []}
            for r in range(args.rounds):
                for form, run in (("traced", traced), ("eager", eager))[::1 if r % 2 else -1]:
                    began, began_cpu = time.perf_counter(), time.process_time()
                    run()
                    wall[form].append(time.perf_counter() - began)
                    cpu[form].append(time.process_time() - began_cpu)
            entry = {"pass": name, "bit_identical": bool(same), "rounds": args.rounds,
                     **{f"{form}_median_ms": round(1000 * float(np.median(wall[form])), 2) for form in wall},
                     **{f"{form}_cpu_ms": round(1000 * float(np.mean(cpu[form])), 2) for form in cpu}}
            results.append(entry)
            rows_out.append([name, f"{entry['traced_median_ms']:.2f}", f"{entry['eager_median_ms']:.2f}",
                             f"{entry['traced_cpu_ms']:.2f}", f"{entry['eager_cpu_ms']:.2f}", str(same)])
    save("traced_passes", {"torch_threads": torch.get_num_threads(), "bf16": bf16, "results": results},
         ["pass", "traced median ms", "eager median ms", "traced CPU ms", "eager CPU ms", "bit for bit"], rows_out)


if __name__ == "__main__":
    main()
