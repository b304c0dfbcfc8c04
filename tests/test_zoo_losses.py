"""The zoo's losses and penalties: relativistic, DRAGAN, R2, one-sided GP, label smoothing, the rules."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import nn

from ganforge import losses
from ganforge.build import build
from ganforge.errors import ConfigError
from ganforge.losses import GANLoss
from ganforge.settings import Optimizers, Schedule
from helpers import compose_cfg
from test_losses import batch, grad_norms_loop, logits, tiny_d
from test_steps import RecordingModule, bare_trainer


def sp(x: float) -> float:
    """softplus(x) = log(1 + e^x) = -log sigmoid(-x)."""
    return math.log1p(math.exp(x))


# --- relativistic (Jolicoeur-Martineau 2018) ----------------------------------------------------
def test_relativistic_values_worked_by_hand():
    r, f = logits([2.0, -1.0]), logits([0.5, -3.0])  # mean r = 0.5, mean f = -1.25
    # RSGAN: D -E log σ(r_i - f_i) with r - f = (1.5, 2); G -E log σ(f_i - r_i)
    assert losses.relativistic_d(r, f, average=False).item() == pytest.approx((sp(-1.5) + sp(-2)) / 2)
    assert losses.relativistic_g(f, r, average=False).item() == pytest.approx((sp(1.5) + sp(2)) / 2)
    # RaGAN D: -E log σ(r - mean f) - E log(1 - σ(f - mean r));
    # r - mean f = (3.25, 0.25), f - mean r = (0, -3.5)
    want_d = (sp(-3.25) + sp(-0.25)) / 2 + (sp(0.0) + sp(-3.5)) / 2
    assert losses.relativistic_d(r, f).item() == pytest.approx(want_d, rel=1e-12)
    # RaGAN G: -E log σ(f - mean r) - E log(1 - σ(r - mean f))
    want_g = (sp(0.0) + sp(3.5)) / 2 + (sp(3.25) + sp(0.25)) / 2
    assert losses.relativistic_g(f, r).item() == pytest.approx(want_g, rel=1e-12)


def test_relativistic_gradients_by_hand():
    """RSGAN D: d/dr_i softplus(-(r_i - f_i))/n = -σ(f_i - r_i)/n, and the opposite for f_i."""
    r, f = logits([2.0, -1.0]), logits([0.5, -3.0])
    grad_r, grad_f = torch.autograd.grad(losses.relativistic_d(r, f, average=False), (r, f))
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    want = torch.tensor([-sig(-1.5) / 2, -sig(-2.0) / 2], dtype=torch.float64)
    torch.testing.assert_close(grad_r, want)
    torch.testing.assert_close(grad_f, -want)


def test_relativistic_g_loss_needs_the_real_logits():
    loss = GANLoss(
        functools.partial(losses.relativistic_d, average=True),
        functools.partial(losses.relativistic_g, average=True),
    )
    assert loss.needs_real_logits
    assert not GANLoss(losses.hinge_d, losses.hinge_g).needs_real_logits
    r, f = logits([2.0, -1.0]), logits([0.5, -3.0])
    # RaGAN G on these logits (worked by hand above): the real logits reach the G loss
    assert loss.generator_loss(f, r).item() == pytest.approx(
        (sp(0.0) + sp(3.5)) / 2 + (sp(3.25) + sp(0.25)) / 2
    )
    with pytest.raises(ValueError, match="real batch"):
        loss.generator_loss(f)


# --- penalties on a linear D, where ‖∇D‖ = ‖w‖ = √5 everywhere ----------------------------------
def linear_d() -> nn.Module:
    disc = nn.Sequential(nn.Linear(3, 1), nn.Flatten(0)).double()
    with torch.no_grad():
        disc[0].weight.copy_(torch.tensor([[0.6, -0.8, 2.0]], dtype=torch.float64))
        disc[0].bias.fill_(-1.0)
    return disc


NORM = math.sqrt(5)


@pytest.mark.parametrize(
    "penalty, want",
    [
        (functools.partial(losses.r2_penalty, gamma=10.0), 5 * 5.0),  # γ/2 · ‖w‖²
        (functools.partial(losses.r2_penalty, gamma=0.1), 0.05 * 5.0),
        (functools.partial(losses.dragan_penalty, weight=10.0), 10 * (NORM - 1) ** 2),
        (functools.partial(losses.dragan_penalty, weight=2.0, center=3.0, noise=5.0), 2 * (3 - NORM) ** 2),
        (functools.partial(losses.gradient_penalty, one_sided=True), 10 * (NORM - 1) ** 2),  # above: 2-sided
        (functools.partial(losses.gradient_penalty, center=3.0, one_sided=True), 0.0),  # below the center: 0
        (functools.partial(losses.gradient_penalty, center=3.0), 10 * (3 - NORM) ** 2),  # 2-sided: both
    ],
)
def test_penalties_of_a_linear_discriminator(penalty, want):
    out = penalty(linear_d(), batch((8, 3), 1), batch((8, 3), 2))
    assert out.dim() == 0
    assert out.item() == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_r2_is_r1_on_the_fake_batch():
    disc, real, fake = tiny_d(), batch((5, 3), 1), batch((5, 3), 2)
    want = 5.0 * grad_norms_loop(disc, fake).pow(2).mean()
    torch.testing.assert_close(losses.r2_penalty(disc, real, fake), want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(losses.r2_penalty(disc, real, fake), losses.r1_penalty(disc, fake, real))


def test_dragan_penalty_matches_brute_force_at_the_same_perturbation():
    disc, real = tiny_d(), batch((6, 3), 1)
    torch.manual_seed(3)
    out = losses.dragan_penalty(disc, real, batch((6, 3), 2), weight=10.0, noise=0.5)
    torch.manual_seed(3)
    perturbed = real + 0.5 * real.std() * torch.randn_like(real)
    want = 10.0 * (grad_norms_loop(disc, perturbed) - 1).pow(2).mean()
    torch.testing.assert_close(out, want, rtol=1e-10, atol=1e-12)


def test_one_sided_gp_penalises_only_norms_above_the_center():
    disc, real, fake = tiny_d(), batch((6, 3), 1), batch((6, 3), 2)
    torch.manual_seed(4)
    out = losses.gradient_penalty(disc, real, fake, center=0.15, one_sided=True)
    torch.manual_seed(4)
    alpha = torch.rand(6, 1, dtype=torch.float64)
    norms = grad_norms_loop(disc, alpha * real + (1 - alpha) * fake)
    assert (norms < 0.15).any() and (norms > 0.15).any()  # both sides occur in this batch
    torch.testing.assert_close(out, 10 * (norms - 0.15).clamp(min=0).pow(2).mean(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["r2_penalty", "dragan_penalty", "gradient_penalty"])
def test_new_penalties_do_not_reach_the_generator(name):
    gen_weight = torch.ones(3, dtype=torch.float64, requires_grad=True)
    fake = batch((5, 3), 2) * gen_weight
    out = getattr(losses, name)(tiny_d(), batch((5, 3), 1), fake)
    assert out.item() > 0
    assert torch.autograd.grad(out, gen_weight, allow_unused=True) == (None,)


# --- label smoothing (Salimans et al. 2016) and the combination rules ---------------------------
@pytest.mark.parametrize("smoothing", [0.1, 0.25])
def test_label_smoothing_changes_the_d_loss_by_s_times_the_mean_real_logit(smoothing):
    """BCE(x, 1 - s) - BCE(x, 1) = s·(softplus(x) - softplus(-x)) = s·x per real sample."""
    r, f = logits([2.0, -1.0, 0.5]), logits([0.5, -3.0])
    plain = GANLoss(losses.nonsaturating_d, losses.nonsaturating_g)
    smooth = GANLoss(losses.nonsaturating_d, losses.nonsaturating_g, label_smoothing=smoothing)
    diff = smooth.d_loss(r, f) - plain.d_loss(r, f)
    assert diff.item() == pytest.approx(smoothing * (2.0 - 1.0 + 0.5) / 3, rel=1e-12)
    assert smooth.g_loss(f).item() == plain.g_loss(f).item()  # one-sided: G's targets stay


def test_combination_rules_are_config_errors():
    with pytest.raises(ConfigError, match="label_smoothing"):
        GANLoss(losses.hinge_d, losses.hinge_g, label_smoothing=0.1)
    with pytest.raises(ConfigError, match="label_smoothing"):
        GANLoss(losses.minimax_d, losses.minimax_g, label_smoothing=1.0)
    with pytest.raises(ConfigError, match="weight_clip"):
        GANLoss(losses.wgan_d, losses.wgan_g, penalties={"r1": losses.r1_penalty}, weight_clip=0.01)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["loss=wgan", "loss/penalty=r2"], "weight_clip"),
        (["loss=hinge", "loss.label_smoothing=0.1"], "label_smoothing"),
        (["loss=relativistic", "loss.label_smoothing=0.1"], "label_smoothing"),
    ],
)
def test_combination_rules_through_the_config(tmp_path, overrides, match):
    with pytest.raises(ConfigError, match=match):
        build(compose_cfg(tmp_path, "data=ring8", "model=mlp", *overrides))


# --- every new option trains through the config ---------------------------------------------------
RUNS = {
    "ragan": ["loss=relativistic"],
    "rsgan": ["loss=relativistic", "loss.d_loss.average=false"],
    "dragan": ["loss=dragan"],
    "hinge_r1_r2": ["loss=hinge", "loss/penalty=[r1,r2]"],
    "wgan_gp_one_sided": ["loss=wgan_gp", "loss/penalty=gp_one_sided", "train.n_critic=2"],
    "lsgan_gp": ["loss=lsgan", "loss/penalty=gp"],
    "smoothing": ["loss=nonsaturating", "loss.label_smoothing=0.1"],
}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_new_losses_and_penalties_train(run, name):
    summary, _ = run(name, "data=ring8", "model=mlp", "data.batch_size=16", "train.steps=3", *RUNS[name])
    assert summary["status"] == "finished" and summary["g_steps"] == 3
    assert all(math.isfinite(v) for v in summary["last"].values())
    if name in ("dragan", "hinge_r1_r2", "lsgan_gp"):  # (a one-sided GP is 0 while D's gradients are small)
        assert summary["last"]["train/d_loss"] != summary["last"]["train/d_adv"]


def test_gp_one_sided_makes_wgan_gp_one_sided(tmp_path):
    cfg = compose_cfg(tmp_path, "loss=wgan_gp", "loss/penalty=gp_one_sided")
    assert list(cfg.loss.penalties) == ["gp"] and cfg.loss.penalties.gp.one_sided is True


# --- gradients reach only the network being updated ----------------------------------------------
@pytest.mark.parametrize(
    "overrides",
    [
        ["loss=relativistic"],
        ["loss=dragan"],
        ["loss=hinge", "loss/penalty=[r2,gp_one_sided]"],
        ["loss=nonsaturating", "loss.label_smoothing=0.1"],
    ],
    ids=["relativistic", "dragan", "hinge_r2_gp_one_sided", "smoothing"],
)
def test_gradients_reach_only_the_network_being_updated(tmp_path, overrides):
    cfg = compose_cfg(tmp_path, "data=ring8", "model=mlp", "train.steps=3", "train.n_critic=2", *overrides)
    datamodule, base = build(cfg)
    module = RecordingModule(
        base.generator,
        base.discriminator,
        base.loss,
        Optimizers(base.optimizer_g, base.optimizer_d),
        Schedule(steps=3, n_critic=2),
    )
    bare_trainer(max_steps=9).fit(module, datamodule=datamodule)
    assert module.events == [{"discriminator"}, {"discriminator"}, {"generator"}] * 3
