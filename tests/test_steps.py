"""The step budget: train.steps counts generator updates exactly; n_critic D updates precede each."""

from __future__ import annotations

import csv

import pytest
import pytorch_lightning as pl
import torch

from ganforge.build import build
from ganforge.module import GANModule
from ganforge.settings import Optimizers, Schedule
from helpers import compose_cfg


@pytest.mark.parametrize("n_critic", [1, 5])
def test_g_and_d_update_counts(tmp_path, n_critic):
    from ganforge.train import train

    cfg = compose_cfg(tmp_path, "data=ring8", "model=mlp", "train.steps=7", f"train.n_critic={n_critic}")
    summary = train(cfg)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert summary["g_steps"] == 7
    assert summary["d_steps"] == 7 * n_critic
    # Lightning's global_step counts every optimizer step: (n_critic + 1) per generator step
    assert ckpt["global_step"] == 7 * (n_critic + 1)
    opt_g, opt_d = ckpt["optimizer_states"]
    assert {int(s["step"]) for s in opt_g["state"].values()} == {7}
    assert {int(s["step"]) for s in opt_d["state"].values()} == {7 * n_critic}
    assert ckpt["ganforge"]["g_step"] == 7


def test_curves_use_the_generator_step(tmp_path):
    from ganforge.train import train

    train(
        compose_cfg(
            tmp_path, "data=ring8", "model=mlp", "train.steps=12", "train.n_critic=3", "train.log_every=4"
        )
    )
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [4, 8, 12]
    assert [int(float(r["trainer/g_step"])) for r in rows] == [4, 8, 12]
    for key in (
        "train/d_loss",
        "train/g_loss",
        "train/d_real",
        "train/d_fake",
        "train/grad_norm_g",
        "train/grad_norm_d",
    ):
        assert all(r[key] != "" and torch.isfinite(torch.tensor(float(r[key]))) for r in rows), key


def bare_trainer(max_steps: int) -> pl.Trainer:
    """A Trainer with nothing but the loop: no loggers, checkpoints or progress bar."""
    return pl.Trainer(
        accelerator="cpu",
        max_steps=max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


class RecordingModule(GANModule):
    """Records, for every backward pass, which networks' parameters received gradient."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.events: list[set[str]] = []
        for net_name in ("generator", "discriminator"):
            for p in getattr(self, net_name).parameters():
                p.register_hook(self._hook(net_name))

    def _hook(self, net_name):
        def hook(grad):
            self.events[-1].add(net_name)
            return grad

        return hook

    def manual_backward(self, loss, *args, **kwargs):
        self.events.append(set())
        super().manual_backward(loss, *args, **kwargs)


@pytest.mark.parametrize("loss", ["nonsaturating", "wgan_gp"])
def test_gradients_reach_only_the_network_being_updated(tmp_path, loss):
    cfg = compose_cfg(
        tmp_path, "data=ring8", "model=mlp", f"loss={loss}", "train.steps=3", "train.n_critic=2"
    )
    datamodule, base = build(cfg)
    module = RecordingModule(
        base.generator,
        base.discriminator,
        base.loss,
        Optimizers(base.optimizer_g, base.optimizer_d),
        Schedule(steps=3, n_critic=2, log_every=1),
    )
    g_before = [p.detach().clone() for p in module.generator.parameters()]
    bare_trainer(max_steps=9).fit(module, datamodule=datamodule)
    # per training step: 2 D backward passes that touch only D, then 1 G pass that touches only G
    assert module.events == [{"discriminator"}, {"discriminator"}, {"generator"}] * 3
    assert all(not torch.equal(a, b) for a, b in zip(g_before, module.generator.parameters(), strict=True))


def test_frozen_lr_freezes_only_that_network(tmp_path):
    """With lr_d=0 the D weights never move while G trains (and vice versa)."""
    for frozen in ("d", "g"):
        cfg = compose_cfg(
            tmp_path / frozen, "data=ring8", "model=mlp", "optim=sgd", f"optim.lr_{frozen}=1e-30"
        )
        datamodule, module = build(cfg)
        d0 = [p.detach().clone() for p in module.discriminator.parameters()]
        g0 = [p.detach().clone() for p in module.generator.parameters()]
        module.total_steps = 4
        bare_trainer(max_steps=8).fit(module, datamodule=datamodule)
        d_same = all(
            torch.allclose(a, b, atol=0, rtol=1e-12)
            for a, b in zip(d0, module.discriminator.parameters(), strict=True)
        )
        g_same = all(
            torch.allclose(a, b, atol=0, rtol=1e-12)
            for a, b in zip(g0, module.generator.parameters(), strict=True)
        )
        assert (d_same, g_same) == ((True, False) if frozen == "d" else (False, True))
