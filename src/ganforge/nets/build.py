"""The generator and discriminator a ``model`` config describes, with conditioning and packing."""

from __future__ import annotations

import inspect
from typing import Any

from hydra.utils import get_class
from torch import nn

from ganforge.config import make
from ganforge.errors import ConfigError
from ganforge.nets.conditional import check_conditioning
from ganforge.nets.cycle import CycleDiscriminators, CycleGenerators
from ganforge.nets.packing import Packed, packed_shape


def conditioning(model: Any, datamodule: Any) -> int:
    """The number of classes G and D are conditioned on (0: unconditional); a ConfigError when
    ``model.conditional`` cannot work on this data or these nets."""
    if not model.get("conditional", False):
        return 0
    num_classes = int(datamodule.num_classes)
    if num_classes < 2:
        raise ConfigError(
            f"model.conditional=true needs labelled data, but {type(datamodule).__name__} has "
            f"{num_classes} classes; use labelled data (digits, mnist, class subfolders) "
            "or model.conditional=false"
        )
    for net in ("generator", "discriminator"):
        target = model[net]._target_
        if "num_classes" not in inspect.signature(get_class(target)).parameters:
            raise ConfigError(
                f"model.conditional=true: {target} has no conditional version (use model=dcgan or resnet)"
            )
    check_conditioning(model.get("cond", "projection"), num_classes)
    return num_classes


def build_networks(model: Any, datamodule: Any, task: Any = None) -> tuple[nn.Module, nn.Module, int]:
    """(G, D, number of classes) for ``model`` (the config group) on ``datamodule``'s data; ``task``
    adds the shapes it needs (e.g. paired translation: G's input channels, D's paired input)."""
    g_extra, d_extra = task.net_kwargs(datamodule) if task is not None else ({}, {})
    if task is not None and task.name != "generation" and model.get("conditional", False):
        raise ConfigError(f"model.conditional=true is for task=generation, not task={task.name}")
    num_classes = conditioning(model, datamodule)
    pack = model.get("pack", 1)
    if not isinstance(pack, int) or pack < 1:
        raise ConfigError(f"model.pack must be a positive integer, got {pack!r}")
    if datamodule.batch_size % pack:
        raise ConfigError(
            f"model.pack={pack}: data.batch_size={datamodule.batch_size} must be divisible by it "
            "(D judges groups of pack samples)"
        )
    if pack > 1 and num_classes:
        raise ConfigError("model.pack > 1 does not combine with model.conditional=true")
    shape = tuple(datamodule.data_shape)
    labels = {"num_classes": num_classes} if num_classes else {}
    cond = {"cond": model.get("cond", "projection")} if num_classes else {}
    d_shape = tuple(d_extra.pop("data_shape", shape))
    generator = make(model.generator, data_shape=shape, **labels, **g_extra)
    d_shape = packed_shape(d_shape, pack)
    discriminator = make(model.discriminator, data_shape=d_shape, **labels, **cond, **d_extra)
    if getattr(task, "two_way", False):  # CycleGAN: G_AB, G_BA, D_A, D_B, each initialised on its own
        if pack > 1:
            raise ConfigError(f"model.pack > 1 does not combine with task={task.name}")
        generator = CycleGenerators(generator, make(model.generator, data_shape=shape, **g_extra))
        discriminator = CycleDiscriminators(
            discriminator, make(model.discriminator, data_shape=d_shape, **d_extra)
        )
    return generator, Packed(discriminator, pack) if pack > 1 else discriminator, num_classes
