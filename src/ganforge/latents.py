"""Latent draws for sampling and evaluation: z ~ N(0, I), optionally truncated to |z_i| <= ψ (the
truncation trick, Brock et al. 2019, "Large Scale GAN Training for High Fidelity Natural Image
Synthesis"), which trades diversity for fidelity."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ganforge.errors import ConfigError


def truncation_value(psi: Any) -> float | None:
    """``truncation=`` as a threshold ψ (None: off); a ConfigError for anything but a positive number."""
    if psi is None:
        return None
    if isinstance(psi, bool) or not isinstance(psi, int | float) or not math.isfinite(psi) or psi <= 0:
        raise ConfigError(
            f"truncation={psi}: give a positive threshold ψ (e.g. truncation=0.7) or null (off)"
        )
    return float(psi)


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
