"""Adversarial losses and penalties: values, gradients and properties against hand-derived formulas."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import nn

from ganforge import losses
from ganforge.errors import ConfigError
from ganforge.losses import GANLoss

# Hand-picked logits; the second case has batches of different sizes so a wrong reduction shows.
CASES = [([2.0, -1.0], [0.5, -3.0]), ([2.0, -1.0, 0.25], [0.5, -3.0])]


def sigmoid(x: float) -> float:
    """The logistic function 1 / (1 + e^-x), i.e. D's probability that x's sample is real."""
    return 1.0 / (1.0 + math.exp(-x))


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


# --- expected values, from the textbook definitions with D = sigmoid(logit) ---------------------
def expected_d(name: str, real: list[float], fake: list[float]) -> float:
    """The D loss ``name`` computed with plain floats."""
    if name in ("minimax", "nonsaturating"):
        # -E[log D(x)] - E[log(1 - D(G(z)))]
        return -mean([math.log(sigmoid(r)) for r in real]) - mean([math.log(1 - sigmoid(f)) for f in fake])
    if name == "lsgan":
        # ½ E[(D(x) - 1)²] + ½ E[D(G(z))²]
        return 0.5 * mean([(r - 1) ** 2 for r in real]) + 0.5 * mean([f**2 for f in fake])
    if name == "wgan":
        # E[D(G(z))] - E[D(x)]
        return mean(fake) - mean(real)
    if name == "hinge":
        # E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))]
        return mean([max(0.0, 1 - r) for r in real]) + mean([max(0.0, 1 + f) for f in fake])
    raise KeyError(name)


def expected_g(name: str, fake: list[float]) -> float:
    """The G loss ``name`` computed with plain floats."""
    if name == "minimax":
        # E[log(1 - D(G(z)))]  (the saturating loss of the original game)
        return mean([math.log(1 - sigmoid(f)) for f in fake])
    if name == "nonsaturating":
        # -E[log D(G(z))]
        return -mean([math.log(sigmoid(f)) for f in fake])
    if name == "lsgan":
        # ½ E[(D(G(z)) - 1)²]
        return 0.5 * mean([(f - 1) ** 2 for f in fake])
    if name in ("wgan", "hinge"):
        # -E[D(G(z))]
        return -mean(fake)
    raise KeyError(name)


# --- expected derivatives, d loss / d logit, derived by hand -------------------------------------
def expected_d_grads(name: str, real: list[float], fake: list[float]) -> tuple[list[float], list[float]]:
    """(dL/dreal_i, dL/dfake_j) of the D loss ``name``."""
    n, m = len(real), len(fake)
    if name in ("minimax", "nonsaturating"):
        # d/dr softplus(-r) = -sigmoid(-r);  d/df softplus(f) = sigmoid(f)
        return [-sigmoid(-r) / n for r in real], [sigmoid(f) / m for f in fake]
    if name == "lsgan":
        # d/dr ½(r - 1)² = r - 1;  d/df ½f² = f
        return [(r - 1) / n for r in real], [f / m for f in fake]
    if name == "wgan":
        return [-1.0 / n for _ in real], [1.0 / m for _ in fake]
    if name == "hinge":
        # d/dr max(0, 1 - r) = -1 where r < 1;  d/df max(0, 1 + f) = 1 where f > -1
        return [-1.0 / n if r < 1 else 0.0 for r in real], [1.0 / m if f > -1 else 0.0 for f in fake]
    raise KeyError(name)


def expected_g_grads(name: str, fake: list[float]) -> list[float]:
    """dL/dfake_j of the G loss ``name``."""
    m = len(fake)
    if name == "minimax":
        # d/df log(1 - sigmoid(f)) = -sigmoid(f)
        return [-sigmoid(f) / m for f in fake]
    if name == "nonsaturating":
        # d/df -log sigmoid(f) = -(1 - sigmoid(f)) = -sigmoid(-f)
        return [-sigmoid(-f) / m for f in fake]
    if name == "lsgan":
        return [(f - 1) / m for f in fake]
    if name in ("wgan", "hinge"):
        return [-1.0 / m for _ in fake]
    raise KeyError(name)


NAMES = ["minimax", "nonsaturating", "lsgan", "wgan", "hinge"]


def d_fn(name: str):
    return getattr(losses, f"{name}_d")


def g_fn(name: str):
    return getattr(losses, f"{name}_g")


def logits(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, requires_grad=True)


# --- values --------------------------------------------------------------------------------------
@pytest.mark.parametrize("real, fake", CASES)
@pytest.mark.parametrize("name", NAMES)
def test_d_loss_value(name, real, fake):
    out = d_fn(name)(logits(real), logits(fake))
    assert out.dim() == 0
    assert out.item() == pytest.approx(expected_d(name, real, fake), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("real, fake", CASES)
@pytest.mark.parametrize("name", NAMES)
def test_g_loss_value(name, real, fake):
    out = g_fn(name)(logits(fake))
    assert out.dim() == 0
    assert out.item() == pytest.approx(expected_g(name, fake), rel=1e-12, abs=1e-12)


def test_values_of_the_example_worked_by_hand():
    """The same numbers written out, so a mistake in the helpers above cannot hide one in losses.py."""
    r, f = logits([2.0, -1.0]), logits([0.5, -3.0])
    # softplus(x) = log(1 + e^x): minimax D = mean(softplus(-r)) + mean(softplus(f))
    sp = lambda x: math.log1p(math.exp(x))
    assert losses.minimax_d(r, f).item() == pytest.approx((sp(-2) + sp(1)) / 2 + (sp(0.5) + sp(-3)) / 2)
    assert losses.minimax_g(f).item() == pytest.approx(-(sp(0.5) + sp(-3)) / 2)
    assert losses.nonsaturating_g(f).item() == pytest.approx((sp(-0.5) + sp(3)) / 2)
    assert losses.lsgan_d(r, f).item() == pytest.approx(0.5 * (1 + 4) / 2 + 0.5 * (0.25 + 9) / 2)  # 3.5625
    assert losses.lsgan_g(f).item() == pytest.approx(0.5 * (0.25 + 16) / 2)  # 4.0625
    assert losses.wgan_d(r, f).item() == pytest.approx(-1.25 - 0.5)
    assert losses.wgan_g(f).item() == pytest.approx(1.25)
    assert losses.hinge_d(r, f).item() == pytest.approx((0 + 2) / 2 + (1.5 + 0) / 2)  # 1.75
    assert losses.hinge_g(f).item() == pytest.approx(1.25)


# --- gradients -----------------------------------------------------------------------------------
@pytest.mark.parametrize("real, fake", CASES)
@pytest.mark.parametrize("name", NAMES)
def test_d_loss_gradient(name, real, fake):
    r, f = logits(real), logits(fake)
    grad_r, grad_f = torch.autograd.grad(d_fn(name)(r, f), (r, f))
    want_r, want_f = expected_d_grads(name, real, fake)
    torch.testing.assert_close(grad_r, torch.tensor(want_r, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_f, torch.tensor(want_f, dtype=torch.float64), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fake", [f for _, f in CASES] + [[-10.0, 0.0, 10.0]])
@pytest.mark.parametrize("name", NAMES)
def test_g_loss_gradient(name, fake):
    f = logits(fake)
    (grad,) = torch.autograd.grad(g_fn(name)(f), f)
    want = torch.tensor(expected_g_grads(name, fake), dtype=torch.float64)
    torch.testing.assert_close(grad, want, rtol=1e-12, atol=1e-12)


# --- properties ----------------------------------------------------------------------------------
def test_nonsaturating_d_is_the_minimax_d():
    r, f = logits([2.0, -1.0]), logits([0.5, -3.0])
    assert losses.nonsaturating_d(r, f).item() == losses.minimax_d(r, f).item()


def test_nonsaturating_g_keeps_its_gradient_where_minimax_saturates():
    """D confidently rejects the fakes (logit -10): minimax G's gradient vanishes, non-saturating G's not."""
    f = logits([-10.0, -10.0])
    (g_minimax,) = torch.autograd.grad(losses.minimax_g(f), f)
    (g_nonsat,) = torch.autograd.grad(losses.nonsaturating_g(f), f)
    # both push the fake logits up (descent on a negative gradient increases them)
    assert (g_minimax < 0).all() and (g_nonsat < 0).all()
    assert g_minimax.abs().sum().item() < 1e-4  # sigmoid(-10) ≈ 4.5e-5
    assert g_nonsat.abs().sum().item() > 0.99  # sigmoid(10) ≈ 1
    assert (g_nonsat.abs() / g_minimax.abs()).min().item() > 1e4


def test_both_g_losses_fall_as_d_is_fooled():
    """Both G losses decrease strictly as D's logit on the fakes rises."""
    grid = torch.linspace(-8, 8, 33, dtype=torch.float64)
    mm = torch.stack([losses.minimax_g(x.view(1)) for x in grid])
    ns = torch.stack([losses.nonsaturating_g(x.view(1)) for x in grid])
    assert (mm.diff() < 0).all() and (ns.diff() < 0).all()


@pytest.mark.parametrize("name", ["minimax", "wgan"])
def test_zero_sum_games(name):
    """Minimax and Wasserstein games: G's loss is minus D's fake term, so D + G does not depend on fakes."""
    r = logits([2.0, -1.0])
    totals = [(d_fn(name)(r, logits(f)) + g_fn(name)(logits(f))).item() for f in ([0.5, -3.0], [7.0, 1.0])]
    assert totals[0] == pytest.approx(totals[1], abs=1e-12)


def test_hinge_d_is_zero_beyond_the_margin():
    r, f = logits([1.0, 1.5, 30.0]), logits([-1.0, -2.0, -30.0])
    out = losses.hinge_d(r, f)
    assert out.item() == 0.0
    grad_r, grad_f = torch.autograd.grad(out, (r, f))
    assert not grad_r.any() and not grad_f.any()
    # one sample inside the margin is penalised by its distance to it, averaged over its batch
    assert losses.hinge_d(logits([0.5, 2.0]), logits([-2.0])).item() == pytest.approx(0.25)
    assert losses.hinge_d(logits([2.0]), logits([-0.5, -3.0])).item() == pytest.approx(0.25)


def test_lsgan_targets():
    """LSGAN with a=0, b=c=1: D is perfect at D(x)=1, D(G(z))=0; G is perfect at D(G(z))=1."""
    assert losses.lsgan_d(logits([1.0, 1.0]), logits([0.0])).item() == 0.0
    assert losses.lsgan_g(logits([1.0, 1.0])).item() == 0.0
    assert losses.lsgan_g(logits([0.0])).item() == pytest.approx(0.5)


def test_minimax_d_optimum_is_confident_separation():
    """The BCE D loss approaches 0 as real logits → +∞ and fake logits → -∞, and is 2·log 2 at D = ½."""
    assert losses.minimax_d(logits([40.0]), logits([-40.0])).item() < 1e-15
    assert losses.minimax_d(logits([0.0, 0.0]), logits([0.0])).item() == pytest.approx(2 * math.log(2))


def test_losses_are_stable_for_huge_logits():
    big = logits([1e4, -1e4])
    for name in NAMES:
        assert torch.isfinite(d_fn(name)(big, big)).item()
        assert torch.isfinite(g_fn(name)(big)).item()
    assert losses.nonsaturating_g(logits([-1e4])).item() == pytest.approx(1e4)  # softplus(1e4), no overflow


# --- penalties -----------------------------------------------------------------------------------
def tiny_d(in_features: int = 3, seed: int = 0) -> nn.Module:
    """A small smooth discriminator, one logit per sample, in float64."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(in_features, 4), nn.Tanh(), nn.Linear(4, 1), nn.Flatten(0)
    ).double()


def grad_norms_loop(discriminator: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """‖∂D(x_i)/∂x_i‖ per sample, by one autograd call on each sample alone."""
    norms = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1].detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(discriminator(xi).sum(), xi)
        norms.append(g.pow(2).sum().sqrt())
    return torch.stack(norms)


def grad_norms_fd(discriminator: nn.Module, x: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    """‖∂D(x_i)/∂x_i‖ per sample, by central finite differences in every input coordinate."""
    norms = []
    with torch.no_grad():
        for i in range(x.shape[0]):
            xi = x[i : i + 1].clone()
            flat = xi.view(-1)
            sq = 0.0
            for k in range(flat.numel()):
                old = flat[k].item()
                flat[k] = old + h
                up = discriminator(xi).item()
                flat[k] = old - h
                down = discriminator(xi).item()
                flat[k] = old
                sq += ((up - down) / (2 * h)) ** 2
            norms.append(math.sqrt(sq))
    return torch.tensor(norms, dtype=torch.float64)


SHAPES = [(5, 3), (4, 3, 2, 2)]  # flat samples, and image-like samples (C, H, W) = (3, 2, 2)


def batch(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("shape", SHAPES)
def test_brute_force_norms_agree(shape):
    """The two brute-force references agree, so either can stand for the truth below."""
    disc = tiny_d(math.prod(shape[1:]))
    x = batch(shape, 1)
    torch.testing.assert_close(grad_norms_loop(disc, x), grad_norms_fd(disc, x), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("gamma", [10.0, 0.3])
def test_r1_penalty_matches_brute_force(shape, gamma):
    disc = tiny_d(math.prod(shape[1:]))
    real, fake = batch(shape, 1), batch(shape, 2)
    out = losses.r1_penalty(disc, real, fake, gamma=gamma)
    # γ/2 · mean_i ‖∇D(x_i)‖² on the real batch
    want = gamma / 2 * grad_norms_loop(disc, real).pow(2).mean()
    assert out.dim() == 0
    torch.testing.assert_close(out, want, rtol=1e-10, atol=1e-12)


def test_r1_penalty_ignores_the_fake_batch():
    disc = tiny_d()
    real = batch((5, 3), 1)
    a = losses.r1_penalty(disc, real, batch((5, 3), 2))
    b = losses.r1_penalty(disc, real, torch.full((5, 3), float("nan"), dtype=torch.float64))
    assert a.item() == b.item()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("weight, center", [(10.0, 1.0), (3.0, 0.25)])
def test_gradient_penalty_matches_brute_force(shape, weight, center):
    disc = tiny_d(math.prod(shape[1:]))
    real, fake = batch(shape, 1), batch(shape, 2)
    torch.manual_seed(123)
    out = losses.gradient_penalty(disc, real, fake, weight=weight, center=center)
    # the same interpolation: one alpha ~ U[0, 1) per sample, broadcast over its features
    torch.manual_seed(123)
    alpha = torch.rand((shape[0],) + (1,) * (len(shape) - 1), dtype=torch.float64)
    mixed = alpha * real + (1 - alpha) * fake
    # weight · mean_i (‖∇D(x̂_i)‖ - center)²
    want = weight * (grad_norms_loop(disc, mixed) - center).pow(2).mean()
    assert out.dim() == 0
    torch.testing.assert_close(out, want, rtol=1e-10, atol=1e-12)


def test_gradient_penalty_on_identical_batches_needs_no_seed():
    """With real == fake every interpolate is the sample itself."""
    disc = tiny_d()
    x = batch((6, 3), 3)
    want = 10.0 * (grad_norms_fd(disc, x) - 1.0).pow(2).mean()
    torch.testing.assert_close(losses.gradient_penalty(disc, x, x.clone()), want, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("weight, center", [(10.0, 1.0), (2.0, 0.0), (0.5, 3.0)])
def test_gradient_penalty_of_a_linear_critic(weight, center):
    """D(x) = w·x + b has ∇D = w everywhere: the penalty is weight · (‖w‖ - center)² whatever alpha is."""
    disc = nn.Sequential(nn.Linear(3, 1), nn.Flatten(0)).double()
    with torch.no_grad():
        # ‖w‖ = sqrt(0.36 + 0.64 + 4) = sqrt(5)
        disc[0].weight.copy_(torch.tensor([[0.6, -0.8, 2.0]], dtype=torch.float64))
        disc[0].bias.fill_(7.0)
    real, fake = batch((8, 3), 1), batch((8, 3), 2)
    out = losses.gradient_penalty(disc, real, fake, weight=weight, center=center)
    assert out.item() == pytest.approx(weight * (math.sqrt(5) - center) ** 2, rel=1e-12)


def test_gradient_penalty_does_not_reach_the_generator():
    disc = tiny_d()
    gen_weight = torch.ones(3, dtype=torch.float64, requires_grad=True)
    fake = batch((5, 3), 2) * gen_weight
    out = losses.gradient_penalty(disc, batch((5, 3), 1), fake)
    assert torch.autograd.grad(out, gen_weight, allow_unused=True) == (None,)


PENALTIES = {
    "gradient_penalty": functools.partial(losses.gradient_penalty, weight=10.0, center=1.0),
    "r1_penalty": functools.partial(losses.r1_penalty, gamma=10.0),
}


@pytest.mark.parametrize("penalty", PENALTIES.values(), ids=PENALTIES.keys())
def test_penalty_gradient_wrt_discriminator_weights(penalty):
    """The penalty keeps its graph (create_graph): its gradient in D's weights matches finite differences."""
    disc = tiny_d()
    real, fake = batch((5, 3), 1), batch((5, 3), 2)
    params = list(disc.parameters())

    def value() -> torch.Tensor:
        torch.manual_seed(7)  # the same alpha in every evaluation
        return penalty(disc, real, fake)

    grads = torch.autograd.grad(value(), params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]
    first_weight = grads[0]
    assert first_weight.abs().max().item() > 1e-3  # the penalty does train D

    def shifted(flat: torch.Tensor, k: int, delta: float) -> float:
        """The penalty with one parameter entry moved by ``delta`` (and put back)."""
        old = flat[k].item()
        with torch.no_grad():
            flat[k] = old + delta
        try:
            return value().item()
        finally:
            with torch.no_grad():
                flat[k] = old

    h = 1e-6
    for p, g in zip(params, grads, strict=True):
        flat, flat_g = p.detach().view(-1), g.view(-1)
        for k in range(flat.numel()):
            numeric = (shifted(flat, k, h) - shifted(flat, k, -h)) / (2 * h)
            assert flat_g[k].item() == pytest.approx(numeric, rel=1e-5, abs=1e-7)


# --- GANLoss -------------------------------------------------------------------------------------
def test_discriminator_loss_adds_every_penalty():
    calls = []

    def const(value: float):
        def penalty(discriminator, real, fake, *, y_real=None, y_fake=None):
            calls.append((discriminator, real, fake, y_real, y_fake))
            return torch.tensor(value, dtype=torch.float64)

        return penalty

    disc = tiny_d()
    real, fake = batch((2, 3), 1), batch((2, 3), 2)
    loss = GANLoss(losses.wgan_d, losses.wgan_g, penalties={"a": const(0.25), "b": const(2.0), "off": None})
    assert set(loss.penalties) == {"a", "b"}
    r, f = logits([2.0, -1.0]), logits([0.5, -3.0])
    out = loss.discriminator_loss(disc, r, f, real, fake)
    assert out.item() == pytest.approx(-1.75 + 0.25 + 2.0)
    assert len(calls) == 2
    assert all(c[0] is disc and c[1] is real and c[2] is fake and c[3:] == (None, None) for c in calls)
    y_real, y_fake = torch.tensor([0, 1]), torch.tensor([1, 1])  # a conditional D: each batch's labels
    loss.discriminator_loss(disc, r, f, real, fake, y_real, y_fake)
    assert all(c[3] is y_real and c[4] is y_fake for c in calls[2:]) and len(calls) == 4


def test_discriminator_loss_with_real_penalties():
    disc = tiny_d()
    real, fake = batch((5, 3), 1), batch((5, 3), 2)
    r, f = disc(real), disc(fake)
    loss = GANLoss(losses.nonsaturating_d, losses.nonsaturating_g, penalties=PENALTIES)
    torch.manual_seed(5)
    out = loss.discriminator_loss(disc, r, f, real, fake)
    torch.manual_seed(5)
    want = losses.nonsaturating_d(r, f) + sum(p(disc, real, fake) for p in PENALTIES.values())
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
    assert GANLoss(losses.hinge_d, losses.hinge_g).discriminator_loss(disc, r, f, real, fake).item() == (
        losses.hinge_d(r, f).item()
    )


@pytest.mark.parametrize("clip", [0.01, 0.3])
def test_clip_weights_clamps_every_parameter(clip):
    disc = tiny_d()
    with torch.no_grad():
        for i, p in enumerate(disc.parameters()):
            p.copy_(torch.linspace(-1, 1, p.numel(), dtype=torch.float64).view_as(p) * (i + 1))
    before = [p.detach().clone() for p in disc.parameters()]
    GANLoss(losses.wgan_d, losses.wgan_g, weight_clip=clip).clip_weights(disc)
    for old, new in zip(before, disc.parameters(), strict=True):
        assert new.abs().max().item() <= clip
        torch.testing.assert_close(new.detach(), old.clamp(-clip, clip), rtol=0, atol=0)
        assert (new.abs() == clip).any()  # every tensor had values outside the range


def test_no_weight_clip_leaves_parameters_alone():
    disc = tiny_d()
    with torch.no_grad():
        for p in disc.parameters():
            p.mul_(100)
    before = [p.detach().clone() for p in disc.parameters()]
    GANLoss(losses.wgan_d, losses.wgan_g).clip_weights(disc)
    for old, new in zip(before, disc.parameters(), strict=True):
        assert torch.equal(old, new.detach())


@pytest.mark.parametrize("clip", [0.0, -0.01])
def test_non_positive_weight_clip_is_a_config_error(clip):
    with pytest.raises(ConfigError, match="weight_clip"):
        GANLoss(losses.wgan_d, losses.wgan_g, weight_clip=clip)
