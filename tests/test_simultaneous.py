"""``train.updates=simultaneous`` (ALI's and PacGAN's update): D's and G's gradients at the same weights,
on the same batch and latents, applied together; checked against SGD written out by hand."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganforge.build import build
from ganforge.errors import ConfigError
from ganforge.module import GANModule
from ganforge.settings import Optimizers, Schedule
from helpers import compose_cfg
from test_steps import bare_trainer

LR = 0.05


class Recording(nn.Module):
    """A small MLP that keeps every input batch it is given (as G, its latents; as D, what it judges)."""

    z_dim = 2

    def __init__(self, out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, out))
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.net(x)


def one_step(tmp_path, updates: str) -> tuple[GANModule, nn.Module, nn.Module, torch.Tensor, torch.Tensor]:
    """One training step of a fresh module; returns it, the nets before the step, the real batch, the z."""
    torch.manual_seed(0)
    cfg = compose_cfg(tmp_path, "data=ring8", "model=mlp", "loss=nonsaturating", "data.batch_size=16")
    datamodule, base = build(cfg)
    g, d = Recording(2), Recording(1)
    g0, d0 = copy.deepcopy(g.net), copy.deepcopy(d.net)
    sgd = lambda params: torch.optim.SGD(params, lr=LR)  # noqa: E731
    module = GANModule(
        g,
        d,
        base.loss,
        Optimizers(sgd, sgd),
        Schedule(steps=1, updates=updates),
    )
    bare_trainer(max_steps=2).fit(module, datamodule=datamodule)
    return module, g0, d0, d.seen[0], torch.stack(g.seen)  # D's first input: the real batch


def test_simultaneous_is_both_sgd_steps_from_the_same_weights_batch_and_latents(tmp_path):
    module, g0, d0, real, seen = one_step(tmp_path, "simultaneous")
    assert len(seen) == 2 and torch.equal(seen[0], seen[1])  # D's and G's pass: the same latents
    z = seen[0]
    # the paper's objectives written out: D minimises -log D(x) - log(1 - D(G(z))), G minimises -log D(G(z))
    d_loss = F.softplus(-d0(real)).mean() + F.softplus(d0(g0(z).detach())).mean()
    g_loss = F.softplus(-d0(g0(z))).mean()
    d_grads = torch.autograd.grad(d_loss, list(d0.parameters()))
    g_grads = torch.autograd.grad(g_loss, list(g0.parameters()))
    for p, p0, grad in zip(module.discriminator.net.parameters(), d0.parameters(), d_grads, strict=True):
        torch.testing.assert_close(p.detach(), p0.detach() - LR * grad)
    for p, p0, grad in zip(module.generator.net.parameters(), g0.parameters(), g_grads, strict=True):
        torch.testing.assert_close(p.detach(), p0.detach() - LR * grad)


def test_alternating_steps_g_against_the_updated_d(tmp_path):
    """The default: G's gradient is taken at D's new weights, on fresh latents (so the simultaneous
    expectation above would fail for it)."""
    module, g0, d0, real, seen = one_step(tmp_path, "alternating")
    assert len(seen) == 2 and not torch.equal(seen[0], seen[1])
    z = seen[0]
    d_loss = F.softplus(-d0(real)).mean() + F.softplus(d0(g0(z).detach())).mean()
    d_grads = torch.autograd.grad(d_loss, list(d0.parameters()))
    with torch.no_grad():
        for p0, grad in zip(d0.parameters(), d_grads, strict=True):
            p0 -= LR * grad
    for p, p0 in zip(module.discriminator.net.parameters(), d0.parameters(), strict=True):
        torch.testing.assert_close(p.detach(), p0.detach())
    g_loss = F.softplus(-d0(g0(seen[1]))).mean()
    g_grads = torch.autograd.grad(g_loss, list(g0.parameters()))
    for p, p0, grad in zip(module.generator.net.parameters(), g0.parameters(), g_grads, strict=True):
        torch.testing.assert_close(p.detach(), p0.detach() - LR * grad)


def test_simultaneous_trains_through_the_config_and_refuses_what_it_cannot_do(tmp_path):
    from ganforge.train import train

    summary = train(
        compose_cfg(tmp_path / "ok", "data=ring8", "model=mlp", "train.steps=6", "train.updates=simultaneous")
    )
    assert summary["g_steps"] == 6 and summary["d_steps"] == 6
    with pytest.raises(ConfigError, match="n_critic=1"):
        build(
            compose_cfg(
                tmp_path / "a", "data=ring8", "model=mlp", "train.updates=simultaneous", "train.n_critic=2"
            )
        )
    with pytest.raises(ConfigError, match="alternating or simultaneous"):
        build(compose_cfg(tmp_path / "b", "data=ring8", "model=mlp", "train.updates=together"))
