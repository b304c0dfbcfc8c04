"""``metrics.csv`` that survives a resume: one row per logged step, no gaps, no duplicates.

Lightning's CSVLogger deletes an existing ``metrics.csv`` when it starts, so a run resumed in its
own directory (``ckpt_path=auto``, a requeued Slurm job) would lose the rows before the
checkpoint. Here the file is kept; at the first write, rows at or after the first step this run
logs are dropped (they were logged after the checkpoint by the interrupted run and are about to
be logged again). Rows are written at every log call, so a killed run loses none.
"""

from __future__ import annotations

import csv
from typing import Any

from lightning_fabric.loggers.logger import rank_zero_experiment
from pytorch_lightning.loggers import CSVLogger as _CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter


class ResumableWriter(ExperimentWriter):
    """Appends to an existing ``metrics.csv`` after trimming it to the steps before this run's first."""

    def __init__(self, log_dir: str) -> None:
        self._trimmed = False
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        """Keep the file (the parent deletes it); :meth:`save` trims it instead."""

    def save(self) -> None:
        if self.metrics and not self._trimmed:
            self._trim(min(int(row["step"]) for row in self.metrics))
            self._trimmed = True
        super().save()

    def _trim(self, first_step: int) -> None:
        if not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            reader = csv.DictReader(file)
            keys = list(reader.fieldnames or [])
            rows = [row for row in reader if row.get("step") and int(row["step"]) < first_step]
        if not rows:
            self._fs.rm_file(self.metrics_file_path)
            return
        self.metrics_keys = sorted(keys)
        with self._fs.open(self.metrics_file_path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(rows)


class CSVLogger(_CSVLogger):
    """Lightning's CSVLogger with :class:`ResumableWriter`, flushing every logged row by default."""

    def __init__(self, *args: Any, flush_logs_every_n_steps: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, flush_logs_every_n_steps=flush_logs_every_n_steps, **kwargs)

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = ResumableWriter(log_dir=self.log_dir)
        return self._experiment
