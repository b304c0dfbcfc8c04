"""Metrics of class-conditional generators: intra-FID (Miyato & Koyama 2018, "cGANs with projection
discriminator": the FID of each class's samples against that class's real images, averaged over the
classes) and the classification accuracy score (Ravuri & Vinyals 2019, "Classification accuracy score
for conditional generative models": a classifier trained on generated labelled samples only, tested
on real held-out data)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torchmetrics import Metric

from ganforge.latents import truncated_normal
from ganforge.metrics.classifier import ClassifierSpec, accuracy, train_classifier
from ganforge.metrics.features import to_uint8


def gaussian_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and unbiased covariance (float64) of ``features`` (N, D), as FID defines them."""
    x = features.double()
    mean = x.mean(0)
    centred = x - mean
    return mean, centred.T @ centred / (len(x) - 1)


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """Fréchet distance of two Gaussians (Heusel et al. 2017):
    |mu1 - mu2|² + tr(S1) + tr(S2) - 2 tr((S1 S2)^½), with tr((S1 S2)^½) = tr((R S2 R)^½) for the
    symmetric root R of S1, so only symmetric eigenproblems are solved (float64)."""
    mu1, sigma1, mu2, sigma2 = (t.double() for t in (mu1, sigma1, mu2, sigma2))
    w, v = torch.linalg.eigh(sigma1)
    root = (v * w.clamp(min=0).sqrt()) @ v.T
    middle = root @ sigma2 @ root
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    diff = mu1 - mu2
    return float(diff @ diff + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt)


class IntraFID(Metric):
    """Per-class FID of generated features against the real reference features of the same class;
    :meth:`compute` returns the per-class values (NaN for a class with fewer than 2 samples on either
    side), whose mean over the classes is intra-FID. Generated features are gathered across ranks."""

    full_state_update = False

    def __init__(self, real: Tensor, real_labels: Tensor, num_classes: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        real, real_labels = real.cpu(), real_labels.cpu()
        self.real_stats = {
            c: gaussian_statistics(real[real_labels == c])
            for c in range(num_classes)
            if int((real_labels == c).sum()) >= 2
        }
        self.add_state("feats", [], dist_reduce_fx="cat")
        self.add_state("labels", [], dist_reduce_fx="cat")

    def update(self, features: Tensor, labels: Tensor) -> None:
        self.feats.append(features)
        self.labels.append(labels.to(features.device))

    def compute(self) -> Tensor:
        feats = torch.cat(self.feats) if isinstance(self.feats, list) else self.feats
        labels = torch.cat(self.labels) if isinstance(self.labels, list) else self.labels
        feats, labels = feats.cpu(), labels.cpu()
        out = torch.full((self.num_classes,), float("nan"), dtype=torch.float64)
        for c, (mu_real, sigma_real) in self.real_stats.items():
            mine = feats[labels == c]
            if len(mine) >= 2:
                out[c] = frechet_distance(*gaussian_statistics(mine), mu_real, sigma_real)
        return out


@dataclass
class RealHoldout:
    """The real labelled data of the classification accuracy score: uint8 images, labels, the indices
    of the classifier's training and held-out shares, its spec, and the accuracy (on the held-out
    share) of that classifier trained on the real training share."""

    images: Tensor
    labels: Tensor
    train: Tensor
    test: Tensor
    spec: ClassifierSpec
    real_accuracy: float
    weights_sha256: str


def classification_accuracy_score(
    sample: Callable[[Tensor, Tensor], Tensor],
    z_dim: int,
    real: RealHoldout,
    seed: int,
    batch_size: int,
    device: torch.device,
    truncation: float | None = None,
) -> float:
    """Train the metrics classifier (same spec, same steps) on generated samples only — as many as the
    real training share, with its labels — and return its accuracy on the real held-out share.

    ``sample(z, y)`` is the conditional generator; the latents are fixed by ``seed`` (and truncated to
    [-ψ, ψ] with ``truncation`` ψ)."""
    labels = real.labels[real.train]
    z = truncated_normal(len(labels), z_dim, truncation, torch.Generator().manual_seed(seed))
    fakes = []
    for zb, yb in zip(z.split(batch_size), labels.split(batch_size), strict=True):
        fakes.append(to_uint8(sample(zb.to(device), yb.to(device))).cpu())
    with torch.enable_grad():
        net = train_classifier(torch.cat(fakes), labels, real.spec, device)
    return accuracy(net, real.images[real.test], real.labels[real.test], device)
