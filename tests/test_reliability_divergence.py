"""Issue 25, divergence: a run that has stopped learning (a dead network) or whose updates explode is
guarded like a NaN one (roll back, then stop with exit code 3); the README's own examples, run as
written; non-finite settings and data are refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import assert_refused_before_training, entry_point

TOY = ("data=ring8", "model=mlp", "logger=[csv]", "metrics=[]")


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("ganforge-train: error:")]


def summary_of(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_readme_lr_g_1e6_stops_with_exit_3_at_step_30(tmp_path):
    """README: `optim.lr_g=1e6` with `train.ckpt_every=50`: exit 3 at step 30 (G's tanh saturates: its
    gradient is exactly 0 from step 2 on, the losses stay finite; it used to run to the end, exit 0)."""
    out = tmp_path / "run"
    res = entry_point("train", "optim.lr_g=1e6", "train.ckpt_every=50", f"hydra.run.dir={out}", cwd=tmp_path)
    assert res.returncode == 3, res.stderr[-3000:]
    [line] = error_lines(res.stderr)
    assert "training collapsed: the generator has stopped learning" in line
    assert "there is no checkpoint to roll back to yet" in line and "optim.lr_g=1e+06" in line
    assert "Traceback" not in res.stderr
    summary = summary_of(out)
    assert summary["status"] == "collapsed" and summary["g_steps"] == 30
    assert not (out / "checkpoints" / "last.ckpt").exists()


def test_readme_lr_d_1e6_stops_with_exit_3_at_step_30(tmp_path):
    """README: `optim.lr_d=1e6` makes G's gradients explode (norm 1e14 and more, finite): skipped as
    NaN ones are, and with no checkpoint yet the run stops at step 30 (it used to finish, exit 0)."""
    out = tmp_path / "run"
    res = entry_point("train", "optim.lr_d=1e6", f"hydra.run.dir={out}", cwd=tmp_path)
    assert res.returncode == 3, res.stderr[-3000:]
    [line] = error_lines(res.stderr)
    assert "training diverged: the generator loss or gradient has been NaN/Inf or its gradient norm" in line
    assert "optim.lr_d=1e+06" in line
    summary = summary_of(out)
    assert summary["status"] == "diverged" and summary["g_steps"] == 30
    assert summary["guard"]["skipped_updates"]["generator"] == 30


@pytest.mark.parametrize(
    "args",
    [
        ("optim.lr_g=1e6", "optim.lr_d=1e6"),
        ("experiment=pix2pix_sr_digits", "optim.lr_g=1e6"),
        ("experiment=cyclegan_digits", "optim.lr_g=1e6"),
    ],
    ids=["both", "paired", "unpaired"],
)
def test_learning_rates_of_1e6_stop_every_task_with_exit_3(tmp_path, args):
    out = tmp_path / "run"
    res = entry_point(
        "train", *args, "metrics=[]", "logger=[csv]", "train.ckpt_every=50", "train.sample_every=0",
        f"hydra.run.dir={out}", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 3, res.stderr[-3000:]
    assert len(error_lines(res.stderr)) == 1, res.stderr[-3000:]
    assert summary_of(out)["status"] in ("collapsed", "diverged")
    assert summary_of(out)["g_steps"] <= 50


def test_a_healthy_run_resumed_with_1e6_rolls_back_to_its_checkpoint(tmp_path):
    """The dead generator is rolled back (default on_dead=rollback) to the last checkpoint with the
    rates halved, and training goes on; with on_dead=stop it stops at once with exit code 3."""
    out = tmp_path / "run"
    base = (
        "train.steps_per_batch=1",
        "train.sample_every=0",
        "metrics=[]",
        "logger=[csv]",
        f"hydra.run.dir={out}",
    )
    res = entry_point("train", *base, "train.steps=10", "train.ckpt_every=10", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    resume = (*base, "train.steps=60", "train.ckpt_every=10", "ckpt_path=auto", "optim.lr_g=1e6")
    res = entry_point("train", *resume, "callbacks.guard.on_dead=stop", cwd=tmp_path)
    assert res.returncode == 3, res.stderr[-3000:]
    [line] = error_lines(res.stderr)
    assert "training collapsed: the generator has stopped learning" in line
    assert summary_of(out)["status"] == "collapsed"
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["ganforge"]["g_step"] == 10
    res = entry_point("train", *resume, "callbacks.guard.max_rollbacks=1", cwd=tmp_path)
    assert res.returncode in (0, 3), res.stderr[-3000:]
    summary = summary_of(out)
    [rollback] = summary["guard"]["rollbacks"][:1]
    assert rollback["why"] == "collapsed" and rollback["network"] == "generator" and rollback["to_step"] == 10
    assert "rolled back to" in res.stdout + res.stderr  # the log (Hydra's console handler: stdout)


def test_nan_on_ring8_still_stops_through_the_nonfinite_path(tmp_path):
    out = tmp_path / "run"
    res = entry_point(
        "train", *TOY, "optim.lr_g=1e6", "train.steps=300", f"hydra.run.dir={out}", cwd=tmp_path
    )
    assert res.returncode == 3, res.stderr[-3000:]
    assert summary_of(out)["status"] in ("diverged", "collapsed")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("data=ring8", "data.std=.nan"), "data.std=.nan is not a finite number"),
        (("data=ring8", "data.std=nan"), "data.std=nan is not a finite number"),
        (("experiment=pix2pix_denoise_digits", "data.noise_std=.nan"), "data.noise_std=.nan is not a finite"),
        (("data=ring8", "optim.lr_g=.inf"), "optim.lr_g=.inf is not a finite number"),
    ],
)
def test_non_finite_settings_are_refused_in_one_line(tmp_path, args, message):
    assert_refused_before_training(tmp_path, *args, message=message)


def test_non_finite_data_is_refused_in_one_line(tmp_path):
    """A radius that overflows float32 makes every real sample Inf: refused before training (it used
    to end in a traceback or NaN losses)."""
    assert_refused_before_training(tmp_path, *TOY, "data.radius=1e39", message="the real data is not finite")


def test_guard_counts_dead_and_exploded_updates_apart():
    from ganforge.callbacks.guard import DivergenceGuard

    guard = DivergenceGuard("missing.ckpt", max_bad_steps=2, dead_steps=3, max_grad_norm_g=1e3)
    one = torch.tensor(1.0)
    for step in range(1, 4):
        assert guard.accept(one, torch.tensor(0.0), "generator", step)  # dead, not skipped
        assert guard.accept(one, torch.tensor(1e9), "discriminator", step)  # D's norm: not limited
    assert guard.dead() == "generator" and guard.frozen() is None and guard.skipping()
    assert not guard.accept(one, torch.tensor(1e4), "generator", 4)  # exploded: skipped, streak over
    assert guard.dead() is None and guard.skipped == {"discriminator": 0, "generator": 1}
    assert DivergenceGuard("x", dead_steps=None).dead() is None


def test_guard_settings_are_checked(tmp_path):
    message = "callbacks.guard.on_dead='panic': must be one of rollback, stop"
    assert_refused_before_training(tmp_path, *TOY, "callbacks.guard.on_dead=panic", message=message)
