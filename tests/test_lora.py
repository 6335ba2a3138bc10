"""retrieval/training/lora.py: low-rank adapters on the anchored tail start exactly at the frozen tail, merge into
plain conv weights that give the adapter form's vectors and load as an ordinary tail, and a fit moves only them
(each conv's change has rank <= r). Synthetic maps: seconds, no images."""

from __future__ import annotations

import copy

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")

FEATURES = "gap+stages"


@pytest.fixture(scope="module")
def backbone():
    from retrieval.embedders import efficientnet

    return efficientnet.load_backbone()


def _inputs(n: int = 3, seed: int = 0):
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 192, 7, 7, generator=generator), torch.rand(n, 424, generator=generator)


def _adapted(backbone, seed: int = 0):
    import torch

    from retrieval.training import anchored, lora

    tail = anchored.make_tail(backbone, FEATURES).eval()
    adapted = copy.deepcopy(tail)
    torch.manual_seed(seed)
    params = lora.adapt(adapted)
    return tail, adapted.eval(), params


def test_an_untrained_adapter_tail_is_the_frozen_tail_exactly(backbone):
    import torch

    from retrieval.training import lora

    tail, adapted, params = _adapted(backbone)
    assert len(params) == 6 and sum(p.numel() for p in params) == lora.adapter_weights(tail) == 35_328
    assert not [n for n, p in adapted.named_parameters() if p.requires_grad and n.rsplit(".", 1)[-1] not in "ab"]
    maps, stages = _inputs()
    with torch.inference_mode():
        frozen = tail(maps, stages)
        assert torch.equal(adapted(maps, stages), frozen)
        assert torch.equal(lora.merged(adapted)(maps, stages), frozen)


def test_a_merged_tail_gives_the_adapter_vectors_and_loads_as_a_plain_tail(backbone):
    import torch

    from retrieval.embedders import efficientnet
    from retrieval.embedders.xray_network import apply_tail
    from retrieval.training import lora

    tail, adapted, _ = _adapted(backbone)
    with torch.no_grad():
        for name, p in adapted.named_parameters():
            if name.endswith(".b"):
                p.copy_(0.05 * torch.randn_like(p))
    merged = lora.merged(adapted)
    maps, stages = _inputs(4, seed=1)
    with torch.inference_mode():
        want, got, frozen = adapted(maps, stages), merged(maps, stages), tail(maps, stages)
    assert (want - frozen).abs().max() > 1e-2  # the adapters change the vectors ...
    assert (got - want).abs().max() < 1e-4 * max(1.0, float(want.abs().max()))  # ... and the merge keeps them
    plain, state = tail.state_dict(), merged.state_dict()
    assert list(state) == list(plain)
    changed = {k for k in state if not torch.equal(state[k], plain[k])}
    assert changed == {"block._expand_conv.weight", "block._project_conv.weight", "conv.weight"}
    model = efficientnet.load_backbone()
    apply_tail(model, state)
    assert torch.equal(model._conv_head.weight, merged.conv.weight)
    assert torch.equal(model._blocks[-1]._project_conv.weight, merged.block._project_conv.weight)


def test_a_fit_with_adapters_moves_only_the_1x1_convs_by_rank_r(backbone):
    import torch

    from retrieval.evaluation.rows import Item
    from retrieval.training import anchored, lora
    from retrieval.training.heads import HeadConfig

    n = 12
    items = [Item(str(i), f"{i}.png", "", "knee" if i % 2 else "chest", "", f"s{i % 3}", "") for i in range(n)]
    maps, stages = _inputs(n, seed=2)
    maps_views = torch.stack([maps, maps + 0.1 * torch.randn_like(maps)], dim=1).half().numpy()
    stages_views = np.stack([stages.numpy()] * 2, axis=1)
    frozen = anchored.make_tail(backbone, FEATURES).eval()
    with torch.inference_mode():
        x_clean = frozen(torch.from_numpy(maps_views[:, 0].astype(np.float32)), stages).numpy()
    config = HeadConfig(features=FEATURES, preprocessing="norm", head_dim=16, epochs=2, batch=8,
                        cross_source_positives=False)
    tail, _ = anchored.fit_anchored(backbone, items, np.arange(n), maps_views, stages_views, x_clean, config,
                                    FEATURES, bf16=False, adapters=True)
    before, after = frozen.state_dict(), tail.state_dict()
    assert list(after) == list(before)  # merged: the plain tail's format
    for key in before:
        if key in ("block._expand_conv.weight", "block._project_conv.weight", "conv.weight"):
            delta = (after[key] - before[key]).flatten(1).double()
            singular = torch.linalg.svdvals(delta)  # beyond rank r only the fp32 rounding of W + BA
            assert singular[0] > 0 and singular[lora.RANK] < 1e-4 * singular[0], key
        else:
            assert torch.equal(after[key], before[key]), key


def test_adapters_need_the_tail_and_lite0_lora_differs_from_lite0_anchored_by_them_alone():
    from dataclasses import replace

    from retrieval.training import variants

    with pytest.raises(ValueError, match="needs tail=True"):
        variants.fitter(variants.Variant("x", (variants.LITE0,), 16, lora=True), None, [])
    anchored = next(v for v in variants.VARIANTS if v.name == "lite0-anchored")
    assert variants.LORA_TAIL.name not in {v.name for v in variants.VARIANTS}
    assert replace(variants.LORA_TAIL, name=anchored.name, lora=False, description=anchored.description) == anchored
