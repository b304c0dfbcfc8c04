"""The small 2-rank DDP job that the DDP and Slurm tests compare against, and how to read its results."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import torch

from helpers import DDP_CPU, command

ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
# per-rank batch 32: 2 ranks see the same global batch of 64 as one process with data.batch_size=64
DDP_ARGS = (
    "model=mlp",
    "data.batch_size=32",
    "train.steps=20",
    "train.log_every=1",
    "train.sample_every=0",
    "train.ckpt_every=0",
    "logger=[csv]",
    "metrics=[]",
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
