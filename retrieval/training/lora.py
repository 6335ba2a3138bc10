"""Low-rank adapters (LoRA) on the anchored tail's three 1x1 convolutions, and their merge into plain conv weights.

Why: the other anchored fine-tuning issue 20 names. L2-SP (anchored.py) lets every tail weight move and pulls it
back by a penalty; here the tail's own weights stay frozen and each 1x1 conv (the last block's expand 192->1152
and project 1152->320, the head conv 320->1280) learns W + (alpha / r) B A, so the change is low-rank by
construction. Hand-written (a 1x1 conv is a matrix): peft would bring accelerate and more into the app's
dependencies for three convolutions. The adapters merge into ordinary conv weights, so a LoRA tail ships in the
existing tail format (model.safetensors 'tail.*', loaded by xray_network.apply_tail) with no embedder change.
"""

from __future__ import annotations

import copy
import math

RANK = 8  # fixed in advance (benchmarks/lora_tail.py), never tuned
ALPHA = 8.0  # scale alpha / rank = 1
LR = 1e-3  # AdamW, weight decay 0
CONVS = (("block", "_expand_conv"), ("block", "_project_conv"), ("", "conv"))  # (owner in the tail, attribute)


def _wrap(conv, rank: int, alpha: float):
    import torch

    class LowRankConv(torch.nn.Module):
        """conv(x) + (alpha / rank) * B(A(x)) for a frozen 1x1 stride-1 conv; A as peft/LoRA initialise it
        (kaiming_uniform_, a=sqrt(5)), B zeros: an untrained adapter adds exactly zero."""

        def __init__(self) -> None:
            super().__init__()
            out_channels, in_channels = conv.weight.shape[:2]
            if tuple(conv.weight.shape[2:]) != (1, 1) or tuple(conv.stride) != (1, 1) or conv.groups != 1:
                raise ValueError("low-rank adapters here are for 1x1, stride-1, ungrouped convolutions only")
            self.conv = conv.requires_grad_(False)
            self.a = torch.nn.Parameter(torch.empty(rank, in_channels))
            torch.nn.init.kaiming_uniform_(self.a, a=math.sqrt(5))
            self.b = torch.nn.Parameter(torch.zeros(out_channels, rank))
            self.scale = alpha / rank

        def forward(self, x):
            low = torch.nn.functional.conv2d(x, self.a.to(x.dtype)[:, :, None, None])
            return self.conv(x) + self.scale * torch.nn.functional.conv2d(low, self.b.to(x.dtype)[:, :, None, None])

        def merged(self):
            """The frozen conv with the adapter folded into its weight: W + scale * B A."""
            plain = copy.deepcopy(self.conv)
            with torch.no_grad():
                delta = (self.scale * (self.b.double() @ self.a.double())).to(plain.weight.dtype)
                plain.weight.copy_(plain.weight + delta[:, :, None, None])
            return plain

    return LowRankConv()


def _owner(tail, name: str):
    return getattr(tail, name) if name else tail


def adapt(tail, rank: int = RANK, alpha: float = ALPHA) -> list:
    """Freeze `tail` (anchored.make_tail's) and put an adapter on each of its 1x1 convs, in place. Returns the
    adapters' parameters (the only trainable ones). Draws A from torch's global generator: seed it first."""
    tail.requires_grad_(False)
    for owner, attribute in CONVS:
        setattr(_owner(tail, owner), attribute, _wrap(getattr(_owner(tail, owner), attribute), rank, alpha))
    return [p for p in tail.parameters() if p.requires_grad]


def merged(tail):
    """A copy of an adapted tail with every adapter merged: the plain tail (same modules and state-dict keys as
    anchored.make_tail's), which is what ships."""
    plain = copy.deepcopy(tail)
    for owner, attribute in CONVS:
        setattr(_owner(plain, owner), attribute, getattr(_owner(plain, owner), attribute).merged())
    return plain.eval().requires_grad_(False)


def adapter_weights(tail, rank: int = RANK) -> int:
    """Trainable weights of the adapters on a plain tail: r * (in + out) per conv (Lite0's: 35,328 at rank 8)."""
    return sum(rank * sum(getattr(_owner(tail, o), a).weight.shape[:2]) for o, a in CONVS)
