"""ResNet G and D of SNGAN (Miyato et al. 2018) and WGAN-GP (Gulrajani et al. 2017, appendix), 16/32/64 px.

G: linear z → 4x4xC, one up-sampling residual block per doubling, BN-ReLU-conv3x3-tanh.
D: the optimized first block (down), down blocks to 8x8, two plain blocks, ReLU, global sum
pooling, linear. At 32 px that is the papers' CIFAR-10 net: 3 G blocks, 4 D blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.errors import ConfigError
from ganforge.nets.attention import SelfAttention
from ganforge.nets.conditional import DiscriminatorHead, generator_norm
from ganforge.nets.dcgan import stages
from ganforge.nets.layers import MinibatchStd, call, check_norm, maybe_sn, norm_layer


def _conv(c_in: int, c_out: int, k: int, sn: bool, gain: float = 2**0.5) -> nn.Module:
    conv = nn.Conv2d(c_in, c_out, k, 1, k // 2)
    nn.init.xavier_uniform_(conv.weight, gain)
    nn.init.zeros_(conv.bias)
    return maybe_sn(conv, sn)


def _norm(layer: nn.Module | None, x: Tensor, y: Tensor | None) -> Tensor:
    return x if layer is None else call(layer, x, y)


class UpBlock(nn.Module):
    """norm-ReLU-up-conv3x3-norm-ReLU-conv3x3 + up-conv1x1 shortcut; class-conditional norms with classes."""

    takes_labels = True

    def __init__(self, c_in: int, c_out: int, norm: str, num_classes: int, sn: bool) -> None:
        super().__init__()
        self.norm1 = generator_norm(norm, c_in, num_classes)
        self.conv1 = _conv(c_in, c_out, 3, sn)
        self.norm2 = generator_norm(norm, c_out, num_classes)
        self.conv2 = _conv(c_out, c_out, 3, sn)
        self.shortcut = _conv(c_in, c_out, 1, sn, gain=1.0)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        h = F.interpolate(F.relu(_norm(self.norm1, x, y)), scale_factor=2)
        h = self.conv2(F.relu(_norm(self.norm2, self.conv1(h), y)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2))


class DownBlock(nn.Module):
    """(norm-)ReLU-conv3x3-(norm-)ReLU-conv3x3(-avgpool) + shortcut; ``first``: the optimized block
    (no activation before the first conv, shortcut avgpool-conv1x1)."""

    def __init__(self, c_in: int, c_out: int, down: bool, norm: str, sn: bool, first: bool = False) -> None:
        super().__init__()
        self.down, self.first = down, first
        self.norm1 = None if first else norm_layer(norm, c_in)
        self.conv1 = _conv(c_in, c_out, 3, sn)
        self.norm2 = norm_layer(norm, c_out)
        self.conv2 = _conv(c_out, c_out, 3, sn)
        self.shortcut = _conv(c_in, c_out, 1, sn, gain=1.0) if down or c_in != c_out else None

    def forward(self, x: Tensor) -> Tensor:
        h = x if self.first else F.relu(_norm(self.norm1, x, None))
        h = self.conv2(F.relu(_norm(self.norm2, self.conv1(h), None)))
        if self.down:
            h = F.avg_pool2d(h, 2)
        if self.shortcut is None:
            return h + x
        if self.first:
            return h + self.shortcut(F.avg_pool2d(x, 2))
        s = self.shortcut(x)
        return h + (F.avg_pool2d(s, 2) if self.down else s)


class ResNetGenerator(nn.Module):
    """z → linear → 4x4 x ``width`` → up blocks → norm-ReLU-conv3x3-tanh; ``norm``: batch (the papers),
    layer, instance or none. With ``num_classes`` > 0 it is ``G(z, y)`` with conditional BN (the paper),
    and with ``label_input`` the one-hot label joins z too (classes appear in fewer steps)."""

    def __init__(
        self,
        data_shape: Sequence[int],
        z_dim: int = 128,
        width: int = 128,
        norm: str = "batch",
        spectral_norm: bool = False,
        num_classes: int = 0,
        label_input: bool = False,
        attention_res: Sequence[int] = (),
    ) -> None:
        super().__init__()
        check_norm(norm, "model.generator")
        self.z_dim, self.width, self.num_classes = z_dim, width, num_classes
        self.label_input = num_classes if label_input else 0
        linear = nn.Linear(z_dim + self.label_input, 16 * width)
        nn.init.xavier_uniform_(linear.weight)
        nn.init.zeros_(linear.bias)
        self.linear = maybe_sn(linear, spectral_norm)
        n = stages(data_shape, "resnet")
        self.blocks = nn.ModuleList(UpBlock(width, width, norm, num_classes, spectral_norm) for _ in range(n))
        # self-attention (SAGAN) after the block that reaches each resolution of model.attention_res
        self.attention = attention_layers(attention_res, [4 * 2 ** (i + 1) for i in range(n)], width, "G")
        self.norm = norm_layer(norm, width)
        self.out = _conv(width, data_shape[0], 3, spectral_norm, gain=1.0)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if self.label_input:
            z = torch.cat([z, F.one_hot(y, self.label_input).to(z.dtype)], 1)
        h = self.linear(z).view(z.shape[0], self.width, 4, 4)
        for block in self.blocks:
            h = block(h, y)
            if str(h.shape[-1]) in self.attention:
                h = self.attention[str(h.shape[-1])](h)
        return self.out(F.relu(_norm(self.norm, h, None))).tanh()


def attention_layers(resolutions: Sequence[int], reachable: list[int], width: int, net: str) -> nn.ModuleDict:
    """SAGAN self-attention blocks keyed by the resolution they act at (``model.attention_res``); a
    ConfigError for a resolution the net's blocks do not produce."""
    wrong = sorted(set(resolutions) - set(reachable))
    if wrong:
        raise ConfigError(
            f"model.attention_res={list(resolutions)}: {net}'s blocks produce {sorted(set(reachable))} px "
            f"features, not {wrong}"
        )
    return nn.ModuleDict({str(r): SelfAttention(width) for r in sorted(set(resolutions))})


class ResNetDiscriminator(nn.Module):
    """image → optimized block → down blocks to 8x8 → 2 plain blocks → ReLU → sum pool → linear.

    Spectral norm by default (SNGAN), ``norm`` (none by default; layer for WGAN-GP at 64 px) before
    every ReLU but the first; ``minibatch_std`` adds the minibatch-std channel before the last block.
    With ``num_classes`` > 0 it is ``D(x, y)``: a projection or ACGAN head (``cond``).
    """

    def __init__(
        self,
        data_shape: Sequence[int],
        width: int = 128,
        norm: str = "none",
        spectral_norm: bool = True,
        minibatch_std: bool = False,
        num_classes: int = 0,
        cond: str = "projection",
        attention_res: Sequence[int] = (),
    ) -> None:
        super().__init__()
        check_norm(norm, "model.discriminator")
        n = stages(data_shape, "resnet")
        reached = [data_shape[1] // 2 ** (i + 1) for i in range(n - 1)]  # by the down blocks, to 8 px
        attention = attention_layers(attention_res, reached, width, "D")
        down = [DownBlock(data_shape[0], width, True, norm, spectral_norm, first=True)]
        down += [DownBlock(width, width, True, norm, spectral_norm) for _ in range(n - 2)]
        blocks: list[nn.Module] = []
        for block, res in zip(down, reached, strict=True):  # + self-attention after its resolution
            blocks.append(block)
            if str(res) in attention:
                blocks.append(attention[str(res)])
        blocks.append(DownBlock(width, width, False, norm, spectral_norm))
        if minibatch_std:
            blocks.append(MinibatchStd())
        blocks.append(DownBlock(width + minibatch_std, width, False, norm, spectral_norm))
        self.blocks = nn.Sequential(*blocks)
        self.head = DiscriminatorHead(width, num_classes, cond, spectral_norm)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        return self.head(F.relu(self.blocks(x)).sum((2, 3)), y)
