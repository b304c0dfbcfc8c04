"""Faults injected into real runs: NaN at step k (skip, roll back, or stop with exit code 3, never a
NaN checkpoint) and corrupt or foreign checkpoints given as ckpt_path (one line, exit code 2)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger

from ganforge.callbacks.checkpoint import weights_finite
from ganforge.errors import ConfigError, DivergedError
from helpers import command

ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
TOY = ("data=ring8", "model=mlp", "train.steps=30", "train.ckpt_every=10")


class NaNBatchAt(pl.Callback):
    """Turns the real data of generator step ``step`` into NaN (its slice of the Lightning batch): one
    step of bad D updates."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        index = self.step - 1 - pl_module.g_step  # steps g_step+1 ... g_step+steps_per_batch
        if 0 <= index < pl_module.steps_per_batch:
            size = len(batch[0]) // pl_module.steps_per_batch
            batch[0][index * size : (index + 1) * size].fill_(float("nan"))


class PoisonDAt(pl.Callback):
    """Sets a weight of D to NaN after generator step ``step``: every later update is bad."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        if pl_module.g_step == self.step:
            with torch.no_grad():
                next(pl_module.discriminator.parameters()).view(-1)[0] = float("nan")


class DLearningRateAt(pl.Callback):
    """From generator step ``step`` on, D's learning rate is ``lr`` (``once``: only at that step, so a
    rollback's restored rate holds): D's huge weights make G's loss or gradient non-finite while D's
    own updates stay finite, a generator-only divergence."""

    def __init__(self, step: int, lr: float = 1e6, once: bool = True) -> None:
        self.step, self.lr, self.once = step, lr, once

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        if pl_module.g_step == self.step or (not self.once and pl_module.g_step > self.step):
            for group in trainer.optimizers[1].param_groups:
                group["lr"] = self.lr


G_DIVERGES = (
    "train.steps_per_batch=1",
    "callbacks.guard.max_bad_steps=3",
    "+callbacks.lr._target_=test_robustness.DLearningRateAt",
    "+callbacks.lr.step=15",
)


def test_generator_only_divergence_rolls_back(run):
    """D's finite updates no longer hide a generator whose every update is skipped (issue 15, item 1)."""
    summary, out = run("g_rollback", *TOY, *G_DIVERGES)
    assert summary["status"] == "finished" and summary["g_steps"] == 30
    assert summary["guard"]["skipped_updates"]["discriminator"] == 0
    assert summary["guard"]["skipped_updates"]["generator"] >= 4
    [rollback] = summary["guard"]["rollbacks"]
    assert rollback["network"] == "generator" and rollback["to_step"] == 10
    assert summary["last"]["train/lr_d"] == pytest.approx(2e-4 * 0.5)  # the checkpoint's rate, halved
    assert summary["last"]["train/lr_g"] == pytest.approx(2e-4 * 0.5)


def test_generator_frozen_after_rollbacks_stops_with_exit_code_3(tmp_path):
    out = tmp_path / "run"
    res = command(
        "train",
        *TOY,
        *G_DIVERGES,
        "+callbacks.lr.once=false",
        "train.steps=100",
        "logger=[csv]",
        "metrics=[]",
        f"hydra.run.dir={out}",
        cwd=tmp_path,
        env={"PYTHONPATH": os.path.dirname(__file__)},
    )
    assert res.returncode == 3, res.stderr[-3000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("ganforge-train: error:")]
    assert len(errors) == 1 and "the generator loss or gradient" in errors[0], res.stderr[-3000:]
    assert "2 rollback(s) did not help" in errors[0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged"
    assert [r["network"] for r in summary["guard"]["rollbacks"]] == ["generator", "generator"]
    assert summary["guard"]["skipped_updates"]["discriminator"] == 0
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["ganforge"]["g_step"] == 10  # no checkpoint was written while G's updates were skipped


def test_a_nan_batch_skips_its_updates_and_training_goes_on(run):
    summary, out = run(
        "nan",
        *TOY,
        "train.n_critic=2",
        "+callbacks.nan._target_=test_robustness.NaNBatchAt",
        "+callbacks.nan.step=7",
    )
    assert summary["status"] == "finished" and summary["g_steps"] == 30
    assert summary["guard"]["skipped_updates"] == {"discriminator": 2, "generator": 0}
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


def test_lasting_nan_rolls_back_to_the_last_checkpoint_with_lower_lr(run):
    summary, out = run(
        "rollback",
        *TOY,
        "+callbacks.poison._target_=test_robustness.PoisonDAt",
        "+callbacks.poison.step=15",
        "callbacks.guard.max_bad_steps=3",
        "train.steps_per_batch=1",  # poisoned after step 15 exactly
    )
    assert summary["status"] == "finished" and summary["g_steps"] == 30
    assert len(summary["guard"]["rollbacks"]) == 1 and summary["guard"]["rollbacks"][0]["to_step"] == 10
    assert summary["last"]["train/lr_d"] == pytest.approx(2e-4 * 0.5)
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["ganforge"]["g_step"] == 30
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


def test_nan_that_rollbacks_cannot_fix_stops_with_exit_code_3(tmp_path):
    out = tmp_path / "run"
    res = command(
        "train",
        *TOY,
        "logger=[csv]",
        "metrics=[]",
        "callbacks.guard.max_bad_steps=2",
        "callbacks.guard.max_rollbacks=0",
        "+callbacks.poison._target_=test_robustness.PoisonDAt",
        "+callbacks.poison.step=12",
        "train.steps_per_batch=1",
        f"hydra.run.dir={out}",
        cwd=tmp_path,
        env={"PYTHONPATH": os.path.dirname(__file__)},
    )
    assert res.returncode == 3, res.stderr[-3000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("ganforge-train: error:")]
    assert len(errors) == 1 and "discriminator" in errors[0] and "generator step 13" in errors[0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged"
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["ganforge"]["g_step"] == 10  # the NaN weights of the end of training were not written
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


def test_weights_finite():
    net = torch.nn.Linear(2, 2)
    assert weights_finite(net)
    with torch.no_grad():
        net.bias[0] = float("inf")
    assert not weights_finite(net)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "an empty file"),
        (b"\x80\x04garbage that is no pickle", "not a readable checkpoint"),
        ("truncated", "not a readable checkpoint"),
        ("foreign", "not one written by ganforge-train"),
    ],
)
def test_bad_checkpoints_are_one_line_errors(run, tmp_path, content, message):
    path = tmp_path / "bad.ckpt"
    if content == "truncated":
        _, out = run("good", *TOY[:2], "train.steps=2")
        data = (out / "checkpoints" / "last.ckpt").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif content == "foreign":
        torch.save({"state_dict": {}, "epoch": 0}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as info:
        run("resume", *TOY[:2], f"ckpt_path={path}")
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_diverged_error_exit_code():
    assert DivergedError.exit_code == 3


class FullDiskLogger(CSVLogger):
    """A CSV logger whose writes fail from the ``fail_after``-th call on, as on a full disk."""

    def __init__(self, fail_after: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fail_after, self.calls = fail_after, 0

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.calls += 1
        if self.calls >= self.fail_after:
            raise OSError(28, "No space left on device")
        super().log_metrics(metrics, step)


def test_a_logger_that_fails_mid_run_is_dropped_and_training_goes_on(run, tmp_path):
    with pytest.warns(UserWarning, match="FullDiskLogger failed and is disabled.*No space left"):
        summary, out = run(
            "full_disk",
            *TOY,
            "+logger.full._target_=test_robustness.FullDiskLogger",
            f"+logger.full.save_dir={tmp_path}/full",
            "metrics=[modes]",
            "metrics.every=10",
        )
    assert summary["status"] == "finished" and summary["g_steps"] == 30
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len([r for r in rows if r]) > 30  # the other logger kept every step and the metrics


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_writes_last_ckpt_and_auto_resume_continues(tmp_path, sig):
    out = tmp_path / "run"
    args = [
        sys.executable,
        "-m",
        "ganforge.train",
        "data=ring8",
        "model=mlp",
        "logger=[csv]",
        "metrics=[]",
        "train.log_every=1",
        "train.ckpt_every=0",
        f"hydra.run.dir={out}",
    ]
    proc = subprocess.Popen(
        [*args, "train.steps=100000"],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    csv_path = out / "metrics.csv"
    deadline = time.time() + 120
    while time.time() < deadline and (not csv_path.exists() or csv_path.read_text().count("\n") < 20):
        time.sleep(0.2)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "preempted" and summary["preemption"]["signal"] == sig.name
    stopped = summary["g_steps"]
    assert 0 < stopped < 100000 and summary["preemption"]["requeue"] is False
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["ganforge"]["g_step"] == stopped
    again = subprocess.run(
        [*args, f"train.steps={stopped + 5}", "ckpt_path=auto"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["g_steps"] == stopped + 5
    assert summary["resumed_from"].endswith("last.ckpt")
