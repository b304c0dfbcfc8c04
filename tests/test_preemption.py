"""Preemption without Slurm: SIGUSR2 stops at a step boundary with last.ckpt; the resumed run is exact.

Also: a requeued job resumes from its own last.ckpt, the requeue call, and metrics.csv across a resume.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from ddp_runs import metrics_rows
from ganforge.callbacks.preemption import exit_after_preemption
from ganforge.process import finish_wandb, requeued_ckpt_path
from helpers import DDP_CPU, command
from test_resume import assert_same_training_state
from wandb_records import read_records

TINY = ("data=ring8", "model=mlp", "metrics=[]", "train.steps=20")
ENV = {
    **os.environ,
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "OMP_NUM_THREADS": "1",
    "PYTHONPATH": os.pathsep.join(p for p in (str(Path(__file__).parent), os.environ.get("PYTHONPATH")) if p),
}


def ckpt(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)


def wandb_run_ids(run_dir: Path) -> list[str]:
    files = sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    return [r.run.run_id for f in files for r in read_records(f) if r.WhichOneof("record_type") == "run"]


def test_signal_stops_at_a_step_boundary_and_the_resumed_run_is_exact(run):
    _, straight = run("straight", *TINY, "train.steps_per_batch=5")
    signal_at = "+callbacks.signal={_target_:job_callbacks.SignalAt,step:7}"
    try:
        summary, out = run("preempted", *TINY, "train.steps_per_batch=5", "logger=[csv,wandb]", signal_at)
    finally:
        finish_wandb()
    # the signal arrived during the callbacks of the batch that ended at step 10; the run stopped
    # at a batch end, after whole steps
    assert summary["status"] == "preempted"
    stopped = summary["preemption"]["g_step"]
    assert stopped in (10, 15) and summary["preemption"] == {
        "signal": "SIGUSR2",
        "g_step": stopped,
        "requeue": False,
    }
    assert ckpt(out)["ganforge"]["g_step"] == stopped
    assert signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL  # the handler lives only while training
    try:
        summary, out = run(
            "preempted", *TINY, "train.steps_per_batch=5", "logger=[csv,wandb]", "ckpt_path=auto"
        )
    finally:
        finish_wandb()
    assert summary["status"] == "finished" and summary["resumed_from"].endswith("last.ckpt")
    assert_same_training_state(ckpt(straight), ckpt(out))
    assert metrics_rows(out) == metrics_rows(straight)  # every step once, the same values
    ids = wandb_run_ids(out)
    assert len(ids) == 2 and ids[0] == ids[1]  # the resumed run continues the same W&B run


def test_ddp_ranks_agree_on_the_step_to_stop_at(tmp_path):
    """Only rank 0 gets the signal; both ranks stop at the next agreement step (every 10) and save."""
    out = tmp_path / "run"
    signal_at = "+callbacks.signal={_target_:job_callbacks.SignalAt,step:3,rank:0}"
    args = [
        *TINY,
        "logger=[csv]",
        "train.log_every=1",
        "train.steps_per_batch=2",
        f"hydra.run.dir={out}",
        signal_at,
    ]
    res = command("train", *DDP_CPU, *args, cwd=tmp_path, env=ENV)
    assert res.returncode == 128 + signal.SIGUSR2, res.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "preempted" and summary["preemption"]["g_step"] == 10
    assert ckpt(out)["ganforge"]["g_step"] == 10
    assert [int(row["step"]) for row in metrics_rows(out)] == list(range(1, 11))


def test_metrics_csv_after_a_crash_has_each_step_once(run):
    crash = "+callbacks.crash={_target_:helpers.CrashAt,step:7}"
    with pytest.raises(RuntimeError, match="injected crash"):
        run("crashed", *TINY, "train.steps=8", "train.ckpt_every=3", crash)
    # rows 1..7 were written, the checkpoint is at step 6: the resumed run rewrites row 7
    _, out = run("crashed", *TINY, "train.steps=8", "train.ckpt_every=3", "ckpt_path=auto")
    assert [int(row["step"]) for row in metrics_rows(out)] == list(range(1, 9))


def test_a_requeued_job_resumes_from_its_own_checkpoint(tmp_path, monkeypatch):
    (tmp_path / "checkpoints").mkdir()
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    assert requeued_ckpt_path("other.ckpt", tmp_path) == "other.ckpt"
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert requeued_ckpt_path("other.ckpt", tmp_path) == "other.ckpt"  # no last.ckpt yet
    (tmp_path / "checkpoints" / "last.ckpt").touch()
    assert requeued_ckpt_path("other.ckpt", tmp_path) == "auto"
    assert requeued_ckpt_path(None, tmp_path) == "auto"


def test_exit_after_preemption_requeues_the_slurm_job(tmp_path, monkeypatch, capsys):
    calls = tmp_path / "calls"
    scontrol = tmp_path / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    report = {"signal": "SIGUSR2", "g_step": 7, "requeue": True}
    with pytest.raises(SystemExit) as exit_info:
        exit_after_preemption(report, rank=1)  # not rank 0: exits without requeueing
    assert exit_info.value.code == 128 + signal.SIGUSR2 and not calls.exists()
    with pytest.raises(SystemExit):
        exit_after_preemption(report, rank=0)
    assert calls.read_text() == "requeue 4242\n"
    assert "preempted at generator step 7; requeued job 4242" in capsys.readouterr().err


class SlowBatches(pl.Callback):
    """Sleeps at every batch end (after the other callbacks): signals land inside a batch."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, *args) -> None:
        time.sleep(self.seconds)


def test_a_second_ctrl_c_stops_at_once_as_interrupted(tmp_path):
    out = tmp_path / "run"
    args = [*TINY, "train.steps=100000", "logger=[csv]", "train.log_every=1", "train.ckpt_every=2"]
    slow = "+callbacks.slow={_target_:test_preemption.SlowBatches,seconds:1.0}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ganforge.train", *args, slow, f"hydra.run.dir={out}"],
        cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "checkpoints" / "last.ckpt").exists():
        time.sleep(0.1)
    time.sleep(0.3)  # inside a batch end's sleep
    proc.send_signal(signal.SIGINT)
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("ganforge-train:")]
    assert errors == ["ganforge-train: interrupted: stopped without writing a checkpoint"], stderr[-3000:]
    assert "Traceback" not in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert ckpt(out)["ganforge"]["g_step"] % 2 == 0  # a checkpoint written before is whole
