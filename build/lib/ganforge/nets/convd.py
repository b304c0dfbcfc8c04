"""A small strided-conv discriminator (the tutorial MLP-G / conv-D GAN)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ganforge.errors import ConfigError
from ganforge.nets.layers import activation, maybe_sn


class ConvDiscriminator(nn.Module):
    """image → [Conv 4x4 stride 2 + activation] per width → flatten → linear → one logit per sample."""

    def __init__(
        self,
        data_shape: Sequence[int],
        widths: Sequence[int] = (64, 128),
        act: str = "leaky_relu",
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        if len(data_shape) != 3:
            raise ConfigError(f"the conv discriminator needs images, not data of shape {tuple(data_shape)}")
        channels, height, width = data_shape
        layers: list[nn.Module] = []
        for w in widths:
            layers += [maybe_sn(nn.Conv2d(channels, w, 4, 2, 1), spectral_norm), activation(act)]
            channels, height, width = w, height // 2, width // 2
        if height < 1 or width < 1:
            raise ConfigError(f"{len(widths)} stride-2 convs leave nothing of {tuple(data_shape)[1:]} images")
        layers += [nn.Flatten(), maybe_sn(nn.Linear(channels * height * width, 1), spectral_norm)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(1)
