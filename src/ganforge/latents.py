"""Latent draws for sampling and evaluation: z ~ N(0, I), optionally truncated to |z_i| <= ψ (the
truncation trick, Brock et al. 2019, "Large Scale GAN Training for High Fidelity Natural Image
Synthesis"), which trades diversity for fidelity."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ganforge.errors import ConfigError
from ganforge.seeding import mix_seed

# sample i of an evaluation (or of ganforge-sample's arrays) has the latent (and label) at row
# i % LATENT_CHUNK of a draw seeded by (seed, i // LATENT_CHUNK): the same whatever the batch size,
# the number of ranks or the number of samples asked for
LATENT_CHUNK = 1000


def truncation_value(psi: Any) -> float | None:
    """``truncation=`` as a threshold ψ (None: off); a ConfigError for anything but a positive number."""
    if psi is None:
        return None
    if isinstance(psi, bool) or not isinstance(psi, int | float) or not math.isfinite(psi) or psi <= 0:
        raise ConfigError(
            f"truncation={psi}: give a positive threshold ψ (e.g. truncation=0.7) or null (off)"
        )
    return float(psi)


def truncation_space(generator: Any) -> str:
    """Where truncation ψ applies for ``generator``: ``w`` for a G whose mapping network tracks the mean
    intermediate latent (StyleGAN: w ← w_avg + ψ (w − w_avg), Karras et al. 2019), ``z`` otherwise
    (every latent component truncated to [-ψ, ψ], Brock et al. 2019)."""
    mapping = getattr(generator, "mapping", None)
    return "w" if mapping is not None and hasattr(mapping, "w_avg") else "z"


def check_truncation(psi: float | None, task_name: str) -> None:
    """Truncation is defined for the Gaussian latent of ``task=generation`` only."""
    if psi is not None and task_name != "generation":
        raise ConfigError(
            f"truncation={psi}: only task=generation draws Gaussian latents; "
            f"this checkpoint is task={task_name}"
        )


def truncate(z: Tensor, psi: float | None) -> Tensor:
    """Standard normal ``z`` mapped to the standard normal truncated to [-ψ, ψ], element by element.

    Inverse-CDF sampling: u = Φ(z) is uniform, so Φ⁻¹(Φ(-ψ) + u (Φ(ψ) - Φ(-ψ))) is exactly truncated
    normal. Computed on |z| in float64 through the lower tail, Φ(-|z|), which keeps its precision
    where Φ rounds to 1, then the sign is put back. The map is monotone: each latent keeps its rank,
    moved towards 0, and the random stream (hence any labels drawn after z) is that of the plain draw.
    None returns ``z`` itself.
    """
    if psi is None:
        return z
    tail = torch.special.ndtr(-z.abs().double())  # Φ(-|z|), uniform on (0, 1/2]
    low = torch.special.ndtr(torch.tensor(-psi, dtype=torch.float64))  # Φ(-ψ)
    inside = low + tail * (1 - 2 * low)  # uniform on (Φ(-ψ), 1/2]
    magnitude = (-torch.special.ndtri(inside)).clamp(0, psi)  # clamp: the last ulp of ndtri at Φ(-ψ)
    return (magnitude * z.sign().double()).to(z.dtype)


def truncated_normal(n: int, dim: int, psi: float | None, generator: torch.Generator | None = None) -> Tensor:
    """``n`` latents of ``dim`` components from N(0, I) truncated to [-ψ, ψ] per component (ψ None:
    the plain ``torch.randn(n, dim, generator=generator)``, bit for bit)."""
    return truncate(torch.randn(n, dim, generator=generator), psi)


class LatentSequence:
    """The latents (and labels) of one evaluation's samples as a fixed sequence: sample ``i`` is row
    ``i % LATENT_CHUNK`` of chunk ``i // LATENT_CHUNK``, drawn from a generator seeded by
    (``seed``, chunk), so any batch size or split across ranks reads the same samples. ``truncation``
    ψ truncates the latents to [-ψ, ψ] (:func:`ganforge.latents.truncate`; None: plain N(0, I)); the
    labels are the same for every ψ."""

    def __init__(
        self,
        seed: int,
        z_dim: int,
        labels: Callable[[int, torch.Generator], Tensor | None] | None = None,
        truncation: float | None = None,
    ) -> None:
        self.seed, self.z_dim, self.labels, self.truncation = seed, z_dim, labels, truncation
        self._chunk: tuple[int, Tensor, Tensor | None] | None = None

    def _draw(self, chunk: int) -> tuple[Tensor, Tensor | None]:
        if self._chunk is None or self._chunk[0] != chunk:
            gen = torch.Generator().manual_seed(mix_seed(self.seed, chunk, 7))  # 7: not a training stream
            z = truncated_normal(LATENT_CHUNK, self.z_dim, self.truncation, gen)
            y = self.labels(LATENT_CHUNK, gen) if self.labels is not None else None
            self._chunk = (chunk, z, None if y is None else y.cpu())
        return self._chunk[1], self._chunk[2]

    def rows(self, start: int, end: int) -> tuple[Tensor, Tensor | None]:
        """Latents and labels (None: unconditional) of samples ``start .. end - 1``, on the CPU."""
        zs, ys = [], []
        for chunk in range(start // LATENT_CHUNK, (end - 1) // LATENT_CHUNK + 1):
            z, y = self._draw(chunk)
            part = slice(max(start - chunk * LATENT_CHUNK, 0), min(end - chunk * LATENT_CHUNK, LATENT_CHUNK))
            zs.append(z[part])
            if y is not None:
                ys.append(y[part])
        return torch.cat(zs), torch.cat(ys) if ys else None


def grid_inputs(
    n: int, z_dim: int, num_classes: int, seed: int, nrow: int | None = None, truncation: float | None = None
) -> tuple[Tensor, Tensor | None, int, list[int] | None]:
    """Latents, labels, images per row and the class of each row (None when rows are not classes) of
    a sample grid laid out as training's (``GenerationTask.fixed_z``/``fixed_y``): with the run's ``seed``
    and ``n=train.num_fixed`` the picture is the run's last sample grid.

    Conditional models get one row per class with the same latents in every row, ``nrow`` (default
    ``n // num_classes``) to a row; with more classes than ``n``, ``n`` classes spread over the range.
    ``truncation`` ψ: the same latents truncated to [-ψ, ψ] (:func:`ganforge.latents.truncate`).
    """
    gen = torch.Generator().manual_seed(seed)
    if num_classes and num_classes <= n:
        columns = nrow or n // num_classes
        z = truncated_normal(columns, z_dim, truncation, gen).repeat(num_classes, 1)
        return z, torch.arange(num_classes).repeat_interleave(columns), columns, list(range(num_classes))
    z = truncated_normal(n, z_dim, truncation, gen)
    y = torch.linspace(0, num_classes - 1, n).long() if num_classes else None
    return z, y, nrow or int(math.ceil(math.sqrt(n))), None
