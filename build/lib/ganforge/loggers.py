"""Start the configured loggers; one that fails to start warns and the run goes on without it."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.loggers import Logger


def build_loggers(cfg: DictConfig | None) -> list[Logger]:
    """Instantiate every logger in ``cfg`` and start it (W&B's run begins here, not mid-training)."""
    loggers: list[Logger] = []
    for name, conf in (cfg or {}).items():
        if conf is None:
            continue
        try:
            logger = instantiate(conf)
            _ = logger.experiment  # starts the backend now, so a failure is caught here
        except Exception as exc:  # noqa: BLE001 - any backend failure must not stop training
            warnings.warn(
                f"logger {name!r} failed to start and is disabled: {type(exc).__name__}: {exc}", stacklevel=2
            )
            continue
        loggers.append(logger)
    return loggers


def finish_wandb(exit_code: int = 0, preempting: bool = False) -> None:
    """Close the W&B run if one is open (also after an error), so its files are complete.

    ``preempting``: the run stopped to be requeued and will continue (W&B shows it as preempted).
    """
    wandb: Any = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        try:
            if preempting:
                wandb.run.mark_preempting()
            wandb.finish(exit_code=exit_code)
        except Exception as exc:  # noqa: BLE001
            warnings.warn(f"wandb.finish failed: {exc}", stacklevel=2)


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
