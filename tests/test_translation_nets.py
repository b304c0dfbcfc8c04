"""pix2pix's networks: the U-Net generator (shapes, depth, dropout as noise, skip connections) and the
PatchGAN discriminator (logit grids, receptive field by construction and by gradient), their config
errors and the model=unet / model=pix2pix configs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ganforge.config import make
from ganforge.errors import ConfigError
from ganforge.nets.patchgan import PatchGANDiscriminator
from ganforge.nets.unet import UNetGenerator
from helpers import compose_cfg


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _bottleneck_size(g: UNetGenerator, x: torch.Tensor) -> tuple[int, int]:
    seen = []
    hook = g.down[-1].register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape[2:])))
    g(x)
    hook.remove()
    return seen[0]


# --- U-Net generator --------------------------------------------------------------------------
@pytest.mark.parametrize("res", [16, 32, 64, 256])
def test_unet_maps_images_to_images_at_every_resolution(res):
    g = UNetGenerator((3, res, res), in_channels=1, width=8)
    assert g.z_dim == 0
    out = g(torch.randn(2, 1, res, res))
    assert out.shape == (2, 3, res, res) and out.abs().max() <= 1  # tanh
    # depth follows the resolution, down to a 1x1 bottleneck (8 stride-2 layers at 256 px)
    assert g.depth == len(g.down) == int(math.log2(res)) and len(g.up) == g.depth - 1
    assert _bottleneck_size(g.eval(), torch.randn(1, 1, res, res)) == (1, 1)


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_unet_norms_and_biases(norm):
    g = UNetGenerator((1, 16, 16), width=8, norm=norm)  # in_channels defaults to the output's
    assert g(torch.randn(2, 1, 16, 16)).shape == (2, 1, 16, 16)
    norms = [m for m in g.modules() if isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d))]
    # encoder: layers 2..depth-1 (not the first, not the bottleneck); decoder: all but the last
    assert len(norms) == (0 if norm == "none" else (g.depth - 2) + (g.depth - 1))
    assert all(m.affine == (norm == "batch") for m in norms)  # instance norm without affine
    convs = [m for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert sum(m.bias is None for m in convs) == len(norms)  # a bias exactly where no norm follows
    assert g.down[0][0].bias is not None and g.down[-1][0].bias is not None
    assert all(abs(m.weight.std().item() - 0.02) < 0.01 for m in convs if m.weight.numel() > 500)


def test_unet_follows_the_paper_at_256px():
    g = UNetGenerator((3, 256, 256), width=8, max_width=64)
    assert [s[0].out_channels for s in g.down] == [8, 16, 32, 64, 64, 64, 64, 64]
    assert [s[0].out_channels for s in g.up] == [64, 64, 64, 64, 32, 16, 8]
    dropouts = [[m for m in s if isinstance(m, nn.Dropout)] for s in g.up]
    assert [len(d) for d in dropouts] == [1, 1, 1, 0, 0, 0, 0]  # the first three decoder layers
    assert all(d[0].p == 0.5 for d in dropouts[:3])


def test_unet_depth_option():
    g = UNetGenerator((3, 32, 32), width=8, depth=3)
    assert len(g.down) == 3 and g(torch.randn(2, 3, 32, 32)).shape == (2, 3, 32, 32)
    assert _bottleneck_size(g.eval(), torch.randn(1, 3, 32, 32)) == (4, 4)
    for bad in (0, 6, 2.5):
        with pytest.raises(ConfigError, match="from 1 to 5"):
            UNetGenerator((3, 32, 32), depth=bad)


def test_unet_dropout_is_the_noise_in_train_mode_only():
    g = UNetGenerator((3, 16, 16), width=8)
    x = torch.randn(2, 3, 16, 16)
    assert not torch.equal(g.train()(x), g(x))  # dropout: a different output each pass
    g.eval()
    torch.testing.assert_close(g(x), g(x), rtol=0, atol=0)  # deterministic
    quiet = UNetGenerator((3, 16, 16), width=8, dropout=0.0)
    assert not any(isinstance(m, nn.Dropout) for m in quiet.modules())
    torch.testing.assert_close(quiet.train()(x), quiet(x), rtol=0, atol=0)


def test_unet_skip_connections():
    g = UNetGenerator((3, 32, 32), in_channels=2, width=8).eval()
    # every decoder layer after the first sees its predecessor's output and the encoder's, side by side
    for prev, layer in zip(g.up, g.up[1:], strict=False):
        assert layer[0].in_channels == 2 * prev[0].out_channels
    assert g.out[0].in_channels == 2 * g.down[0][0].out_channels
    # with the bottleneck silenced, the input still reaches the output: only through the skips
    with torch.no_grad():
        g.down[-1][0].weight.zero_()
        g.down[-1][0].bias.zero_()
    x = torch.randn(1, 2, 32, 32, requires_grad=True)
    g(x).sum().backward()
    assert x.grad.abs().sum() > 0
    bottleneck = []
    g.down[-1].register_forward_hook(lambda _m, _i, out: bottleneck.append(out))
    g(torch.randn(1, 2, 32, 32))
    assert torch.count_nonzero(bottleneck[0]) == 0


@pytest.mark.parametrize(
    "shape", [(3, 20, 20), (3, 8, 8), (3, 32, 16), (3, 48, 48), (16, 16)], ids=lambda s: str(s)
)
def test_unet_rejects_other_sizes_in_one_line(shape):
    with pytest.raises(ConfigError, match="square power-of-two resolution >= 16") as err:
        UNetGenerator(shape)
    assert "\n" not in str(err.value)
    if len(shape) == 3:
        assert f"got {shape[1]}x{shape[2]}" in str(err.value)


def test_unet_rejects_bad_options():
    with pytest.raises(ConfigError, match="spectral_norm=true"):
        UNetGenerator((3, 16, 16), norm="spectral")
    with pytest.raises(ConfigError, match="dropout"):
        UNetGenerator((3, 16, 16), dropout=1.0)


# --- PatchGAN discriminator ----------------------------------------------------------------------
GRIDS = [(16, 1, 6), (16, 2, 2), (32, 2, 6), (32, 3, 2), (64, 3, 6), (64, 4, 2), (256, 3, 30), (256, 5, 6)]


@pytest.mark.parametrize(("res", "n_layers", "grid"), GRIDS, ids=lambda v: str(v))
def test_patchgan_logit_grids(res, n_layers, grid):
    d = PatchGANDiscriminator((6, res, res), width=4, n_layers=n_layers)  # source + target channels
    out = d(torch.randn(2, 6, res, res))
    assert out.shape == (2, 1, grid, grid)
    assert d.output_grid((res, res)) == (grid, grid)
    assert (out < 0).any() and (out > 0).any()  # raw logits, no sigmoid


def test_patchgan_follows_the_paper():
    d = PatchGANDiscriminator((6, 256, 256))
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]  # C64-C128-C256-C512, then 1
    assert [c.stride[0] for c in convs] == [2, 2, 2, 1, 1]
    assert all(c.kernel_size == (4, 4) and c.padding == (1, 1) for c in convs)
    assert [c.bias is None for c in convs] == [False, True, True, True, False]  # no bias before a norm
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d.modules()) == 3  # none on the first layer
    assert d.output_grid((256, 256)) == (30, 30)
    wide = PatchGANDiscriminator((3, 64, 64), width=8, n_layers=4, max_width=16)
    assert [m.out_channels for m in wide.modules() if isinstance(m, nn.Conv2d)] == [8, 16, 16, 16, 16, 1]


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_patchgan_norms_and_spectral_norm(norm):
    for sn in (False, True):
        d = PatchGANDiscriminator((3, 32, 32), width=4, norm=norm, spectral_norm=sn)
        assert d(torch.randn(2, 3, 32, 32)).shape == (2, 1, 2, 2)
        convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
        assert all(hasattr(c, "parametrizations") == sn for c in convs)
        assert d.receptive_field() == 70


@pytest.mark.parametrize(("n_layers", "field"), [(1, 16), (2, 34), (3, 70), (4, 142), (5, 286)])
def test_patchgan_receptive_field_from_its_layers(n_layers, field):
    assert PatchGANDiscriminator((3, 256, 256), width=2, n_layers=n_layers).receptive_field() == field


@pytest.mark.parametrize(("n_layers", "field"), [(1, 16), (2, 34), (3, 70)])
def test_patchgan_receptive_field_measured(n_layers, field):
    """The gradient of one logit with respect to the input is non-zero exactly on a field x field window."""
    d = PatchGANDiscriminator((3, 256, 256), width=4, n_layers=n_layers, norm="none").double()
    assert d.receptive_field() == field
    x = torch.randn(1, 3, 256, 256, dtype=torch.float64, requires_grad=True)
    out = d(x)
    i = out.shape[2] // 2  # a logit away from the borders: its window is not cut by the padding
    out[0, 0, i, i].backward()
    seen = x.grad.abs().sum(1)[0] > 0
    rows, cols = seen.any(1).nonzero().flatten(), seen.any(0).nonzero().flatten()
    assert rows.max() - rows.min() + 1 == field and cols.max() - cols.min() + 1 == field
    assert seen[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()  # the whole window
    assert seen.sum() == field * field


@pytest.mark.parametrize(("res", "n_layers", "fits"), [(16, 3, 2), (32, 4, 3), (64, 5, 4), (256, 7, 6)])
def test_patchgan_too_deep_for_the_resolution_in_one_line(res, n_layers, fits):
    with pytest.raises(ConfigError, match=f"n_layers={n_layers} is too large for {res}x{res}") as err:
        PatchGANDiscriminator((6, res, res), width=2, n_layers=n_layers)
    assert f"use n_layers <= {fits}" in str(err.value) and "\n" not in str(err.value)
    PatchGANDiscriminator((6, res, res), width=2, n_layers=fits)  # the advice works


def test_patchgan_rejects_bad_options():
    with pytest.raises(ConfigError, match="larger images"):
        PatchGANDiscriminator((3, 4, 4), n_layers=1)
    with pytest.raises(ConfigError, match="positive integer"):
        PatchGANDiscriminator((3, 32, 32), n_layers=0)
    with pytest.raises(ConfigError, match="spectral_norm=true"):
        PatchGANDiscriminator((3, 32, 32), norm="spectral")
    with pytest.raises(ConfigError, match="images"):
        PatchGANDiscriminator((64,))


# --- configs -------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["unet", "pix2pix"])
def test_configs_compose_and_build_the_nets(tmp_path, model):
    cfg = compose_cfg(tmp_path, f"model={model}")
    assert cfg.model.conditional is False and cfg.model.pack == 1
    g = make(cfg.model.generator, data_shape=(3, 32, 32), in_channels=1)
    d = make(cfg.model.discriminator, data_shape=(4, 32, 32))  # source + target channels
    assert isinstance(g, UNetGenerator) and isinstance(d, PatchGANDiscriminator)
    assert g.depth == 5 and d.receptive_field() == 70
    x = torch.randn(2, 1, 32, 32)
    assert d(torch.cat([x, g(x)], 1)).shape == (2, 1, 2, 2)
