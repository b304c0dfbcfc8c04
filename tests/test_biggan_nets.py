"""BigGAN's G and D (Brock et al. 2019) against computations written out here: shapes, hierarchical z,
ccbn, the shared embedding, orthogonal init, the projection head, attention placement, config errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ganforge.errors import ConfigError
from ganforge.nets.attention import SelfAttention
from ganforge.nets.biggan import (
    BigGANDiscriminator,
    BigGANGenerator,
    ConditionalBatchNorm,
    DBlock,
    GBlock,
)

Z, WIDTH, SHARED, CLASSES = 24, 2, 8, 5  # z splits into 3 (16 px) or 4 (32 px) chunks


def _g(res: int = 32, channels: int = 3, **kw) -> BigGANGenerator:
    kw = {"z_dim": Z, "width": WIDTH, "shared_dim": SHARED, "num_classes": CLASSES, **kw}
    return BigGANGenerator((channels, res, res), **kw)


def _d(res: int = 32, channels: int = 3, **kw) -> BigGANDiscriminator:
    return BigGANDiscriminator((channels, res, res), **{"width": WIDTH, "num_classes": CLASSES, **kw})


def _weight(layer: nn.Module) -> Tensor:
    """The weight as initialised: under spectral norm, the parametrization's original."""
    return layer.parametrizations.weight.original if parametrize.is_parametrized(layer) else layer.weight


def _conditions(g: BigGANGenerator, z: Tensor, y: Tensor | None) -> tuple[Tensor, list[Tensor]]:
    """What G's linear layer and its ccbn layers (in order: block 0 norm1, norm2, block 1, ...) receive."""
    seen: list[Tensor] = []
    into_linear: list[Tensor] = []
    norms = [m for m in g.modules() if isinstance(m, ConditionalBatchNorm)]
    hooks = [m.register_forward_hook(lambda m, a, o: seen.append(a[1])) for m in norms]
    hooks.append(g.linear.register_forward_hook(lambda m, a, o: into_linear.append(a[0])))
    try:
        g(z, y)
    finally:
        for hook in hooks:
            hook.remove()
    return into_linear[0], seen


@pytest.mark.parametrize("res", [16, 32])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("num_classes", [0, CLASSES])
@pytest.mark.parametrize("attention", [False, True])
def test_shapes(res: int, channels: int, num_classes: int, attention: bool) -> None:
    torch.manual_seed(0)
    g = _g(res, channels, num_classes=num_classes, attention_res=(res // 2,) if attention else ())
    d = _d(res, channels, num_classes=num_classes, attention_res=(8,) if attention else ())
    y = torch.tensor([0, 3, 4]) if num_classes else None
    x = g(torch.randn(3, Z), y)
    assert x.shape == (3, channels, res, res)
    assert x.abs().max() <= 1.0
    logits = d(x, y)
    assert logits.shape == (3,) and torch.isfinite(logits).all()
    assert sum(isinstance(m, SelfAttention) for m in [*g.modules(), *d.modules()]) == 2 * attention


def test_hierarchical_z_chunks_reach_only_their_block() -> None:
    torch.manual_seed(0)
    g = _g(32)  # 3 blocks: 4 chunks of 6
    z, y = torch.randn(3, Z), torch.tensor([1, 2, 4])
    into_linear, conds = _conditions(g, z, y)
    assert len(conds) == 6  # two ccbn per block
    torch.testing.assert_close(into_linear, z[:, :6])
    shared = g.shared.weight[y]
    for i, c in enumerate(conds):  # block i // 2 gets cat(shared(y), z chunk i // 2 + 1)
        torch.testing.assert_close(c, torch.cat([shared, z[:, 6 * (i // 2 + 1) : 6 * (i // 2 + 2)]], 1))
    for chunk in range(4):
        moved = z.clone()
        moved[:, 6 * chunk : 6 * (chunk + 1)] += 1.0
        into_linear2, conds2 = _conditions(g, moved, y)
        assert torch.equal(into_linear2, into_linear) == (chunk != 0)  # chunk 0: the linear layer only
        for i, (c, c2) in enumerate(zip(conds, conds2, strict=True)):
            assert torch.equal(c, c2) == (i // 2 != chunk - 1), (chunk, i)


def test_non_hierarchical_and_unconditional_conditioning() -> None:
    torch.manual_seed(0)
    z, y = torch.randn(3, 25), torch.tensor([0, 1, 2])
    g = _g(32, z_dim=25, hierarchical=False)  # any z_dim: no chunks
    into_linear, conds = _conditions(g, z, y)
    torch.testing.assert_close(into_linear, z)
    assert len(conds) == 6 and all(torch.equal(c, g.shared.weight[y]) for c in conds)
    g = _g(32, num_classes=0)  # unconditional, hierarchical: the z chunk alone
    into_linear, conds = _conditions(g, z[:, :Z], None)
    assert g.shared is None
    for i, c in enumerate(conds):
        torch.testing.assert_close(c, z[:, 6 * (i // 2 + 1) : 6 * (i // 2 + 2)])
    g = _g(32, z_dim=25, num_classes=0, hierarchical=False)  # plain affine BN
    assert not any(isinstance(m, ConditionalBatchNorm) for m in g.modules())
    norms = [m for m in g.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 7 and all(m.affine for m in norms)
    assert g(z, None).shape == (3, 3, 32, 32)


def test_ccbn_by_hand() -> None:
    torch.manual_seed(0)
    ccbn = ConditionalBatchNorm(4, 6, eps=1e-5)
    assert ccbn.gain.bias is None and ccbn.bias.bias is None  # the authors' which_linear(bias=False)
    wg, wb = torch.randn(4, 6), torch.randn(4, 6)
    with torch.no_grad():
        ccbn.gain.weight.copy_(wg)
        ccbn.bias.weight.copy_(wb)
    x, c = torch.randn(3, 4, 5, 5) * 2 + 1, torch.randn(3, 6)
    mean = x.mean((0, 2, 3), keepdim=True)
    var = ((x - mean) ** 2).mean((0, 2, 3), keepdim=True)  # biased, as batch norm in training
    normed = (x - mean) / torch.sqrt(var + 1e-5)
    expected = normed * (1 + c @ wg.T)[:, :, None, None] + (c @ wb.T)[:, :, None, None]
    torch.testing.assert_close(ccbn(x, c), expected)


def test_gblock_by_hand() -> None:
    torch.manual_seed(0)
    block = GBlock(4, 8, cond_dim=3)
    x, c = torch.randn(2, 4, 3, 3), torch.randn(2, 3)
    with torch.no_grad():
        h = F.relu(block.norm1(x, c))
        h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = F.conv2d(h, block.conv1.weight, block.conv1.bias, padding=1)
        h = F.conv2d(F.relu(block.norm2(h, c)), block.conv2.weight, block.conv2.bias, padding=1)
        up = x.repeat_interleave(2, 2).repeat_interleave(2, 3)  # nearest ×2
        expected = h + F.conv2d(up, block.shortcut.weight, block.shortcut.bias)
        torch.testing.assert_close(block(x, c), expected)


@pytest.mark.parametrize("preactivation", [False, True])
def test_dblock_by_hand(preactivation: bool) -> None:
    torch.manual_seed(0)
    block = DBlock(3, 8, preactivation=preactivation, downsample=True)
    x = torch.randn(2, 3, 8, 8)
    w1, b1, w2, b2 = block.conv1.weight, block.conv1.bias, block.conv2.weight, block.conv2.bias
    ws, bs = block.shortcut_conv.weight, block.shortcut_conv.bias
    with torch.no_grad():
        h = x.clamp(min=0) if preactivation else x  # no ReLU on the image in the first block
        h = F.conv2d(F.conv2d(h, w1, b1, padding=1).clamp(min=0), w2, b2, padding=1)
        pool = lambda t: t.unflatten(3, (4, 2)).unflatten(2, (4, 2)).mean((3, 5))  # avg 2x2
        if preactivation:
            short = pool(F.conv2d(x, ws, bs))  # conv1x1 then pool
        else:
            short = F.conv2d(pool(x), ws, bs)  # pool then conv1x1
        torch.testing.assert_close(block(x), pool(h) + short)
    same = DBlock(8, 8, preactivation=True, downsample=False)
    assert same.shortcut_conv is None  # identity shortcut
    x = torch.randn(2, 8, 4, 4)
    with torch.no_grad():
        h = F.conv2d(F.conv2d(x.clamp(min=0), same.conv1.weight, same.conv1.bias, padding=1).clamp(min=0),
                     same.conv2.weight, same.conv2.bias, padding=1)  # fmt: skip
        torch.testing.assert_close(same(x), h + x)


def test_shared_embedding_is_one_module_without_spectral_norm() -> None:
    torch.manual_seed(0)
    g = _g(32)
    assert isinstance(g.shared, nn.Embedding) and not parametrize.is_parametrized(g.shared)
    assert [m for m in g.modules() if isinstance(m, nn.Embedding)] == [g.shared]
    outputs: list[Tensor] = []
    g.shared.register_forward_hook(lambda m, a, o: outputs.append(o))
    y = torch.tensor([4, 0, 2])
    _, conds = _conditions(g, torch.randn(3, Z), y)
    assert len(outputs) == 1  # looked up once per forward, for every block
    torch.testing.assert_close(outputs[0], g.shared.weight[y])
    assert all(torch.equal(c[:, :SHARED], outputs[0]) for c in conds)
    # every other conv and linear of G is spectrally normalised, ccbn's gain and bias included
    layers = [m for m in g.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == 1 + 3 * (3 + 4) + 1 and all(parametrize.is_parametrized(m) for m in layers)
    d = _d(32)
    assert all(
        parametrize.is_parametrized(m)
        for m in d.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding))
    )


def _orthonormal(w: Tensor) -> bool:
    w = w.reshape(w.shape[0], -1)
    small = min(w.shape)
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    return torch.allclose(gram, torch.eye(small), atol=1e-5)


def test_orthogonal_init_and_zero_biases() -> None:
    torch.manual_seed(0)
    nets = [_g(32, attention_res=(16,)), _d(32, attention_res=(8,))]
    for net in nets:
        layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding))]
        assert layers and all(_orthonormal(_weight(m)) for m in layers)
        assert all(m.bias is None or not m.bias.any() for m in layers if not isinstance(m, nn.Embedding))
    g = _g(32, init="N02", width=8)
    w = torch.cat([_weight(m).flatten() for m in g.modules() if isinstance(m, (nn.Conv2d, nn.Linear))])
    assert abs(float(w.detach().std()) - 0.02) < 0.002 and not _orthonormal(_weight(g.blocks[0].conv1))


def test_projection_head() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(3, 3, 32, 32), torch.tensor([0, 4, 4])
    d = _d(32, spectral_norm=False)
    features: list[Tensor] = []
    d.head.register_forward_pre_hook(lambda m, a: features.append(a[0]))
    with torch.no_grad():
        d.head.linear.weight.zero_()
        d.head.linear.bias.zero_()
        out = d(x, y)
    assert features[0].shape == (3, 4 * WIDTH)
    with torch.no_grad():  # ReLU, then global sum pooling (SNGAN's) over the blocks' 8x8 features
        torch.testing.assert_close(features[0], d.blocks(x).clamp(min=0).flatten(2).sum(2))
    torch.testing.assert_close(out, (d.head.embed.weight[y] * features[0]).sum(1))
    d = _d(32).eval()  # spectral norm: the effective weights, fixed in eval
    features.clear()
    d.head.register_forward_pre_hook(lambda m, a: features.append(a[0]))
    with torch.no_grad():
        out = d(x, y)
        lin, emb = d.head.linear.weight, d.head.embed.weight
        assert torch.linalg.matrix_norm(lin, 2) == pytest.approx(1.0, abs=1e-3)
        expected = features[0] @ lin[0] + d.head.linear.bias + (emb[y] * features[0]).sum(1)
    torch.testing.assert_close(out, expected)
    assert _d(32, num_classes=0).head.embed is None


def test_attention_at_the_named_resolution_starts_as_identity() -> None:
    torch.manual_seed(0)
    for res, g_at, d_at in [(32, 16, 8), (16, 8, 8)]:
        g, d = _g(res, attention_res=(g_at,)), _d(res, attention_res=(d_at,))
        shapes: list[tuple[int, ...]] = []
        record = lambda m, a: shapes.append(tuple(a[0].shape))  # noqa: B023 (used within the loop)
        for m in [*g.modules(), *d.modules()]:
            if isinstance(m, SelfAttention):
                m.register_forward_pre_hook(record)
        y = torch.tensor([1, 2, 3])
        d(g(torch.randn(3, Z), y), y)
        assert shapes == [(3, 4 * WIDTH, g_at, g_at), (3, 4 * WIDTH, d_at, d_at)]
    # D at 32 px: after the second block (the first to output 8x8), not after the plain ones
    kinds = [type(m).__name__ for m in _d(32, attention_res=(8,)).blocks]
    assert kinds == ["DBlock", "DBlock", "SelfAttention", "DBlock", "DBlock"]
    # γ = 0: the same output as the net without attention, given the same other weights
    torch.manual_seed(1)
    plain, attended = _g(32), _g(32, attention_res=(8,))
    missing = attended.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("attention.8.") for k in missing)
    z, y = torch.randn(3, Z), torch.tensor([0, 1, 2])
    torch.testing.assert_close(attended(z, y), plain(z, y))


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="16/32/64/128 px"):
        _g(24)
    with pytest.raises(ConfigError, match="16/32/64/128 px"):
        _d(24)
    with pytest.raises(ConfigError, match="z_dim=25 must split into 4 equal chunks"):
        _g(32, z_dim=25)
    with pytest.raises(ConfigError, match="3 equal chunks"):
        BigGANGenerator((3, 16, 16))  # the default z_dim=128 does not split over 3
    with pytest.raises(ConfigError, match="attention_res"):
        _g(32, attention_res=(4,))
    with pytest.raises(ConfigError, match="attention_res"):
        _d(32, attention_res=(32,))
    with pytest.raises(ConfigError, match="cond='acgan'"):
        _d(32, cond="acgan")
    with pytest.raises(ConfigError, match="init"):
        _g(32, init="kaiming")
    with pytest.raises(ConfigError) as info:
        _g(32, z_dim=25)
    assert "\n" not in str(info.value)  # one readable line


def test_double_backward_through_d() -> None:
    torch.manual_seed(0)
    d = _d(32, attention_res=(16, 8))
    with torch.no_grad():
        for m in d.modules():
            if isinstance(m, SelfAttention):
                m.gamma.fill_(0.5)  # let the attention path carry gradient too
    x, y = torch.randn(3, 3, 32, 32, requires_grad=True), torch.tensor([0, 1, 4])
    (grad,) = torch.autograd.grad(d(x, y).sum(), x, create_graph=True)
    penalty = grad.square().sum((1, 2, 3)).mean()
    penalty.backward()
    grads = {n: p.grad for n, p in d.named_parameters()}
    # the head's bias alone does not reach ∂D/∂x; every weight gets a finite gradient, attention's too
    assert [n for n, g in grads.items() if g is None] == ["head.linear.bias"]
    assert all(torch.isfinite(g).all() for g in grads.values() if g is not None)
    weights = {n: g for n, g in grads.items() if n.endswith("weight.original")}
    assert len(weights) == 3 + 4 + 3 + 4 + 2 + 2 + 2 and all(g.abs().sum() > 0 for g in weights.values())
    g = _g(32, channels=1)
    d1 = _d(32, channels=1)
    d1(g(torch.randn(3, Z), y), y).mean().backward()
    assert g.shared.weight.grad is not None and g.linear.parametrizations.weight.original.grad is not None


@pytest.mark.parametrize(
    ("res", "g_chain", "d_outs", "d_down"),
    [  # the authors' G_arch / D_arch tables, channel multipliers of width
        (64, [16, 16, 8, 4, 2], [1, 2, 4, 8, 16], [True, True, True, True, False]),
        (128, [16, 16, 8, 4, 2, 1], [1, 2, 4, 8, 16, 16], [True, True, True, True, True, False]),
    ],
)
def test_64_and_128_px_follow_the_authors_tables(
    res: int, g_chain: list[int], d_outs: list[int], d_down: list[bool]
) -> None:
    g = BigGANGenerator((3, res, res), z_dim=len(g_chain) * 2, width=1, num_classes=2, shared_dim=4)
    assert g.linear.out_features == g_chain[0] * 16 and g.chunk_size == 2
    assert [(b.conv1.in_channels, b.conv2.out_channels) for b in g.blocks] == list(
        zip(g_chain[:-1], g_chain[1:], strict=True)
    )
    d = BigGANDiscriminator((3, res, res), width=1, num_classes=2)
    blocks = list(d.blocks)
    assert [(b.conv1.in_channels, b.conv2.out_channels) for b in blocks] == list(
        zip([3, *d_outs[:-1]], d_outs, strict=True)
    )
    assert [b.downsample for b in blocks] == d_down and [b.preactivation for b in blocks] == [False] + [
        True
    ] * (len(blocks) - 1)
    y = torch.tensor([0, 1])
    assert d(g(torch.randn(2, g.z_dim), y), y).shape == (2,)
