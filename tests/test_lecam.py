"""LeCam regularization (Tseng et al. 2021) by hand, as the authors' code computes it, and in a run."""

from __future__ import annotations

import pytest
import torch

from ganforge.build import build
from ganforge.errors import ConfigError
from ganforge.losses import LeCam
from helpers import compose_cfg, train_run


def test_lecam_by_hand_with_the_authors_anchor_updates():
    """Anchors updated with this batch's means before the term; decay 0 for the first `start` updates."""
    reg = LeCam(weight=0.5, decay=0.9, start=1)
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-1.0, 0.0])
    # update 0: decay 0 -> anchors are the batch means: a_R = 2, a_F = -0.5
    # term = mean(relu(D(x) - a_F)^2) + mean(relu(a_R - D(G(z)))^2) = mean(1.5², 3.5²) + mean(3², 2²)
    first = reg(real, fake)
    assert first.item() == pytest.approx(0.5 * ((1.5**2 + 3.5**2) / 2 + (3**2 + 2**2) / 2))
    # update 1: decay 0.9: a_R = 0.9·2 + 0.1·0 = 1.8, a_F = 0.9·(-0.5) + 0.1·(-2) = -0.65
    real2, fake2 = torch.tensor([0.0, 0.0], requires_grad=True), torch.tensor([-2.0, -2.0])
    second = reg(real2, fake2)
    assert reg.ema_real.item() == pytest.approx(1.8) and reg.ema_fake.item() == pytest.approx(-0.65)
    assert second.item() == pytest.approx(0.5 * (0.65**2 + 3.8**2))
    (grad,) = torch.autograd.grad(second, real2)  # d/dD(x) of 0.5 · mean(relu(D(x) + 0.65)^2)
    torch.testing.assert_close(grad, torch.full((2,), 0.5 * 2 * 0.65 / 2))
    # the one-sided relu: a real output below a_F and a fake above a_R add nothing
    assert LeCam(start=0)(torch.tensor([-5.0]), torch.tensor([5.0])).item() == 0.0


def test_a_run_logs_its_term_and_saves_the_anchors(tmp_path):
    summary = train_run(tmp_path, "loss/regularizer=lecam", "train.steps=3")
    assert summary["last"]["train/d_lecam"] > 0
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert (
        int(state["d_regularizers.lecam.updates"]) == 3 and float(state["d_regularizers.lecam.ema_real"]) != 0
    )


def test_lecam_is_refused_with_two_discriminators(tmp_path):
    with pytest.raises(ConfigError, match="several discriminators"):
        build(compose_cfg(tmp_path, "experiment=cyclegan_digits", "loss/regularizer=lecam"))
