"""Lazy regularization (Karras et al. 2020, StyleGAN2): a penalty with ``every: k`` runs in a pass of its
own every k updates with its weight times k, and the optimizer's rate and Adam's betas follow c = k/(k+1);
path length regularization of G. Checked against SGD written out by hand from the recorded batches."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganforge.build import build
from ganforge.errors import ConfigError
from ganforge.losses import GANLoss, PathLengthPenalty, nonsaturating_d, nonsaturating_g, r1_penalty
from ganforge.module import GANModule, lazy_rates
from ganforge.settings import Optimizers, Schedule
from helpers import compose_cfg
from test_simultaneous import Recording  # a small MLP that keeps every batch it is given
from test_steps import bare_trainer

LR = 0.05
STEPS = 5


def clone(net: nn.Module) -> nn.Sequential:
    twin = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, net.net[2].out_features))
    twin.load_state_dict(net.net.state_dict())
    return twin


def sgd_step(net: nn.Module, loss: torch.Tensor, lr: float) -> None:
    grads = torch.autograd.grad(loss, list(net.parameters()), allow_unused=True)
    with torch.no_grad():
        for p, g in zip(net.parameters(), grads, strict=True):
            if g is not None:  # e.g. D's last bias has no say in R1
                p -= lr * g


def fit(tmp_path, module: GANModule, *overrides: str) -> None:
    cfg = compose_cfg(tmp_path, "data.batch_size=16", *overrides)
    datamodule, _ = build(cfg)
    bare_trainer(max_steps=100).fit(module, datamodule=datamodule)


@pytest.mark.parametrize("every", [1, 2])
def test_lazy_r1_is_k_times_the_penalty_every_k_d_updates_at_rate_lr_c(tmp_path, every):
    gamma = 3.0
    torch.manual_seed(0)
    g, d = Recording(2), Recording(1)
    g_hand, d_hand = clone(g), clone(d)
    sgd = functools.partial(torch.optim.SGD, lr=LR)
    loss = GANLoss(
        d_loss=nonsaturating_d,
        g_loss=nonsaturating_g,
        penalties={"r1": functools.partial(r1_penalty, gamma=gamma, every=every)},
    )
    module = GANModule(g, d, loss, Optimizers(sgd, sgd), Schedule(steps=STEPS, log_every=1))
    fit(tmp_path, module, "data=ring8", "model=mlp")

    c = every / (every + 1) if every > 1 else 1.0  # the rate of D's optimizer under lazy regularization
    seen, at = d.seen, 0
    for t in range(STEPS):
        z_d, z_g = g.seen[2 * t], g.seen[2 * t + 1]
        real = seen[at]
        lazy = every > 1 and t % every == 0
        # the paper's objectives: D minimises -log D(x) - log(1 - D(G(z))) (+ γ/2 E‖∇D(x)‖² every update
        # when every=1; else k·γ/2 E‖∇D(x)‖² in a second step on the steps t ≡ 0 mod k)
        d_loss = F.softplus(-d_hand(real)).mean() + F.softplus(d_hand(g_hand(z_d).detach())).mean()
        x = real.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(d_hand(x).sum(), x, create_graph=True)
        r1 = 0.5 * gamma * grad.pow(2).sum(1).mean()
        sgd_step(d_hand, d_loss + r1 if every == 1 else d_loss, LR * c)
        at += 3 if every == 1 else 2  # real, fake (and R1's pass over the reals)
        if lazy:
            torch.testing.assert_close(seen[at], real)  # the lazy pass judges the same reals
            x = real.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(d_hand(x).sum(), x, create_graph=True)
            sgd_step(d_hand, every * 0.5 * gamma * grad.pow(2).sum(1).mean(), LR * c)
            at += 1
        sgd_step(g_hand, F.softplus(-d_hand(g_hand(z_g))).mean(), LR)
        at += 1
    assert at == len(seen)  # the lazy pass ran on exactly the steps 0, k, 2k, ...
    for net, hand in ((module.discriminator.net, d_hand), (module.generator.net, g_hand)):
        for p, q in zip(net.parameters(), hand.parameters(), strict=True):
            torch.testing.assert_close(p.detach(), q.detach())
    assert "train/d_reg" in module.last_metrics if every > 1 else "train/d_reg" not in module.last_metrics


def test_lazy_rates_follow_stylegan2s_rule():
    """SG2-ADA's cifar config: D's Adam lr 0.0025, betas (0, 0.99), R1 every 16: lr·16/17, β^(16/17)."""
    params = [nn.Parameter(torch.zeros(2))]
    adam = torch.optim.Adam(params, lr=0.0025, betas=(0.0, 0.99))
    lazy_rates(adam, 16)
    group = adam.param_groups[0]
    assert group["lr"] == pytest.approx(0.0025 * 16 / 17)
    assert group["betas"][0] == 0.0 and group["betas"][1] == pytest.approx(0.99 ** (16 / 17))
    assert group["betas"][1] == pytest.approx(0.9905855, abs=1e-7)  # exp(16/17 · ln 0.99)
    same = torch.optim.Adam(params, lr=0.0025, betas=(0.0, 0.99))
    lazy_rates(same, 1)  # not lazy: untouched
    assert same.param_groups[0]["lr"] == 0.0025 and same.param_groups[0]["betas"] == (0.0, 0.99)


# --- path length --------------------------------------------------------------------------------
class LinearStyle(nn.Module):
    """A G linear in w: mapping z ↦ (Az) repeated over ``rows`` w rows, synthesis ws ↦ W·vec(ws) as an
    image. Its Jacobian w.r.t. the ws is W, so path lengths can be written out by hand."""

    def __init__(self, z_dim: int = 3, rows: int = 2, shape: tuple[int, int, int] = (1, 4, 4)) -> None:
        super().__init__()
        self.z_dim, self.rows, self.shape = z_dim, rows, shape
        self.a = nn.Parameter(torch.randn(z_dim, z_dim))
        self.w = nn.Parameter(torch.randn(shape[0] * shape[1] * shape[2], rows * z_dim) * 0.3)
        self.seen: list[torch.Tensor] = []

    def mapping(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        self.seen.append(z.detach().clone())
        return (z @ self.a.T).unsqueeze(1).repeat(1, self.rows, 1)

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        return (ws.flatten(1) @ self.w.T).view(-1, *self.shape)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.synthesis(self.mapping(z))


def hand_path_length(g: LinearStyle, z: torch.Tensor, y: torch.Tensor, pl_mean: torch.Tensor, decay: float):
    """The lengths ‖J_wᵀ y‖ per sample written out: J_w = W, so ∂(y·G)/∂ws = Wᵀ vec(y), one row per w."""
    grads = (y.flatten(1) @ g.w).view(z.shape[0], g.rows, g.z_dim)  # (n, rows, w_dim)
    lengths = grads.pow(2).sum(2).mean(1).sqrt()
    mean = pl_mean + decay * (lengths.mean() - pl_mean)
    return lengths, mean


def test_path_length_value_gradient_and_running_mean_by_hand():
    torch.manual_seed(1)
    g = LinearStyle()
    pl = PathLengthPenalty(weight=2.0, decay=0.01, batch_shrink=2, every=4)
    z = torch.randn(8, 3)
    expected_mean = torch.zeros(())
    for call in range(2):
        torch.manual_seed(10 + call)
        value = pl(g, (z,))
        torch.manual_seed(10 + call)
        y = torch.randn(4, *g.shape) / 4.0  # N(0, I)/sqrt(H·W) on batch/batch_shrink = 4 samples
        lengths, mean = hand_path_length(g, z[:4], y, expected_mean, 0.01)
        hand = 2.0 * (lengths - mean).pow(2).mean()
        torch.testing.assert_close(value, hand)
        grads = torch.autograd.grad(value, [g.w, g.a], allow_unused=True)
        hand_grads = torch.autograd.grad(hand, [g.w, g.a], allow_unused=True)
        torch.testing.assert_close(grads[0], hand_grads[0])
        assert hand_grads[1] is None and grads[1] is None  # linear in w: the mapping has no say
        expected_mean = mean.detach()
        torch.testing.assert_close(pl.pl_mean, expected_mean)  # pl_mean moved by the decay rule
    assert float(pl.pl_mean) > 0


def test_lazy_path_length_runs_every_k_g_steps_with_weight_times_k(tmp_path):
    torch.manual_seed(0)
    g = LinearStyle(z_dim=3, rows=2, shape=(1, 16, 16))
    d = nn.Sequential(nn.Flatten(), nn.Linear(256, 1))
    g_hand = LinearStyle(z_dim=3, rows=2, shape=(1, 16, 16))
    g_hand.load_state_dict(g.state_dict())
    d_hand = nn.Sequential(nn.Flatten(), nn.Linear(256, 1))
    d_hand.load_state_dict(d.state_dict())
    seen_real: list[torch.Tensor] = []
    d.register_forward_pre_hook(lambda m, args: seen_real.append(args[0].detach().clone()))
    sgd = functools.partial(torch.optim.SGD, lr=LR)
    k = 2
    loss = GANLoss(
        d_loss=nonsaturating_d,
        g_loss=nonsaturating_g,
        g_penalties={"path_length": PathLengthPenalty(weight=2.0, decay=0.1, batch_shrink=2, every=k)},
    )
    module = GANModule(g, d, loss, Optimizers(sgd, sgd), Schedule(steps=STEPS, log_every=1))
    # the RNG draws of the penalty's directions: replayed below from a copy of the state at each G reg pass
    states: list[torch.Tensor] = []
    original = PathLengthPenalty.forward

    def recording(self, generator, inputs):
        states.append(torch.get_rng_state())
        return original(self, generator, inputs)

    PathLengthPenalty.forward = recording
    try:
        fit(tmp_path, module, "data=digits", "model=dcgan", "data.resolution=16")
    finally:
        PathLengthPenalty.forward = original

    c = k / (k + 1)
    pl_mean, zs, reals = torch.zeros(()), iter(g.seen), iter(seen_real)
    for t in range(STEPS):
        real, _, _ = next(reals), next(reals), next(reals)  # D: real, fake; G's pass: fake
        z_d, z_g = next(zs), next(zs)
        d_loss = F.softplus(-d_hand(real)).mean() + F.softplus(d_hand(g_hand(z_d).detach())).mean()
        sgd_step(d_hand, d_loss, LR)
        sgd_step(g_hand, F.softplus(-d_hand(g_hand(z_g))).mean(), LR * c)
        if t % k == 0:
            z_r = next(zs)[: z_g.shape[0] // 2]
            torch.set_rng_state(states.pop(0))
            y = torch.randn(z_r.shape[0], 1, 16, 16) / 16.0
            lengths, mean = hand_path_length(g_hand, z_r, y, pl_mean, 0.1)
            sgd_step(g_hand, k * 2.0 * (lengths - mean).pow(2).mean(), LR * c)
            pl_mean = mean.detach()
    assert next(zs, None) is None and not states  # the G pass ran on exactly the steps 0, k, 2k, ...
    for p, q in zip(module.generator.parameters(), g_hand.parameters(), strict=True):
        torch.testing.assert_close(p.detach(), q.detach())
    torch.testing.assert_close(module.g_penalties["path_length"].pl_mean, pl_mean)
    assert "g_penalties.path_length.pl_mean" in module.state_dict()  # saved with the weights
    assert module.last_metrics["train/pl_mean"] == pytest.approx(float(pl_mean))


def test_what_lazy_regularization_refuses(tmp_path):
    sgd = functools.partial(torch.optim.SGD, lr=LR)
    r1 = functools.partial(r1_penalty, every=0)
    with pytest.raises(ConfigError, match="every must be a positive integer"):
        GANLoss(d_loss=nonsaturating_d, g_loss=nonsaturating_g, penalties={"r1": r1})
    with pytest.raises(ConfigError, match="share one interval"):
        GANLoss(
            d_loss=nonsaturating_d,
            g_loss=nonsaturating_g,
            penalties={
                "r1": functools.partial(r1_penalty, every=4),
                "r2": functools.partial(r1_penalty, every=8),
            },
        )
    lazy = GANLoss(
        d_loss=nonsaturating_d,
        g_loss=nonsaturating_g,
        penalties={"r1": functools.partial(r1_penalty, every=4)},
    )
    with pytest.raises(ConfigError, match="train.updates=alternating"):
        GANModule(Recording(2), Recording(1), lazy, Optimizers(sgd, sgd), Schedule(updates="simultaneous"))
    pl = GANLoss(d_loss=nonsaturating_d, g_loss=nonsaturating_g, g_penalties={"pl": PathLengthPenalty()})
    with pytest.raises(ConfigError, match="no mapping/synthesis split"):
        GANModule(Recording(2), Recording(1), pl, Optimizers(sgd, sgd), Schedule())
    with pytest.raises(ConfigError, match="no mapping/synthesis split"):
        build(compose_cfg(tmp_path, "loss/g_penalty=path_length"))


def test_every_is_a_setting_of_every_penalty_config(tmp_path):
    for penalty in ("r1", "r2", "gp", "dragan"):
        cfg = compose_cfg(
            tmp_path,
            f"loss/penalty={penalty}",
            f"loss.penalties.{penalty}.every=16",
            "model.discriminator.norm=none",
        )
        _, module = build(cfg)
        assert module.loss.d_reg_every == 16 and module.loss.has_penalties(True)
