"""Rebuild a run from one of its checkpoints: the config it was trained with, its data and its nets; or
a generator alone from a file of ``ganforge-export`` (its shapes and examples stand in for the data)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from ganforge.build import build
from ganforge.config import make
from ganforge.errors import ConfigError
from ganforge.module import GANModule
from ganforge.nets.build import build_networks
from ganforge.settings import Optimizers, Schedule
from ganforge.stored import StoredRun, read_run


def restore(
    source: str | Path | StoredRun, device: torch.device | str = "cpu", exported: bool = False
) -> tuple[DictConfig, Any, Any, dict]:
    """(config, data module, GANModule with the checkpoint's weights in eval mode, checkpoint dict).

    ``source``: a checkpoint's path, or what :func:`~ganforge.stored.read_run` read from it. The stored
    config instantiates only targets ganforge writes (:mod:`ganforge.targets`), plus those the command's
    ``allow_targets`` trusts; anything else is refused before any of it is built. ``exported``: a file of
    ``ganforge-export`` is accepted too (:func:`restore_exported`: the data module is an
    :class:`ExportedData`, the module holds G alone); otherwise it is refused in one line.
    """
    run = source if isinstance(source, StoredRun) else read_run(source, exported)
    if run.exported:
        return restore_exported(run.saved, run.path, device)
    cfg = OmegaConf.create(run.config)
    datamodule, module = build(cfg)
    state = run.saved["state_dict"]
    task_buffers = {k[len("task.") :]: v for k, v in state.items() if k.startswith("task.")}
    adopt_buffers(module.task, {k: v for k, v in task_buffers.items() if k in module.task._buffers})
    module.load_state_dict(state)
    module.g_step = int(run.saved["ganforge"].get("g_step", 0))
    module.to(device).eval()
    return cfg, datamodule, module, run.saved


def adopt_buffers(task: Any, buffers: dict[str, Tensor]) -> None:
    """The task's buffers set to the saved ones, assigned, not copied: their shapes are the saved run's
    (its fixed grid examples come from the held-out split it used), not those the rebuilt data gives."""
    for name, tensor in buffers.items():
        setattr(task, name, tensor)


class ExportedData:
    """What a data module tells G's build and ``ganforge-sample``, read from an exported generator:
    the shapes, the classes and their names, and the held-out examples the run's grids showed (pix2pix
    and CycleGAN grids; 2D data: real points for the scatter plot). No data files are needed."""

    def __init__(self, facts: dict[str, Any], examples: dict[str, Tensor], batch_size: int = 1) -> None:
        self.kind = str(facts.get("kind", "generation"))
        self.data_shape = tuple(int(d) for d in facts["data_shape"])
        self.source_shape = tuple(int(d) for d in facts.get("source_shape") or self.data_shape)
        self.num_classes = int(facts.get("num_classes", 0))
        self.classes = list(facts.get("classes") or [])  # what class_names() reads: the rows' labels
        self.batch_size = batch_size  # G's build checks D's packing (model.pack) against it
        self.examples = examples

    @property
    def paired(self) -> bool:
        return self.kind == "paired"

    @property
    def unpaired(self) -> bool:
        return self.kind == "unpaired"

    def _rows(self, name: str, indices: Sequence[int]) -> Tensor:
        return self.examples[name][list(indices)]

    def num_val_items(self) -> int:
        return len(self.examples.get("fixed_source", ()))

    def val_items(self, indices: Sequence[int]) -> tuple[Tensor, Tensor, None]:
        return self._rows("fixed_source", indices), self._rows("fixed_target", indices), None

    def num_val_a(self) -> int:
        return len(self.examples.get("fixed_a", ()))

    def num_val_b(self) -> int:
        return len(self.examples.get("fixed_b", ()))

    def val_a(self, indices: Sequence[int]) -> tuple[Tensor]:
        return (self._rows("fixed_a", indices),)

    def val_b(self, indices: Sequence[int]) -> tuple[Tensor]:
        return (self._rows("fixed_b", indices),)

    def real_batch(self, n: int, seed: int = 0) -> Tensor:
        """The real points stored with a 2D generator (the first ``n``; ``seed`` is not used)."""
        return self.examples.get("real", torch.zeros(0, *self.data_shape))[:n]


def restore_exported(
    saved: dict[str, Any], path: str | Path, device: torch.device | str = "cpu"
) -> tuple[DictConfig, ExportedData, GANModule, dict]:
    """(config, :class:`ExportedData`, a GANModule holding the exported G (its EMA weights, if the run
    kept them, as its generator) and the task's buffers, in eval mode, the file's dict).

    The module samples and translates exactly as the checkpoint's did (no D, no loss, no optimizers);
    its stored config was checked by :func:`~ganforge.stored.read_run` like a checkpoint's."""
    parts = [saved.get(key) for key in ("config", "data", "generator", "task")]
    config, facts, weights, buffers = parts
    examples = saved.get("examples") or {}
    if not all(isinstance(part, dict) for part in (*parts, examples)):
        raise ConfigError(f"ckpt_path={path}: an exported generator with parts missing (damaged?)")
    cfg = OmegaConf.create(config)
    try:
        data = ExportedData(facts, {**buffers, **examples}, batch_size=int(cfg.model.get("pack", 1)))
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"ckpt_path={path}: no data shape in the exported generator (damaged?)") from None
    task = make(cfg.get("task") or {"_target_": "ganforge.tasks.generation.GenerationTask"})
    generator, _, _ = build_networks(cfg.model, data, task)
    schedule = Schedule(num_fixed=int(cfg.get("num_fixed", 64)), seed=int(cfg.get("seed", 0)))
    module = GANModule(generator, nn.Identity(), None, Optimizers(), schedule, task)
    unknown = [k for k, v in buffers.items() if k not in task._buffers or not isinstance(v, Tensor)]
    if unknown:
        raise ConfigError(f"ckpt_path={path}: the exported task holds {unknown[0]!r}, not a buffer of it")
    try:
        generator.load_state_dict(weights)
    except (RuntimeError, TypeError) as exc:  # torch lists every key on lines of their own: one line here
        why = " ".join(str(exc).split())
        raise ConfigError(
            f"ckpt_path={path}: the exported weights do not fit its config ({why[:300]})"
        ) from None
    adopt_buffers(task, buffers)
    module.g_step = int(saved.get("g_step", 0))
    module.to(device).eval()
    return cfg, data, module, saved
