"""Layers and initialisations shared by the architectures."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from ganforge.errors import ConfigError


def maybe_sn(layer: nn.Module, enabled: bool) -> nn.Module:
    """Spectral normalisation (Miyato et al. 2018) of ``layer``'s weight when ``enabled``."""
    return spectral_norm(layer) if enabled else layer


def activation(name: str) -> nn.Module:
    """An activation by name: ``leaky_relu`` (slope 0.2), ``relu``, ``elu``, ``tanh``, ``silu``."""
    table = {
        "leaky_relu": lambda: nn.LeakyReLU(0.2),
        "relu": nn.ReLU,
        "elu": nn.ELU,
        "tanh": nn.Tanh,
        "silu": nn.SiLU,
    }
    if name not in table:
        raise ConfigError(f"unknown activation {name!r}; choose one of {sorted(table)}")
    return table[name]()


def dcgan_init(module: nn.Module) -> None:
    """DCGAN initialisation (Radford et al. 2016): conv/linear weights N(0, 0.02), norm scales N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            weight = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
            nn.init.normal_(weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


NORMS = ("batch", "layer", "instance", "none")


def check_norm(norm: str, where: str) -> None:
    """A ConfigError unless ``norm`` is a feature normalisation; spectral norm is a separate flag."""
    if norm == "spectral":
        raise ConfigError(
            f"{where}.norm=spectral: spectral normalisation is the flag {where}.spectral_norm=true "
            f"(it wraps the weights and combines with any norm): {where}.norm=none {where}.spectral_norm=true"
        )
    if norm not in NORMS:
        raise ConfigError(f"{where}.norm must be one of {', '.join(NORMS)}, got {norm!r}")


def norm_layer(kind: str, channels: int, dims: int = 2, affine: bool = True) -> nn.Module | None:
    """Feature normalisation by name over ``dims`` spatial dims (0: features only); None for ``none``.

    ``layer`` normalises each sample over all its features (GroupNorm with one group for images),
    ``instance`` each channel of each sample (images only).
    """
    if kind == "none":
        return None
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=affine) if dims else nn.BatchNorm1d(channels, affine=affine)
    if kind == "layer":
        if dims:
            return nn.GroupNorm(1, channels, affine=affine)
        return nn.LayerNorm(channels, elementwise_affine=affine)
    if kind == "instance" and dims:
        return nn.InstanceNorm2d(channels, affine=affine)
    raise ConfigError(f"norm={kind!r} does not apply here; choose one of {', '.join(NORMS)}")


def translation_norm(kind: str, channels: int) -> nn.Module | None:
    """:func:`norm_layer` of the pix2pix/CycleGAN nets: instance norm without affine parameters, as
    in the authors' code; None for ``none``."""
    return norm_layer(kind, channels, affine=kind != "instance")


def call(layer: nn.Module, x: Tensor, y: Tensor | None) -> Tensor:
    """``layer(x, y)`` for layers that take class labels (``takes_labels``), else ``layer(x)``."""
    return layer(x, y) if getattr(layer, "takes_labels", False) else layer(x)


class LabelledSequential(nn.Sequential):
    """``nn.Sequential`` that hands the class labels ``y`` to the layers that take them."""

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:  # type: ignore[override]
        for layer in self:
            x = call(layer, x, y)
        return x


class MinibatchStd(nn.Module):
    """Minibatch standard deviation (Karras et al. 2018): one more channel, the mean std over a group.

    Samples ``i, i + B/G, i + 2B/G, ...`` form a group of ``group_size`` (the whole batch when it does
    not divide the batch); the channel holds, for every sample, the std over its group averaged over
    features and positions.
    """

    def __init__(self, group_size: int = 4) -> None:
        super().__init__()
        self.group_size = group_size

    def forward(self, x: Tensor) -> Tensor:
        b = x.shape[0]
        g = min(self.group_size, b)
        if b % g:
            g = b
        groups = x.reshape(g, b // g, *x.shape[1:])
        std = (groups.var(0, unbiased=False) + 1e-8).sqrt().flatten(1).mean(1)  # (B/G,)
        channel = std.repeat(g).view(b, 1, *([1] * (x.dim() - 2))).expand(b, 1, *x.shape[2:])
        return torch.cat([x, channel.to(x.dtype)], 1)
