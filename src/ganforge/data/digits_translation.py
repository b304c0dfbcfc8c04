"""Digits translation, an unpaired benchmark with a known answer (``data=digits_translation``), no
download: scikit-learn's digits (A) and digits under a fixed :func:`transform` (B), from disjoint
halves of the data, with the ground truth ``transform(a)`` of every held-out ``a``."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ganforge.data.translation import (
    HELD_OUT_SEED,
    Domain,
    TensorDomain,
    UnpairedDataModule,
    check_val_fraction,
    split_off,
)
from ganforge.errors import ConfigError

INK = (1.0, 0.55, 0.1)  # RGB in [0, 1] of domain B's strokes: an orange ink
PAPER = (0.05, 0.05, 0.2)  # RGB in [0, 1] of domain B's background: a dark blue paper (its blue channel
# is brighter than the ink's: there the digit is inverted)


def stroke_kernel(size: int) -> int:
    """Side of :func:`transform`'s dilation for ``size`` px images: 3 up to 31 px, 5 at 32, 9 at 64
    (about the same thickening relative to the digit at every resolution)."""
    return 2 * max(1, size // 16) + 1


def transform(x: Tensor) -> Tensor:
    """Domain B of ``data=digits_translation``: the fixed map T from a digit image to its B version.

    ``x``: (N, C, H, W) or (C, H, W) in [-1, 1], light strokes on a dark background (domain A: a
    grayscale digit, any number of channels). T:

    1. stroke intensity ``s = (mean over channels of x + 1) / 2``, in [0, 1];
    2. thicker strokes: ``s' = max_pool2d(s, k, stride=1, padding=k // 2)``, a k x k morphological
       dilation, ``k =`` :func:`stroke_kernel` ``(W)`` (3 at 16 px);
    3. ink on paper: ``paper * (1 - s') + ink * s'`` per RGB channel, ``ink`` = :data:`INK`,
       ``paper`` = :data:`PAPER`, then mapped to [-1, 1].

    Returns 3 channels. No translation of ``x`` matches ``T(x)``: the colours change (in the blue
    channel the strokes are darker than the paper: the digit is inverted there), and the dilation
    adds stroke pixels (more ink than any shift of the digit has).

    Dark paper, not light: with light paper (the digit inverted in every channel) CycleGAN found a
    permutation of the digit classes instead (G_AB turned 5s into 1s and 0s into 5s, cycle-consistent,
    class accuracy 0.07 after 2,000 steps); with dark paper it keeps the digit (0.9+ after 750 steps).
    """
    single = x.ndim == 3
    batch = x.unsqueeze(0) if single else x
    if batch.ndim != 4:
        raise ValueError(f"transform takes (N, C, H, W) or (C, H, W) images, got shape {tuple(x.shape)}")
    s = batch.float().mean(1, keepdim=True).add(1.0).div(2.0).clamp(0.0, 1.0)
    k = stroke_kernel(int(batch.shape[-1]))
    s = F.max_pool2d(s, k, stride=1, padding=k // 2)
    ink = torch.tensor(INK, dtype=s.dtype, device=s.device).view(1, 3, 1, 1)
    paper = torch.tensor(PAPER, dtype=s.dtype, device=s.device).view(1, 3, 1, 1)
    out = (paper * (1.0 - s) + ink * s).mul(2.0).sub(1.0)
    return out[0] if single else out


def load_digit_images(resolution: int) -> tuple[Tensor, Tensor]:
    """scikit-learn's 1,797 digits as (N, 1, R, R) floats in [-1, 1] (bilinear upsampling, as
    ``data=digits``), and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    if resolution != 8:
        images = F.interpolate(images, size=resolution, mode="bilinear", align_corners=False)
    return images.clamp(0, 1).mul(2).sub(1).contiguous(), torch.as_tensor(digits.target, dtype=torch.long)


class DigitsTranslationDataModule(UnpairedDataModule):
    """Digits (A) to ink-on-paper digits with thicker strokes (B = :func:`transform` of a digit).

    scikit-learn's bundled 1,797 8x8 digits, upsampled to ``resolution``, as 3-channel images (the
    gray repeated) so both domains share a shape. A seed-0 permutation splits the digits into two
    disjoint halves: A's images come from the first (899), B's from the second (898, T applied), so no
    pair ``(a, T(a))`` is ever seen in training. Each half holds out the last ``val_fraction`` of a
    seed-0 permutation of it (0.1: 90 + 90 held out, 809 + 808 training images). Held-out A images come
    with their ground truth ``T(a)``. Labels: the digits (``num_classes`` 10), in both domains.
    Built once in memory; no augmentation.
    """

    has_ground_truth = True

    def __init__(self, resolution: int = 16, val_fraction: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(resolution, bool) or not float(resolution).is_integer() or int(resolution) < 8:
            raise ConfigError(f"data.resolution must be an integer >= 8 (e.g. 16 or 32), got {resolution}.")
        self.resolution = int(resolution)
        self.val_fraction = check_val_fraction(val_fraction)
        self.data_shape = (3, self.resolution, self.resolution)
        self.num_classes = 10
        self._source_indices: dict[str, list[int]] | None = None

    @property
    def domain_names(self) -> tuple[str, str]:
        return ("digits", "ink on paper")

    @staticmethod
    def split(n: int, val_fraction: float) -> dict[str, list[int]]:
        """Indices into the ``n`` digits of each part: ``train_a``, ``val_a``, ``train_b``, ``val_b``."""
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(HELD_OUT_SEED)).tolist()
        half = (n + 1) // 2
        out: dict[str, list[int]] = {}
        for side, part in (("a", perm[:half]), ("b", perm[half:])):
            out[f"train_{side}"], out[f"val_{side}"] = split_off(part, None, val_fraction)
        return out

    def source_indices(self) -> dict[str, list[int]]:
        """Which of scikit-learn's digits (their order in ``load_digits()``) each part holds:
        ``train_a``, ``val_a``, ``train_b``, ``val_b``; A's and B's are disjoint."""
        if self._source_indices is None:
            self.setup("fit")
        assert self._source_indices is not None
        return {k: list(v) for k, v in self._source_indices.items()}

    def ground_truth(self, a: Tensor) -> Tensor:
        return transform(a)

    def _build(self) -> tuple[Domain, Domain, Domain, Domain]:
        images, labels = load_digit_images(self.resolution)
        self._source_indices = self.split(len(images), self.val_fraction)
        rgb = images.expand(-1, 3, -1, -1)

        def part(name: str) -> TensorDomain:
            idx = torch.as_tensor(self._source_indices[name], dtype=torch.long)  # type: ignore[index]
            x = rgb[idx]
            return TensorDomain((transform(x) if name.endswith("_b") else x).contiguous(), labels[idx])

        return part("train_a"), part("train_b"), part("val_a"), part("val_b")
