"""Mode coverage of the mode-collapse literature (VEEGAN, Srivastava et al. 2017; PacGAN, Lin et al. 2018).

Every generated sample is assigned to a mode: the nearest centre for a Gaussian mixture, the
classified digit triple for stacked digits. A 2D sample is *high quality* when it lies within
3 standard deviations of its centre. ``modes`` counts the modes with at least one high-quality
sample; ``hq_frac`` is the share of high-quality samples; ``reverse_kl`` is KL(p || uniform) of
the histogram of mode assignments of all samples (0 when perfectly balanced, log K when every
sample falls in one of the K modes).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

# generated samples the mode metrics count by default: 2,500 on 2D mixtures (VEEGAN, PacGAN), 26,000
# on stacked digits (the 1,000 modes of stacked MNIST in VEEGAN and PacGAN; 2,500 uniform draws would
# leave about 1000·e^-2.5 ≈ 82 modes empty, 26,000 leave 1000·e^-26 ≈ 5e-9)
MIXTURE_MODE_SAMPLES = 2500
STACKED_MODE_SAMPLES = 26000


def assign_modes(points: Tensor, centers: Tensor, std: float) -> tuple[Tensor, Tensor]:
    """(nearest-centre index, high-quality flag) for each 2D point."""
    dist = torch.cdist(points.double(), centers.double().to(points.device))
    nearest, index = dist.min(dim=1)
    return index, nearest <= 3 * std


def mode_summary(hist_all: Tensor, hist_hq: Tensor) -> dict[str, float]:
    """``modes``, ``hq_frac`` and ``reverse_kl`` from per-mode counts of all and of high-quality samples."""
    total = hist_all.sum().double()
    p = hist_all.double() / total.clamp(min=1)
    k = hist_all.numel()
    nonzero = p > 0
    reverse_kl = (p[nonzero] * (p[nonzero] * k).log()).sum()
    return {
        "modes": float((hist_hq > 0).sum()),
        "hq_frac": float(hist_hq.sum().double() / total.clamp(min=1)),
        "reverse_kl": float(reverse_kl),
    }


def mixture_metrics(points: Tensor, centers: Tensor, std: float) -> dict[str, float]:
    """Mode metrics of 2D ``points`` against a Gaussian mixture (``centers``, ``std``)."""
    index, hq = assign_modes(points, centers, std)
    k = len(centers)
    return mode_summary(torch.bincount(index, minlength=k), torch.bincount(index[hq], minlength=k))


class ModeCoverage(Metric):
    """Histogram of mode assignments, summed over updates and DDP ranks."""

    full_state_update = False

    def __init__(self, num_modes: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_modes = num_modes
        self.add_state("hist_all", torch.zeros(num_modes, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("hist_hq", torch.zeros(num_modes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, index: Tensor, high_quality: Tensor | None = None) -> None:
        """``index``: mode of each sample; ``high_quality``: its flag (all true when not given)."""
        self.hist_all += torch.bincount(index, minlength=self.num_modes)
        kept = index if high_quality is None else index[high_quality]
        self.hist_hq += torch.bincount(kept, minlength=self.num_modes)

    def compute(self) -> dict[str, float]:
        return mode_summary(self.hist_all, self.hist_hq)


def stacked_modes(logits: Tensor) -> Tensor:
    """Mode index of stacked digits from per-channel logits (N, k, C): the base-C number of the
    classified digits, e.g. 100·a + 10·b + c for 3 channels of 10 classes (0..999)."""
    digits = logits.argmax(dim=-1)
    k, base = logits.shape[1], logits.shape[2]
    weights = base ** torch.arange(k - 1, -1, -1, device=digits.device)
    return (digits * weights).sum(dim=1)
