"""pix2pix PatchGAN D: Isola et al. 2017, "Image-to-Image Translation with Conditional Adversarial Networks".

A fully convolutional discriminator whose output is a grid of logits, each judging one patch of the
input (its receptive field): 70x70 with the paper's three stride-2 layers.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ganforge.errors import ConfigError
from ganforge.nets.layers import check_norm, dcgan_init, maybe_sn, translation_norm

Spec = tuple[int, int, int]  # (kernel span, stride, padding) of a conv along one axis


def _specs(module: nn.Module, dim: int) -> list[Spec]:
    """The conv layers of ``module`` in order, along ``dim`` (0: height, 1: width)."""
    return [
        (m.dilation[dim] * (m.kernel_size[dim] - 1) + 1, m.stride[dim], m.padding[dim])
        for m in module.modules()
        if isinstance(m, nn.Conv2d)
    ]


def _out_size(size: int, specs: Sequence[Spec]) -> int:
    """The spatial size after the layers ``specs``; < 1 once a layer has no room left."""
    for span, stride, pad in specs:
        size = (size + 2 * pad - span) // stride + 1
        if size < 1:
            break
    return size


def _paper_specs(n_layers: int) -> list[Spec]:
    """The layers of a PatchGAN with ``n_layers`` stride-2 convs, without building it."""
    return [(4, 2, 1)] * n_layers + [(4, 1, 1)] * 2


class PatchGANDiscriminator(nn.Module):
    """image → (N, 1, h, w) raw logits, one per patch: C64-C128-C256-C512 then a conv to one channel.

    The first 4x4 conv (stride 2, ``width`` channels, no norm) and ``n_layers`` - 1 more stride-2 4x4
    convs doubling the width (capped at ``max_width``), then a stride-1 4x4 conv with norm and a
    stride-1 4x4 conv to one channel; padding 1, LeakyReLU 0.2. The grid is ``size / 2**n_layers - 2``
    on a side (30x30 at 256 px with ``n_layers=3``); receptive field 16/34/70/142/286 for ``n_layers``
    1..5 (:meth:`receptive_field`).

    ``data_shape`` is D's input: for paired translation the source and target channels concatenated.
    ``norm``: batch (the paper), instance (without affine parameters, as the authors' code), layer or
    none; ``spectral_norm`` wraps every conv (Miyato et al. 2018). Convs have a bias only where no norm
    follows. Weights are initialised N(0, 0.02).
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        width: int = 64,
        n_layers: int = 3,
        max_width: int = 512,
        norm: str = "batch",
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        check_norm(norm, "model.discriminator")
        if len(data_shape) != 3:
            raise ConfigError(
                f"the PatchGAN discriminator judges images (C, H, W), got shape {tuple(data_shape)}"
            )
        if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
            raise ConfigError(f"model.discriminator.n_layers must be a positive integer, got {n_layers!r}")
        if width < 1 or max_width < width:
            raise ConfigError(
                f"model.discriminator: need 1 <= width <= max_width, got {width} and {max_width}"
            )

        def block(c_in: int, c_out: int, stride: int, normed: bool) -> list[nn.Module]:
            layer = translation_norm(norm, c_out) if normed else None
            conv = nn.Conv2d(c_in, c_out, 4, stride, 1, bias=layer is None)
            return [
                maybe_sn(conv, spectral_norm),
                *([layer] if layer is not None else []),
                nn.LeakyReLU(0.2, True),
            ]

        chans = [min(width * 2**i, max_width) for i in range(n_layers + 1)]
        layers = block(data_shape[0], chans[0], 2, False)
        for i in range(1, n_layers):
            layers += block(chans[i - 1], chans[i], 2, True)
        layers += block(chans[-2], chans[-1], 1, True)
        layers.append(maybe_sn(nn.Conv2d(chans[-1], 1, 4, 1, 1), spectral_norm))
        self.net = nn.Sequential(*layers)
        self.n_layers = n_layers
        self._check_fits(tuple(data_shape[1:]))
        dcgan_init(self)

    def _check_fits(self, size: tuple[int, int]) -> None:
        grid = self.output_grid(size)
        if min(grid) >= 1:
            return
        fitting = [
            n for n in range(1, self.n_layers) if min(_out_size(s, _paper_specs(n)) for s in size) >= 1
        ]
        advice = f"use n_layers <= {fitting[-1]}" if fitting else "no PatchGAN fits, use larger images"
        raise ConfigError(
            f"model.discriminator.n_layers={self.n_layers} is too large for {size[0]}x{size[1]} inputs "
            f"(the PatchGAN grid would be empty); {advice}"
        )

    def output_grid(self, size: tuple[int, int]) -> tuple[int, int]:
        """(h, w) of the logit grid for inputs of spatial size ``size`` (< 1 where it does not fit)."""
        return _out_size(size[0], _specs(self, 0)), _out_size(size[1], _specs(self, 1))

    def receptive_field(self) -> int:
        """Side of the input patch one output logit sees, walked through the conv layers: each adds
        (kernel - 1) times the product of the strides before it."""
        field, jump = 1, 1
        for span, stride, _ in _specs(self, 0):
            field += (span - 1) * jump
            jump *= stride
        return field

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
