"""Compose the real config tree into a tmp dir and train in-process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from ganforge.config import CONFIG_DIR

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

ROOT = Path(__file__).resolve().parents[1]
FAST = ["logger=[csv]", "train.log_every=1", "train.sample_every=0", "train.ckpt_every=0"]


def compose_cfg(out: Path, *overrides: str) -> DictConfig:
    """The real ``train`` config with ``overrides``, writing into ``out``."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return compose("train", overrides=[*FAST, f"paths.output_dir={out}", *overrides])


def train_run(out: Path, *overrides: str) -> dict[str, Any]:
    """Train in this process; returns the run summary."""
    from ganforge.train import train

    return train(compose_cfg(out, *overrides))


class CrashAt(pl.Callback):
    """Raises after generator step ``step``: a fault in the middle of training."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        if pl_module.g_step >= self.step:
            raise RuntimeError(f"injected crash at generator step {pl_module.g_step}")
