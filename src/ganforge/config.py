"""Where the Hydra tree lives, and the checks that turn a bad config into one clear line."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ganforge import resolvers
from ganforge.checkpoint_file import directory_hint, read_checkpoint
from ganforge.errors import ConfigError, GanforgeError

# the Hydra tree ships inside the package (the repository's top-level conf/, mapped in pyproject.toml)
CONFIG_PACKAGE = "pkg://ganforge.conf"  # what the entry points give hydra.main
CONFIG_DIR = Path(str(files("ganforge.conf")))  # the same tree as a directory (initialize_config_dir)
resolvers.register()  # before any config of the tree is composed


def _positive(cfg: DictConfig, key: str, kind: type = float, allow_zero: bool = False) -> None:
    value = cfg
    for part in key.split("."):
        value = value.get(part) if value is not None else None
    if value is None:
        return
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and (value >= 0 if allow_zero else value > 0)
    )
    if kind is int:
        ok = ok and float(value).is_integer()
    if not ok:
        bound = "non-negative" if allow_zero else "positive"
        raise ConfigError(f"{key} must be a {bound} {'integer' if kind is int else 'number'}, got {value!r}")


def check_required(cfg: DictConfig) -> None:
    """A ConfigError naming the first mandatory key (``???``) the command line left unset."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        more = f" (also unset: {', '.join(missing[1:])})" if len(missing) > 1 else ""
        raise ConfigError(f"{missing[0]} is required: pass {missing[0]}=<value>{more}")


def check_config(cfg: DictConfig) -> None:
    """Reject values that cannot train, before anything is built."""
    check_required(cfg)
    seed = cfg.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    for key in ("train.steps", "train.n_critic", "train.log_every", "train.num_fixed", "data.batch_size"):
        _positive(cfg, key, int)
    for key in ("train.sample_every", "train.ckpt_every"):
        _positive(cfg, key, int, allow_zero=True)
    for key in ("optim.lr_g", "optim.lr_d", "train.clip_grad_g", "train.clip_grad_d"):
        _positive(cfg, key)


MAX_STEPS_PER_BATCH = 10  # beyond this, Lightning's per-batch cost is already a small share of a step

# the intervals (in generator steps) at which callbacks act; they act at the end of a Lightning batch
EVENT_INTERVALS = ("train.sample_every", "train.ckpt_every", "metrics.every", "callbacks.health.every")


def steps_per_batch(cfg: DictConfig) -> int:
    """Generator steps per Lightning batch (``train.steps_per_batch``).

    ``auto``: the largest number up to 10 that divides every event interval, so that sample grids,
    checkpoints, metrics and health checks still happen exactly at their steps. A number that does
    not divide them is a ConfigError.
    """
    value = cfg.train.get("steps_per_batch", 1)
    intervals = {key: OmegaConf.select(cfg, key) for key in EVENT_INTERVALS}
    intervals = {key: int(v) for key, v in intervals.items() if isinstance(v, int) and v > 0}
    if value == "auto":
        return max(
            k for k in range(1, MAX_STEPS_PER_BATCH + 1) if all(v % k == 0 for v in intervals.values())
        )
    _positive(cfg, "train.steps_per_batch", int)
    for key, interval in intervals.items():
        if interval % value:
            raise ConfigError(
                f"train.steps_per_batch={value} must divide {key}={interval} (callbacks act between "
                "batches); use train.steps_per_batch=auto"
            )
    return int(value)


def resolve_ckpt_path(ckpt_path: str | None, output_dir: Path) -> Path | None:
    """``None``, ``auto`` (the run dir's last.ckpt when there is one) or an existing file."""
    if ckpt_path in (None, ""):
        return None
    if ckpt_path == "auto":
        path = output_dir / "checkpoints" / "last.ckpt"
        if not path.is_file():
            return None
    else:
        path = Path(ckpt_path).expanduser()
        if path.is_dir():
            raise ConfigError(f"ckpt_path={ckpt_path}: {directory_hint(path)}")
        if not path.is_file():
            raise ConfigError(f"ckpt_path={ckpt_path}: no such file ({path.resolve()})")
    ckpt = read_checkpoint(path)  # a truncated or foreign file fails here, in one line, not in Lightning
    if "ganforge" not in ckpt:
        raise ConfigError(f"ckpt_path={path}: a Lightning checkpoint, but not one written by ganforge-train")
    return path


def make(cfg: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate``, letting our own user-facing errors through unwrapped."""
    try:
        return instantiate(cfg, **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__
        while cause is not None and not isinstance(cause, GanforgeError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise
