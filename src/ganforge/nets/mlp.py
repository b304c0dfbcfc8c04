"""Fully connected generator and discriminator (the classic tutorial GANs and the 2D toy setups)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from ganforge.errors import ConfigError
from ganforge.nets.layers import activation, check_norm, maybe_sn, norm_layer

MLP_NORMS = ("none", "batch", "layer")
MLP_INITS = ("default", "normal_0.02")


def init_mlp(net: nn.Module, init: str, where: str) -> None:
    """Weight initialisation by name: ``default`` keeps torch's (Kaiming-uniform weights, uniform biases);
    ``normal_0.02``: every linear weight (maxout pieces included) N(0, 0.02), biases 0, norm scales 1 and
    shifts 0 (PacGAN's 2D code: ``weights_init=IsotropicGaussian(0.02)``, ``biases_init=Constant(0)``;
    fjxmlzn/PacGAN synthetic_data_experiments/2DRing_GAN&PacGAN/config.py and 2DGrid_GAN&PacGAN/
    pacgan_task.py, with Blocks' BatchNormalization initialised to scale 1, shift 0)."""
    if init not in MLP_INITS:
        raise ConfigError(f"{where}.init={init!r}: choose one of {', '.join(MLP_INITS)}")
    if init == "default":
        return
    for m in net.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm1d | nn.LayerNorm) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class Maxout(nn.Module):
    """A maxout unit layer (Goodfellow et al. 2013): ``pieces`` linear maps per output, the max over them."""

    def __init__(self, fan_in: int, fan_out: int, pieces: int, sn: bool = False) -> None:
        super().__init__()
        self.pieces = pieces
        self.linear = maybe_sn(nn.Linear(fan_in, fan_out * pieces), sn)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x).unflatten(1, (-1, self.pieces)).amax(2)


def _mlp(
    sizes: Sequence[int], act: str, sn: bool = False, norm: str = "none", pieces: int = 0
) -> list[nn.Module]:
    """Hidden layers: linear, norm, activation; ``act=maxout``: a maxout layer of ``pieces``, then norm."""
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=False):
        if act == "maxout":
            layers.append(Maxout(fan_in, fan_out, pieces, sn))
        else:
            layers.append(maybe_sn(nn.Linear(fan_in, fan_out), sn))
        normal = norm_layer(norm, fan_out, dims=0)
        layers += [normal] if normal is not None else []
        if act != "maxout":
            layers.append(activation(act))
    return layers


def _check_norm(norm: str, where: str) -> None:
    check_norm(norm, where)
    if norm not in MLP_NORMS:
        raise ConfigError(f"{where}.norm={norm} needs images; the MLP takes {', '.join(MLP_NORMS)}")


class MLPGenerator(nn.Module):
    """z → hidden layers → data; tanh output for images (in [-1, 1]), linear for points; ``norm``: none,
    batch or layer (per hidden layer); ``init``: default (torch's) or normal_0.02 (:func:`init_mlp`)."""

    def __init__(
        self,
        data_shape: Sequence[int],
        z_dim: int = 64,
        hidden: Sequence[int] = (128, 128),
        act: str = "leaky_relu",
        norm: str = "none",
        init: str = "default",
    ) -> None:
        super().__init__()
        _check_norm(norm, "model.generator")
        self.z_dim = z_dim
        self.data_shape = tuple(data_shape)
        out = math.prod(self.data_shape)
        layers = _mlp([z_dim, *hidden], act, norm=norm) + [nn.Linear(([z_dim, *hidden])[-1], out)]
        if len(self.data_shape) == 3:
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)
        init_mlp(self, init, "model.generator")

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(z.shape[0], *self.data_shape)


class MLPDiscriminator(nn.Module):
    """data → hidden layers → one logit per sample; ``norm``: none, batch or layer (per hidden layer);
    ``act=maxout``: maxout layers of ``maxout_pieces`` (Goodfellow et al. 2013; PacGAN's toy D);
    ``init``: default (torch's) or normal_0.02 (:func:`init_mlp`)."""

    def __init__(
        self,
        data_shape: Sequence[int],
        hidden: Sequence[int] = (128, 128),
        act: str = "leaky_relu",
        spectral_norm: bool = False,
        norm: str = "none",
        maxout_pieces: int = 5,
        init: str = "default",
    ) -> None:
        super().__init__()
        _check_norm(norm, "model.discriminator")
        if act == "maxout" and (not isinstance(maxout_pieces, int) or maxout_pieces < 2):
            raise ConfigError(
                f"model.discriminator.maxout_pieces must be an integer >= 2, got {maxout_pieces!r}"
            )
        sizes = [math.prod(data_shape), *hidden]
        # another init: spectral norm wraps the layers once initialised (else its u, v would be stale)
        sn_now = spectral_norm and init == "default"
        self.net = nn.Sequential(
            *_mlp(sizes, act, sn_now, norm, maxout_pieces),
            maybe_sn(nn.Linear(sizes[-1], 1), sn_now),
        )
        init_mlp(self, init, "model.discriminator")
        if spectral_norm and not sn_now:
            for layer in [m for m in self.net.modules() if isinstance(m, nn.Linear)]:
                maybe_sn(layer, True)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1)).squeeze(1)
