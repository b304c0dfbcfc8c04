"""The modernised ResNet G and D of R3GAN (Huang et al. 2025, "The GAN is dead; long live the GAN!").

Residual blocks are inverted bottlenecks (1x1 expand, grouped kxk, 1x1 project, as in ConvNeXt-style
nets) with a biased leaky ReLU between the convolutions and no normalisation anywhere. Initialisation is
fix-up style (Zhang et al. 2019): the weights are drawn with std gain/√fan_in, the two inner layers of a
branch scaled down by L^(-1/4) for L blocks in the net, and the last layer of every branch starts at
zero, so that each block is the identity at initialisation. Resolution changes sit between stages
(bilinear resampling and a 1x1 convolution when the width changes); G starts from a learned 4x4 basis
modulated by a linear map of z, D ends with a depthwise 4x4 convolution to a vector and a linear head.

Checked against the authors' code (brownvc/R3GAN, ``R3GAN/Networks.py``, ``FusedOperators.py``,
``Resamplers.py``). As there, the only nonlinearities are the two biased leaky ReLUs inside each residual
branch: D's 1x1 input convolution (``ExtractionLayer``, gain 1) feeds the first stage directly, and its
depthwise 4x4 basis feeds the linear head directly (``DiscriminativeBasis``). Every weight is drawn
N(0, gain²/fan_in) (``MSRInitializer``), D's head and G's class embedding included. Deviations kept:

- resampling: G upsamples by bilinear interpolation (the reference's [1, 3, 3, 1] transposed filter,
  up to the border: edge replication here, zero padding there); D downsamples by a 2x2 average, the
  reference by the [1, 3, 3, 1] low-pass filter (an antialiased bilinear downsampling);
- D's head is ganforge's ``DiscriminatorHead``: the linear logit has a bias (the reference's none; it
  cancels in RpGAN's D(real) − D(fake)), and a conditional D adds a projection (or ACGAN) term to it,
  where the reference's last linear maps to an embedding dotted with the class's embedding alone;
- the grouped convolution is sized by ``group_width`` (channels per group), the reference's by the
  cardinality (groups): cardinality = expansion·width / group_width.

Earlier ganforge versions had a biased leaky ReLU (after a conv with gain √(2/(1+0.2²))) on D's input
and a leaky ReLU between D's basis and head, and PyTorch's default init of the head and embedding:
checkpoints from them do not load (D's ``input_act.bias`` is gone).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.errors import ConfigError
from ganforge.nets.conditional import DiscriminatorHead
from ganforge.nets.dcgan import stages

SLOPE = 0.2
GAIN = math.sqrt(2.0 / (1.0 + SLOPE**2))  # keeps the variance through a leaky ReLU of slope 0.2


def _init(layer: nn.Module, gain: float) -> nn.Module:
    """Weights ~ N(0, (gain/√fan_in)²) (He et al. 2015); gain 0 gives a zero layer (fix-up's last layer)."""
    fan_in = layer.weight[0].numel()
    nn.init.normal_(layer.weight, 0.0, gain / math.sqrt(fan_in)) if gain else nn.init.zeros_(layer.weight)
    return layer


def _conv(c_in: int, c_out: int, k: int = 1, groups: int = 1, gain: float = 1.0) -> nn.Conv2d:
    return _init(nn.Conv2d(c_in, c_out, k, padding=(k - 1) // 2, groups=groups, bias=False), gain)


class BiasedLeakyReLU(nn.Module):
    """A learned per-channel bias, then leaky ReLU (the layers before it have no bias)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x + self.bias.view(1, -1, 1, 1).to(x.dtype), SLOPE)


class InvertedBottleneck(nn.Module):
    """x + branch(x), branch: 1x1 conv to ``expansion``·c channels, act, grouped kxk conv (groups of
    ``group_width`` channels: the cardinality is expansion·c/group_width), act, 1x1 conv back to c
    channels, initialised to zero (the block starts as the identity)."""

    def __init__(self, channels: int, group_width: int, expansion: int, kernel: int, num_blocks: int) -> None:
        super().__init__()
        wide = channels * expansion
        if wide % group_width:
            raise ConfigError(
                f"model r3gan: {channels} channels x expansion {expansion} = {wide} are not divisible by "
                f"group_width={group_width} (the channels of each group of the grouped convolution)"
            )
        gain = GAIN * num_blocks ** (-1.0 / 4)  # variance scaling for 3 layers per branch: L^(-1/(2·3-2))
        self.expand = _conv(channels, wide, 1, gain=gain)
        self.act1 = BiasedLeakyReLU(wide)
        self.grouped = _conv(wide, wide, kernel, groups=wide // group_width, gain=gain)
        self.act2 = BiasedLeakyReLU(wide)
        self.project = _conv(wide, channels, 1, gain=0.0)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.project(self.act2(self.grouped(self.act1(self.expand(x)))))


def _widths(width: int | Sequence[int], n: int) -> list[int]:
    """Per-stage widths, lowest resolution (4x4) first: one int for every stage, or a list of ``n``."""
    if isinstance(width, int):
        return [width] * n
    widths = [int(w) for w in width]
    if len(widths) != n:
        raise ConfigError(f"model r3gan: width lists one value per stage (4x4 first): {n} here, got {widths}")
    return widths


class _Stages(nn.Module):
    """What G and D share: stage widths (4x4 first), ``blocks`` inverted bottlenecks per stage."""

    def __init__(
        self,
        data_shape: Sequence[int],
        width: int | Sequence[int],
        blocks: int,
        group_width: int,
        expansion: int,
        kernel: int,
    ) -> None:
        super().__init__()
        if blocks < 1 or expansion < 1 or group_width < 1 or kernel % 2 == 0:
            raise ConfigError(
                "model r3gan: blocks, expansion and group_width must be >= 1 and kernel odd, got "
                f"blocks={blocks} expansion={expansion} group_width={group_width} kernel={kernel}"
            )
        self.widths = _widths(width, stages(data_shape, "r3gan") + 1)
        total = blocks * len(self.widths)

        def stage(c: int) -> nn.Sequential:
            return nn.Sequential(
                *(InvertedBottleneck(c, group_width, expansion, kernel, total) for _ in range(blocks))
            )

        self.stages = nn.ModuleList(stage(c) for c in self.widths)


class R3GANGenerator(_Stages):
    """z (and a class embedding) → linear modulating a learned 4x4 basis → stages of inverted bottlenecks,
    each after a 2x bilinear upsampling (1x1 conv first when the width changes) → 1x1 conv to the image
    (linear output, no tanh: R3GAN's). ``num_classes`` > 0: G(z, y), the label's embedding joined to z."""

    def __init__(
        self,
        data_shape: Sequence[int],
        z_dim: int = 64,
        width: int | Sequence[int] = 64,
        blocks: int = 1,
        group_width: int = 16,
        expansion: int = 2,
        kernel: int = 3,
        num_classes: int = 0,
        embed_dim: int = 64,
    ) -> None:
        super().__init__(data_shape, width, blocks, group_width, expansion, kernel)
        self.z_dim, self.num_classes = z_dim, num_classes
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes else None
        if self.embed is not None:  # the reference's linear map of the one-hot label: std 1/√num_classes
            nn.init.normal_(self.embed.weight, 0.0, num_classes**-0.5)
        c0 = self.widths[0]
        self.basis = nn.Parameter(torch.randn(c0, 4, 4))
        self.modulation = _init(nn.Linear(z_dim + (embed_dim if num_classes else 0), c0, bias=False), 1.0)
        self.transitions = nn.ModuleList(
            _conv(a, b, 1) if a != b else nn.Identity()
            for a, b in zip(self.widths[:-1], self.widths[1:], strict=True)
        )
        self.out = _conv(self.widths[-1], data_shape[0], 1)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if self.embed is not None:
            if y is None:
                raise ValueError("a conditional generator needs the class labels: G(z, y)")
            z = torch.cat([z, self.embed(y)], 1)
        h = self.basis.unsqueeze(0) * self.modulation(z)[:, :, None, None]
        h = self.stages[0](h)
        for transition, stage in zip(self.transitions, self.stages[1:], strict=True):
            h = stage(F.interpolate(transition(h), scale_factor=2.0, mode="bilinear", align_corners=False))
        return self.out(h)


class R3GANDiscriminator(_Stages):
    """1x1 conv from the image → stages of inverted bottlenecks, each followed by a 2x downsampling (2x2
    average, then a 1x1 conv when the width changes) → depthwise 4x4 conv to a vector → linear logit,
    with no activation outside the residual branches (as the reference: none after the input conv, none
    between the basis and the head). ``num_classes`` > 0: D(x, y) with a projection or ACGAN head
    (``cond``)."""

    def __init__(
        self,
        data_shape: Sequence[int],
        width: int | Sequence[int] = 64,
        blocks: int = 1,
        group_width: int = 16,
        expansion: int = 2,
        kernel: int = 3,
        num_classes: int = 0,
        cond: str = "projection",
    ) -> None:
        super().__init__(data_shape, width, blocks, group_width, expansion, kernel)
        widths = self.widths[::-1]  # highest resolution first
        self.stages = self.stages[::-1]
        self.widths = widths
        self.input = _conv(data_shape[0], widths[0], 1)  # linear: no activation follows, gain 1
        self.transitions = nn.ModuleList(
            _conv(a, b, 1) if a != b else nn.Identity() for a, b in zip(widths[:-1], widths[1:], strict=True)
        )
        self.basis = _init(nn.Conv2d(widths[-1], widths[-1], 4, groups=widths[-1], bias=False), 1.0)
        self.head = DiscriminatorHead(widths[-1], num_classes, cond)
        _init(self.head.linear, 1.0)  # the reference's MSR init of the last linear (PyTorch's is √3 smaller)
        nn.init.zeros_(self.head.linear.bias)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        h = self.input(x)
        for stage, transition in zip(self.stages[:-1], self.transitions, strict=True):
            h = transition(F.avg_pool2d(stage(h), 2))
        h = self.stages[-1](h)
        return self.head(self.basis(h).flatten(1), y)
