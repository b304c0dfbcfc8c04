"""What a person sees while training: health warnings (once each) and the progress display."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from types import SimpleNamespace

import pytest
import rich
import torch
from torch import Tensor, nn

from ganforge.callbacks.health import GANHealthWarning, HealthCheck
from ganforge.losses import GANLoss, minimax_d, nonsaturating_g, wgan_d, wgan_g

TOY = ("data=ring8", "model=mlp", "metrics=[]")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny nets gain nothing from threads, which only contend on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class ConstantGenerator(nn.Module):
    """Ignores z: every sample is the same learnable point (total mode collapse)."""

    def __init__(self, data_shape: Sequence[int], z_dim: int = 64, **_: object) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.point = nn.Parameter(torch.zeros(*data_shape))

    def forward(self, z: Tensor) -> Tensor:
        return self.point + z.new_zeros(len(z), *self.point.shape)


def health_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, GANHealthWarning)]


def test_collapse_warns_once_on_a_constant_generator(run):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        summary, _ = run(
            "collapse",
            *TOY,
            "model.generator._target_=test_health.ConstantGenerator",
            "train.steps=40",
            "callbacks.health.every=10",
            "callbacks.health.warmup=10",
        )
    messages = health_warnings(record)
    assert len(messages) == 1 and "mode collapse" in messages[0], messages
    assert summary["health"] == ["collapse"]


def test_healthy_short_run_is_quiet(run):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        summary, _ = run(
            "healthy", *TOY, "train.steps=100", "callbacks.health.every=50", "callbacks.health.warmup=50"
        )
    assert health_warnings(record) == []
    assert summary["health"] == []


# --- the checks on their own, with stand-ins for trainer and module -------------------------------------
def fake(
    step: int, loss: GANLoss, samples: Tensor, **metrics: float
) -> tuple[SimpleNamespace, SimpleNamespace]:
    trainer = SimpleNamespace(is_global_zero=True, datamodule=None)
    module = SimpleNamespace(
        g_step=step,
        loss=loss,
        last_metrics={f"train/{k}": v for k, v in metrics.items()},
        sample=lambda: samples,
        num_fixed=len(samples),
        seed=0,
    )
    return trainer, module


BCE = GANLoss(d_loss=minimax_d, g_loss=nonsaturating_g)
WGAN = GANLoss(d_loss=wgan_d, g_loss=wgan_g)
SPREAD = torch.randn(16, 2)


def test_nan_warns_once():
    check = HealthCheck(every=10, warmup=0)
    with pytest.warns(GANHealthWarning, match=r"NaN/Inf in train/d_loss") as record:
        for step in (10, 20, 30):
            check.run_checks(*fake(step, BCE, SPREAD, d_loss=math.nan, g_loss=0.7))
    assert len(health_warnings(record.list)) == 1
    assert check.issued == ["nonfinite"]


def test_d_won_needs_patience_and_a_bounded_loss():
    check = HealthCheck(every=100, warmup=0, d_loss_floor=0.05, patience=300)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for step in (100, 200, 300):  # low for 200 steps only, then recovers
            check.run_checks(*fake(step, BCE, SPREAD, d_adv=0.01 if step < 300 else 1.0))
        assert health_warnings(record) == []
        for step in range(400, 1100, 100):
            check.run_checks(*fake(step, BCE, SPREAD, d_adv=0.01))
        assert len(health_warnings(record)) == 1 and "D has won" in health_warnings(record)[0]
        quiet = HealthCheck(every=100, warmup=0, patience=100)
        for step in range(100, 1000, 100):  # a WGAN critic loss near 0 means nothing
            quiet.run_checks(*fake(step, WGAN, SPREAD, d_adv=0.0))
        assert quiet.issued == []


def test_collapse_waits_for_warmup():
    same = torch.zeros(16, 2)
    check = HealthCheck(every=10, warmup=100)
    check.real_spread = 1.0
    check.run_checks(*fake(50, BCE, same))
    assert check.issued == []
    with pytest.warns(GANHealthWarning, match="mode collapse"):
        check.run_checks(*fake(100, BCE, same))


# --- the progress display ------------------------------------------------------------------------------
def test_progress_lines_count_generator_steps(run, capsys):
    run("plain", *TOY, "train.steps=20", "train.log_every=5", "callbacks.progress.log_fraction=0.5")
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("train ")]
    assert [line.split()[1] for line in lines] == ["10/20", "20/20"], out
    assert "steps/s" in lines[-1] and "d_loss=" in lines[-1] and "g_loss=" in lines[-1]
    assert "Epoch" not in out and "it/s" not in out


def test_progress_bar_in_a_terminal(run, capsys):
    try:
        run(
            "live",
            *TOY,
            "train.steps=20",
            "train.log_every=5",
            "+callbacks.progress.console_kwargs={force_terminal:true,width:120}",
        )
    finally:
        rich.reconfigure()  # Lightning reconfigures rich's global console; put it back
    out = capsys.readouterr().out
    assert "20/20" in out and "steps/s" in out and "d_loss" in out
    assert "Epoch" not in out and "it/s" not in out
