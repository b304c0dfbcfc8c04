"""Hydra callback: when a sweep ends, write ``ganforge-compare``'s table and plots into the multirun dir.

Jobs whose configs differ only in ``seed`` share a row (mean ± std, n), as ``ganforge-compare``
shows them by default: a sweep over ``seed=0,1,2`` and a loss gives one row per loss.

Registered in ``conf/hydra/default.yaml``. Hydra skips ``on_multirun_end`` when a job failed
(the sweeper re-raises the job's error), so the comparison is also written at interpreter exit
in that case. Any error here is logged as a warning: a comparison never fails a sweep.
"""

from __future__ import annotations

import atexit
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class CompareOnMultirunEnd(Callback):
    """Writes ``comparison.md``, ``comparison.csv`` and the plots into ``hydra.sweep.dir``."""

    def __init__(
        self,
        enabled: bool = True,
        metric: str | None = None,
        plots: bool = True,
        group_by: str | list[str] | None = "all-but-seed",  # ganforge.compare.ALL_BUT_SEED
    ) -> None:
        """``group_by``: which jobs share a row, as ``ganforge-compare --group-by`` takes it
        (default: jobs that differ only in seed; ``none``: one row per job)."""
        self.enabled = enabled
        self.metric = metric
        self.plots = plots
        self.group_by = group_by
        self._sweep_dir: Path | None = None
        self._done = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled:
            return
        try:
            self._sweep_dir = Path(config.hydra.sweep.dir)
        except Exception as exc:  # noqa: BLE001 - never fail the sweep
            log.warning(f"ganforge-compare: no sweep dir ({type(exc).__name__}: {exc}); no comparison")
            return
        atexit.register(self._at_exit)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.enabled:
            self.write(Path(config.hydra.sweep.dir))

    def _at_exit(self) -> None:
        if not self._done and self._sweep_dir is not None:
            log.warning("ganforge-compare: the sweep ended early (a job failed or was stopped)")
            self.write(self._sweep_dir)

    def write(self, sweep_dir: Path) -> Path | None:
        """The comparison of the runs in ``sweep_dir``; its ``comparison.md`` path, or None on failure."""
        self._done = True
        try:
            from ganforge.compare import compare

            result = compare(
                [sweep_dir],
                metric=self.metric,
                out=sweep_dir,
                plots=self.plots,
                show=False,
                group_by=self.group_by,
            )
        except Exception as exc:  # noqa: BLE001 - never fail the sweep
            log.warning(f"ganforge-compare failed on {sweep_dir}: {type(exc).__name__}: {exc}")
            return None
        md = result["files"].get("md")
        if md is None:
            log.warning(f"ganforge-compare: no runs in {sweep_dir}")
            return None
        comp = result["comparison"]
        for path, why in comp.skipped:  # also in the sweep's log, next to the jobs' own lines
            log.warning(f"ganforge-compare: skipped {path}: {why}")
        rows = f" in {len(comp.groups)} rows" if comp.groups is not None else ""
        log.info(f"comparison of {len(comp.runs)} runs{rows}: {md}")
        return md
