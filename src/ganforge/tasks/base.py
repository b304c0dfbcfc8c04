"""The task interface: everything the one alternation loop of GANModule asks of a task.

A loader batch is a tuple of tensors; the module cuts it into one part per discriminator update.
For each update the task says what D judges as real (``real``), draws G's input (``draw``), runs G
(``generate``), forms D's input from an image and its condition (``d_input``) and adds its own G
terms (``g_terms``). Sample grids and the fixed inputs they use come from the task as well; so do
latents and labels, for the tasks that draw them (the module knows nothing of noise).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn


@dataclass
class Draw:
    """G's input for one update (``inputs``, passed to G as positional arguments) and the condition
    D judges its output with (labels, a source image, or None)."""

    inputs: tuple[Tensor, ...]
    cond: Tensor | None


@dataclass
class Term:
    """An extra generator term: its unweighted value (logged as ``train/g_<name>``) and its weight;
    ``parts``, when the value is a sum, its summands by name (logged as ``train/g_<name>_<part>``)."""

    value: Tensor
    weight: float
    parts: dict[str, Tensor] = field(default_factory=dict)


class Grid(NamedTuple):
    """What a sample grid shows: images in [-1, 1], images per row and, when each row is one class,
    the class of each row (drawn as a label at its left); ``headers``: (first row, column titles) of
    each block of rows that gets a band of titles above it (translation grids: what each column is)."""

    images: Tensor
    nrow: int
    row_classes: list[int] | None = None
    headers: list[tuple[int, tuple[str, ...]]] | None = None


class Task(nn.Module):
    """Base of every task. An ``nn.Module`` so that task state (fixed examples, image pools) is saved
    in checkpoints with the weights; it holds no parameters of its own."""

    name = "task"
    z_dim = 0  # size of the latent G draws (0: G's input comes from the batch)
    num_classes = 0  # classes G and D are conditioned on (0: none)

    def check(self, datamodule: Any) -> None:
        """Refuse data this task cannot train on, with one line (a ConfigError)."""

    def net_kwargs(self, datamodule: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Extra constructor arguments of G and D (shapes) for this task on ``datamodule``."""
        return {}, {}

    def attach(self, generator: nn.Module, num_fixed: int, seed: int) -> None:
        """Take what the task needs from G (the module calls this when it is made): latent size, the
        fixed grid inputs of ``num_fixed`` samples drawn from ``seed``."""

    def bind(self, datamodule: Any) -> None:
        """Take what the task needs from the data before training (fixed examples, label frequencies)."""

    # --- one update ---------------------------------------------------------------------------
    def real(self, part: tuple[Tensor, ...]) -> tuple[Tensor, Tensor | None]:
        """(what D judges as real, its condition) in one part of a loader batch."""
        raise NotImplementedError

    def draw(self, part: tuple[Tensor, ...]) -> Draw:
        """G's input for one update (drawn from the global RNG, or taken from the batch)."""
        raise NotImplementedError

    def generate(self, net: nn.Module, draw: Draw) -> Tensor:
        return net(*draw.inputs)

    def d_input(self, image: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """What D gets for an image: (its input tensor, labels for a conditional D or None)."""
        return image, cond

    def for_d(self, fake: Tensor) -> Tensor:
        """The fakes D's update sees (an image history for CycleGAN; by default the fresh ones)."""
        return fake

    def g_terms(self, net: nn.Module, part: tuple[Tensor, ...], fake: Tensor) -> dict[str, Term]:
        """Extra generator terms besides the adversarial one (none by default); ``net`` is G."""
        return {}

    def class_term(self, pairs: list[tuple[Tensor, Tensor]]) -> Term:
        """ACGAN (Odena et al. 2017): the class loss of an auxiliary classifier's logits against labels,
        summed over ``(logits, labels)`` pairs, and its weight. Only tasks with labels have one."""
        raise NotImplementedError(f"task={self.name} has no class labels")

    shares_forward = False  # whether D's and G's updates of a step use one G forward (n_critic=1)

    # per discriminator of ``judges`` (when there are several): the suffixes of its logged adversarial
    # terms, D's (``train/d_adv_<d>``) and G's against it (``train/g_adv_<g>``); empty: one D, no split
    judge_keys: tuple[tuple[str, str], ...] = ()

    @property
    def adversarial(self) -> bool:
        """Whether G minimises the adversarial loss (off: a plain regression baseline)."""
        return True

    def judges(self, discriminator: nn.Module, n: int) -> list[tuple[nn.Module, slice]]:
        """Each discriminator of the task and the part of a D batch of ``n`` it judges. The module
        takes one adversarial term (and the penalties) per discriminator and sums them: the losses of
        ``losses.py`` are each one discriminator's objective on one batch (see there). One D by default."""
        return [(discriminator, slice(None))]

    @contextlib.contextmanager
    def inference(self, net: nn.Module) -> Iterator[None]:
        """How G runs for samples and metrics: in eval mode (its mode restored afterwards)."""
        was_training = net.training
        net.eval()
        try:
            yield
        finally:
            net.train(was_training)

    def translate(self, net: nn.Module, source: Tensor, direction: str | None = None) -> Tensor:
        """G's output for source images (image-to-image tasks; ``direction`` for two-way ones)."""
        return net(source)

    # --- latents (tasks with ``z_dim`` > 0) --------------------------------------------------------
    @property
    def draws_latents(self) -> bool:
        """Whether G's input is drawn noise (what EMA standing statistics and truncation need)."""
        return self.z_dim > 0

    def latent_inputs(self, z: Tensor, y: Tensor | None = None) -> tuple[Tensor, ...]:
        """G's inputs for given latents (and labels): what ``GANModule.sample(z, y)`` runs G on."""
        raise NotImplementedError(f"task={self.name} draws no latents")

    def latent_batch(self, n: int, generator: torch.Generator, device: torch.device) -> tuple[Tensor, ...]:
        """G's inputs for ``n`` fresh latents (and labels) drawn from ``generator`` (standing statistics)."""
        raise NotImplementedError(f"task={self.name} draws no latents")

    # --- samples -------------------------------------------------------------------------------
    def fixed_draw(self) -> Draw:
        """The task's fixed inputs, the same in every sample grid."""
        raise NotImplementedError

    def fixed_sample(self, net: nn.Module) -> Tensor:
        """``net``'s output on the task's fixed inputs (what every sample grid shows)."""
        return self.generate(net, self.fixed_draw())

    def grid(self, module: Any) -> Grid:
        """The images of a sample grid and their layout (the grid is drawn by ``callbacks.samples``)."""
        raise NotImplementedError


def as_rgb(x: Tensor, channels: int) -> Tensor:
    """Images with ``channels`` channels (grayscale repeated to RGB), for grids that mix both."""
    return x.expand(-1, channels, -1, -1) if x.shape[1] == 1 and channels == 3 else x
