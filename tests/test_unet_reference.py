"""The U-Net G against the authors' pix2pix U-Net, recomputed here from G's weights.

The reference is junyanz/pytorch-CycleGAN-and-pix2pix ``UnetSkipConnectionBlock``, written out below as
the same recursion: a block at level L takes the previous encoder features x (pre-activation) and returns
``cat([x, up(inner)])`` with down = [LeakyReLU(0.2), conv, norm] (outermost: conv alone; innermost: no
norm) and up = [ReLU, transposed conv, norm] (outermost: ReLU, transposed conv, tanh). Eval mode: no
dropout, batch norm on its running statistics (randomised here so that it is not the identity).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.nets.unet import UNetGenerator


def _norm(m: nn.Module | None, x: Tensor) -> Tensor:
    if m is None:
        return x
    if isinstance(m, nn.BatchNorm2d):
        scale = m.weight / torch.sqrt(m.running_var + m.eps)
        return (x - m.running_mean[:, None, None]) * scale[:, None, None] + m.bias[:, None, None]
    if isinstance(m, nn.InstanceNorm2d):  # no affine parameters, as the authors' instance norm
        mean, var = x.mean((2, 3), keepdim=True), x.var((2, 3), unbiased=False, keepdim=True)
        return (x - mean) / torch.sqrt(var + m.eps)
    raise AssertionError(f"unexpected norm {m}")


def _conv(m: nn.Conv2d, x: Tensor) -> Tensor:
    return F.conv2d(x, m.weight, m.bias, stride=2, padding=1)


def _conv_t(m: nn.ConvTranspose2d, x: Tensor) -> Tensor:
    return F.conv_transpose2d(x, m.weight, m.bias, stride=2, padding=1)


def reference_unet(g: UNetGenerator, image: Tensor) -> Tensor:
    """The authors' nested blocks with G's weights: level 0 is the outermost block, depth-1 the innermost."""
    depth = g.depth

    def parts(seq: nn.Sequential) -> tuple[nn.Module, nn.Module | None]:
        norms = [m for m in seq if isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d))]
        return seq[0], (norms[0] if norms else None)

    def block(level: int, x: Tensor) -> Tensor:
        down_conv, down_norm = parts(g.down[level])
        if level == 0:  # outermost: down = [conv]
            h = _conv(down_conv, x)
        else:  # down = [LeakyReLU(0.2), conv, norm]; no norm innermost
            h = _norm(down_norm, _conv(down_conv, F.leaky_relu(x, 0.2)))
        inner = h if level == depth - 1 else block(level + 1, h)
        if level == 0:  # outermost: up = [ReLU, convT, tanh], no concatenation
            return torch.tanh(_conv_t(g.out[0], F.relu(inner)))
        up_conv, up_norm = parts(g.up[depth - 1 - level])  # G's decoder layers count from the bottleneck
        y = _norm(up_norm, _conv_t(up_conv, F.relu(inner)))
        return torch.cat([x, y], 1)  # the block's input (pre-activation encoder features) first

    return block(0, image)


def _randomise_norms(g: nn.Module) -> None:
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1.0, 0.3)
                m.bias.normal_(0.0, 0.3)


@pytest.mark.parametrize(
    ("res", "depth", "norm"),
    [(16, None, "batch"), (32, None, "batch"), (32, 3, "batch"), (32, None, "instance"), (16, 2, "none")],
)
def test_unet_forward_is_the_authors_unet(res, depth, norm):
    torch.manual_seed(0)
    g = UNetGenerator((3, res, res), in_channels=2, width=8, max_width=32, norm=norm, depth=depth)
    with torch.no_grad():  # weights far from DCGAN's N(0, 0.02) init: the activations do matter
        for m in g.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                m.weight.mul_(5.0)
                if m.bias is not None:
                    m.bias.normal_(0.0, 0.2)
    _randomise_norms(g)
    g.eval()
    x = torch.randn(3, 2, res, res)
    with torch.no_grad():
        got, want = g(x), reference_unet(g, x)
    assert 0.1 < want.abs().median() < 0.9  # tanh neither saturated nor near zero
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_unet_decoder_relu_takes_the_skip_and_the_decoder_output_in_that_order():
    torch.manual_seed(0)
    g = UNetGenerator((1, 16, 16), width=8).eval()
    # no activation inside an encoder or decoder layer: LeakyReLU / ReLU open the next layer instead
    for seq in [*g.down, *g.up, g.out]:
        assert not any(isinstance(m, (nn.ReLU, nn.LeakyReLU)) for m in seq)
    seen: dict[str, Tensor] = {}
    g.down[0].register_forward_hook(lambda _m, _i, out: seen.update(skip=out))
    g.up[-1].register_forward_hook(lambda _m, _i, out: seen.update(dec=out))
    g.out[0].register_forward_hook(lambda _m, inputs, _o: seen.update(last_in=inputs[0]))
    g(torch.randn(2, 1, 16, 16))
    assert (seen["skip"] < 0).any()  # the first layer's conv output, not through a LeakyReLU
    torch.testing.assert_close(seen["last_in"], F.relu(torch.cat([seen["skip"], seen["dec"]], 1)))
