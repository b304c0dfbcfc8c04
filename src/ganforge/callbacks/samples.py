"""Fixed-noise sample grids: ``samples/step_NNNNNNN.png`` and every image-capable logger.

:func:`grid_image` draws every image grid (training's and ``ganforge-sample``'s) and
:func:`scatter_figure` every 2D scatter plot, so that both commands show the same pictures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from PIL import Image, ImageDraw, ImageFont
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from torch import Tensor
from torchvision.utils import make_grid

from ganforge.loggers import logger_fault
from ganforge.tasks.base import Grid

GRID_MIN_WIDTH = 512  # px: smaller images are enlarged (nearest neighbour, integer factor) to reach it
GRID_PADDING = 2  # px between images


def grid_image(
    images: Tensor,
    nrow: int,
    row_labels: Sequence[str] | None = None,
    min_width: int = GRID_MIN_WIDTH,
    headers: Sequence[tuple[int, Sequence[str]]] | None = None,
) -> Image.Image:
    """Images in [-1, 1] tiled ``nrow`` to a row, as an RGB picture a person can read.

    Small images are enlarged by nearest neighbour with one integer factor (pixels stay sharp
    squares) until the grid is at least ``min_width`` px wide; ``row_labels`` (one per row, e.g.
    the class of a conditional model's row) are written in a column at the left; ``headers``
    ((first row, column titles) per block of rows) put a band of titles above each block.
    """
    cols = max(1, min(nrow, len(images)))
    factor = max(1, math.ceil((min_width - GRID_PADDING * (cols + 1)) / (cols * images.shape[-1])))
    images = images.detach().float().cpu()
    if factor > 1:
        images = torch.nn.functional.interpolate(images, scale_factor=factor, mode="nearest")
    labels = list(row_labels) if row_labels else None
    if not headers:
        return _tile(images, cols, labels)
    rows = math.ceil(len(images) / cols)
    starts = sorted({min(max(0, int(first)), rows) for first, _ in headers} | {0})
    titles = {min(max(0, int(first)), rows): list(names) for first, names in headers}
    pictures = []
    for begin, end in zip(starts, [*starts[1:], rows], strict=True):
        if begin == end:
            continue
        block = _tile(images[begin * cols : end * cols], cols, labels[begin:end] if labels else None)
        margin = block.width - (cols * (images.shape[-1] + GRID_PADDING) + GRID_PADDING)  # row labels
        pictures.append(_title_band(block, titles.get(begin, []), images.shape[-1], margin))
    out = Image.new("RGB", (max(p.width for p in pictures), sum(p.height for p in pictures)))
    top = 0
    for picture in pictures:
        out.paste(picture, (out.width - picture.width, top))
        top += picture.height
    return out


def _tile(images: Tensor, cols: int, row_labels: list[str] | None) -> Image.Image:
    """Enlarged images as a grid of ``cols`` columns (with ``row_labels`` at the left)."""
    grid = make_grid(images, nrow=cols, padding=GRID_PADDING, normalize=True, value_range=(-1, 1))
    array = grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8).numpy()
    picture = Image.fromarray(array)
    if row_labels:
        picture = _label_rows(picture, row_labels, images.shape[-2] + GRID_PADDING)
    return picture


def _title_band(picture: Image.Image, titles: list[str], cell: int, margin: int) -> Image.Image:
    """``picture`` under a band holding ``titles[j]`` centred over column ``j`` (columns ``cell`` px
    wide, starting ``margin`` px from the left); the picture as it is without titles."""
    if not titles:
        return picture
    size = max(10, min(24, cell // 6))
    font = _font(size)
    measure = ImageDraw.Draw(picture)
    while size > 8 and max(measure.textbbox((0, 0), t, font=font)[2] for t in titles) > cell:
        size -= 1  # narrow columns: a smaller font, so that each title stays over its own column
        font = _font(size)
    band = round(size * 1.8)
    out = Image.new("RGB", (picture.width, band + picture.height))
    out.paste(picture, (0, band))
    draw = ImageDraw.Draw(out)
    for j, text in enumerate(titles):
        x = margin + GRID_PADDING + j * (cell + GRID_PADDING) + cell // 2
        draw.text((x, band // 2 + GRID_PADDING // 2), text, fill="white", font=font, anchor="mm")
    return out


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def _label_rows(picture: Image.Image, labels: list[str], row_height: int) -> Image.Image:
    """``picture`` with a column at its left holding ``labels[i]`` centred on row ``i``."""
    font = _font(max(10, min(24, row_height // 3)))
    measure = ImageDraw.Draw(picture)
    widths = [measure.textbbox((0, 0), text, font=font)[2] for text in labels]
    margin = 6
    out = Image.new("RGB", (max(widths) + 2 * margin + picture.width, picture.height))
    out.paste(picture, (out.width - picture.width, 0))
    draw = ImageDraw.Draw(out)
    for i, (text, width) in enumerate(zip(labels, widths, strict=True)):
        y = GRID_PADDING + i * row_height + (row_height - GRID_PADDING) // 2
        draw.text((out.width - picture.width - margin - width, y), text, fill="white", font=font, anchor="lm")
    return out


def class_labels(classes: Sequence[int], datamodule: Any) -> list[str]:
    """Row labels for class indices: ``3 cat`` where the data names its classes, else ``3``."""
    try:
        from ganforge.data.unpaired import class_names

        names = class_names(datamodule)
    except Exception:  # noqa: BLE001 - names are a nicety: a folder not on this machine gives indices
        names = None
    return [f"{c} {names[c]}" if names and c < len(names) and names[c] != str(c) else str(c) for c in classes]


def save_grid(grid: Grid, datamodule: Any, path: Path) -> Image.Image:
    """Draw a task's :class:`~ganforge.tasks.base.Grid` with :func:`grid_image` and save it as ``path``."""
    labels = class_labels(grid.row_classes, datamodule) if grid.row_classes else None
    picture = grid_image(grid.images, grid.nrow, labels, headers=grid.headers)
    picture.save(path)
    return picture


def scatter_limit(real: Tensor) -> float:
    """Half the side of a 2D plot's square axes: the real data's extent plus a margin, rounded up to
    1, 1.5, 2, 2.5, 3, 4, 5, 6, 8 times a power of ten, so that every run on the same data (and its
    ``ganforge-sample`` plot) shares the axes whatever its generator does."""
    extent = float(real.abs().max()) * 1.2 if len(real) else 1.0
    if not math.isfinite(extent) or extent <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(extent))
    return next(m * power for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if m * power >= extent * (1 - 1e-6))


def scatter_figure(fake: Tensor, real: Tensor, title: str) -> Any:
    """Generated vs real 2D points on axes fixed by the real data (:func:`scatter_limit`); generated
    points outside are drawn on the border as crosses and counted in the title."""
    from matplotlib.figure import Figure

    fake, real = fake.detach().float().cpu(), real.detach().float().cpu()
    lim = scatter_limit(real)
    outside = ~(fake.abs() <= lim).all(dim=1)  # NaN too: counted, not drawn
    shown = fake[~outside]
    border = fake[outside & ~fake.isnan().any(dim=1)].clamp(-lim, lim)
    fig = Figure(figsize=(5, 5), dpi=100, layout="constrained")
    ax = fig.subplots()
    ax.scatter(real[:, 0], real[:, 1], s=4, c="tab:blue", alpha=0.4, label="real")
    ax.scatter(shown[:, 0], shown[:, 1], s=4, c="tab:red", alpha=0.6, label="generated")
    if len(border):
        ax.scatter(border[:, 0], border[:, 1], s=16, c="tab:red", marker="x", clip_on=False)
        title += f" ({int(outside.sum())} of {len(fake)} outside)"
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.legend(loc="upper right")
    ax.set_title(title)
    return fig


def save_scatter(fake: Tensor, real: Tensor, path: Path, title: str) -> None:
    """Generated vs real 2D points as a PNG scatter plot (:func:`scatter_figure`)."""
    scatter_figure(fake, real, title).savefig(path)


class SampleGrid(Callback):
    """Every ``every`` generator steps and at the end, draw the generator's output on fixed noise.

    Images: the task's grid (generation: the module's ``fixed_z`` samples, one row per class for
    conditional models; paired translation: source | output | target rows of held-out pairs; unpaired:
    a | G_AB(a) | G_BA(G_AB(a)) rows, then b's; translation grids carry those column titles).
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
                self.num_points, pl_module.task.z_dim, generator=torch.Generator().manual_seed(pl_module.seed)
            )
            fake = pl_module.sample(z).float().cpu()
            save_scatter(
                fake, datamodule.real_batch(self.num_points, seed=pl_module.seed), path, f"step {step}"
            )
        else:  # what the grid shows is the task's: fixed-noise samples, or source | output | target rows
            save_grid(pl_module.task.grid(pl_module), datamodule, path)
        self._log(trainer, path, step)
        return path

    @staticmethod
    def _log(trainer: pl.Trainer, path: Path, step: int) -> None:
        for logger in list(trainer.loggers):
            with logger_fault(trainer, logger):
                if isinstance(logger, WandbLogger):  # captioned: W&B's media panel shows the step
                    logger.log_image("samples", [str(path)], step=step, caption=[f"step {step}"])
                elif isinstance(logger, TensorBoardLogger):
                    from torchvision.io import read_image

                    image = read_image(str(path))[:3].float() / 255
                    logger.experiment.add_image("samples", image, global_step=step)
