"""Callbacks that tests add to a job (``+callbacks.<name>={_target_:job_callbacks...}``)."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import pytorch_lightning as pl


class Throttle(pl.Callback):
    """Sleeps ``seconds`` after each step until the job is requeued, leaving time to signal it mid-run."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        if int(os.environ.get("SLURM_RESTART_COUNT") or 0) == 0:
            time.sleep(self.seconds)


class SignalAt(pl.Callback):
    """Sends this process ``signal`` (a name) once, at the first batch end at or after generator step
    ``step``; on rank ``rank`` only if set."""

    def __init__(self, step: int, signal: str = "SIGUSR2", rank: int | None = None) -> None:
        self.step = step
        self.signal = signal
        self.rank = rank
        self.sent = False

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        if not self.sent and pl_module.g_step >= self.step and self.rank in (None, trainer.global_rank):
            self.sent = True
            os.kill(os.getpid(), signal.Signals[self.signal])


class SeenMetrics(pl.Callback):
    """Appends ``trainer.callback_metrics`` (with the generator step) to ``path`` as a JSON line at every
    batch end and once at the end of training: what Lightning's callbacks can read."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _write(self, trainer: pl.Trainer, pl_module: Any) -> None:
        row = {"g_step": pl_module.g_step, **{k: float(v) for k, v in trainer.callback_metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        self._write(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self._write(trainer, pl_module)
