"""Fully connected generator and discriminator (the classic tutorial GANs and the 2D toy setups)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from ganforge.nets.layers import activation, maybe_sn


def _mlp(sizes: Sequence[int], act: str, sn: bool = False) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=False):
        layers += [maybe_sn(nn.Linear(fan_in, fan_out), sn), activation(act)]
    return layers


class MLPGenerator(nn.Module):
    """z → hidden layers → data; tanh output for images (in [-1, 1]), linear for points."""

    def __init__(
        self,
        data_shape: Sequence[int],
        z_dim: int = 64,
        hidden: Sequence[int] = (128, 128),
        act: str = "leaky_relu",
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.data_shape = tuple(data_shape)
        out = math.prod(self.data_shape)
        layers = _mlp([z_dim, *hidden], act) + [nn.Linear(([z_dim, *hidden])[-1], out)]
        if len(self.data_shape) == 3:
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(z.shape[0], *self.data_shape)


class MLPDiscriminator(nn.Module):
    """data → hidden layers → one logit per sample."""

    def __init__(
        self,
        data_shape: Sequence[int],
        hidden: Sequence[int] = (128, 128),
        act: str = "leaky_relu",
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        sizes = [math.prod(data_shape), *hidden]
        self.net = nn.Sequential(
            *_mlp(sizes, act, spectral_norm), maybe_sn(nn.Linear(sizes[-1], 1), spectral_norm)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1)).squeeze(1)
