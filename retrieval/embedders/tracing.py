"""Inference passes as frozen TorchScript traces: the same kernels on the same weights, so the same outputs bit
for bit, without the Python of each pass (module calls, and transformers' wrappers around a text model's layers).

Why: at batch 1 that Python was about a third of a hybrid query's MiniLM pass (8.1 → 5.6 ms here) and a fifth of
an EfficientNet-Lite0 query image's (8.7 → 7.0 ms; benchmarks/traced_passes.py, docs/performance.md). Only for
models whose weights are final: a trace holds the weights it saw, so training code never goes through here.

torch marks TorchScript deprecated in favour of torch.export, whose graph ran MiniLM no faster than the eager
model here; torch is pinned (requirements.txt), and where tracing fails (a torch without it, a model it cannot
follow) the caller runs its model eagerly, with the same results.
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence


def frozen_trace(forward, example: Sequence) -> Callable | None:
    """`forward` (a torch.nn.Module in eval mode) traced on the `example` tensors and frozen; None where that fails.
    A trace keeps the branches its example took: the caller picks an example that takes the general one."""
    import torch

    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # the deprecation notice, and the tracer's notes on fixed branches
            return torch.jit.freeze(torch.jit.trace(forward.eval(), tuple(example), check_trace=False))
    except Exception:  # noqa: BLE001 - any failure leaves the eager model, which gives the same results
        return None


__all__ = ["frozen_trace"]
