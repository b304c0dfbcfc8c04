"""Fixed-noise sample grids: ``samples/step_NNNNNNN.png`` and every image-capable logger."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from torch import Tensor
from torchvision.utils import make_grid, save_image

from ganforge.loggers import logger_fault


def save_scatter(fake: Tensor, real: Tensor, path: Path, title: str) -> None:
    """Generated vs real 2D points as a PNG scatter plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.scatter(real[:, 0], real[:, 1], s=4, c="tab:blue", alpha=0.4, label="real")
    ax.scatter(fake[:, 0], fake[:, 1], s=4, c="tab:red", alpha=0.6, label="generated")
    lim = float(torch.cat([real, fake]).abs().max().clamp(max=50) * 1.1)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.legend(loc="upper right")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


class SampleGrid(Callback):
    """Every ``every`` generator steps and at the end, draw the generator's output on fixed noise.

    Images: the task's grid (generation: the module's ``fixed_z`` samples, one row per class for
    conditional models; paired translation: source | output | ground truth rows of held-out pairs).
    2D points: ``num_points`` samples from a fixed seed scattered over as many real points.
    """

    def __init__(self, dirpath: str, every: int = 500, num_points: int = 1000) -> None:
        self.dirpath = Path(dirpath)
        self.every = every
        self.num_points = num_points
        self._last_step = -1

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        if pl_module.reached(self.every):
            self.draw(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.draw(trainer, pl_module)

    def draw(self, trainer: pl.Trainer, pl_module: Any) -> Path | None:
        step = pl_module.g_step
        if step == self._last_step or not trainer.is_global_zero:
            return None
        self._last_step = step
        self.dirpath.mkdir(parents=True, exist_ok=True)
        path = self.dirpath / f"step_{step:07d}.png"
        datamodule = trainer.datamodule
        if len(datamodule.data_shape) == 1:
            z = torch.randn(
                self.num_points, pl_module.z_dim, generator=torch.Generator().manual_seed(pl_module.seed)
            )
            fake = pl_module.sample(z).float().cpu()
            save_scatter(
                fake, datamodule.real_batch(self.num_points, seed=pl_module.seed), path, f"step {step}"
            )
            image = None
        else:  # what the grid shows is the task's: fixed-noise samples, or source | output | target rows
            images, nrow = pl_module.task.grid(pl_module)
            image = make_grid(images, nrow=nrow, normalize=True, value_range=(-1, 1))
            save_image(image, path)
        self._log(trainer, path, image, step)
        return path

    @staticmethod
    def _log(trainer: pl.Trainer, path: Path, image: Tensor | None, step: int) -> None:
        for logger in list(trainer.loggers):
            with logger_fault(trainer, logger):
                if isinstance(logger, WandbLogger):
                    logger.log_image("samples", [str(path)], step=step)
                elif isinstance(logger, TensorBoardLogger):
                    if image is None:
                        from torchvision.io import read_image

                        image = read_image(str(path))[:3].float() / 255
                    logger.experiment.add_image("samples", image, global_step=step)
