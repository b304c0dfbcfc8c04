"""DCGAN (Radford et al. 2016): transposed-conv generator and strided-conv discriminator, 16/32/64 px."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from ganforge.errors import ConfigError
from ganforge.nets.layers import dcgan_init, maybe_sn

RESOLUTIONS = (16, 32, 64)


def _stages(data_shape: Sequence[int]) -> int:
    """Number of 2x resolution changes between 4x4 and the image size."""
    if len(data_shape) != 3 or data_shape[1] != data_shape[2] or data_shape[1] not in RESOLUTIONS:
        raise ConfigError(
            f"model dcgan makes square images of {'/'.join(map(str, RESOLUTIONS))} px, but the data has "
            f"shape {tuple(data_shape)}; set data.resolution to one of those (or use model=mlp)"
        )
    return int(math.log2(data_shape[1] // 4))


class DCGANGenerator(nn.Module):
    """z (1x1) → 4x4 → ... → image: ConvTranspose + BatchNorm + ReLU, tanh output."""

    def __init__(self, data_shape: Sequence[int], z_dim: int = 100, width: int = 64) -> None:
        super().__init__()
        self.z_dim = z_dim
        n = _stages(data_shape)
        ch = width * 2 ** (n - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(z_dim, ch, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ch),
            nn.ReLU(True),
        ]
        for _ in range(n - 1):
            layers += [
                nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ch // 2),
                nn.ReLU(True),
            ]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, data_shape[0], 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z.view(z.shape[0], -1, 1, 1))


class DCGANDiscriminator(nn.Module):
    """image → ... → 4x4 → logit: strided Conv + norm + LeakyReLU(0.2), no norm on the first layer.

    ``norm`` is ``batch`` (the DCGAN paper), ``layer`` or ``none``; ``spectral_norm`` wraps
    every conv (SNGAN's choice, usually with ``norm=none``).
    """

    def __init__(
        self, data_shape: Sequence[int], width: int = 64, norm: str = "batch", spectral_norm: bool = False
    ) -> None:
        super().__init__()
        if norm not in ("batch", "layer", "none"):
            raise ConfigError(f"model.discriminator.norm must be batch, layer or none, got {norm!r}")
        n = _stages(data_shape)
        ch = width
        layers: list[nn.Module] = [
            maybe_sn(nn.Conv2d(data_shape[0], ch, 4, 2, 1), spectral_norm),
            nn.LeakyReLU(0.2, True),
        ]
        for _ in range(n - 1):
            layers.append(maybe_sn(nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=norm == "none"), spectral_norm))
            if norm == "batch":
                layers.append(nn.BatchNorm2d(ch * 2))
            elif norm == "layer":
                layers.append(nn.GroupNorm(1, ch * 2))
            layers.append(nn.LeakyReLU(0.2, True))
            ch *= 2
        layers.append(maybe_sn(nn.Conv2d(ch, 1, 4, 1, 0), spectral_norm))
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten()
