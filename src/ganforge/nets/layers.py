"""Layers and initialisations shared by the architectures."""

from __future__ import annotations

from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


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
        from ganforge.errors import ConfigError

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
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
