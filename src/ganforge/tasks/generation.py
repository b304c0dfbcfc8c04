"""``task=generation``: noise (and a label) to image, G(z[, y]) and D(x[, y]) — the classic GAN."""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor, nn

from ganforge.errors import ConfigError
from ganforge.tasks.base import Draw, Task


class GenerationTask(Task):
    """G maps latents z ~ N(0, I) (and labels y of a conditional model) to samples; D judges samples
    (and their labels). Grids show G on fixed latents: one row per class for conditional models."""

    name = "generation"

    def __init__(self, num_classes: int = 0, acgan_weight: float = 1.0) -> None:
        super().__init__()
        self.num_classes = num_classes  # > 0: conditional, G(z, y) and D(x, y); set by the build
        self.acgan_weight = acgan_weight  # weight of ACGAN's class loss when D also classifies

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

    def grid(self, module: Any) -> tuple[Tensor, int]:
        fake = module.sample().float().cpu()
        return fake, module.grid_columns or int(math.ceil(math.sqrt(len(fake))))
