"""Preemption and time limits: on a signal, finish the step, write ``last.ckpt``, stop; under Slurm, requeue.

ganforge, not Lightning or submitit, owns the requeue signal (``SIGUSR2``, which the submitit
launcher asks Slurm to send ``signal_delay_s`` before the time limit). The handler only sets a
flag; at the next generator-step boundary that all ranks agree on, ``last.ckpt`` is written at
once (through :class:`~ganforge.callbacks.checkpoint.GANCheckpoint`, before any end-of-training
work) and training stops. After the W&B run is closed, :func:`exit_after_preemption` requeues the
Slurm job (rank 0) and exits; the requeued job resumes from ``last.ckpt`` in the same run dir.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import warnings
from collections.abc import Sequence
from types import FrameType
from typing import Any

import pytorch_lightning as pl
from lightning_fabric.plugins.environments import SLURMEnvironment
from pytorch_lightning.callbacks import Callback

from ganforge.callbacks.checkpoint import GANCheckpoint

log = logging.getLogger(__name__)


class Preemption(Callback):
    """Stops training cleanly when one of ``signals`` arrives; see the module docstring.

    Args:
        signals: names of the signals that mean "stop and save" (``SIGUSR2``: Slurm's warning).
        requeue: under Slurm, requeue the job after stopping on one of ``requeue_signals`` (else only stop).
        requeue_signals: the signals that mean "preempted, come back" (SIGTERM/SIGINT mean "stop").
        max_requeues: no requeue once the job has been requeued this many times (``None``: no limit).
        sync_every: with several ranks, how often (in generator steps) they agree on stopping.
    """

    def __init__(
        self,
        signals: Sequence[str] = ("SIGUSR2",),
        requeue: bool = True,
        max_requeues: int | None = None,
        sync_every: int = 10,
        requeue_signals: Sequence[str] = ("SIGUSR2",),
    ) -> None:
        self.signals = [signal.Signals[name] for name in signals]
        self.requeue_signals = {signal.Signals[name] for name in requeue_signals}
        self.requeue = requeue
        self.max_requeues = max_requeues
        self.sync_every = max(1, sync_every)
        self.received: signal.Signals | None = None
        self.stopped_at: int | None = None
        self._previous: dict[signal.Signals, Any] = {}
        self._checkpoint: GANCheckpoint | None = None
        # signals the command line noted before this callback's handlers were installed (train.py)
        self.early_signals: list[int] = []

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.received is not None:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.received = signal.Signals(signum)  # only a flag: the step in flight completes first

    def setup(self, trainer: pl.Trainer, pl_module: Any, stage: str) -> None:
        self._checkpoint = next((cb for cb in trainer.callbacks if isinstance(cb, GANCheckpoint)), None)
        if self._checkpoint is None:
            warnings.warn("Preemption without GANCheckpoint: a stopped run saves nothing", stacklevel=2)

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        # after Lightning has installed its own SIGTERM handler (which would end the run with an
        # exception at the next step): ours replaces it while training runs
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._on_signal)
        # a signal between the start of fit and now: the command line's early handler noted it, or
        # Lightning's SIGTERM handler did (which would raise at the next batch): stop after this batch
        noted = [signal.Signals(s) for s in self.early_signals if s in self.signals]
        self.early_signals.clear()
        if trainer.received_sigterm and signal.SIGTERM in self.signals:
            noted.append(signal.SIGTERM)
            trainer._signal_connector.received_sigterm = False
        if noted and self.received is None:
            self.received = noted[-1]

    def teardown(self, trainer: pl.Trainer, pl_module: Any, stage: str) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        step = pl_module.g_step
        if trainer.world_size > 1:
            if not pl_module.reached(self.sync_every):
                return
            stop = trainer.strategy.reduce_boolean_decision(self.received is not None, all=False)
        else:
            stop = self.received is not None
        if stop and step < pl_module.total_steps and self.stopped_at is None:
            if self.received is None:  # another rank got it
                self.received = self.signals[0]
            log.warning(f"{self.received.name}: stopping after generator step {step}, writing last.ckpt")
            self.stopped_at = step
            if self._checkpoint is not None:
                self._checkpoint.save(trainer)  # now: end-of-training work (metrics) may outlast the warning
            trainer.should_stop = True

    def report(self) -> dict[str, Any]:
        """What the run summary records about the stop (``requeue``: whether to requeue the job)."""
        return {
            "signal": self.received.name if self.received else None,
            "g_step": self.stopped_at,
            "requeue": self.requeue
            and self.received in self.requeue_signals
            and will_requeue(self.max_requeues),
        }


def will_requeue(max_requeues: int | None) -> bool:
    """Inside a Slurm job that has been requeued fewer than ``max_requeues`` times."""
    if "SLURM_JOB_ID" not in os.environ:
        return False
    restarts = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    return max_requeues is None or restarts < max_requeues


def lightning_plugins() -> list[Any]:
    """Lightning's SLURM environment with its own requeue handler off (it saves mid-step, never stops)."""
    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


def exit_after_preemption(report: dict[str, Any], rank: int = 0) -> None:
    """Requeue the Slurm job (rank 0, when ``report`` says so), then exit with 128 + the signal number."""
    if report.get("requeue") and rank == 0:
        job = os.environ["SLURM_JOB_ID"]
        try:
            cmd = ["scontrol", "requeue", job]
            subprocess.run(cmd, check=True, timeout=60, capture_output=True, text=True)
            step = report["g_step"]
            print(f"ganforge-train: preempted at generator step {step}; requeued job {job}", file=sys.stderr)
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", None) or exc
            print(f"ganforge-train: preempted; requeueing job {job} failed: {detail}", file=sys.stderr)
    signum = signal.Signals[report["signal"]] if report.get("signal") else signal.SIGTERM
    sys.exit(128 + int(signum))
