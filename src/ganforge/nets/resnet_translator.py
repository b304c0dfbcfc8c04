"""CycleGAN ResNet G: Zhu et al. 2017 (CycleGAN), the architecture of Johnson et al. 2016 (style transfer).

Zhu et al., "Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks";
Johnson et al., "Perceptual Losses for Real-Time Style Transfer and Super-Resolution".

A 7x7 convolution, two stride-2 convolutions down to a quarter of the resolution, a stack of residual
blocks there, two stride-2 transposed convolutions back up and a 7x7 convolution to the output
channels with tanh: c7s1-64, d128, d256, R256 x n_blocks, u128, u64, c7s1-C in the paper's notation.
"""

from __future__ import annotations

from torch import Tensor, nn

from ganforge.errors import ConfigError
from ganforge.nets.layers import check_norm, dcgan_init, translation_norm

PADDINGS = ("reflect", "zeros")


def _conv(c_in: int, c_out: int, kernel: int, padding: str, norm: str) -> list[nn.Module]:
    """A stride-1 ``kernel`` x ``kernel`` conv keeping the size (reflection or zero padding), then norm."""
    pad = kernel // 2
    layer = translation_norm(norm, c_out)
    if padding == "reflect":
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(pad),
            nn.Conv2d(c_in, c_out, kernel, bias=layer is None),
        ]
    else:
        layers = [nn.Conv2d(c_in, c_out, kernel, padding=pad, bias=layer is None)]
    return layers + ([layer] if layer is not None else [])


class ResidualBlock(nn.Module):
    """x + F(x), F = pad, 3x3 conv, norm, ReLU, [dropout], pad, 3x3 conv, norm (no ReLU after the sum)."""

    def __init__(self, channels: int, norm: str, dropout: float, padding: str) -> None:
        super().__init__()
        layers = _conv(channels, channels, 3, padding, norm) + [nn.ReLU(True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += _conv(channels, channels, 3, padding, norm)
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def _check_size(data_shape: tuple[int, ...], n_down: int, padding: str, norm: str) -> None:
    if len(data_shape) != 3:
        raise ConfigError(f"model=cyclegan translates images (C, H, W), got shape {tuple(data_shape)}")
    h, w = data_shape[1], data_shape[2]
    factor = 2**n_down
    res = f"{h}" if h == w else f"{h}x{w}"
    for size in (h, w):
        if size % factor:
            below, above = size // factor * factor, (size // factor + 1) * factor
            nearest = f"{below} or {above}" if below else f"{above}"
            raise ConfigError(
                f"model=cyclegan: the resolution {res} must be divisible by {factor} ({n_down} "
                f"downsamplings); resize the images to a multiple of {factor} (e.g. {nearest}) "
                f"or lower model.generator.n_down"
            )
    # the residual blocks' reflection padding of 1 needs >= 2 px at the bottleneck (and the 7x7 convs'
    # padding of 3 >= 4 px at full size), instance norm > 1 px (it zeroes a 1x1 map)
    need = max(2 * factor, 4 if padding == "reflect" else 0)
    blocked = [("reflection padding", "model.generator.padding=zeros")] if padding == "reflect" else []
    blocked += [("instance norm", "model.generator.norm=layer")] if norm == "instance" else []
    if min(h, w) < need and blocked:
        fixes = ["lower model.generator.n_down"] if n_down else []
        fixes.append("use " + " ".join(fix for _, fix in blocked))
        raise ConfigError(
            f"model=cyclegan: the resolution {res} is too small for {n_down} downsamplings with "
            f"{' and '.join(why for why, _ in blocked)} (>= {need} px needed); {' or '.join(fixes)}"
        )


class ResnetTranslator(nn.Module):
    """Image → image through residual blocks at 1/2**n_down of the resolution; ``data_shape`` = (C_out, H, W).

    c7s1-``width`` (7x7 conv, norm, ReLU), ``n_down`` stride-2 3x3 convs doubling the width (d128,
    d256), ``n_blocks`` residual blocks (:class:`ResidualBlock`, dropout ``dropout`` between their two
    convs, train mode only), ``n_down`` stride-2 3x3 transposed convs (output padding 1) halving it
    (u128, u64), c7s1-C_out with tanh. The paper uses 6 blocks at 128 px and 9 at 256 px; 2-3 are
    enough at 16-32 px. H and W must be divisible by 2**n_down, and with reflection padding or
    instance norm the bottleneck must have >= 2 px (>= 8 px images for 2 downsamplings).

    ``norm``: instance (the paper; without affine parameters, as the authors' code), batch, layer or
    none. ``padding``: reflect (the paper, around every stride-1 conv) or zeros. Convolutions have a
    bias only where no norm follows (the norm's mean subtraction cancels it; the authors' code keeps
    those biases with instance norm, 5,248 parameters more at the paper's setting). Weights are
    initialised N(0, 0.02). ``in_channels``: channels of the input image (default C_out). ``z_dim``
    is 0: G has no latent input.
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        in_channels: int | None = None,
        width: int = 64,
        n_blocks: int = 9,
        n_down: int = 2,
        norm: str = "instance",
        dropout: float = 0.0,
        padding: str = "reflect",
    ) -> None:
        super().__init__()
        check_norm(norm, "model.generator")
        if padding not in PADDINGS:
            raise ConfigError(
                f"model.generator.padding must be one of {', '.join(PADDINGS)}, got {padding!r}"
            )
        for name, value in (("n_blocks", n_blocks), ("n_down", n_down)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"model.generator.{name} must be a non-negative integer, got {value!r}")
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ConfigError(f"model.generator.width must be a positive integer, got {width!r}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"model.generator.dropout must be in [0, 1), got {dropout}")
        _check_size(tuple(data_shape), n_down, padding, norm)
        self.z_dim = 0
        self.in_channels = in_channels if in_channels is not None else data_shape[0]
        out_channels = data_shape[0]

        self.stem = nn.Sequential(*_conv(self.in_channels, width, 7, padding, norm), nn.ReLU(True))
        down: list[nn.Module] = []
        c = width
        for _ in range(n_down):
            layer = translation_norm(norm, 2 * c)
            down += [
                nn.Conv2d(c, 2 * c, 3, 2, 1, bias=layer is None),
                *([layer] if layer is not None else []),
            ]
            down.append(nn.ReLU(True))
            c *= 2
        self.down = nn.Sequential(*down)
        self.blocks = nn.Sequential(*(ResidualBlock(c, norm, dropout, padding) for _ in range(n_blocks)))
        up: list[nn.Module] = []
        for _ in range(n_down):
            layer = translation_norm(norm, c // 2)
            up.append(nn.ConvTranspose2d(c, c // 2, 3, 2, 1, output_padding=1, bias=layer is None))
            up += [*([layer] if layer is not None else []), nn.ReLU(True)]
            c //= 2
        self.up = nn.Sequential(*up)
        self.out = nn.Sequential(*_conv(c, out_channels, 7, padding, "none"), nn.Tanh())
        dcgan_init(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.up(self.blocks(self.down(self.stem(x)))))
