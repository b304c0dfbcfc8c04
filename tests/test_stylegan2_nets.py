"""StyleGAN2's G and D (ganforge.nets.stylegan2): every check against a computation written out here."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ganforge.errors import ConfigError
from ganforge.nets.stylegan2 import (
    EqualConv2d,
    EqualLinear,
    MappingNetwork,
    MinibatchStdDev,
    StyleGAN2Discriminator,
    StyleGAN2Generator,
    SynthesisNetwork,
    crossover_index,
    downsample2d,
    modulated_conv2d,
    upsample2d,
)

TINY = dict(channel_base=128, channel_max=16)  # 16 channels at 4x4 and 8x8, 8 at 16x16, 4 at 32x32
TINY_G = dict(z_dim=8, w_dim=8, mapping_layers=2, **TINY)


def fir_taps() -> torch.Tensor:
    """[1, 3, 3, 1]/8 ⊗ [1, 3, 3, 1]/8, in float64."""
    t = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64) / 8
    return t[:, None] * t[None, :]


def depthwise(x: torch.Tensor, f: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    """Zero-pad (before, after) both axes, then correlate every channel with ``f``."""
    c = x.shape[1]
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    return F.conv2d(x, f.to(x.dtype).expand(c, 1, *f.shape), groups=c)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, x, 0.2 * x) * math.sqrt(2.0)


def hand_modulate(weight: torch.Tensor, style: torch.Tensor, demodulate: bool) -> torch.Tensor:
    """One sample's weight: w·s over the input channels, then divided per output channel by
    √(Σ_{in,kh,kw} (w·s)² + 1e-8)."""
    w = weight * style.view(1, -1, 1, 1)
    if demodulate:
        norm = torch.sqrt((w**2).sum(dim=(1, 2, 3)) + 1e-8)
        w = w / norm.view(-1, 1, 1, 1)
    return w


# ---------------------------------------------------------------------------------------------------------
# Modulated convolution


@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv_matches_per_sample_conv(demodulate: bool) -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 5, 7, 7, dtype=torch.float64)
    weight = torch.randn(4, 5, 3, 3, dtype=torch.float64)
    styles = torch.randn(3, 5, dtype=torch.float64)
    out = modulated_conv2d(x, weight, styles, demodulate=demodulate)
    assert out.shape == (3, 4, 7, 7)
    for i in range(3):
        w = hand_modulate(weight, styles[i], demodulate)
        torch.testing.assert_close(out[i : i + 1], F.conv2d(x[i : i + 1], w, padding=1))


def test_modulated_conv_up2_matches_per_sample_transposed_conv_then_fir() -> None:
    """up=2: per sample, x dilated by 2 (zeros between pixels), padded by k−1, convolved with the modulated
    weight (the transposed conv), then the FIR filter ×4 with padding (1, 1): size exactly doubles."""
    torch.manual_seed(1)
    x = torch.randn(3, 5, 6, 6, dtype=torch.float64)
    weight = torch.randn(4, 5, 3, 3, dtype=torch.float64)
    styles = torch.randn(3, 5, dtype=torch.float64)
    out = modulated_conv2d(x, weight, styles, up=2)
    assert out.shape == (3, 4, 12, 12)
    for i in range(3):
        w = hand_modulate(weight, styles[i], True)
        dilated = torch.zeros(1, 5, 11, 11, dtype=torch.float64)
        dilated[:, :, ::2, ::2] = x[i : i + 1]
        # transposed conv with weight (I, O, k, k) = conv of the padded dilation with (O, I) flipped kernels
        y = F.conv2d(F.pad(dilated, (2, 2, 2, 2)), w.flip(2, 3))
        y = depthwise(y, 4 * fir_taps(), (1, 1))
        torch.testing.assert_close(out[i : i + 1], y)


def test_demodulated_output_has_unit_variance() -> None:
    torch.manual_seed(2)
    x = torch.randn(16, 32, 12, 12)
    weight = torch.randn(24, 32, 3, 3)
    styles = torch.rand(16, 32) * 3 + 0.1  # far from unit styles: demodulation must undo them
    out = modulated_conv2d(x, weight, styles)[:, :, 1:-1, 1:-1]  # the border sees zero padding
    assert abs(out.var().item() - 1.0) < 0.06
    undemodulated = modulated_conv2d(x, weight, styles, demodulate=False)[:, :, 1:-1, 1:-1]
    assert undemodulated.var().item() > 5  # the check can fail


# ---------------------------------------------------------------------------------------------------------
# Equalized learning rate


def test_equal_linear_effective_weight_and_step() -> None:
    torch.manual_seed(3)
    lr_mul, fan_in, eta = 0.01, 20, 0.1
    layer = EqualLinear(fan_in, 6, bias_init=0.5, lr_mul=lr_mul)
    gain = lr_mul / math.sqrt(fan_in)
    assert torch.all(layer.bias == 0.5)  # stored at bias_init, used as bias·lr_mul
    x = torch.randn(9, fan_in)
    w_eff = layer.weight.detach() * gain
    out = layer(x)
    torch.testing.assert_close(out, F.linear(x, w_eff, torch.full((6,), 0.5 * lr_mul)))
    r = torch.randn(9, 6)
    (out * r).sum().backward()
    grad_eff = r.t() @ x  # d(Σ r·(x W_eff^T))/dW_eff
    with torch.no_grad():
        layer.weight -= eta * layer.weight.grad
    step = layer.weight.detach() * gain - w_eff
    torch.testing.assert_close(step, -eta * gain**2 * grad_eff)
    # the weight starts N(0, 1)/lr_mul: its effective std is 1/√fan_in whatever lr_mul
    big = EqualLinear(400, 400, lr_mul=lr_mul)
    assert abs((big.weight * big.weight_gain).std().item() * math.sqrt(400) - 1) < 0.02


def test_equal_linear_lrelu() -> None:
    torch.manual_seed(4)
    layer = EqualLinear(7, 5, activation="lrelu")
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(4, 7)
    expected = lrelu(F.linear(x, layer.weight / math.sqrt(7), layer.bias))
    torch.testing.assert_close(layer(x), expected)


def test_equal_conv_effective_weight_and_step() -> None:
    torch.manual_seed(5)
    eta, fan_in = 0.1, 4 * 3 * 3
    conv = EqualConv2d(4, 3, 3, activation="lrelu", conv_clamp=0.5)
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    gain = 1 / math.sqrt(fan_in)
    w_eff = conv.weight.detach() * gain
    out = conv(x)
    expected = lrelu(F.conv2d(x, w_eff, conv.bias.detach(), padding=1)).clamp(-0.5, 0.5)
    torch.testing.assert_close(out, expected)
    # one SGD step on the stored weight, with a loss linear in the effective weight (no clamp, no act)
    plain = EqualConv2d(4, 3, 3, bias=False)
    w_eff = plain.weight.detach() * gain
    r = torch.randn(2, 3, 6, 6)
    xd = x.detach()
    (plain(xd) * r).sum().backward()
    w_eff_leaf = w_eff.clone().requires_grad_(True)
    (F.conv2d(xd, w_eff_leaf, padding=1) * r).sum().backward()
    with torch.no_grad():
        plain.weight -= eta * plain.weight.grad
    torch.testing.assert_close(plain.weight.detach() * gain - w_eff, -eta * gain**2 * w_eff_leaf.grad)


def test_equal_conv_down_geometry() -> None:
    """down=2: FIR filter with padding (2, 2) (3x3 kernel), then a stride-2 conv with no padding."""
    torch.manual_seed(6)
    conv = EqualConv2d(3, 5, 3, activation="lrelu", down=2).double()
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    expected = F.conv2d(depthwise(x, fir_taps(), (2, 2)), conv.weight / math.sqrt(27), conv.bias, stride=2)
    torch.testing.assert_close(conv(x), lrelu(expected))
    skip = EqualConv2d(3, 5, 1, bias=False, down=2).double()
    expected = F.conv2d(depthwise(x, fir_taps(), (1, 1))[:, :, ::2, ::2], skip.weight / math.sqrt(3))
    torch.testing.assert_close(skip(x), expected)


# ---------------------------------------------------------------------------------------------------------
# FIR resampling


def test_fir_filter_taps() -> None:
    for layer in (EqualConv2d(2, 2, 3, down=2), SynthesisNetwork(4, 8, 1, **TINY).blocks[1].conv0):
        torch.testing.assert_close(layer.resample_filter.double(), fir_taps())


def test_fir_keeps_constants() -> None:
    const = torch.full((2, 3, 8, 8), 1.7, dtype=torch.float64)
    up = upsample2d(const, fir_taps())
    assert up.shape == (2, 3, 16, 16)
    torch.testing.assert_close(up[:, :, 2:-2, 2:-2], torch.full_like(up[:, :, 2:-2, 2:-2], 1.7))
    down = downsample2d(const, fir_taps())
    assert down.shape == (2, 3, 4, 4)
    torch.testing.assert_close(down[:, :, 1:-1, 1:-1], torch.full_like(down[:, :, 1:-1, 1:-1], 1.7))


def test_fir_matches_hand_resampling() -> None:
    torch.manual_seed(7)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    zeros = torch.zeros(2, 3, 16, 16, dtype=torch.float64)
    zeros[:, :, ::2, ::2] = x
    torch.testing.assert_close(upsample2d(x, fir_taps()), depthwise(zeros, 4 * fir_taps(), (2, 1)))
    torch.testing.assert_close(downsample2d(x, fir_taps()), depthwise(x, fir_taps(), (1, 1))[:, :, ::2, ::2])


# ---------------------------------------------------------------------------------------------------------
# Mapping: w_avg, truncation, style mixing


def test_w_avg_moves_by_lerp_in_training_only() -> None:
    torch.manual_seed(8)
    beta = 0.9
    mapping = MappingNetwork(8, 8, num_ws=4, num_layers=2, w_avg_beta=beta)
    z = torch.randn(5, 8)
    mapping.eval()
    w = mapping(z)[:, 0]
    before = mapping.w_avg.clone()
    mapping(z)
    torch.testing.assert_close(mapping.w_avg, before)
    mapping.train()
    mapping(z)
    torch.testing.assert_close(mapping.w_avg, beta * before + (1 - beta) * w.mean(0))
    after_one = mapping.w_avg.clone()
    mapping(z, update_w_avg=False)
    torch.testing.assert_close(mapping.w_avg, after_one)


def test_style_mixing_draw_leaves_w_avg_alone() -> None:
    torch.manual_seed(9)
    G = StyleGAN2Generator((1, 16, 16), style_mixing=1.0, w_avg_beta=0.8, **TINY_G)
    z = torch.randn(4, 8)
    G.eval()
    w = G.mapping(z)[:, 0]
    G.train()
    G(z)
    torch.testing.assert_close(G.mapping.w_avg, 0.2 * w.mean(0))  # from zero, the first draw only


def test_mapping_normalises_inputs_and_embeds_labels() -> None:
    """x·rsqrt(mean(x²) + 1e-8) of z, and of the embedded one-hot label, concatenated into fc0."""
    torch.manual_seed(10)
    mapping = MappingNetwork(6, 8, num_ws=None, num_layers=1, num_classes=3, lr_mul=0.1)
    z, y = torch.randn(4, 6) * 5, torch.tensor([0, 2, 1, 2])
    one_hot = torch.eye(3)[y]
    e = F.linear(one_hot, mapping.embed.weight / math.sqrt(3), mapping.embed.bias)
    nz = z / torch.sqrt((z**2).mean(1, keepdim=True) + 1e-8)
    ne = e / torch.sqrt((e**2).mean(1, keepdim=True) + 1e-8)
    fc = mapping.layers[0]
    expected = lrelu(F.linear(torch.cat([nz, ne], 1), fc.weight * 0.1 / math.sqrt(14), fc.bias * 0.1))
    torch.testing.assert_close(mapping(z, y), expected)


def test_truncation() -> None:
    torch.manual_seed(11)
    G = StyleGAN2Generator((1, 16, 16), noise_mode="const", **TINY_G).eval()
    for layer in G.modules():  # nonzero noise strengths so that "const" noise matters
        if hasattr(layer, "noise_strength"):
            layer.noise_strength.data.fill_(0.3)
    G.mapping.w_avg.normal_()
    z = torch.randn(4, 8)
    ws = G.mapping(z)
    torch.testing.assert_close(G(z, truncation_psi=1.0), G.synthesis(ws))
    torch.testing.assert_close(G(z, truncation_psi=1.0), G(z))  # const noise: deterministic
    avg = G.mapping.w_avg
    out = G(z, truncation_psi=0.0)
    for i in range(1, 4):
        torch.testing.assert_close(out[i], out[0])
    torch.testing.assert_close(out[:1], G.synthesis(avg.expand(1, G.num_ws, -1)))
    half = G.mapping(z, truncation_psi=0.5, truncation_cutoff=2)
    torch.testing.assert_close(half[:, :2], avg + 0.5 * (ws[:, :2] - avg))
    torch.testing.assert_close(half[:, 2:], ws[:, 2:])
    assert not torch.allclose(G(z, truncation_psi=0.5), G(z))


def test_crossover_index_is_uniform() -> None:
    torch.manual_seed(12)
    num_ws, draws = 6, 3000
    cuts = torch.stack([crossover_index(num_ws, 1.0) for _ in range(draws)])
    assert cuts.min() >= 1 and cuts.max() < num_ws
    counts = torch.bincount(cuts, minlength=num_ws)[1:].double()
    expected = draws / (num_ws - 1)
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 18.5  # 4 degrees of freedom, p = 0.001
    assert all(crossover_index(num_ws, 0.0).item() == num_ws for _ in range(50))
    half = torch.stack([crossover_index(num_ws, 0.5) for _ in range(2000)])
    assert abs((half == num_ws).double().mean().item() - 0.5) < 0.05


def _captured_ws(G: StyleGAN2Generator, z: torch.Tensor) -> torch.Tensor:
    seen = []
    handle = G.synthesis.register_forward_pre_hook(lambda _module, args: seen.append(args[0].detach()))
    G(z)
    handle.remove()
    return seen[0]


def test_style_mixing_applies_in_training_only() -> None:
    torch.manual_seed(13)
    z = torch.randn(3, 8)
    plain = StyleGAN2Generator((1, 16, 16), style_mixing=0.0, **TINY_G).train()
    ws = _captured_ws(plain, z)
    assert torch.equal(ws, ws[:, :1].expand_as(ws))
    mixing = StyleGAN2Generator((1, 16, 16), style_mixing=1.0, **TINY_G).train()
    cuts = set()
    for _ in range(12):
        ws = _captured_ws(mixing, z)
        same_as_first = (ws == ws[:, :1]).all(dim=2).all(dim=0)  # (num_ws,)
        cut = int(same_as_first.logical_not().nonzero()[0])  # first row from the second draw
        assert 1 <= cut < mixing.num_ws
        assert same_as_first[:cut].all()
        assert torch.equal(ws[:, cut:], ws[:, cut : cut + 1].expand_as(ws[:, cut:]))
        cuts.add(cut)
    assert len(cuts) > 1
    mixing.eval()
    ws = _captured_ws(mixing, z)
    assert torch.equal(ws, ws[:, :1].expand_as(ws))


# ---------------------------------------------------------------------------------------------------------
# Synthesis layers and w indexing


def test_synthesis_layer_and_torgb_by_hand() -> None:
    """conv layer: style = affine(w) (bias init 1), demodulated 3x3 conv, + const noise·strength, + bias,
    lrelu·√2, clamp; ToRGB: style = affine(w)/√in, 1x1 conv without demodulation, + bias, clamp."""
    torch.manual_seed(19)
    synthesis = SynthesisNetwork(6, 16, 3, noise_mode="const", conv_clamp=0.8, **TINY).double()
    block = synthesis.blocks[0]  # 4x4: the constant, conv1, torgb
    layer, torgb = block.conv1, block.torgb
    torch.testing.assert_close(layer.affine.bias, torch.ones_like(layer.affine.bias))
    with torch.no_grad():
        layer.noise_strength.fill_(0.7)
        layer.bias.normal_()
        torgb.bias.normal_()
    w = torch.randn(2, 6, dtype=torch.float64)
    x = torch.randn(2, 16, 4, 4, dtype=torch.float64)
    out, rgb = layer(x, w, "const"), torgb(layer(x, w, "const"), w)
    for i in range(2):
        style = F.linear(w[i], layer.affine.weight / math.sqrt(6), layer.affine.bias)
        y = F.conv2d(x[i : i + 1], hand_modulate(layer.weight, style, True), padding=1)
        y = y + 0.7 * layer.noise_const + layer.bias.view(1, -1, 1, 1)
        expected = lrelu(y).clamp(-0.8, 0.8)
        torch.testing.assert_close(out[i : i + 1], expected)
        style = F.linear(w[i], torgb.affine.weight / math.sqrt(6), torgb.affine.bias) / math.sqrt(16)
        z = F.conv2d(expected, hand_modulate(torgb.weight, style, False)) + torgb.bias.view(1, -1, 1, 1)
        torch.testing.assert_close(rgb[i : i + 1], z.clamp(-0.8, 0.8))


def test_w_indexing_shares_torgb_w_with_next_conv() -> None:
    """16 px: b4 (conv1 ← w0, torgb ← w1), b8 (conv0 ← w1, conv1 ← w2, torgb ← w3), b16 (conv0 ← w3,
    conv1 ← w4, torgb ← w5)."""
    synthesis = SynthesisNetwork(4, 16, 3, **TINY)
    seen: dict[str, int] = {}

    def record(name: str):
        return lambda _module, args: seen.__setitem__(name, int(args[0][0, 0]))

    for name, module in synthesis.named_modules():
        if name.endswith("affine"):
            module.register_forward_pre_hook(record(name))
    ws = torch.arange(6.0).view(1, 6, 1).expand(2, 6, 4)
    synthesis(ws)
    assert seen == {
        "blocks.0.conv1.affine": 0,
        "blocks.0.torgb.affine": 1,
        "blocks.1.conv0.affine": 1,
        "blocks.1.conv1.affine": 2,
        "blocks.1.torgb.affine": 3,
        "blocks.2.conv0.affine": 3,
        "blocks.2.conv1.affine": 4,
        "blocks.2.torgb.affine": 5,
    }


def test_conditional_discriminator_projects_on_mapped_label() -> None:
    """logit = <out(h), cmap(y)>/√cmap_dim, cmap from a label-only mapping network (8 layers, lr 0.01)."""
    torch.manual_seed(20)
    D = StyleGAN2Discriminator((3, 16, 16), num_classes=4, cmap_dim=5, **TINY)
    assert D.mapping.z_dim == 0 and len(D.mapping.layers) == 8 and D.mapping.w_avg is None
    assert D.mapping.layers[0].weight_gain == pytest.approx(0.01 / math.sqrt(5))
    captured = {}
    D.out.register_forward_hook(lambda _m, _a, out: captured.__setitem__("out", out))
    D.mapping.register_forward_hook(lambda _m, _a, out: captured.__setitem__("cmap", out))
    y = torch.tensor([0, 3, 1])
    logits = D(torch.randn(3, 3, 16, 16), y)
    assert captured["out"].shape == captured["cmap"].shape == (3, 5)
    torch.testing.assert_close(logits, (captured["out"] * captured["cmap"]).sum(1) / math.sqrt(5))


# ---------------------------------------------------------------------------------------------------------
# Shapes, noise, minibatch stddev, double backward


@pytest.mark.parametrize("res", [16, 32])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("num_classes", [0, 3])
@pytest.mark.parametrize("architecture", ["orig", "resnet"])
def test_shapes(res: int, channels: int, num_classes: int, architecture: str) -> None:
    torch.manual_seed(14)
    G = StyleGAN2Generator((channels, res, res), num_classes=num_classes, style_mixing=0.5, **TINY_G)
    D = StyleGAN2Discriminator(
        (channels, res, res), architecture=architecture, num_classes=num_classes, **TINY
    )
    assert G.num_ws == 2 * int(math.log2(res)) - 2
    assert (G.z_dim, G.w_dim, G.num_classes, D.num_classes) == (8, 8, num_classes, num_classes)
    y = torch.randint(0, 3, (5,)) if num_classes else None
    x = G(torch.randn(5, 8), y)
    assert x.shape == (5, channels, res, res)
    assert G.mapping(torch.randn(5, 8), y).shape == (5, G.num_ws, 8)
    logits = D(x, y)
    assert logits.shape == (5,) and torch.isfinite(logits).all()


@pytest.mark.parametrize("architecture", ["skip", "orig", "resnet"])
def test_synthesis_architectures(architecture: str) -> None:
    synthesis = SynthesisNetwork(8, 16, 3, architecture=architecture, **TINY)
    assert synthesis.num_ws == 6
    assert synthesis(torch.randn(2, 6, 8)).shape == (2, 3, 16, 16)
    torgbs = sum(block.torgb is not None for block in synthesis.blocks)
    assert torgbs == (3 if architecture == "skip" else 1)


def test_noise_modes() -> None:
    torch.manual_seed(15)
    G = StyleGAN2Generator((1, 16, 16), **TINY_G).eval()
    ws = G.mapping(torch.randn(2, 8))
    base = G.synthesis(ws, noise_mode="none")
    torch.testing.assert_close(G.synthesis(ws, noise_mode="random"), base)  # strengths start at 0
    for layer in G.modules():
        if hasattr(layer, "noise_strength"):
            layer.noise_strength.data.fill_(0.5)
    const = G.synthesis(ws, noise_mode="const")
    torch.testing.assert_close(G.synthesis(ws, noise_mode="const"), const)
    assert not torch.allclose(const, base)
    assert not torch.allclose(G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="random"))
    torch.testing.assert_close(G.synthesis(ws, noise_mode="none"), base)
    with pytest.raises(ConfigError):
        G.synthesis(ws, noise_mode="fixed")


def test_minibatch_stddev_uneven_batch() -> None:
    """6 samples, group size 4: groups of 3 (the largest divisor of 6 not above 4), strided: {0, 2, 4},
    {1, 3, 5}; two stat channels, each over half the channels."""
    torch.manual_seed(16)
    x = torch.randn(6, 4, 3, 3, dtype=torch.float64)
    out = MinibatchStdDev(group_size=4, num_channels=2)(x)
    assert out.shape == (6, 6, 3, 3)
    torch.testing.assert_close(out[:, :4], x)
    for i in range(6):
        group = x[i % 2 :: 2]
        for f in range(2):
            part = group[:, 2 * f : 2 * f + 2]
            std = torch.sqrt(((part - part.mean(0)) ** 2).mean(0) + 1e-8).mean()
            torch.testing.assert_close(out[i, 4 + f], std.expand(3, 3))
    D = StyleGAN2Discriminator((3, 16, 16), mbstd_group_size=4, **TINY)
    assert D(torch.randn(6, 3, 16, 16)).shape == (6,)
    assert D(torch.randn(7, 3, 16, 16)).shape == (7,)


@pytest.mark.parametrize("architecture", ["orig", "resnet"])
@pytest.mark.parametrize("num_classes", [0, 3])
def test_r1_double_backward(architecture: str, num_classes: int) -> None:
    torch.manual_seed(17)
    D = StyleGAN2Discriminator(
        (3, 16, 16), architecture=architecture, num_classes=num_classes, conv_clamp=256, **TINY
    )
    x = torch.randn(6, 3, 16, 16, requires_grad=True)
    y = torch.randint(0, 3, (6,)) if num_classes else None
    (grad,) = torch.autograd.grad(D(x, y).sum(), x, create_graph=True)
    penalty = grad.square().sum()
    penalty.backward()
    grads = [p.grad for p in D.parameters() if p.grad is not None]
    assert torch.isfinite(penalty) and len(grads) > 0
    assert all(torch.isfinite(g).all() for g in grads)
    assert D.conv.weight.grad.abs().sum() > 0


def test_path_length_double_backward_through_synthesis() -> None:
    """The path-length regulariser: G.mapping, then G.synthesis on ws that require grad, ∂(img·r)/∂ws with
    create_graph, then backward of its norm into G's weights."""
    torch.manual_seed(18)
    G = StyleGAN2Generator((3, 16, 16), **TINY_G)
    ws = G.mapping(torch.randn(4, 8)).detach().requires_grad_(True)
    img = G.synthesis(ws)
    (grad,) = torch.autograd.grad((img * torch.randn_like(img)).sum(), ws, create_graph=True)
    assert grad.shape == ws.shape
    grad.square().sum(2).mean(1).sqrt().mean().backward()
    weight_grad = G.synthesis.blocks[1].conv0.weight.grad
    assert weight_grad is not None and torch.isfinite(weight_grad).all() and weight_grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------------------
# Settings


@pytest.mark.parametrize("shape", [(3, 24, 24), (3, 8, 8), (3, 512, 512), (3, 16, 32), (16, 16)])
def test_bad_resolution(shape: tuple[int, ...]) -> None:
    with pytest.raises(ConfigError, match="square images"):
        StyleGAN2Generator(shape, **TINY_G)
    with pytest.raises(ConfigError, match="square images"):
        StyleGAN2Discriminator(shape, **TINY)


def test_bad_settings() -> None:
    with pytest.raises(ConfigError, match="architecture"):
        StyleGAN2Discriminator((3, 16, 16), architecture="skip", **TINY)
    with pytest.raises(ConfigError, match="architecture"):
        SynthesisNetwork(8, 16, 3, architecture="unet", **TINY)
    with pytest.raises(ConfigError, match="noise_mode"):
        StyleGAN2Generator((3, 16, 16), noise_mode="fixed", **TINY_G)
    with pytest.raises(ConfigError, match="projection"):
        StyleGAN2Discriminator((3, 16, 16), num_classes=3, cond="acgan", **TINY)
    with pytest.raises(ConfigError, match="style_mixing"):
        StyleGAN2Generator((3, 16, 16), style_mixing=1.5, **TINY_G)
    with pytest.raises(ConfigError, match="mbstd_channels"):
        StyleGAN2Discriminator((3, 16, 16), mbstd_channels=3, **TINY)
