"""Pairs synthesized on the fly from any image dataset: G restores a degraded image to the clean one.

``data=degrade data/source=cifar10``: the clean images (targets) are those of the source data
module; the source (G's input) is a degraded copy: bicubic-downsampled (``super_resolution``),
noisy (``denoise``), grayscale (``colorize``) or with holes (``inpaint``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torch.utils.data import Dataset

from ganforge.data.base import GANDataModule
from ganforge.data.translation import HELD_OUT_SEED, PairedDataModule, check_val_fraction, held_out_split
from ganforge.errors import ConfigError
from ganforge.seeding import mix_seed

DEGRADATIONS = ("super_resolution", "denoise", "colorize", "inpaint")
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as PIL's convert("L")


@dataclass(frozen=True)
class Degradation:
    """A batch of clean images (N, C, H, W) in [-1, 1] -> their degraded copies, deterministically.

    The random ones (``denoise``, ``inpaint``) draw item ``n``'s noise or holes from a generator
    seeded by ``seeds[n]``, so an item's degradation does not depend on the batch it comes in.
    """

    kind: str
    scale: int = 4
    noise_std: float = 0.2
    holes: int = 1
    hole_min: float = 0.25
    hole_max: float = 0.5

    def __call__(self, x: Tensor, seeds: Sequence[int]) -> Tensor:
        x = x.float()
        if self.kind == "super_resolution":
            return self.super_resolution(x)
        if self.kind == "colorize":
            return self.grayscale(x)
        if self.kind == "denoise":
            noise = torch.empty_like(x)
            gen = torch.Generator()
            for n, seed in enumerate(seeds):
                gen.manual_seed(seed)
                torch.randn(x.shape[1:], generator=gen, out=noise[n])
            return x + self.noise_std * noise  # not clamped: zero-mean noise, even near black and white
        if self.kind == "inpaint":
            return self.inpaint(x, seeds)
        raise ConfigError(f"data.degradation must be one of {', '.join(DEGRADATIONS)}, got {self.kind!r}.")

    def super_resolution(self, x: Tensor) -> Tensor:
        """Bicubic (antialiased) down by ``scale``, then bicubic up to full size; both clamped to [-1, 1]."""
        h, w = x.shape[-2:]
        low = F.interpolate(x, size=(h // self.scale, w // self.scale), mode="bicubic", antialias=True)
        return F.interpolate(low.clamp(-1, 1), size=(h, w), mode="bicubic").clamp(-1, 1)

    @staticmethod
    def grayscale(x: Tensor) -> Tensor:
        """Luma 0.299 R + 0.587 G + 0.114 B, one channel."""
        weights = torch.tensor(LUMA, dtype=x.dtype).view(1, 3, 1, 1)
        return (x * weights).sum(1, keepdim=True)

    def inpaint(self, x: Tensor, seeds: Sequence[int]) -> Tensor:
        """``holes`` rectangles per image, sides uniform in [hole_min, hole_max] x size, set to 0."""
        out = x.clone()
        h, w = x.shape[-2:]
        gen = torch.Generator()
        for n, seed in enumerate(seeds):
            gen.manual_seed(seed)
            u = torch.rand(self.holes, 4, generator=gen, dtype=torch.float64).tolist()
            for side_h, side_w, top, left in u:
                hh = round(h * (self.hole_min + (self.hole_max - self.hole_min) * side_h))
                ww = round(w * (self.hole_min + (self.hole_max - self.hole_min) * side_w))
                y0, x0 = int(top * (h - hh + 1)), int(left * (w - ww + 1))
                out[n, :, y0 : y0 + hh, x0 : x0 + ww] = 0.0
        return out


class DegradedDataset(Dataset):
    """``(degraded, clean, label)`` batches of the source items ``indices[v % len]``.

    ``held_out=False``: ``v`` is a virtual index of :class:`~ganforge.data.translation.EpochIndexSampler`
    and seeds the degradation (``mix_seed(seed, v)``: new noise every epoch). ``held_out=True``:
    ``v`` indexes the held-out split and the degradation is seeded by ``mix_seed(0, source index)``,
    the same for every run.
    """

    def __init__(
        self, source: GANDataModule, indices: list[int], degradation: Degradation, seed: int, held_out: bool
    ) -> None:
        self.source = source
        self.indices = list(indices)
        self.degradation = degradation
        self.seed = seed
        self.held_out = held_out

    def __len__(self) -> int:
        return len(self.indices)

    def __getitems__(self, vs: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
        n = len(self.indices)
        idx = [self.indices[int(v) % n] for v in vs]
        clean, labels = self.source.items(idx)
        clean = clean.float()
        if self.held_out:
            seeds = [mix_seed(HELD_OUT_SEED, i) for i in idx]
        else:
            seeds = [mix_seed(self.seed, int(v)) for v in vs]
        return self.degradation(clean, seeds), clean, torch.as_tensor(labels, dtype=torch.long)

    def __getitem__(self, v: int) -> tuple[Tensor, Tensor, Tensor]:
        src, tgt, label = self.__getitems__([v])
        return src[0], tgt[0], label[0]


def _source_name(source: GANDataModule) -> str:
    return type(source).__name__.removesuffix("DataModule")


class DegradedDataModule(PairedDataModule):
    """Pairs ``(degraded, clean, label)`` made from the images of ``source``.

    ``source``: a data module, or its config (built here, with ``resolution`` when that is set;
    its batch, worker and seed settings are unused: this module's own apply). ``degradation``:

    - ``super_resolution``: bicubic (antialiased) down by ``scale``, then bicubic up to full size:
      G maps a blurry full-size image to a sharp one (same size in and out); clamped to [-1, 1].
    - ``denoise``: plus Gaussian noise of std ``noise_std`` (in [-1, 1] units), not clamped.
    - ``colorize``: luma (0.299 R + 0.587 G + 0.114 B), 1 channel, of RGB data.
    - ``inpaint``: ``holes`` rectangles with sides in [``hole_min``, ``hole_max``] x the size, set to 0.

    The held-out split is the last ``val_fraction`` of a permutation of the source's items fixed by
    seed 0, with degradations fixed likewise: the same pairs for every run. Training uses the rest,
    degraded anew every epoch by generators seeded from ``(seed, stream position)``.
    """

    def __init__(
        self,
        source: GANDataModule | DictConfig | dict,
        degradation: str = "super_resolution",
        resolution: int | None = None,
        scale: int = 4,
        noise_std: float = 0.2,
        holes: int = 1,
        hole_min: float = 0.25,
        hole_max: float = 0.5,
        val_fraction: float = 0.1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source = self._build_source(source, resolution)
        if degradation not in DEGRADATIONS:
            raise ConfigError(
                f"data.degradation must be one of {', '.join(DEGRADATIONS)}, got {degradation!r}."
            )
        self.val_fraction = check_val_fraction(val_fraction)
        self.degradation = Degradation(
            str(degradation), int(scale), float(noise_std), int(holes), float(hole_min), float(hole_max)
        )
        self._validate(scale, holes)
        channels, height, width = self.source.data_shape
        self.data_shape = (channels, height, width)
        self.source_shape = (1, height, width) if degradation == "colorize" else self.data_shape
        self.resolution = height
        self._split: tuple[list[int], list[int]] | None = None
        self._held_out: DegradedDataset | None = None

    @staticmethod
    def _build_source(source: Any, resolution: int | None) -> GANDataModule:
        if isinstance(source, GANDataModule):
            if resolution is not None and tuple(source.data_shape[-2:]) != (int(resolution),) * 2:
                raise ConfigError(
                    f"data.resolution={resolution} differs from the given source's size "
                    f"{tuple(source.data_shape)}; build the source at that resolution."
                )
            return source
        if not isinstance(source, (DictConfig, dict)):
            raise ConfigError(
                f"data.source must be a data config or a data module, got {type(source).__name__}."
            )
        from ganforge.config import make  # here: ganforge.config imports nothing of ganforge.data

        cfg = OmegaConf.create(source) if isinstance(source, dict) else source
        missing = [str(k) for k in cfg if OmegaConf.is_missing(cfg, k)]
        if missing:
            keys = ", ".join(f"data.source.{k}" for k in missing)
            raise ConfigError(
                f"{keys}: mandatory for this data/source, set it (e.g. data.source.path=/path/to/images)."
            )
        overrides = {} if resolution is None else {"resolution": int(resolution)}
        built = make(cfg, **overrides)
        if not isinstance(built, GANDataModule):
            raise ConfigError(f"data.source must build a ganforge data module, got {type(built).__name__}.")
        return built

    def _validate(self, scale: Any, holes: Any) -> None:
        """ConfigError when the degradation cannot work on the source's images."""
        shape = tuple(self.source.data_shape)
        name = _source_name(self.source)
        if isinstance(self.source, PairedDataModule) or len(shape) != 3:
            raise ConfigError(f"data=degrade needs an image dataset as data.source; {name} gives {shape}.")
        kind, (channels, height, width) = self.degradation.kind, shape
        if kind == "colorize" and channels != 3:
            raise ConfigError(
                f"data.degradation=colorize needs RGB data; {name} has {channels} channel"
                f"{'s' if channels != 1 else ''}."
            )
        if kind == "super_resolution":
            whole = (
                isinstance(scale, (int, float)) and not isinstance(scale, bool) and float(scale).is_integer()
            )
            if not whole or int(scale) < 2 or height % int(scale) or width % int(scale):
                fits = [k for k in range(2, min(height, width) + 1) if height % k == 0 and width % k == 0]
                raise ConfigError(
                    f"data.scale={scale} must be an integer >= 2 that divides the resolution of "
                    f"{name} ({height}x{width}); e.g. data.scale={fits[0] if fits else 2}."
                )
        if kind == "denoise" and not self.degradation.noise_std >= 0:
            raise ConfigError(f"data.noise_std must be >= 0, got {self.degradation.noise_std}.")
        if kind == "inpaint":
            lo, hi = self.degradation.hole_min, self.degradation.hole_max
            if isinstance(holes, bool) or int(holes) < 1 or int(holes) != holes:
                raise ConfigError(f"data.holes must be a positive integer, got {holes}.")
            if not 0.0 < lo <= hi <= 1.0:
                raise ConfigError(
                    f"data.hole_min={lo} and data.hole_max={hi} must satisfy 0 < hole_min <= hole_max <= 1 "
                    f"(hole sides as fractions of the image size)."
                )

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        """The source's classes: labels pass through."""
        return self.source.num_classes

    def check(self) -> None:
        """The source's checks, then the degradation's against the source's images."""
        self.source.check()
        self._validate(self.degradation.scale, self.degradation.holes)

    def prepare_data(self) -> None:
        self.source.prepare_data()

    # --- splits ---------------------------------------------------------------------------------
    def split(self) -> tuple[list[int], list[int]]:
        """(training, held-out) indices into the source's items, fixed by seed 0 (sorted)."""
        if self._split is None:
            self._split = held_out_split(self.source.num_items(), self.val_fraction)
        return self._split

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None:
            return
        self.source.setup(stage)
        train, held = self.split()
        self.dataset = DegradedDataset(self.source, train, self.degradation, self.seed, held_out=False)
        self._held_out = DegradedDataset(self.source, held, self.degradation, self.seed, held_out=True)

    def num_items(self) -> int:
        return len(self.split()[0])

    def items(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        train = self.split()[0]
        return self.source.items([train[int(i)] for i in indices])

    def num_val_items(self) -> int:
        return len(self.split()[1])

    def val_items(self, indices: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
        if self._held_out is None:
            self.setup("fit")
        assert self._held_out is not None
        return self._held_out.__getitems__(self._check_val_indices(indices))
