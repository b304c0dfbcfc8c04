"""Density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for Generative
Models"): k-NN balls around the *real* features only, so that outliers among the fakes cannot inflate
them as they inflate improved precision and recall.

With r_i the distance from real feature i to its k-th nearest other real feature:
density = 1/(k·M) Σ_j Σ_i 1[‖f_j − x_i‖ ≤ r_i] over the M fakes (1 on average for fakes from the real
distribution; it can exceed 1), coverage = 1/N Σ_i 1[min_j ‖f_j − x_i‖ ≤ r_i] over the N reals (the
share of real neighbourhoods that hold a fake). The authors' code (clovaai/generative-evaluation-prdc)
takes the same radii (the k-th neighbour with the point itself excluded) and the same ≤ comparisons.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

CHUNK = 4096  # rows of a distance matrix at a time: memory O(CHUNK · N)


def _chunks(x: Tensor) -> list[Tensor]:
    return list(x.split(CHUNK))


def real_radii(real: Tensor, k: int) -> Tensor:
    """Distance from each real feature to its k-th nearest other real feature."""
    radii = []
    for part in _chunks(real):
        d = torch.cdist(part.double(), real.double())
        radii.append(d.kthvalue(k + 1, dim=1).values)  # the point itself is its 1st neighbour (distance 0)
    return torch.cat(radii)


def density_coverage(real: Tensor, fake: Tensor, k: int = 5) -> dict[str, float]:
    """Density and coverage of ``fake`` features against ``real`` ones (N × D and M × D), k-NN balls."""
    radii = real_radii(real, k)
    inside = 0.0
    nearest = torch.full((real.shape[0],), float("inf"), dtype=torch.float64)
    for part in _chunks(fake):
        d = torch.cdist(part.double(), real.double())  # (m, N)
        inside += float((d <= radii).sum())
        nearest = torch.minimum(nearest, d.min(dim=0).values)
    return {
        "density": inside / (k * fake.shape[0]),
        "coverage": float((nearest <= radii).double().mean()),
    }


class FakeFeatures(Metric):
    """A metric of generated features against a fixed real set (N × D), k-NN based: the generated
    features of every update are kept and gathered across ranks; :meth:`score` gives the values."""

    full_state_update = False

    def __init__(self, real: Tensor, neighborhood: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.real = real
        self.neighborhood = neighborhood
        self.add_state("fake", [], dist_reduce_fx="cat")

    def update(self, features: Tensor) -> None:
        self.fake.append(features)

    def compute(self) -> dict[str, float]:
        fake = torch.cat(self.fake) if isinstance(self.fake, list) else self.fake
        return self.score(self.real.cpu(), fake.cpu())

    def score(self, real: Tensor, fake: Tensor) -> dict[str, float]:
        raise NotImplementedError


class DensityCoverage(FakeFeatures):
    """:func:`density_coverage` of generated features against a fixed real set (k = ``neighborhood``)."""

    def score(self, real: Tensor, fake: Tensor) -> dict[str, float]:
        return density_coverage(real.double(), fake.double(), self.neighborhood)
