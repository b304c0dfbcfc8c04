"""Start the configured loggers; one that fails to start warns and the run goes on without it.

The W&B and TensorBoard loggers here are Lightning's, put on the generator-step axis: every curve
is plotted against ``trainer/g_step`` (also after a resume), which W&B and TensorBoard are told
through their own mechanisms (``define_metric``, the event step) instead of a workspace setting.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from lightning_fabric.loggers.logger import rank_zero_experiment
from lightning_fabric.utilities.logger import _add_prefix, _convert_params, _flatten_dict
from omegaconf import DictConfig
from pytorch_lightning.loggers import Logger
from pytorch_lightning.loggers import TensorBoardLogger as _TensorBoardLogger
from pytorch_lightning.loggers import WandbLogger as _WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from ganforge.directions import mode

STEP = "trainer/g_step"  # the x-axis of every logged curve: generator updates (see GANModule)


def logged_step(metrics: Mapping[str, Any], step: int | None) -> int | None:
    """The generator step of a ``log_metrics`` call: its ``trainer/g_step`` value, else ``step``."""
    value = metrics.get(STEP, step)
    return None if value is None else int(value)


class WandbLogger(_WandbLogger):
    """Lightning's W&B logger with ``trainer/g_step`` as the step of every row and every curve.

    - W&B's own step (``_step``) is the generator step, so a resumed or requeued run (same id, a new
      offline segment) continues its history where the checkpoint left it instead of restarting at 0.
    - ``define_metric`` declares ``trainer/g_step`` the x-axis of ``train/*``, ``val/*`` and anything
      else logged, and gives each ``val/*`` W&B's own ``min``/``max`` summary (the better direction,
      from :mod:`ganforge.directions`) next to its last value.
    - Lightning's ``anonymous`` argument is not passed on: any value of it makes W&B warn.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            del self._wandb_init["anonymous"]
        self._declared: set[str] = set()

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The W&B run, started here with the generator-step axis declared (not Lightning's)."""
        if self._experiment is None:
            import wandb

            attach_id = getattr(self, "_attach_id", None)  # a spawned process joins its parent's run
            if wandb.run is not None:
                self._experiment = wandb.run
            elif attach_id is not None and hasattr(wandb, "_attach"):
                self._experiment = wandb._attach(attach_id)
            else:
                self._experiment = wandb.init(**self._wandb_init)
            self._experiment.define_metric(STEP)
            for glob in ("train/*", "val/*"):
                self._experiment.define_metric(glob, step_metric=STEP)
        return self._experiment

    def _declare(self, names: Any) -> None:
        """Put metrics first seen now on the generator-step axis; ``val/*`` with best and last summary."""
        for name in names:
            if name in self._declared or name == STEP:
                continue
            self._declared.add(name)
            if name.startswith("val/"):
                self.experiment.define_metric(name, step_metric=STEP, summary=f"{mode(name)},last")
            elif not name.startswith("train/"):  # e.g. the sample grids
                self.experiment.define_metric(name, step_metric=STEP)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """One row at the generator step; rows of the same step (losses, metrics, samples) merge."""
        g_step = logged_step(metrics, step)
        metrics = dict(_add_prefix(dict(metrics), self._prefix, self.LOGGER_JOIN_CHAR))
        self._declare(metrics)
        if g_step is None:
            self.experiment.log(metrics)
        else:
            self.experiment.log({**metrics, STEP: g_step}, step=g_step)

    @rank_zero_only
    def log_protocols(self, tags: Mapping[str, str]) -> None:
        """How each metric is measured (``val/fid`` → its protocol tag) as ``val/fid_protocol`` in the
        run's summary and config, next to the values it describes."""
        named = {f"{name}_protocol": tag for name, tag in tags.items()}
        self.experiment.config.update(named, allow_val_change=True)
        self.experiment.summary.update(named)


class TensorBoardLogger(_TensorBoardLogger):
    """Lightning's TensorBoard logger on the generator-step axis, with an HParams entry per run.

    ``trainer/g_step`` is the event step, not a scalar of its own. When the run ends the
    hyperparameters (the flattened config, one scalar or string each) are written with the names of
    the final metrics (``val/*`` and the D/G losses), so TensorBoard's HParams tab lines up the runs
    of a sweep by setting and result.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._params: dict[str, Any] = {}
        self._final: dict[str, float] = {}
        self._hparams_written = False

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        g_step = logged_step(metrics, step)
        scalars = {name: value for name, value in metrics.items() if name != STEP}
        self._final.update({name: float(value) for name, value in scalars.items() if is_final_metric(name)})
        super().log_metrics(scalars, g_step)

    @rank_zero_only
    def log_hyperparams(
        self, params: Any, metrics: dict[str, Any] | None = None, step: int | None = None
    ) -> None:
        """Keep ``params`` (also for hparams.yaml); with ``metrics``, write the HParams entry now.

        Unlike Lightning's, this does not log ``metrics`` again as scalars at ``step``: they are
        already curves, and the HParams tab reads each metric's latest value from its curve.
        """
        super().log_hyperparams(params)  # hparams.yaml; no hp_metric (default_hp_metric: false)
        self._params.update(self._sanitize_params(_flatten_dict(_convert_params(params))))
        if metrics:
            from torch.utils.tensorboard.summary import hparams

            writer = self.experiment._get_file_writer()
            for summary in hparams(self._params, metrics):
                writer.add_summary(summary, step)
            self._hparams_written = True

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if not self._hparams_written and self._params and self._final and self._experiment is not None:
            self.log_hyperparams({}, metrics=dict(self._final))
        super().finalize(status)


def is_final_metric(name: str) -> bool:
    """Whether a metric is one of the results a sweep compares: ``val/*`` and the D/G losses."""
    return name.startswith("val/") or name in ("train/d_loss", "train/g_loss")


_SEGMENT = re.compile(r"^(?:offline-)?run-(\d{8}_\d{6})-(?P<id>.+)$")


def wandb_segments(save_dir: Path) -> list[str]:
    """The run ids of the W&B runs under ``save_dir/wandb``, one per start, oldest first."""
    found = [
        (m[1], p.stat().st_mtime_ns, m["id"])  # the name's time has 1 s steps; then the folder's
        for p in (save_dir / "wandb").glob("*run-*")
        if (m := _SEGMENT.match(p.name))
    ]
    return [run_id for *_, run_id in sorted(found)]


def wandb_run_id(save_dir: Path, configured: str | None, resuming: bool) -> str | None:
    """The W&B run id of a start of the run in ``save_dir``: one W&B run per run from scratch.

    A resume continues the W&B run of the dir's latest start (a requeued job too). A start from
    scratch over an earlier run (``train.overwrite=true``) gets a new id, derived from the configured
    one: continuing the old W&B run would put a second history from step 0 into it.
    """
    started = wandb_segments(save_dir)
    if configured is None:
        return None
    if resuming:
        return started[-1] if started else configured
    if configured not in started:
        return configured
    restarts = len(set(started))
    return hashlib.sha256(f"{configured}:{restarts}".encode()).hexdigest()[:16]


def build_loggers(cfg: DictConfig | None, resuming: bool = False) -> list[Logger]:
    """Instantiate every logger in ``cfg`` and start it (W&B's run begins here, not mid-training).

    ``resuming``: this run continues from a checkpoint, so the W&B run continues too (see
    :func:`wandb_run_id`).
    """
    loggers: list[Logger] = []
    for name, conf in (cfg or {}).items():
        if conf is None:
            continue
        try:
            logger = instantiate(conf)
            if isinstance(logger, WandbLogger) and logger._wandb_init.get("dir"):
                run_id = wandb_run_id(Path(logger._wandb_init["dir"]), logger._wandb_init.get("id"), resuming)
                logger._wandb_init["id"] = logger._id = run_id
            _ = logger.experiment  # starts the backend now, so a failure is caught here
        except Exception as exc:  # noqa: BLE001 - any backend failure must not stop training
            warnings.warn(
                f"logger {name!r} failed to start and is disabled: {type(exc).__name__}: {exc}", stacklevel=2
            )
            continue
        loggers.append(logger)
    return loggers


def hydra_choices() -> dict[str, Any]:
    """``{"choice/loss": "hinge", "choice/data": "ring8", ...}``: the group options this run used.

    The resolved config names losses and nets by class path (``loss.d_loss._target_``); logged
    next to it as flat hyperparameters, these let W&B filter and group runs by option name.
    Empty outside a Hydra app (e.g. under ``hydra.compose``).
    """
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    if not HydraConfig.initialized():
        return {}
    choices = OmegaConf.to_container(HydraConfig.get().runtime.choices)
    assert isinstance(choices, dict)
    return {
        f"choice/{group}": ",".join(map(str, option)) if isinstance(option, list) else option
        for group, option in sorted(choices.items())
        if group != "hydra" and not str(group).startswith("hydra/")
    }


def wandb_location(loggers: list[Logger]) -> dict[str, Any] | None:
    """Where the W&B run of these loggers lives: its local dir (what ``wandb sync`` takes) and URL."""
    from pytorch_lightning.loggers import WandbLogger

    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            run = logger.experiment
            try:
                local = str(Path(run.dir).parent)
                url = None if run.settings.mode == "offline" else run.url
            except Exception:  # noqa: BLE001 - a disabled or mocked run has neither
                return None
            return {"dir": local, "url": url, "mode": run.settings.mode}
    return None


@contextmanager
def logger_fault(trainer: Any, logger: Logger) -> Iterator[None]:
    """Runs a write to ``logger``; if it fails (W&B gone, disk full) warn once, drop the logger from
    ``trainer.loggers`` and let training go on with the others."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - a logger must never end a run
        warnings.warn(
            f"logger {type(logger).__name__} failed and is disabled, training goes on: "
            f"{type(exc).__name__}: {exc}",
            stacklevel=3,
        )
        trainer.loggers = [other for other in trainer.loggers if other is not logger]
