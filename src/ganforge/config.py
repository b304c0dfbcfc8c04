"""Where the Hydra tree lives, and the checks that turn a bad config into one clear line."""

from __future__ import annotations

import difflib
import functools
import math
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ganforge import CONFIG_DIR, resolvers
from ganforge.checkpoint_file import check_resumable, directory_hint, read_checkpoint
from ganforge.errors import ConfigError, GanforgeError, NothingToTrainError

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
    check_finite(cfg)  # first: `optim.lr_g=.inf` is not finite (rather than "not a positive number")
    seed = cfg.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    for key in ("train.steps", "train.n_critic", "train.log_every", "train.num_fixed", "data.batch_size"):
        _positive(cfg, key, int)
    for key in ("train.sample_every", "train.ckpt_every"):
        _positive(cfg, key, int, allow_zero=True)
    for key in ("optim.lr_g", "optim.lr_d", "train.clip_grad_g", "train.clip_grad_d"):
        _positive(cfg, key)
    for key in METRIC_COUNTS:  # e.g. modes_num_samples=-1 read as a perfect reverse KL of 0
        _positive(cfg, key, int)
    _positive(cfg, "metrics.every", int, allow_zero=True)
    check_trainer(cfg)
    check_train_keys(cfg)
    check_groups(cfg)


@functools.cache
def default_train() -> dict[str, Any]:
    """The ``train`` node of the shipped ``train.yaml``: the settings ``train.*`` can hold (read once;
    not to be changed by callers)."""
    return OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "train.yaml").train, resolve=False)


def check_train_keys(cfg: DictConfig) -> None:
    """A ConfigError for a ``train.*`` key nothing reads (``+train.foo=1``: Hydra adds it), with a
    did-you-mean as for ``train.stepz``."""
    given = cfg.get("train")
    if not isinstance(given, DictConfig):
        return
    known = default_train()
    unknown = sorted(set(flat(OmegaConf.to_container(given, resolve=False), "train")) - set(_all_keys(known)))
    for key in unknown:
        if any(key.startswith(f"{group}.") for group in _all_keys(known) if _is_value(known, group)):
            continue  # inside a setting whose value is itself a mapping or list (none today)
        names = sorted(_all_keys(known))
        close = difflib.get_close_matches(key, names, n=1, cutoff=0.7)
        parent = key.rsplit(".", 1)[0]
        siblings = [k.rsplit(".", 1)[1] for k in names if k.rsplit(".", 1)[0] == parent]
        hint = f"did you mean {close[0]}?" if close else f"the keys of {parent}: {', '.join(siblings)}"
        raise ConfigError(f"{key} is not a key of the config and nothing would read it; {hint}")


def _all_keys(tree: dict[str, Any], prefix: str = "train") -> list[str]:
    """Every dotted key of ``tree``, inner nodes included (``train.ema``, ``train.ema.decay``)."""
    keys = []
    for key, value in tree.items():
        dotted = f"{prefix}.{key}"
        keys.append(dotted)
        if isinstance(value, dict):
            keys.extend(_all_keys(value, dotted))
    return keys


def _is_value(tree: dict[str, Any], dotted: str) -> bool:
    """Whether the default of ``dotted`` (a ``train.*`` key) is a plain value (not a group of settings)."""
    node: Any = {"train": tree}
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return not isinstance(node, dict)


def check_groups(cfg: DictConfig) -> None:
    """A ConfigError for a group of settings given one value (``train.ada=true``: the group is
    switched on by ``train.ada.enabled=true``), and a callback given anything but its settings or null."""
    groups = {f"train.{k}": v for k, v in default_train().items() if isinstance(v, dict) and v}
    for key, default in groups.items():
        value = OmegaConf.select(cfg, key)
        if value is None or isinstance(value, DictConfig):
            continue
        first = next(iter(default))
        example = f"{key}.{first}={'true' if isinstance(default[first], bool) else _shown(value)}"
        raise ConfigError(
            f"{key}={_shown(value)}: {key} is a group of settings ({', '.join(default)}), not one value; "
            f"set one of them, e.g. {example}"
        )
    for name, value in (cfg.get("callbacks") or {}).items():
        if value is not None and not isinstance(value, DictConfig):
            raise ConfigError(
                f"callbacks.{name}={_shown(value)}: callbacks.{name} is a group of settings, not one value; "
                f"turn the callback off with ~callbacks.{name} (or callbacks.{name}=null)"
            )


def _shown(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


# YAML's and Python's spellings of NaN/Inf (Hydra's command line reads `.nan` as a string)
NON_FINITE_WORDS = {".nan", "nan", ".inf", "inf", "infinity"}


def check_finite(cfg: DictConfig) -> None:
    """A ConfigError for a NaN or infinite number among the settings (``data.std=.nan``): it would
    reach the data or the nets and end in NaN losses or a traceback, never in a run."""

    def walk(node: Any, key: str) -> None:
        if isinstance(node, dict):
            for name, value in node.items():
                walk(value, f"{key}.{name}" if key else str(name))
        elif isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                walk(value, f"{key}[{i}]")
        elif (isinstance(node, float) and not math.isfinite(node)) or (
            isinstance(node, str) and node.strip().lower().lstrip("+-") in NON_FINITE_WORDS
        ):
            raise ConfigError(f"{key}={node} is not a finite number; give a finite value")

    walk(OmegaConf.to_container(cfg, resolve=True), "")


# Lightning's budgets count batches or D+G optimizer steps; ganforge's is train.steps (generator steps)
BUDGET_FLAGS = {"max_steps": (-1, None), "max_epochs": (-1, None), "limit_train_batches": (None, 1.0)}


def check_trainer(cfg: DictConfig) -> None:
    """Trainer flags that would not do what they say here, and a GPU the machine lacks: one line each."""
    trainer = cfg.get("trainer") or {}
    for key, defaults in BUDGET_FLAGS.items():
        value = trainer.get(key)
        if value not in defaults:
            raise ConfigError(
                f"trainer.{key}={value}: the training budget is train.steps (generator steps; Lightning's "
                f"steps count every D and G update), e.g. train.steps={value if key == 'max_steps' else 1000}"
            )
    dev_run = trainer.get("fast_dev_run", False)
    if not isinstance(dev_run, (bool, int)) or dev_run < 0:
        raise ConfigError(f"trainer.fast_dev_run must be true, false or a number of batches, got {dev_run!r}")
    if trainer.get("accelerator") in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={trainer.get('accelerator')}: this machine has no CUDA GPU "
            "(trainer=gpu needs one); use trainer=cpu, or trainer.accelerator=auto"
        )


# counts the metrics and the nets need at least one of (metrics.* are absent with metrics=[])
METRIC_COUNTS = (
    "model.z_dim",
    "metrics.num_samples",
    "metrics.batch_size",
    "metrics.modes_num_samples",
    "metrics.kid_subsets",
    "metrics.kid_subset_size",
    "metrics.isc_splits",
    "metrics.prc_neighborhood",
    "metrics.dc_neighborhood",
    "metrics.classifier.steps",
    "metrics.classifier.batch_size",
)


MAX_STEPS_PER_BATCH = 10  # beyond this, Lightning's per-batch cost is already a small share of a step

# the intervals (in generator steps) at which callbacks act; they act at the end of a Lightning batch
EVENT_INTERVALS = (
    "train.sample_every",
    "train.ckpt_every",
    "metrics.every",
    "callbacks.health.every",
    "callbacks.overfit.every",
)


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


# what a checkpoint's weights depend on: the architecture (every model.* key but how the nets run) and
# the data keys that set the shape of a sample or the task
RUNTIME_MODEL_KEYS = ("compile", "compile_mode", "compile_backend", "channels_last", "acgan_weight")
SHAPE_DATA_KEYS = ("_target_", "resolution", "channels", "num_stacked")


def flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict as ``{dotted key: leaf value}`` (``{"train.steps": 1500, ...}``)."""
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flat(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: tree}


def key_hints(overrides: list[str]) -> list[str]:
    """``did you mean`` lines for the override keys (``train.stepz=5``) that the config composed with
    the same group choices lacks, when a key of it is close (after Hydra refused the overrides)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    keys = [o.split("=", 1)[0] for o in overrides]
    groups = [o for o, k in zip(overrides, keys, strict=True) if not any(c in k for c in ".+~")]
    GlobalHydra.instance().clear()  # the failed job's Hydra is still set up
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
            cfg = compose("train", overrides=groups)
    except Exception:  # a group choice itself is wrong: Hydra's message already says which
        return []
    leaves = flat(OmegaConf.to_container(cfg, resolve=False))
    known = sorted({".".join(k.split(".")[:n]) for k in leaves for n in range(1, k.count(".") + 2)})
    hints = []
    for key in keys:
        if "." in key and not key.startswith(("+", "~", "hydra.")) and key not in known:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.8)
            if close:
                hints.append(f"{key} is not a key of the config; did you mean {close[0]}?")
    return hints


def setup_keys(config: dict[str, Any]) -> dict[str, Any]:
    """The keys of a resolved config that a checkpoint's weights depend on, flattened (``model.z_dim``)."""
    model = {k: v for k, v in (config.get("model") or {}).items() if k not in RUNTIME_MODEL_KEYS}
    data = {k: v for k, v in (config.get("data") or {}).items() if k in SHAPE_DATA_KEYS}
    task = (config.get("task") or {}).get("_target_")
    return {**flat(model, "model"), **flat(data, "data"), **({"task._target_": task} if task else {})}


def check_same_setup(path: Path, ckpt: dict[str, Any], cfg: DictConfig) -> None:
    """A ConfigError naming the keys that differ when the checkpoint to resume was trained with another
    architecture, data shape or task (a resume would fail later with a size mismatch), or when it is
    already at or past ``train.steps``. Keys only one side has (a knob added since) are not compared."""
    stored = (ckpt.get("ganforge") or {}).get("config")
    if stored:
        now = {
            "model": OmegaConf.to_container(cfg.model, resolve=True),
            "data": {k: cfg.data[k] for k in SHAPE_DATA_KEYS if k in cfg.data},
            "task": {"_target_": OmegaConf.select(cfg, "task._target_")},
        }
        before, after = setup_keys(stored), setup_keys(now)
        differ = [k for k in sorted(before.keys() & after.keys()) if before[k] != after[k]]
        if differ:
            shown = "; ".join(f"{k}: {before[k]!r} in the checkpoint, {after[k]!r} now" for k in differ[:4])
            more = f" (and {len(differ) - 4} more)" if len(differ) > 4 else ""
            raise ConfigError(
                f"ckpt_path={path} was trained with another setup: {shown}{more}; resume with the same "
                "model and data, or start a new run without ckpt_path"
            )
    done = int((ckpt.get("ganforge") or {}).get("g_step", 0))
    if done >= cfg.train.steps:
        raise NothingToTrainError(
            f"ckpt_path={path} is at generator step {done} and train.steps={cfg.train.steps}: nothing to "
            f"train; pass train.steps above {done} to continue it"
        )


def resolve_ckpt_path(ckpt_path: str | None, output_dir: Path, cfg: DictConfig | None = None) -> Path | None:
    """``None``, ``auto`` or ``last`` (the run dir's last.ckpt when there is one) or an existing file;
    with ``cfg``, also a checkpoint of the same setup with steps left to train (:func:`check_same_setup`)."""
    if ckpt_path in (None, ""):
        return None
    if ckpt_path in ("auto", "last"):  # "last" as in Lightning: the run dir's last.ckpt if there is one
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
    check_resumable(path, ckpt)  # a weights-only best.ckpt: say which file resumes
    if cfg is not None:
        check_same_setup(path, ckpt, cfg)
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
