"""``task=generation``: noise (and a label) to image, G(z[, y]) and D(x[, y]) — the classic GAN."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ganforge.errors import ConfigError
from ganforge.tasks.base import Draw, Grid, Task


class GenerationTask(Task):
    """G maps latents z ~ N(0, I) (and labels y of a conditional model) to samples; D judges samples
    (and their labels). Grids show G on fixed latents: one row per class for conditional models."""

    name = "generation"

    def __init__(self, num_classes: int = 0, acgan_weight: float = 1.0) -> None:
        super().__init__()
        self.num_classes = num_classes  # > 0: conditional, G(z, y) and D(x, y); set by the build
        self.acgan_weight = acgan_weight  # weight of ACGAN's class loss when D also classifies
        # the training data's label distribution, which G's labels are drawn from (set by bind; saved in
        # checkpoints, so ganforge-eval and -sample draw as training did); uniform until bound
        self.register_buffer("label_probs", torch.full((num_classes,), 1.0 / max(1, num_classes)))

    def bind(self, datamodule: Any, num_fixed: int, seed: int) -> None:
        """A conditional G's label distribution: the class frequencies of the training data."""
        if not self.num_classes:
            self.label_probs = torch.zeros(0)
            return
        counts = datamodule.label_counts().double()
        if counts.shape != (self.num_classes,) or counts.sum() <= 0:
            raise ConfigError(f"{type(datamodule).__name__}: no labelled items to draw G's class labels from")
        self.label_probs = (counts / counts.sum()).float()

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        key = prefix + "label_probs"
        if key not in state_dict:  # a checkpoint from before the distribution was saved: G drew uniformly
            n = self.num_classes
            state_dict[key] = torch.full((n,), 1.0 / n) if n else torch.zeros(0)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def check(self, datamodule: Any) -> None:
        for kind, task in (("paired", "paired"), ("unpaired", "unpaired")):
            if getattr(datamodule, kind, False):
                raise ConfigError(
                    f"{type(datamodule).__name__} is data for image-to-image translation: use task={task} "
                    "(task=generation trains on single images, e.g. data=digits)"
                )

    def real(self, part: tuple[Tensor, ...]) -> tuple[Tensor, Tensor | None]:
        x, y = part[0], part[1]
        return x, (y if self.num_classes else None)

    def draw(self, module: Any, part: tuple[Tensor, ...]) -> Draw:
        n = part[0].shape[0]
        z, y = module.sample_z(n), module.sample_labels(n)
        return Draw((z,) if y is None else (z, y), y)

    def fixed_sample(self, module: Any, net: nn.Module) -> Tensor:
        z, y = module.fixed_z, module.fixed_y
        return net(z) if y is None else net(z, y)

    def grid(self, module: Any) -> Grid:
        """G on the fixed latents: a square grid, or one labelled row per class (the same latent in
        each column) for a conditional model."""
        fake = module.sample().float().cpu()
        if module.grid_columns:
            return Grid(fake, module.grid_columns, module.fixed_y[:: module.grid_columns].tolist())
        return Grid(fake, int(math.ceil(math.sqrt(len(fake)))))
