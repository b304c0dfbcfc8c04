"""Options for the papers' variants of the training math: ACGAN's class loss on the fakes (Odena et al.
2017), extragradient with fresh or the same samples (Gidel et al. 2019; Mishchenko et al. 2020), DRAGAN's
perturbation (Kodali et al. 2017: the paper's text and the authors' code), fp16 gradients unscaled before
they are measured and clipped."""

from __future__ import annotations

import functools
import math

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.precision import MixedPrecision
from torch import Tensor, nn

from ganforge import losses
from ganforge.build import build
from ganforge.callbacks.guard import DivergenceGuard
from ganforge.errors import ConfigError
from ganforge.losses import GANLoss
from ganforge.module import GANModule
from ganforge.settings import Optimizers, Schedule
from ganforge.tasks.base import Draw
from ganforge.tasks.generation import GenerationTask
from helpers import compose_cfg
from test_penalty_math import ClassLinearD, LabelledG, batch
from test_steps import bare_trainer


# --- ACGAN: D's class loss on real only, or on real and fake (the paper's L_C) ------------------------
@pytest.mark.parametrize("fake_classes", [False, True])
def test_acgan_d_class_loss_covers_the_fakes_when_asked(fake_classes):
    loss = GANLoss(losses.hinge_d, losses.hinge_g, acgan_fake_classes=fake_classes)
    task = GenerationTask(num_classes=3, acgan_weight=0.5)
    module = GANModule(LabelledG(), ClassLinearD(acgan=True), loss, Optimizers(), task=task)
    real, y_real, y_fake = batch((4, 3), 1), torch.tensor([0, 1, 2, 2]), torch.tensor([1, 0, 2, 1])
    z = -y_fake[:, None].double().expand(4, 3)  # G(z, y) = z + y = 0: the fakes' class logits are all 0
    d_loss, d_adv, _, _ = module._d_objective((real, y_real), Draw((z, y_fake), y_fake))
    real_ce = nn.functional.cross_entropy(7.0 * real.pow(2), y_real)  # ClassLinearD's class logits
    fake_ce = math.log(3)  # uniform logits: -log(1/3) whatever the label
    want = real_ce.item() + (fake_ce if fake_classes else 0.0)
    assert module._class_losses["train/d_cls"].item() == pytest.approx(want, rel=1e-12)
    assert (d_loss - d_adv).item() == pytest.approx(0.5 * want, rel=1e-12)


# --- extragradient: the same samples for both half-steps, or fresh ones for the update ----------------
@pytest.mark.parametrize("fresh", [False, True])
def test_extragradient_half_steps_draw_the_same_or_fresh_samples(tmp_path, fresh):
    cfg = compose_cfg(
        tmp_path, "data=ring8", "model=mlp", "optim=extragradient", f"optim.fresh_samples={fresh}",
        "data.batch_size=8", "train.steps=1",
    )  # fmt: skip
    datamodule, module = build(cfg)
    assert datamodule.step_batch_size == (16 if fresh else 8)  # a real batch per half-step when fresh
    g_inputs: list[Tensor] = []
    d_inputs: list[Tensor] = []
    module.generator.register_forward_pre_hook(lambda m, args: g_inputs.append(args[0].detach().clone()))
    module.discriminator.register_forward_pre_hook(lambda m, args: d_inputs.append(args[0].detach().clone()))
    bare_trainer(max_steps=2).fit(module, datamodule=datamodule)
    # per half-step: G for D's fakes, then G for its own loss; D on the real batch, the fakes, G's fakes
    assert len(g_inputs) == 4 and len(d_inputs) == 6
    z_d1, z_g1, z_d2, z_g2 = g_inputs
    real1, real2 = d_inputs[0], d_inputs[3]
    assert all(len(t) == 8 for t in (z_d1, z_g2, real1, real2))
    assert not torch.equal(z_d1, z_g1)  # D's and G's latents are separate draws in either form
    assert torch.equal(z_d1, z_d2) != fresh and torch.equal(z_g1, z_g2) != fresh
    assert torch.equal(real1, real2) != fresh


# --- DRAGAN: where around the real data the penalty looks -------------------------------------------
class InputRecorder(nn.Module):
    """D(x) = ½‖x‖² per sample (so ∇D(x) = x, ‖∇D‖ = ‖x‖); records what it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(x.detach().clone())
        return 0.5 * x.pow(2).flatten(1).sum(1)


def test_dragan_gaussian_is_the_papers_x_plus_normal_noise():
    d, real = InputRecorder(), batch((64, 3), 1)
    torch.manual_seed(2)
    out = losses.dragan_penalty(d, real, real, weight=1.0, center=0.0, noise=0.5, perturbation="gaussian")
    torch.manual_seed(2)
    want = real + 0.5 * real.std() * torch.randn_like(real)  # the paper's x + δ, δ ~ N(0, σ²I)
    torch.testing.assert_close(d.seen[0], want, rtol=0, atol=0)
    torch.testing.assert_close(out, want.pow(2).sum(1).mean(), rtol=1e-12, atol=0)
    assert (d.seen[0] < real).any()  # noise of both signs


def test_dragan_uniform_is_the_authors_code_between_x_and_x_plus_positive_noise():
    d, real = InputRecorder(), batch((64, 3), 1)
    torch.manual_seed(2)
    out = losses.dragan_penalty(d, real, real, weight=1.0, center=0.0, noise=0.5, perturbation="uniform")
    torch.manual_seed(2)
    delta = 0.5 * real.std() * torch.rand_like(real)  # σ·U[0, 1)^d, then one α ~ U[0, 1) per sample
    want = real + torch.rand(64, dtype=torch.float64)[:, None] * delta
    torch.testing.assert_close(d.seen[0], want, rtol=0, atol=0)
    torch.testing.assert_close(out, want.pow(2).sum(1).mean(), rtol=1e-12, atol=0)
    step = d.seen[0] - real
    assert (step >= 0).all() and (step < 0.5 * real.std()).all()  # only upwards, less than σ


def test_dragan_perturbation_is_checked_before_training():

    penalty = functools.partial(losses.dragan_penalty, perturbation="laplace")
    with pytest.raises(ConfigError, match="perturbation must be one of gaussian, uniform"):
        GANLoss(losses.nonsaturating_d, losses.nonsaturating_g, penalties={"dragan": penalty})


# --- fp16: gradient norms and clipping in the true gradient's units ------------------------------------
class NormRecorder(GANModule):
    """Records, per update, the norm ``_update`` returns, the true one (the gradients right after backward
    divided by the GradScaler's scale, computed here on the host) and how far the step moved the net."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pairs: list[tuple[float, float, float]] = []
        self._true = 0.0

    def manual_backward(self, loss, *args, **kwargs):
        super().manual_backward(loss, *args, **kwargs)
        # the network being updated: the other one is frozen
        trained = [p for p in self.parameters() if p.requires_grad and p.grad is not None]
        grads = torch.cat([p.grad.flatten() for p in trained]).double()
        self._true = float(grads.norm()) / self.trainer.precision_plugin.scaler.get_scale()

    def _update(self, opt, loss, net, clip, measure, step=True):
        before = [p.detach().clone() for p in net.parameters()]
        norm = super()._update(opt, loss, net, clip, measure, step)
        moved = torch.cat([(p.detach() - b).flatten() for p, b in zip(net.parameters(), before, strict=True)])
        self.pairs.append((float(norm), self._true, float(moved.double().norm())))
        return norm


def fp16_fit(
    tmp_path, fused: bool, clip: float | None, init_scale: float = 1024.0, steps: int = 2, callbacks=()
) -> NormRecorder:
    cfg = compose_cfg(tmp_path, "data=ring8", "model=mlp", "optim=sgd", "optim.lr_g=1.0", "optim.lr_d=1.0",
                      f"optim.fused={fused}", f"train.steps={steps}", "train.log_every=1")  # fmt: skip
    datamodule, base = build(cfg)
    module = NormRecorder(
        base.generator, base.discriminator, base.loss, Optimizers(base.optimizer_g, base.optimizer_d),
        Schedule(steps=steps, log_every=1, clip_grad_g=clip, clip_grad_d=clip),
    )  # fmt: skip
    # Lightning turns precision="16-mixed" on a CPU into bf16; the plugin keeps fp16. A real GradScaler,
    # starting at 1024 rather than 65536 so that no first step overflows and is skipped
    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    trainer = pl.Trainer(
        accelerator="cpu", plugins=[MixedPrecision("16-mixed", "cpu", scaler)], callbacks=list(callbacks),
        max_steps=2 * steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, datamodule=datamodule)
    assert len(module.pairs) == 2 * steps
    return module


@pytest.mark.parametrize("fused", [False, True])
def test_fp16_logged_gradient_norm_is_the_unscaled_one(tmp_path, fused):
    module = fp16_fit(tmp_path, fused, None)
    assert module.trainer.precision_plugin.scaler.get_scale() == 1024  # the gradients really were scaled
    for logged, true, moved in module.pairs:
        assert logged == pytest.approx(true, rel=1e-5)
        assert moved == pytest.approx(true, rel=1e-3)  # SGD with lr 1 moves by the true gradient


@pytest.mark.parametrize("fused", [False, True])
def test_fp16_clipping_bounds_the_true_gradient(tmp_path, fused):
    max_norm = 1e-3
    for logged, true, moved in fp16_fit(tmp_path, fused, max_norm).pairs:
        assert logged == pytest.approx(true, rel=1e-5) and true > 10 * max_norm  # logged before clipping
        assert moved == pytest.approx(max_norm, rel=1e-3)  # SGD with lr 1: the clipped true gradient


def test_fp16_overflow_is_the_scalers_to_skip_not_a_divergence(tmp_path):
    """An overflowing scaled gradient (finite loss) is skipped by GradScaler's step, which lowers the
    scale; the guard, which would skip the step itself (and so never let the scale come down), stays out."""

    guard = DivergenceGuard(str(tmp_path / "none.ckpt"), max_bad_steps=20)
    module = fp16_fit(tmp_path, False, None, init_scale=2.0**24, steps=12, callbacks=[guard])
    moves = [moved for _, _, moved in module.pairs]
    assert moves[0] == 0.0  # the first updates overflowed in fp16 and were skipped by the scaler
    assert module.trainer.precision_plugin.scaler.get_scale() < 2.0**24 / 4  # which lowered the scale
    assert sum(m > 0 for m in moves) >= 4  # until the updates went through
    assert guard.skipped == {"discriminator": 0, "generator": 0}
