"""Top-k training (Sinha et al. 2020): G's adversarial loss on the k fakes D scores highest, k decaying
by γ per epoch of the data down to ν·batch; by hand and in a run."""

from __future__ import annotations

import csv

import pytest
import torch
import torch.nn.functional as F

from ganforge.build import build
from ganforge.errors import ConfigError
from ganforge.losses import GANLoss, nonsaturating_d, nonsaturating_g
from helpers import compose_cfg, train_run


def test_g_loss_takes_the_k_best_scored_fakes_and_k_decays_per_epoch():
    loss = GANLoss(d_loss=nonsaturating_d, g_loss=nonsaturating_g, top_k={"gamma": 0.5, "nu": 0.25})
    logits = torch.tensor([0.3, -2.0, 1.5, 0.0, -1.0, 2.5, -0.5, 0.7], requires_grad=True)
    loss.at_epoch(0)
    assert loss.top_k_count(8) == 8
    torch.testing.assert_close(loss.generator_loss(logits), F.softplus(-logits).mean())
    loss.at_epoch(1)  # rate 0.5: the 4 highest, 2.5, 1.5, 0.7, 0.3
    assert loss.top_k_count(8) == 4
    value = loss.generator_loss(logits)
    torch.testing.assert_close(value, F.softplus(-torch.tensor([2.5, 1.5, 0.7, 0.3])).mean())
    (grad,) = torch.autograd.grad(value, logits)
    assert (grad[[1, 3, 4, 6]] == 0).all() and (grad[[0, 2, 5, 7]] != 0).all()  # the others get nothing
    loss.at_epoch(3)  # 0.5³ = 0.125 is below ν = 0.25: k = 2
    assert loss.top_k_count(8) == 2 and loss.top_k_count(3) == 1  # never fewer than one


def test_a_run_logs_k_decaying_with_the_epochs_of_the_digits(tmp_path):
    # 1,797 digits at batch 64: epoch 1 starts at G step 29 (29 · 64 ≥ 1,797), epoch 2 at step 57
    train_run(tmp_path, "loss.top_k={gamma:0.5,nu:0.25}", "train.steps=60", "train.log_every=1")
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    k = {int(r["trainer/g_step"]): float(r["train/top_k"]) for r in rows if r.get("train/top_k")}
    assert (k[1], k[29], k[30], k[57], k[58], k[60]) == (64, 64, 32, 32, 16, 16)  # logged after the step


def test_top_k_refusals(tmp_path):
    with pytest.raises(ConfigError, match="fresh samples every step"):
        build(compose_cfg(tmp_path, "data=ring8", "model=mlp", "loss.top_k={gamma:0.99,nu:0.5}"))
    with pytest.raises(ConfigError, match="relativistic"):
        build(compose_cfg(tmp_path, "loss=relativistic", "loss.top_k={gamma:0.99,nu:0.5}"))
    with pytest.raises(ConfigError, match="gamma"):
        build(compose_cfg(tmp_path, "loss.top_k={gamma:2,nu:0.5}"))
