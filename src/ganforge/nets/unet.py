"""pix2pix U-Net G: Isola et al. 2017, "Image-to-Image Translation with Conditional Adversarial Networks".

An encoder of stride-2 4x4 convolutions halves the image down to the bottleneck; a decoder of
stride-2 4x4 transposed convolutions doubles it back, and every decoder layer sees the encoder's
features of its resolution (concatenated along channels). There is no latent z: as in the paper,
the only noise is dropout in the first decoder layers.

The layer order is that of the authors' code (junyanz/pytorch-CycleGAN-and-pix2pix ``UnetGenerator``
and phillipi/pix2pix ``defineG_unet``): an encoder layer is LeakyReLU(0.2) → conv → norm (the first
layer just the conv, the bottleneck no norm), a decoder layer ReLU → transposed conv → norm (→ dropout),
the last one ReLU → transposed conv → tanh. The skip carries the encoder's *pre*-activation conv(+norm)
output, concatenated as ``cat([skip, decoder output])`` (the PyTorch code's order, the Lua code's is the
reverse) and so passed through the next decoder layer's ReLU. (The authors' in-place LeakyReLU activates
the skipped tensor before the concatenation, which that ReLU maps to the same: ReLU(LeakyReLU(x)) = ReLU(x).)

Deliberate deviations from the authors' PyTorch code, kept:

- dropout on the first three decoder layers from the bottleneck (the paper's CD512-CD1024-CD1024 and
  the Lua code), not on the 512→512 layers after the innermost one (the PyTorch code);
- a convolution has a bias exactly where no norm follows (the PyTorch code ties it to the norm type:
  none under batch norm even on the first and bottleneck convolutions; the Lua code has one everywhere);
- any power-of-two resolution >= 16 and any ``depth`` (the PyTorch code needs at least five levels).

Earlier ganforge versions passed the skips and the bottleneck through the encoder's LeakyReLU, put the
decoder's ReLU after its norm and concatenated ``cat([decoder output, skip])``: the state-dict keys are
unchanged, but their weights compute another function here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ganforge.errors import ConfigError
from ganforge.nets.layers import check_norm, dcgan_init, translation_norm

MIN_RESOLUTION = 16
DROPOUT_LAYERS = (
    3  # decoder layers with dropout, counted from the bottleneck (the paper's CD512-CD1024-CD1024)
)


def unet_depth(data_shape: Sequence[int], depth: int | None = None) -> int:
    """Stride-2 layers of the encoder: ``log2(size)`` by default (down to 1x1), else ``depth`` if it fits."""
    shape = tuple(data_shape)
    size = shape[1] if len(shape) == 3 else 0
    if len(shape) != 3 or shape[1] != shape[2] or size < MIN_RESOLUTION or size & (size - 1):
        got = f"{shape[1]}x{shape[2]}" if len(shape) == 3 else f"shape {shape}"
        raise ConfigError(f"model=unet needs a square power-of-two resolution >= {MIN_RESOLUTION}, got {got}")
    most = int(math.log2(size))
    if depth is None:
        return most
    if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= most:
        raise ConfigError(
            f"model.generator.depth must be an integer from 1 to {most} at {size} px (null: {most}), "
            f"got {depth!r}"
        )
    return depth


class UNetGenerator(nn.Module):
    """Image → image through a U-Net with skip connections; ``data_shape`` = (C_out, H, W), H == W.

    Encoder: C64-C128-C256-C512-C512-... (4x4, stride 2; ``width`` doubling up to ``max_width``), each
    layer after the first preceded by LeakyReLU 0.2, no norm on the first layer nor on the bottleneck
    (a 1x1 bottleneck would be zeroed by batch norm at batch size 1, the paper's remark). Decoder: ReLU,
    4x4 stride-2 transposed convolution, norm, dropout ``dropout`` on the first three (active in train
    mode only); the encoder's (pre-activation) features of the same resolution are concatenated in front
    of each decoder output; a last ReLU, transposed convolution to C_out and tanh. ``depth`` (default
    ``log2(H)``: 8 at 256 px) is the number of stride-2 layers.

    ``norm``: batch (the paper), instance (without affine parameters, as the authors' code), layer or
    none. Convolutions have a bias only where no norm follows (a norm's shift cancels it anyway).
    Weights are initialised N(0, 0.02) as in the paper. ``in_channels``: channels of the input
    image (default C_out). ``z_dim`` is 0: G has no latent input.
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        in_channels: int | None = None,
        width: int = 64,
        max_width: int = 512,
        norm: str = "batch",
        dropout: float = 0.5,
        depth: int | None = None,
    ) -> None:
        super().__init__()
        check_norm(norm, "model.generator")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"model.generator.dropout must be in [0, 1), got {dropout}")
        if width < 1 or max_width < width:
            raise ConfigError(f"model.generator: need 1 <= width <= max_width, got {width} and {max_width}")
        self.z_dim = 0
        self.depth = unet_depth(data_shape, depth)
        self.in_channels = in_channels if in_channels is not None else data_shape[0]
        out_channels = data_shape[0]
        channels = [min(width * 2**i, max_width) for i in range(self.depth)]

        # the activations open the layers (the authors' order); parameter-free, they sit outside the
        # Sequentials so that a layer's conv stays its first module (stable state-dict keys)
        self.down_act = nn.LeakyReLU(0.2)  # not in place: its input is also a skip
        self.up_act = nn.ReLU()

        # encoder layer i: [LeakyReLU →] conv [→ norm]; its output is what the skip carries
        self.down = nn.ModuleList()
        c_in = self.in_channels
        for i, c_out in enumerate(channels):
            normed = 0 < i < self.depth - 1  # not the first layer, not the bottleneck
            layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=not normed or norm == "none")]
            if normed and (layer := translation_norm(norm, c_out)) is not None:
                layers.append(layer)
            self.down.append(nn.Sequential(*layers))
            c_in = c_out

        # decoder layer j (from the bottleneck) goes from level depth-1-j to depth-2-j: ReLU → transposed
        # conv → norm [→ dropout]; its input is the bottleneck (j = 0) or the skip concatenated with the
        # previous decoder output (twice the channels)
        self.up = nn.ModuleList()
        for j, level in enumerate(range(self.depth - 1, 0, -1)):
            c_in = channels[level] if j == 0 else 2 * channels[level]
            c_out = channels[level - 1]
            layer = translation_norm(norm, c_out)
            layers = [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=layer is None)]
            layers += [layer] if layer is not None else []
            if j < DROPOUT_LAYERS and dropout > 0:
                layers.append(nn.Dropout(dropout))
            self.up.append(nn.Sequential(*layers))
        c_in = channels[0] if self.depth == 1 else 2 * channels[0]
        self.out = nn.Sequential(nn.ConvTranspose2d(c_in, out_channels, 4, 2, 1), nn.Tanh())
        dcgan_init(self)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for i, layer in enumerate(self.down):
            x = layer(self.down_act(x) if i else x)
            skips.append(x)  # pre-activation: conv (+ norm) output
        x = skips.pop()  # the bottleneck
        for layer in self.up:
            x = torch.cat([skips.pop(), layer(self.up_act(x))], 1)
        return self.out(self.up_act(x))
