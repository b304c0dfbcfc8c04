"""PacGAN packing (Lin et al. 2018), for any discriminator: D judges ``pack`` samples jointly."""

from __future__ import annotations

from torch import Tensor, nn


def packed_shape(data_shape: tuple[int, ...], pack: int) -> tuple[int, ...]:
    """The inner discriminator's input shape: ``pack`` samples side by side in channels (or features)."""
    return (data_shape[0] * pack, *data_shape[1:])


def samples_per_input(discriminator: nn.Module) -> int:
    """How many samples make one input of ``discriminator``: ``pack`` for a :class:`Packed` one, else 1.

    Gradient penalties take their norms per such input (the packed critic's domain is the packed input)."""
    if isinstance(discriminator, Packed):
        return discriminator.pack
    return int(getattr(discriminator, "samples_per_input", 1))  # a wrapper that says (losses.Through)


class Packed(nn.Module):
    """Wraps a discriminator built for :func:`packed_shape`: samples ``k*i .. k*i+k-1`` of a batch of B are
    concatenated along channels (features for flat data) into one input; the output has B/k logits."""

    def __init__(self, discriminator: nn.Module, pack: int) -> None:
        super().__init__()
        self.net = discriminator
        self.pack = pack

    def forward(self, x: Tensor) -> Tensor:
        b = x.shape[0]
        if b % self.pack:
            raise ValueError(f"PacGAN packing of {self.pack}: the batch of {b} does not divide evenly")
        return self.net(x.reshape(b // self.pack, self.pack * x.shape[1], *x.shape[2:]))
