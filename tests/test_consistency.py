"""Consistency regularization (CR, Zhang et al. 2020) and balanced CR (Zhao et al. 2021) by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ganforge.ada import translate, xflip
from ganforge.errors import ConfigError
from ganforge.losses import ConsistencyRegularization
from ganforge.train import build
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
