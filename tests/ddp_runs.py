"""The small 2-rank DDP job that the DDP and Slurm tests compare against, and how to read its results."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from helpers import DDP_CPU, command

ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
# per-rank batch 32: 2 ranks see the same global batch of 64 as one process with data.batch_size=64;
# two D steps per G step, a sample grid and a checkpoint every 10 (what test_ddp_two_cpu_processes counts)
DDP_ARGS = (
    "model=mlp",
    "data.batch_size=32",
    "train.steps=20",
    "train.n_critic=2",
    "train.log_every=1",
    "train.sample_every=10",
    "train.ckpt_every=10",
    "logger=[csv]",
    "metrics=[]",  # metrics under DDP: tests/test_metrics_run.py
)


def run_local_ddp(out: Path) -> Path:
    """Train ``DDP_ARGS`` as 2 local CPU processes (gloo) into ``out``."""
    env = {"OMP_NUM_THREADS": "1"}
    res = command("train", *DDP_CPU, *DDP_ARGS, f"hydra.run.dir={out}", cwd=out.parent, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def metrics_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of ``metrics.csv`` that hold training scalars, as floats keyed by name."""
    with open(run_dir / "metrics.csv", newline="") as file:
        rows = [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(file)]
    return [row for row in rows if "train/d_loss" in row]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The final weights of G and D (``last.ckpt``)."""
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]


class LocalScalars(pl.Callback):
    """Writes, on every rank, the training scalars each logging step hands to ``_log_scalars`` before
    they are averaged across ranks (``<out>/rank<r>.jsonl``); the module's own method still runs."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        path, log_scalars = self.out / f"rank{trainer.global_rank}.jsonl", pl_module._log_scalars
        self.out.mkdir(parents=True, exist_ok=True)

        def record(scalars: dict[str, torch.Tensor], *args: Any) -> None:
            row = {"step": pl_module.g_step, **{k: float(v) for k, v in scalars.items()}}
            with path.open("a") as file:
                file.write(json.dumps(row) + "\n")
            log_scalars(scalars, *args)

        pl_module._log_scalars = record


def local_scalars(out: Path, rank: int) -> list[dict[str, float]]:
    """The rows :class:`LocalScalars` wrote for ``rank``."""
    return [json.loads(line) for line in (out / f"rank{rank}.jsonl").read_text().splitlines()]


class RankMetrics(pl.Callback):
    """Writes, on every rank at the end of training, what its metrics callback measured last and the
    step it kept as best (``<out>/metrics_rank<r>.json``); add it after the metrics callback."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        from ganforge.callbacks.metrics import MetricsCallback

        callback = next(cb for cb in trainer.callbacks if isinstance(cb, MetricsCallback))
        self.out.mkdir(parents=True, exist_ok=True)
        state = {"latest": callback.latest, "best": callback.best, "best_step": callback.best_step}
        (self.out / f"metrics_rank{trainer.global_rank}.json").write_text(json.dumps(state))
