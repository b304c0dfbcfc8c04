"""Consistency regularization (CR, Zhang et al. 2020) and balanced CR (Zhao et al. 2021) by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ganforge.ada import translate, xflip
from ganforge.build import build
from ganforge.errors import ConfigError
from ganforge.losses import ConsistencyRegularization
from helpers import compose_cfg, train_run


class Counting(nn.Module):
    """A linear D on 1×4×4 images that counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(16, 1)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.linear(x.flatten(1)).squeeze(1)


@pytest.mark.parametrize(("real_weight", "fake_weight"), [(10.0, 0.0), (10.0, 10.0)], ids=["cr", "bcr"])
def test_cr_is_the_weighted_squared_change_of_d_under_flip_and_shift(real_weight, fake_weight):
    torch.manual_seed(0)
    d = Counting()
    real, fake = torch.randn(6, 1, 4, 4), torch.randn(6, 1, 4, 4)
    real_logits, fake_logits = d(real), d(fake)
    reg = ConsistencyRegularization(real_weight, fake_weight)
    torch.manual_seed(5)
    value = reg(real_logits, fake_logits, judge=d, real=real, fake=fake, y_real=None, y_fake=None)
    assert d.calls == 2 + (2 if fake_weight else 1)  # the fakes are not judged again without their weight
    torch.manual_seed(5)  # the same draws: a random flip, then a random whole-pixel shift per sample
    t_real = translate(xflip(real, 1.0), 1.0)
    expected = real_weight * (d(t_real) - real_logits).pow(2).mean()
    if fake_weight:
        t_fake = translate(xflip(fake, 1.0), 1.0)
        expected = expected + fake_weight * (d(t_fake) - fake_logits).pow(2).mean()
    torch.testing.assert_close(value, expected)
    assert not torch.equal(t_real, real)  # T moved something
    grads = torch.autograd.grad(value, list(d.parameters()))
    assert all(g.abs().sum() > 0 for g in grads[:1])  # D is trained to be consistent


def test_bcr_run_logs_its_term_and_image_transforms_refuse_points(tmp_path):
    summary = train_run(tmp_path / "run", "loss/regularizer=bcr", "train.steps=2")
    assert summary["last"]["train/d_cr"] > 0
    with pytest.raises(ConfigError, match="transforms images"):
        build(compose_cfg(tmp_path / "ring", "data=ring8", "model=mlp", "loss/regularizer=cr"))


def test_latent_cr_both_parts_by_hand():
    from ganforge.losses import LatentConsistencyD, LatentConsistencyG

    torch.manual_seed(0)
    g = nn.Linear(3, 16)  # z -> a 1x4x4 image
    d = Counting()
    z, sigma = torch.randn(5, 3), 0.03
    fake = g(z).view(5, 1, 4, 4)

    def regenerate(inputs):
        with torch.no_grad():
            return g(inputs[0]).view(-1, 1, 4, 4), None

    torch.manual_seed(7)
    value = LatentConsistencyD(weight=5.0, sigma=sigma)(
        torch.zeros(5), d(fake.detach()), judge=d, inputs=(z,), regenerate=regenerate
    )
    torch.manual_seed(7)
    moved = z + sigma * torch.randn(5, 3)
    expected = 5.0 * (d(fake.detach()) - d(g(moved).view(5, 1, 4, 4).detach())).pow(2).mean()
    torch.testing.assert_close(value, expected)
    torch.manual_seed(8)
    g_value = LatentConsistencyG(weight=0.5, sigma=sigma)(lambda x: g(x).view(-1, 1, 4, 4), (z,))
    torch.manual_seed(8)
    moved = z + sigma * torch.randn(5, 3)
    torch.testing.assert_close(g_value, -0.5 * (g(z) - g(moved)).pow(2).mean())
    assert g_value < 0  # G gains by making nearby latents differ


def test_zcr_run_and_its_refusal_without_latents(tmp_path):
    summary = train_run(tmp_path / "run", "loss/regularizer=zcr", "train.steps=2")
    assert summary["last"]["train/d_zcr"] > 0 and summary["last"]["train/g_reg"] < 0
    with pytest.raises(ConfigError, match="from latents"):
        build(compose_cfg(tmp_path / "p", "experiment=pix2pix_sr_digits", "loss/regularizer=zcr"))
