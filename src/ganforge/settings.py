"""The settings GANModule takes, grouped by what they control (so a new task or trick adds a field
to one group, not an argument to the module)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


@dataclass
class Optimizers:
    """Factories of G's and D's optimizers (partials taking the parameters) and an LR schedule for both."""

    generator: OptimizerFactory | None = None
    discriminator: OptimizerFactory | None = None
    scheduler: SchedulerFactory | None = None


@dataclass
class Schedule:
    """The budget and rhythm of training (``train.*``)."""

    steps: int = 1000  # generator updates
    n_critic: int = 1  # D updates per G update
    updates: str = "alternating"  # or "simultaneous": D and G stepped together from the same weights
    steps_per_batch: int = 1  # generator steps per Lightning batch
    log_every: int = 50
    clip_grad_g: float | None = None
    clip_grad_d: float | None = None
    num_fixed: int = 64  # samples in every grid
    seed: int = 0
    epoch_items: int = 0  # training items per epoch of the data (top-k training's clock; 0: not known)


@dataclass
class Tricks:
    """Training tricks: EMA of G (samples and metrics use it), what D sees (DiffAugment, ADA, noise)."""

    ema_decay: float | None = None
    ema_warmup: bool = True
    ema_kimg: float | None = None  # or a half-life in thousands of images (StyleGAN2-ADA), with
    ema_rampup: float | None = None  # its ramp-up: half-life ≤ images seen × rampup
    ema_standing: bool | str = "auto"  # standing BN statistics of the EMA G: auto, true, false
    ema_standing_batches: int = 16  # batches of fresh latents they average over
    ema_standing_batch_size: int = 64
    augment: Any = None  # a DiffAugment
    instance_noise: Any = None  # an InstanceNoise
    ada: Any = None  # an AdaptiveAugment (ganforge.ada): adaptive discriminator augmentation


@dataclass
class Runtime:
    """How the nets run: ``torch.compile`` and memory order (``model.compile*``, ``model.channels_last``)."""

    compile: bool = False
    compile_options: dict[str, Any] = field(default_factory=dict)
    channels_last: bool = False
