"""What the discriminator sees: DiffAugment and instance noise, both differentiable in their input."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ganforge.errors import ConfigError


def _rand(x: Tensor) -> Tensor:
    """One U[0, 1) value per sample, shaped to broadcast over (C, H, W)."""
    return torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype)


def color(x: Tensor) -> Tensor:
    """Random brightness (±0.5), saturation (×[0, 2]) and contrast (×[0.5, 1.5]) per sample."""
    x = x + (_rand(x) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_rand(x) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(x) + 0.5) + mean


def translation(x: Tensor, ratio: float = 0.125) -> Tensor:
    """Shift each sample by whole pixels, up to ``ratio`` of its size in each direction, zero fill."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (b, 1, 1), device=x.device)
    dx = torch.randint(-sw, sw + 1, (b, 1, 1), device=x.device)
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + dy + sh).expand(b, h, w)
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + dx + sw).expand(b, h, w)
    index = torch.arange(b, device=x.device).view(b, 1, 1).expand(b, h, w)
    padded = F.pad(x, [sw, sw, sh, sh]).permute(0, 2, 3, 1)  # (B, H', W', C)
    return padded[index, rows, cols].permute(0, 3, 1, 2)


def cutout(x: Tensor, ratio: float = 0.5) -> Tensor:
    """Zero one square of ``ratio`` of the image size per sample, at a random place (may overlap the edge)."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h + 1 - ch % 2, (b, 1, 1), device=x.device) - ch // 2
    left = torch.randint(0, w + 1 - cw % 2, (b, 1, 1), device=x.device) - cw // 2
    r = torch.arange(h, device=x.device).view(1, h, 1)
    c = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (r >= top) & (r < top + ch) & (c >= left) & (c < left + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


POLICIES = {"color": color, "translation": translation, "cutout": cutout}


class DiffAugment:
    """DiffAugment (Zhao et al. 2020): the same differentiable augmentations on real and fake batches.

    ``policy`` names the transforms in order (``color``, ``translation``, ``cutout``), as a list
    or a comma-separated string. Each sample gets its own random parameters.
    """

    def __init__(self, policy: str | Sequence[str], data_shape: Sequence[int] | None = None) -> None:
        names = (
            [p.strip() for p in policy.split(",")] if isinstance(policy, str) else [str(p) for p in policy]
        )
        unknown = [n for n in names if n not in POLICIES]
        if unknown or not names:
            raise ConfigError(f"train.diffaugment: unknown {unknown}; choose from {sorted(POLICIES)}")
        if data_shape is not None and len(data_shape) != 3:
            raise ConfigError(
                f"train.diffaugment needs image data, but the data has shape {tuple(data_shape)}"
            )
        self.names = names

    def __call__(self, x: Tensor) -> Tensor:
        for name in self.names:
            x = POLICIES[name](x)
        return x.contiguous()


class InstanceNoise:
    """Instance noise (Sønderby et al. 2016; Arjovsky & Bottou 2017): x + N(0, σ_t²), σ_t → 0 linearly.

    σ_t = ``std`` · max(0, 1 - t / ``anneal_steps``) at generator step t.
    """

    def __init__(self, std: float, anneal_steps: int) -> None:
        if std < 0 or anneal_steps <= 0:
            raise ConfigError(
                f"train.instance_noise needs std >= 0 and anneal_steps > 0, got {std} and {anneal_steps}"
            )
        self.std, self.anneal_steps = float(std), int(anneal_steps)

    def std_at(self, step: int) -> float:
        return self.std * max(0.0, 1.0 - step / self.anneal_steps)

    def __call__(self, x: Tensor, step: int) -> Tensor:
        std = self.std_at(step)
        return x + std * torch.randn_like(x) if std > 0 else x
