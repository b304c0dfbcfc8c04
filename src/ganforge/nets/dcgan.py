"""DCGAN (Radford et al. 2016): transposed-conv generator and strided-conv discriminator, 16/32/64 px."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.errors import ConfigError
from ganforge.nets.conditional import DiscriminatorHead, generator_norm
from ganforge.nets.layers import (
    LabelledSequential,
    MinibatchStd,
    check_norm,
    dcgan_init,
    maybe_sn,
    norm_layer,
)

RESOLUTIONS = (16, 32, 64)


def stages(data_shape: Sequence[int], model: str = "dcgan") -> int:
    """Number of 2x resolution changes between 4x4 and the (square) image size."""
    if len(data_shape) != 3 or data_shape[1] != data_shape[2] or data_shape[1] not in RESOLUTIONS:
        raise ConfigError(
            f"model {model} makes square images of {'/'.join(map(str, RESOLUTIONS))} px, but the data has "
            f"shape {tuple(data_shape)}; set data.resolution to one of those (or use model=mlp)"
        )
    return int(math.log2(data_shape[1] // 4))


def spectral_norm_after_init(net: nn.Module, kinds: tuple[type[nn.Module], ...]) -> None:
    """Spectral normalisation (Miyato et al. 2018) of every ``kinds`` layer of ``net``, once initialised.

    Wrapping runs SN's power iteration on the weights as they are then; re-initialising afterwards
    would leave u, v stale (the first forward's effective spectral norm about 1.3 instead of 1).
    """
    for layer in [m for m in net.modules() if isinstance(m, kinds)]:
        maybe_sn(layer, True)


class DCGANGenerator(nn.Module):
    """z (1x1) → 4x4 → ... → image: ConvTranspose + norm + ReLU, tanh output.

    ``norm``: batch (the paper), layer, instance or none; ``spectral_norm`` wraps every conv. With
    ``num_classes`` > 0 it is ``G(z, y)``: every norm is class-conditional and, with ``label_input``,
    the one-hot label joins z (without it, classes take far longer to appear at DCGAN sizes).
    """

    def __init__(
        self,
        data_shape: Sequence[int],
        z_dim: int = 100,
        width: int = 64,
        norm: str = "batch",
        spectral_norm: bool = False,
        num_classes: int = 0,
        label_input: bool = True,
    ) -> None:
        super().__init__()
        check_norm(norm, "model.generator")
        self.z_dim = z_dim
        self.num_classes = num_classes
        n = stages(data_shape)
        ch = width * 2 ** (n - 1)
        layers: list[nn.Module] = []
        self.label_input = num_classes if label_input else 0
        c_in = z_dim + self.label_input  # z and the one-hot label (Mirza & Osindero 2014)
        for i in range(n):
            stride, pad = (1, 0) if i == 0 else (2, 1)  # 1x1 → 4x4, then doubling
            layers.append(nn.ConvTranspose2d(c_in, ch, 4, stride, pad, bias=norm == "none"))
            normal = generator_norm(norm, ch, num_classes)
            layers += [normal] if normal is not None else []
            layers.append(nn.ReLU(True))
            c_in, ch = ch, ch // 2
        layers += [nn.ConvTranspose2d(c_in, data_shape[0], 4, 2, 1), nn.Tanh()]
        self.net = LabelledSequential(*layers)
        dcgan_init(self)
        if spectral_norm:
            spectral_norm_after_init(self, (nn.ConvTranspose2d,))

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if self.label_input:
            z = torch.cat([z, F.one_hot(y, self.label_input).to(z.dtype)], 1)
        return self.net(z.view(z.shape[0], -1, 1, 1), y)


class DCGANDiscriminator(nn.Module):
    """image → ... → 4x4 → logit: strided Conv + norm + LeakyReLU(0.2), no norm on the first layer.

    ``norm`` is batch (the paper), layer, instance or none; ``spectral_norm`` wraps every layer
    (SNGAN's choice, usually with ``norm=none``); ``minibatch_std`` adds the minibatch-std channel
    at 4x4. With ``num_classes`` > 0 it is ``D(x, y)``: a projection or ACGAN head (``cond``).
    """

    def __init__(
        self,
        data_shape: Sequence[int],
        width: int = 64,
        norm: str = "batch",
        spectral_norm: bool = False,
        minibatch_std: bool = False,
        num_classes: int = 0,
        cond: str = "projection",
    ) -> None:
        super().__init__()
        check_norm(norm, "model.discriminator")
        n = stages(data_shape)
        ch = width
        layers: list[nn.Module] = [
            nn.Conv2d(data_shape[0], ch, 4, 2, 1),
            nn.LeakyReLU(0.2, True),
        ]
        for _ in range(n - 1):
            layers.append(nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=norm == "none"))
            normal = norm_layer(norm, ch * 2)
            layers += [normal] if normal is not None else []
            layers.append(nn.LeakyReLU(0.2, True))
            ch *= 2
        if minibatch_std:
            layers.append(MinibatchStd())
            ch += 1
        self.net = nn.Sequential(*layers)
        self.head = DiscriminatorHead(ch * 16, num_classes, cond)  # = a 4x4 conv to 1
        dcgan_init(self)
        if spectral_norm:  # every layer: the convs, the head's linear, projection embedding, classifier
            spectral_norm_after_init(self, (nn.Conv2d, nn.Linear, nn.Embedding))

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        return self.head(self.net(x).flatten(1), y)
