"""A rich progress bar over generator steps: ``train.steps`` as total, steps/s, ETA, the latest losses.

It reads ``module.last_metrics`` (host floats the module refreshes every ``log_every`` steps), so
drawing it never syncs the device. When the output is not a terminal (a Slurm log, a file) there
is no live bar (no rich display, no refresh thread): one plain line is printed every ``log_fraction``
of the run instead. Either way that line also goes to the run's log files (Hydra's ``train.log``),
which otherwise hold only what the code logs (a translation run on an unlabelled folder logs nothing
else).
"""

from __future__ import annotations

import logging
import math
import time
from datetime import timedelta
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.callbacks.progress.rich_progress import RichProgressBarTheme
from rich import get_console, reconfigure
from rich.progress import ProgressColumn, Task
from rich.style import Style
from rich.text import Text

SHOWN = {"train/d_loss": "d_loss", "train/g_loss": "g_loss", "val/fid": "fid"}
log = logging.getLogger(__name__)


def to_log_files(line: str, logger: logging.Logger = log) -> None:
    """``line`` as an INFO record of ``logger`` in the log files of the root logger only (Hydra's
    ``train.log``): the console shows it already (the bar, or the printed line), so not twice there."""
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, line, (), None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and record.levelno >= handler.level:
            handler.handle(record)


class GANProgressBar(RichProgressBar):
    """Generator steps done / ``train.steps``, elapsed • ETA, steps/s and D/G losses (and FID when known).

    ``refresh_rate`` is redraws per second (Lightning's meaning for the rich bar); the bar's own
    state is updated once per generator step, which costs a dict update.
    """

    def __init__(
        self,
        refresh_rate: int = 4,
        leave: bool = True,
        log_fraction: float = 0.1,
        console_kwargs: dict[str, Any] | None = None,
    ) -> None:
        theme = RichProgressBarTheme(metrics_format=".3g", metrics_text_delimiter="  ")
        super().__init__(refresh_rate=refresh_rate, leave=leave, theme=theme, console_kwargs=console_kwargs)
        self.log_fraction = log_fraction
        self._shown: tuple[Any, ...] | None = None
        self._next_line = 0
        self._terminal = False
        self._mark = (0.0, 0)  # (time, generator step) of the last line, or of this run's start

    def _init_progress(self, trainer: pl.Trainer) -> None:
        if self.is_disabled:
            return
        reconfigure(**self._console_kwargs)
        self._terminal = get_console().is_terminal  # asked once
        if self._terminal:
            super()._init_progress(trainer)
        else:  # plain lines only: no live display (it would be cleared again, and its refresh thread
            self._console = get_console()  # takes up to a refresh period to stop at the end of the run)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if self.is_disabled:
            return
        # start at the resumed step, so that steps/s and the ETA count only this run's steps
        total, done = pl_module.total_steps, pl_module.g_step
        if self.progress is not None and self.train_progress_bar_id is None:
            self.train_progress_bar_id = self.progress.add_task(
                "train", total=total, completed=done, first_step=done
            )
        elif self.progress is not None:
            self.progress.reset(
                self.train_progress_bar_id, total=total, completed=done, description="train", first_step=done
            )
        self._next_line = self._line_every(pl_module) * (pl_module.g_step // self._line_every(pl_module) + 1)
        self._mark = (time.monotonic(), done)
        self.refresh()

    def _line_every(self, pl_module: Any) -> int:
        return max(1, math.ceil(pl_module.total_steps * self.log_fraction))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        if self.is_disabled or self._console is None:
            return
        if self.progress is not None and self.train_progress_bar_id is not None:
            self.progress.update(self.train_progress_bar_id, completed=pl_module.g_step)
            self._update_metrics(trainer, pl_module)
        step = pl_module.g_step
        last = step >= pl_module.total_steps and step > self._mark[1]  # the final step gets a line too
        if step >= self._next_line or last:
            line = self._line(pl_module)
            if not self._terminal:  # a terminal shows the live bar instead
                assert self._console is not None
                self._console.print(line, highlight=False, soft_wrap=True)
            to_log_files(line)
            self._next_line = self._line_every(pl_module) * (step // self._line_every(pl_module) + 1)
        self.refresh()

    def _line(self, pl_module: Any) -> str:
        """One plain progress line (logs that are not terminals, and train.log). Its speed is the steps
        since the previous line over the time since then, not rich's estimate: that one needs two updates
        within 30 s, and is missing on the first line (one update so far) or after a pause (metrics)."""
        now, step = time.monotonic(), pl_module.g_step
        since, first = self._mark
        self._mark = (now, step)
        rate = (step - first) / (now - since) if step > first and now > since else None
        speed = f"{rate:.1f} steps/s" if rate else ""
        eta = f"ETA {timedelta(seconds=round((pl_module.total_steps - step) / rate))}" if rate else ""
        metrics = "  ".join(f"{k}={v}" for k, v in self.get_metrics(None, pl_module).items())  # type: ignore[arg-type]
        parts = [f"train {step}/{pl_module.total_steps}", speed, eta, metrics]
        return "  ".join(p for p in parts if p)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self._update_metrics(trainer, pl_module)

    def _update_metrics(self, trainer: pl.Trainer, pl_module: Any) -> None:
        last = getattr(pl_module, "last_metrics", None) or {}
        shown = tuple(last.get(key) for key in SHOWN)  # three lookups: formatting only on change
        if self._metric_component is None or shown == self._shown:
            return
        self._shown = shown
        self._metric_component.update(self.get_metrics(trainer, pl_module))

    def get_metrics(self, trainer: pl.Trainer, pl_module: Any) -> dict[str, Any]:
        last = getattr(pl_module, "last_metrics", None) or {}
        return {short: f"{last[key]:.3g}" for key, short in SHOWN.items() if key in last}

    def configure_columns(self, trainer: pl.Trainer) -> list:
        columns = super().configure_columns(trainer)
        columns[-1] = StepsPerSecond(style=self.theme.processing_speed)  # Lightning's says "it/s"
        return columns


class StepsPerSecond(ProgressColumn):
    """Generator steps per second, averaged by rich over the last 30 s; when rich has no estimate
    (fewer than two updates in that window: slow steps, a pause), the average since this run's start."""

    def __init__(self, style: str | Style = "") -> None:
        self.style = style
        super().__init__()

    def render(self, task: Task) -> Text:
        speed = task.speed
        done = task.completed - task.fields.get("first_step", 0)
        if not speed and task.elapsed and done > 0:
            speed = done / task.elapsed
        return Text(f"{speed:.1f} steps/s" if speed else "", style=self.style)
