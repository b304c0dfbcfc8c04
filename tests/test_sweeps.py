"""Hydra sweeps on this machine: the basic and submitit-local launchers, the presets, ``optimized_metric``."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from ganforge import CONFIG_DIR
from ganforge.resolvers import job_name, sweep_name, wandb_id
from helpers import compose_cfg
from wandb_records import read_records

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
# the commands of slurm/README.md that these tests run (with TINY appended)
LOCAL_SWEEP = "ganforge-train -m loss=nonsaturating,hinge,wgan_gp optim.lr_d=1e-4,2e-4 model=mlp data=ring8"
LOCAL_SUBMITIT = "ganforge-train -m hydra/launcher=local loss=nonsaturating,hinge model=mlp data=ring8"
LOSSES = ("nonsaturating", "hinge", "wgan_gp")
TINY = ["train.steps=10", "train.log_every=5", "train.sample_every=0", "metrics=[]"]


def cli(command: str, *extra: str, cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    argv = shlex.split(command)
    assert argv[0] == "ganforge-train"
    cmd = [sys.executable, "-m", "ganforge.train", *argv[1:], *extra]
    return subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


def summary(job: Path) -> dict:
    return json.loads((job / "summary.json").read_text())


def test_readme_shows_the_commands_run_here():
    text = (ROOT / "slurm" / "README.md").read_text()
    for command in (LOCAL_SWEEP, LOCAL_SUBMITIT):
        assert command in text, command


def test_basic_launcher_sweep_one_wandb_run_per_job(tmp_path):
    sweep = tmp_path / "my_sweep"
    res = cli(LOCAL_SWEEP, *TINY, "logger=[csv,wandb]", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    names, ids = set(), set()
    for num in range(6):
        job = sweep / str(num)
        assert summary(job)["status"] == "finished" and (job / "checkpoints" / "last.ckpt").is_file()
        (wandb_file,) = job.glob("wandb/offline-run-*/run-*.wandb")
        (run,) = [r.run for r in read_records(wandb_file) if r.WhichOneof("record_type") == "run"]
        assert run.run_group == "my_sweep" and run.job_type == "train" and list(run.tags) == ["dev"]
        names.add(run.display_name)
        ids.add(run.run_id)
    assert len(ids) == 6  # named by what the sweep varies, not by the fixed overrides (TINY, logger, ...)
    assert names == {f"loss={loss},optim.lr_d={lr}" for loss in LOSSES for lr in ("0.0001", "0.0002")}


def test_submitit_local_launcher(tmp_path):
    sweep = tmp_path / "local_jobs"
    res = cli(LOCAL_SUBMITIT, *TINY, "logger=[csv]", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    losses = [yaml.safe_load((sweep / str(n) / ".hydra" / "config.yaml").read_text())["loss"] for n in (0, 1)]
    assert losses[0] != losses[1]
    for num in (0, 1):
        assert summary(sweep / str(num))["g_steps"] == 10
    assert len(list((sweep / ".submitit").glob("*/*_result.pkl"))) == 2  # ran as submitit jobs


def test_a_failing_job_does_not_stop_the_sweep(tmp_path):
    """A user error in one job (wgan_gp with batch norm in D) fails that job; the others run."""
    sweep = tmp_path / "sweep"
    res = cli(
        "ganforge-train -m loss=wgan_gp,hinge",
        *TINY,
        "train.steps=2",
        "logger=[csv]",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert res.returncode != 0
    assert "ganforge-train: error: the penalties (gp) need a discriminator without batch norm" in res.stderr
    assert summary(sweep / "1")["status"] == "finished"


def test_train_returns_optimized_metric(tmp_path, capsys):
    from ganforge.process import finish_wandb
    from ganforge.train import run_job

    task = run_job.__wrapped__  # the function under @hydra.main
    tiny = ("data=ring8", "model=mlp", "train.steps=5", "metrics=[]")
    value = task(compose_cfg(tmp_path / "a", *tiny, "optimized_metric=train/d_loss"))
    finish_wandb()
    assert value == summary(tmp_path / "a")["last"]["train/d_loss"]
    assert task(compose_cfg(tmp_path / "b", *tiny, "optimized_metric=val/nothing")) is None
    assert "optimized_metric=val/nothing not logged" in capsys.readouterr().err


def test_optuna_preset_minimizes_optimized_metric(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the optional extra ganforge[optuna]")
    sweep = tmp_path / "optuna"
    res = cli(
        "ganforge-train sweep=optuna model=mlp data=ring8",
        *TINY,
        "logger=[csv]",
        "optimized_metric=train/d_loss",  # val/fid needs images; the toy data has mode metrics
        "hydra.sweeper.n_trials=2",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    values = [summary(sweep / str(n))["last"]["train/d_loss"] for n in (0, 1)]
    assert best["best_value"] == pytest.approx(min(values))
    assert set(best["best_params"]) == {"optim.lr_g", "optim.lr_d", "train.n_critic"}


@pytest.mark.parametrize(("preset", "key", "jobs"), [("losses", "loss", 5), ("lr_grid", "optim.lr_d", 3)])
def test_sweep_presets_are_multiruns(preset, key, jobs):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose("train", overrides=[f"sweep={preset}"], return_hydra_config=True)
    assert cfg.hydra.mode.name == "MULTIRUN"
    assert len(str(cfg.hydra.sweeper.params[key]).split(",")) == jobs
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose("train", overrides=["sweep=optuna"], return_hydra_config=True)
    assert cfg.optimized_metric == "val/fid" and cfg.hydra.sweeper.direction == "minimize"


def test_wandb_names_outside_a_sweep():
    assert wandb_id("runs/a") == wandb_id("runs/a") != wandb_id("runs/b")
    assert len(wandb_id("runs/a")) == 16
    assert sweep_name() is None and job_name() is None  # no Hydra job: W&B picks a name, no group
