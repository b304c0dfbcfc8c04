"""``task=generation``: noise (and a label) to image, G(z[, y]) and D(x[, y]) — the classic GAN."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ganforge.errors import ConfigError
from ganforge.latents import grid_inputs
from ganforge.losses import acgan_class_loss
from ganforge.tasks.base import Draw, Grid, Task, Term


class GenerationTask(Task):
    """G maps latents z ~ N(0, I) (and labels y of a conditional model) to samples; D judges samples
    (and their labels). Grids show G on fixed latents: one row per class for conditional models.

    The latents, the labels (drawn from the data's label frequencies), the fixed grid inputs and ACGAN's
    class term live here, not in the training loop."""

    name = "generation"

    def __init__(self, num_classes: int = 0, acgan_weight: float = 1.0) -> None:
        super().__init__()
        self.num_classes = num_classes  # > 0: conditional, G(z, y) and D(x, y); a conditional G's own wins
        self.acgan_weight = acgan_weight  # weight of ACGAN's class loss when D also classifies
        self.grid_columns: int | None = None  # conditional grids: one row per class, same latents per column
        # the training data's label distribution, which G's labels are drawn from (set by bind; saved in
        # checkpoints, so ganforge-eval and -sample draw as training did); uniform until bound
        self.register_buffer("label_probs", self._uniform())
        self.register_buffer("fixed_z", torch.zeros(0))
        self.register_buffer("fixed_y", None)

    def _uniform(self) -> Tensor:
        n = self.num_classes
        return torch.full((n,), 1.0 / n) if n else torch.zeros(0)

    def attach(self, generator: nn.Module, num_fixed: int, seed: int) -> None:
        """G's latent size and classes (a conditional G names them), and the fixed grid inputs: one row
        per class with the same latents in every row, or ``num_fixed`` latents (classes spread over the
        range when there are more of them than samples)."""
        self.z_dim = int(generator.z_dim)
        classes = int(getattr(generator, "num_classes", self.num_classes) or 0)
        if classes != self.num_classes or self.label_probs.shape != (classes,):
            self.num_classes = classes
            self.label_probs = self._uniform()
        z, y, columns, rows = grid_inputs(num_fixed, self.z_dim, self.num_classes, seed)
        self.grid_columns = columns if rows is not None else None
        self.fixed_z, self.fixed_y = z, y

    def bind(self, datamodule: Any) -> None:
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
            state_dict[key] = self._uniform()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def check(self, datamodule: Any) -> None:
        for kind, task in (("paired", "paired"), ("unpaired", "unpaired")):
            if getattr(datamodule, kind, False):
                raise ConfigError(
                    f"{type(datamodule).__name__} is data for image-to-image translation: use task={task} "
                    "(task=generation trains on single images, e.g. data=digits)"
                )

    # --- latents and labels ------------------------------------------------------------------------
    def sample_labels(self, n: int, generator: torch.Generator | None = None) -> Tensor | None:
        """Class labels from the training data's label distribution, drawn from the global RNG or from
        ``generator`` (a CPU one: metrics, ganforge-eval); None for unconditional models. Uniform labels
        on imbalanced data would let a conditional D tell fakes by their label alone, and FID would
        penalise a G that matches the data."""
        if not self.num_classes:
            return None
        probs = self.label_probs
        if generator is not None:
            return torch.multinomial(probs.cpu(), n, replacement=True, generator=generator).to(probs.device)
        return torch.multinomial(probs, n, replacement=True)

    def latent_inputs(self, z: Tensor, y: Tensor | None = None) -> tuple[Tensor, ...]:
        """(z,) or (z, y); a conditional model given no labels gets them cycling through the classes."""
        if not self.num_classes:
            return (z,)
        if y is None:
            y = torch.arange(len(z)) % self.num_classes
        return z, y.to(z.device)

    def latent_batch(self, n: int, generator: torch.Generator, device: torch.device) -> tuple[Tensor, ...]:
        z = torch.randn(n, self.z_dim, generator=generator).to(device)
        y = self.sample_labels(n, generator)  # the data's label distribution, as in training
        return (z,) if y is None else (z, y.to(device))

    def real(self, part: tuple[Tensor, ...]) -> tuple[Tensor, Tensor | None]:
        x, y = part[0], part[1]
        return x, (y if self.num_classes else None)

    def draw(self, part: tuple[Tensor, ...]) -> Draw:
        n = part[0].shape[0]
        z, y = torch.randn(n, self.z_dim, device=part[0].device), self.sample_labels(n)
        return Draw((z,) if y is None else (z, y), y)

    def class_term(self, pairs: list[tuple[Tensor, Tensor]]) -> Term:
        """ACGAN's cross-entropy of the class logits against the labels, weighted by ``acgan_weight``."""
        total = acgan_class_loss(*pairs[0])
        for logits, labels in pairs[1:]:
            total = total + acgan_class_loss(logits, labels)
        return Term(total, self.acgan_weight)

    # --- samples -------------------------------------------------------------------------------------
    def fixed_draw(self) -> Draw:
        z, y = self.fixed_z, self.fixed_y
        return Draw((z,) if y is None else (z, y), y)

    def grid(self, module: Any) -> Grid:
        """G on the fixed latents: a square grid, or one labelled row per class (the same latent in
        each column) for a conditional model."""
        fake = module.sample().float().cpu()
        if self.grid_columns:
            return Grid(fake, self.grid_columns, self.fixed_y[:: self.grid_columns].tolist())
        return Grid(fake, int(math.ceil(math.sqrt(len(fake)))))
