"""CycleGAN's ResNet generator: shapes at every resolution, the paper's layers, residual blocks,
reflection padding, norms and biases, its config errors, the parameter count and model=cyclegan."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ganforge.config import make
from ganforge.errors import ConfigError
from ganforge.nets.patchgan import PatchGANDiscriminator
from ganforge.nets.resnet_translator import ResidualBlock, ResnetTranslator
from helpers import compose_cfg

# The paper's G at 256 px (width 64, 9 blocks, 3 -> 3 channels, instance norm without affine):
# convs 3*64*49 + 64*128*9 + 128*256*9 + 18 * 256*256*9 + 256*128*9 + 128*64*9 + 64*3*49 and the last
# conv's 3 biases = 11,372,931. The authors' code keeps a bias before each instance norm (64 + 128 + 256
# + 18*256 + 128 + 64 = 5,248 more): 11,378,179, its well-known "11.378 M".
PAPER_PARAMS = 11_372_931
BIASES_BEFORE_NORMS = 5_248


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _convs(g: nn.Module) -> list[nn.Module]:
    return [m for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


@pytest.mark.parametrize(
    ("res", "c_in", "c_out", "kwargs"),
    [
        (16, 3, 3, {"width": 8, "n_blocks": 2}),
        (32, 1, 3, {"width": 8, "n_blocks": 3}),
        (64, 3, 1, {"width": 8, "n_blocks": 2, "n_down": 3}),
        (256, 3, 3, {"width": 8, "n_blocks": 1}),
    ],
    ids=lambda v: str(v),
)
def test_maps_images_to_images_at_every_resolution(res, c_in, c_out, kwargs):
    g = ResnetTranslator((c_out, res, res), in_channels=c_in, **kwargs)
    assert g.z_dim == 0 and g.in_channels == c_in
    out = g(torch.randn(2, c_in, res, res) * 3)
    assert out.shape == (2, c_out, res, res)
    assert out.abs().max() <= 1  # tanh
    assert (out < 0).any() and (out > 0).any()
    assert ResnetTranslator((2, 16, 24), width=4, n_blocks=1)(torch.randn(1, 2, 16, 24)).shape == (
        1,
        2,
        16,
        24,
    )


def test_follows_the_paper():
    g = ResnetTranslator((3, 256, 256))  # c7s1-64, d128, d256, R256 x 9, u128, u64, c7s1-3
    convs = _convs(g)
    assert [c.out_channels for c in convs] == [64, 128, 256] + [256] * 18 + [128, 64, 3]
    assert [c.kernel_size[0] for c in convs] == [7, 3, 3] + [3] * 18 + [3, 3, 7]
    assert [c.stride[0] for c in convs] == [1, 2, 2] + [1] * 18 + [2, 2, 1]
    ups = [c for c in convs if isinstance(c, nn.ConvTranspose2d)]
    assert len(ups) == 2 and all(u.output_padding == (1, 1) for u in ups)
    assert isinstance(g.out[-1], nn.Tanh)
    assert len(g.blocks) == 9 and all(isinstance(b, ResidualBlock) for b in g.blocks)
    assert len(ResnetTranslator((3, 128, 128), n_blocks=6).blocks) == 6  # the paper's 128 px G


def test_parameter_count_at_the_papers_setting():
    g = ResnetTranslator((3, 256, 256), width=64, n_blocks=9, norm="instance")
    assert sum(p.numel() for p in g.parameters()) == PAPER_PARAMS
    missing = sum(c.out_channels for c in _convs(g) if c.bias is None)
    assert missing == BIASES_BEFORE_NORMS and PAPER_PARAMS + missing == 11_378_179  # the reference's 11.378 M


@pytest.mark.parametrize("norm", ["none", "instance"])
def test_every_block_is_residual(norm):
    g = ResnetTranslator((3, 16, 16), width=4, n_blocks=3, norm=norm).eval()
    assert len(g.blocks) == 3
    x = torch.randn(2, 16, 4, 4)  # the blocks' input: 4 * 2**2 channels at 1/4 of the resolution
    for block in g.blocks:
        assert not torch.allclose(block(x), x)
        last = [m for m in block.modules() if isinstance(m, nn.Conv2d)][-1]
        with torch.no_grad():
            last.weight.zero_()
            if last.bias is not None:
                last.bias.zero_()
        torch.testing.assert_close(block(x), x, rtol=0, atol=0)  # F(x) = 0 (normed zeros too): x
    # with every residual branch silenced the blocks pass the downsampled features through unchanged
    h = g.down(g.stem(torch.randn(1, 3, 16, 16)))
    torch.testing.assert_close(g.blocks(h), h, rtol=0, atol=0)


def test_reflection_padding_by_default():
    g = ResnetTranslator((3, 16, 16), width=4, n_blocks=2)
    pads = [m for m in g.modules() if isinstance(m, nn.ReflectionPad2d)]
    assert [p.padding[0] for p in pads] == [3, 1, 1, 1, 1, 3]  # every stride-1 conv, as the paper
    stride1 = [c for c in _convs(g) if c.stride == (1, 1)]
    assert all(c.padding == (0, 0) for c in stride1)
    zeros = ResnetTranslator((3, 16, 16), width=4, n_blocks=2, padding="zeros")
    assert not any(isinstance(m, nn.ReflectionPad2d) for m in zeros.modules())
    assert [c.padding[0] for c in _convs(zeros) if c.stride == (1, 1)] == [3, 1, 1, 1, 1, 3]
    assert zeros(torch.randn(1, 3, 16, 16)).shape == (1, 3, 16, 16)
    # zero padding (without instance norm) also runs where reflection has no room: a 1x1 bottleneck
    tiny = ResnetTranslator((3, 4, 4), width=4, n_blocks=1, padding="zeros", norm="layer")
    assert tiny(torch.randn(1, 3, 4, 4)).shape == (1, 3, 4, 4)


@pytest.mark.parametrize("norm", ["instance", "batch", "layer", "none"])
def test_norms_and_biases(norm):
    g = ResnetTranslator((3, 16, 16), width=4, n_blocks=2, norm=norm)
    assert g(torch.randn(2, 3, 16, 16)).shape == (2, 3, 16, 16)
    kinds = {"instance": nn.InstanceNorm2d, "batch": nn.BatchNorm2d, "layer": nn.GroupNorm}
    norms = [m for m in g.modules() if isinstance(m, (nn.InstanceNorm2d, nn.BatchNorm2d, nn.GroupNorm))]
    convs = _convs(g)
    # every conv but the last is followed by a norm: stem, 2 down, 2 x 2 in the blocks, 2 up
    assert len(convs) == 10 and len(norms) == (0 if norm == "none" else len(convs) - 1)
    assert all(isinstance(m, kinds[norm]) for m in norms)
    assert all(m.affine == (norm != "instance") for m in norms)  # instance norm without affine
    assert sum(c.bias is None for c in convs) == len(norms)  # a bias exactly where no norm follows
    assert convs[-1].bias is not None


def test_init_is_normal_0_02():
    g = ResnetTranslator((3, 32, 32))
    big = [c for c in _convs(g) if c.weight.numel() > 5000]
    assert all(abs(c.weight.std().item() - 0.02) < 0.002 and abs(c.weight.mean().item()) < 0.002 for c in big)


def test_deterministic_in_eval_mode_and_dropout_in_train_mode():
    x = torch.randn(2, 3, 16, 16)
    g = ResnetTranslator((3, 16, 16), width=4, n_blocks=2).eval()
    torch.testing.assert_close(g(x), g(x), rtol=0, atol=0)
    assert not any(isinstance(m, nn.Dropout) for m in g.modules())
    noisy = ResnetTranslator((3, 16, 16), width=4, n_blocks=2, dropout=0.5)
    assert sum(isinstance(m, nn.Dropout) for m in noisy.modules()) == 2  # one per block
    assert not torch.equal(noisy.train()(x), noisy(x))
    noisy.eval()
    torch.testing.assert_close(noisy(x), noisy(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("shape", "n_down", "message"),
    [
        ((3, 18, 18), 2, "the resolution 18 must be divisible by 4 (2 downsamplings)"),
        ((3, 16, 20), 3, "the resolution 16x20 must be divisible by 8 (3 downsamplings)"),
        ((3, 33, 33), 1, "the resolution 33 must be divisible by 2 (1 downsamplings)"),
    ],
    ids=lambda v: str(v),
)
def test_rejects_sizes_not_divisible_in_one_line(shape, n_down, message):
    with pytest.raises(ConfigError) as err:
        ResnetTranslator(shape, n_down=n_down)
    assert str(err.value).startswith(f"model=cyclegan: {message}; ") and "\n" not in str(err.value)


def test_rejects_bad_options():
    with pytest.raises(
        ConfigError, match="too small for 2 downsamplings with reflection padding and instance norm"
    ):
        ResnetTranslator((3, 4, 4))  # a 1x1 bottleneck: reflection padding needs 2 px
    with pytest.raises(ConfigError, match="too small for 3 downsamplings with instance norm"):
        ResnetTranslator((3, 8, 8), n_down=3, padding="zeros")
    with pytest.raises(ConfigError, match=r"translates images \(C, H, W\)"):
        ResnetTranslator((64,))
    with pytest.raises(ConfigError, match="spectral_norm=true"):
        ResnetTranslator((3, 16, 16), norm="spectral")
    with pytest.raises(ConfigError, match="padding must be one of reflect, zeros"):
        ResnetTranslator((3, 16, 16), padding="replicate")
    with pytest.raises(ConfigError, match="n_blocks must be a non-negative integer"):
        ResnetTranslator((3, 16, 16), n_blocks=-1)
    with pytest.raises(ConfigError, match="n_down must be a non-negative integer"):
        ResnetTranslator((3, 16, 16), n_down=1.5)
    with pytest.raises(ConfigError, match="dropout"):
        ResnetTranslator((3, 16, 16), dropout=1.0)


def test_config_composes_and_builds_the_nets(tmp_path):
    cfg = compose_cfg(tmp_path, "model=cyclegan", "model.generator.n_blocks=2", "model.generator.width=8")
    assert cfg.model.conditional is False and cfg.model.pack == 1
    assert cfg.model.generator.n_down == 2 and cfg.model.generator.norm == "instance"
    assert cfg.model.discriminator.norm == "instance" and cfg.model.discriminator.n_layers == 3
    g = make(cfg.model.generator, data_shape=(3, 32, 32))
    d = make(cfg.model.discriminator, data_shape=(3, 32, 32))
    assert isinstance(g, ResnetTranslator) and isinstance(d, PatchGANDiscriminator)
    assert d.receptive_field() == 70
    assert d(g(torch.randn(2, 3, 32, 32))).shape == (2, 1, 2, 2)
