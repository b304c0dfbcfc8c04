"""OmegaConf resolvers: ``mul`` (a size derived from others), and those that name a W&B run: an id per
run dir, the sweep as group, and as name the overrides that vary within the sweep (a single run:
``task_name`` and a short id).

A requeued Slurm job reruns in the same run dir, so an id derived from that dir makes it continue the
same W&B run (with ``resume: allow``). Outside a Hydra job (``hydra.compose`` in tests) the sweep
and the overrides are unknown and the resolvers return ``None``.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ganforge import cli_help


def wandb_id(run_dir: str | None) -> str | None:
    """A W&B run id that is a pure function of the run directory (its absolute path).

    ``None`` when there is no run dir yet: ``--cfg job --resolve`` prints the config before Hydra
    has one (``hydra:runtime.output_dir`` is null then), and W&B picks an id of its own.
    """
    if run_dir is None:
        return None
    return hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]


def _hydra() -> DictConfig | None:
    return HydraConfig.get() if HydraConfig.initialized() else None


def sweep_name() -> str | None:
    """In a multirun job: the name of the sweep directory (shared by its jobs); else ``None``."""
    hydra = _hydra()
    if hydra is None or hydra.mode != RunMode.MULTIRUN:
        return None
    return Path(hydra.sweep.dir).name


def swept_keys(sweep_dir: str | Path) -> set[str] | None:
    """The keys a sweep varies: its sweep overrides (``loss=a,b``, ``range(..)``, ``choice(..)``) and the
    sweeper's ``params``, read from the ``multirun.yaml`` Hydra writes in the sweep dir; None without it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    path = Path(sweep_dir) / "multirun.yaml"
    if not path.is_file():
        return None
    saved = OmegaConf.load(path)
    overrides = OverridesParser.create().parse_overrides(list(saved.hydra.overrides.task))
    keys = {o.get_key_element() for o in overrides if o.is_sweep_override()}
    params = OmegaConf.select(saved, "hydra.sweeper.params") or {}
    return keys | set(params)


def job_name() -> str | None:
    """In a multirun job: the overrides that vary within its sweep (``loss=hinge,optim.lr_d=0.0001``),
    or all its overrides when the sweep's are unknown; else ``None``."""
    hydra = _hydra()
    if hydra is None or hydra.mode != RunMode.MULTIRUN:
        return None
    swept = swept_keys(hydra.sweep.dir)
    if swept is None:
        return hydra.job.override_dirname or f"job{hydra.job.num}"
    from hydra.core.override_parser.overrides_parser import OverridesParser

    mine = OverridesParser.create().parse_overrides(list(hydra.overrides.task))
    varied = [
        f"{o.get_key_element()}={o.get_value_element_as_str()}" for o in mine if o.get_key_element() in swept
    ]
    return ",".join(varied) or f"job{hydra.job.num}"


def run_name(task_name: str, run_dir: str | None) -> str:
    """A W&B run's name: in a sweep, what varies (:func:`job_name`); else ``task_name`` and the first six
    characters of the run's id (one name per run dir)."""
    swept = job_name()
    if swept is not None:
        return swept
    run_id = wandb_id(run_dir)
    return f"{task_name}-{run_id[:6]}" if run_id else task_name


def mul(*factors: int) -> int:
    """The product of integers, e.g. a batch of 100 packed inputs: ``${ganforge.mul:100,${model.pack}}``."""
    return math.prod(int(f) for f in factors)


def register() -> None:
    """Register ``${ganforge.wandb_id:<dir>}``, ``${ganforge.sweep_name:}``, ``${ganforge.job_name:}``,
    ``${ganforge.run_name:<task_name>,<dir>}``,
    ``${ganforge.mul:a,b}``, ``${ganforge.help_groups:}``, ``${ganforge.help_settings:<section>}``."""
    for name, fn in (
        ("wandb_id", wandb_id),
        ("sweep_name", sweep_name),
        ("job_name", job_name),
        ("run_name", run_name),
        ("mul", mul),
        ("help_groups", cli_help.help_groups),  # the generated parts of ganforge-train --help
        ("help_settings", cli_help.help_settings),
    ):
        OmegaConf.register_new_resolver(f"ganforge.{name}", fn, replace=True)
