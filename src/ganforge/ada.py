"""Adaptive discriminator augmentation, ADA (Karras et al. 2020, "Training GANs with limited data").

Every image D sees (real and fake, in D's and in G's update) goes through a differentiable pipeline in
which each transform is applied to each sample with probability p. p follows the overfitting heuristic
r_t = E[sign(D(x_real) - boundary)]: every ``interval`` D updates it moves by
sign(r_t - target) · images / (kimg · 1000), so that it can go from 0 to 1 in ``kimg`` thousand real
images, clamped to [0, 1].

Implemented groups (the paper's Appendix B, with its parameter distributions):
- ``blit`` (pixel blitting): x-flip (i ~ U{0, 1}), 90° rotations (i ~ U{0, 3}), integer translation
  (t ~ U[-1/8, 1/8]² of the size, rounded to whole pixels, reflection padding);
- ``color``: brightness (b ~ N(0, 0.2²)), contrast (c ~ lnN(0, (0.5 ln 2)²)), luma flip (i ~ U{0, 1}),
  hue rotation (θ ~ U[-π, π], RGB only) and saturation (s ~ lnN(0, (ln 2)²)), one affine colour map per
  sample applied to the pixel values in [-1, 1]. With one channel the luma axis is the only one: hue
  and saturation leave grey images unchanged and the luma flip negates them.
The paper's geometric (non-integer scaling, rotation, anisotropy, fractional translation), filter and
corruption groups are not implemented.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ganforge.errors import ConfigError


def _mask(x: Tensor, p: Tensor | float) -> Tensor:
    """Per sample, whether a transform is applied (probability ``p``), shape (B,)."""
    return torch.rand(x.shape[0], device=x.device) < p


def xflip(x: Tensor, p: Tensor | float) -> Tensor:
    """Mirror each sample left-right, i ~ U{0, 1}, drawn with probability ``p`` (else i = 0)."""
    flip = _mask(x, p) & (torch.randint(0, 2, (x.shape[0],), device=x.device) == 1)
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


def rotate90(x: Tensor, p: Tensor | float) -> Tensor:
    """Rotate each (square) sample by i·90°, i ~ U{0, 3}, drawn with probability ``p`` (else i = 0)."""
    b = x.shape[0]
    k = torch.randint(0, 4, (b,), device=x.device) * _mask(x, p)
    turns = torch.stack([torch.rot90(x, i, dims=(2, 3)) for i in range(4)])  # (4, B, C, H, W)
    return turns[k, torch.arange(b, device=x.device)]


def _reflect(index: Tensor, size: int) -> Tensor:
    """Indices outside [0, size) mirrored back inside (reflection without repeating the edge)."""
    index = index.abs()
    return (size - 1) - ((size - 1) - index).abs()


def translate(x: Tensor, p: Tensor | float, ratio: float = 0.125) -> Tensor:
    """Shift each sample by round(t · size) whole pixels, t ~ U[-ratio, ratio]² drawn with probability
    ``p`` (else 0), filling from the mirrored image (reflection padding, as the paper)."""
    b, _, h, w = x.shape
    applied = _mask(x, p).view(b, 1, 1)
    t = (torch.rand(2, b, 1, 1, device=x.device) * 2 - 1) * ratio
    dy = torch.round(t[0] * h).long() * applied
    dx = torch.round(t[1] * w).long() * applied
    rows = _reflect(torch.arange(h, device=x.device).view(1, h, 1) - dy, h).expand(b, h, w)
    cols = _reflect(torch.arange(w, device=x.device).view(1, 1, w) - dx, w).expand(b, h, w)
    index = torch.arange(b, device=x.device).view(b, 1, 1).expand(b, h, w)
    return x.permute(0, 2, 3, 1)[index, rows, cols].permute(0, 3, 1, 2)


def _draw(x: Tensor, p: Tensor | float, values: Tensor, identity: float) -> Tensor:
    """``values`` (one per sample) where the transform is drawn (probability ``p``), else ``identity``."""
    return torch.where(_mask(x, p), values, torch.full_like(values, identity))


def color(x: Tensor, p: Tensor | float) -> Tensor:
    """Brightness, contrast, luma flip, hue rotation (3 channels) and saturation, each drawn per sample
    with probability ``p``, composed into one affine map A·x + t of the channels (the paper's order)."""
    b, c = x.shape[:2]
    dev, dtype = x.device, x.dtype
    eye = torch.eye(c, device=dev, dtype=dtype).expand(b, c, c)
    v = torch.full((c, 1), c**-0.5, device=dev, dtype=dtype)  # the luma axis
    luma = v @ v.T  # projection on it
    bright = _draw(x, p, torch.randn(b, device=dev, dtype=dtype) * 0.2, 0.0)
    contrast = _draw(x, p, torch.exp(torch.randn(b, device=dev, dtype=dtype) * (0.5 * math.log(2))), 1.0)
    flip = _draw(x, p, torch.randint(0, 2, (b,), device=dev).to(dtype), 0.0)
    theta = _draw(x, p, (torch.rand(b, device=dev, dtype=dtype) * 2 - 1) * math.pi, 0.0)
    sat = _draw(x, p, torch.exp(torch.randn(b, device=dev, dtype=dtype) * math.log(2)), 1.0)

    shift = bright.view(b, 1).expand(b, c)  # brightness: x + b on every channel
    matrix = contrast.view(b, 1, 1) * eye  # contrast: scale about 0
    shift = contrast.view(b, 1) * shift
    flip_m = eye - 2 * flip.view(b, 1, 1) * luma  # luma flip: mirror along the luma axis
    matrix, shift = flip_m @ matrix, (flip_m @ shift.unsqueeze(2)).squeeze(2)
    if c == 3:  # hue: rotate about the luma axis (Rodrigues)
        cross = torch.tensor([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]], device=dev, dtype=dtype)
        cross = cross * c**-0.5  # [v]_x for v = (1, 1, 1)/√3
        cos, sin = theta.cos().view(b, 1, 1), theta.sin().view(b, 1, 1)
        rot = cos * eye + sin * cross + (1 - cos) * luma
        matrix, shift = rot @ matrix, (rot @ shift.unsqueeze(2)).squeeze(2)
    sat_m = luma + (eye - luma) * sat.view(b, 1, 1)  # saturation: scale off the luma axis
    matrix, shift = sat_m @ matrix, (sat_m @ shift.unsqueeze(2)).squeeze(2)
    out = torch.einsum("bij,bjhw->bihw", matrix, x)
    return out + shift.view(b, c, 1, 1)


GROUPS: dict[str, tuple[Callable[[Tensor, Any], Tensor], ...]] = {
    "blit": (xflip, rotate90, translate),
    "color": (color,),
}

# the real/fake boundary of D's output under each D loss (the "sign" of r_t is taken about it)
BOUNDARIES = {"minimax_d": 0.0, "nonsaturating_d": 0.0, "hinge_d": 0.0, "lsgan_d": 0.5}


def augment(x: Tensor, p: Tensor | float, groups: Sequence[str] = ("blit", "color")) -> Tensor:
    """``x`` through the transforms of ``groups`` in order, each applied per sample with probability ``p``."""
    for group in groups:
        for transform in GROUPS[group]:
            x = transform(x, p)
    return x.contiguous()


class AdaptiveAugment(nn.Module):
    """ADA's augmentation probability p and its controller (see the module docstring).

    ``p`` and the last r_t are buffers; the r_t accumulator (sum of signs, images, D updates since the
    last adjustment) is the module's extra state: all three are saved in checkpoints, so a resumed run
    goes on with the same p (the reference code starts again from p = 0). Everything stays on the
    device: no host sync per step. Under DDP the accumulators are summed over the ranks when p moves.
    """

    def __init__(
        self,
        target: float = 0.6,
        interval: int = 4,
        kimg: float = 500,
        groups: Sequence[str] = ("blit", "color"),
        p: float = 0.0,
        boundary: float = 0.0,
    ) -> None:
        super().__init__()
        groups = [str(g) for g in groups]
        unknown = [g for g in groups if g not in GROUPS]
        if unknown or not groups:
            raise ConfigError(f"train.ada.groups: unknown {unknown}; choose from {sorted(GROUPS)}")
        if not 0.0 <= target <= 1.0 or interval < 1 or kimg <= 0 or not 0.0 <= p <= 1.0:
            raise ConfigError(
                "train.ada needs target and p in [0, 1], interval >= 1 and kimg > 0, "
                f"got target={target}, p={p}, interval={interval}, kimg={kimg}"
            )
        self.target, self.interval, self.kimg = float(target), int(interval), float(kimg)
        self.groups, self.boundary = groups, float(boundary)
        self.register_buffer("p", torch.tensor(float(p)))
        self.register_buffer("rt", torch.tensor(0.0))  # r_t of the last adjustment (logged)
        # not a buffer: DDP broadcasts rank 0's buffers, and each rank accumulates its own share
        self.acc = torch.zeros(2)  # since the last adjustment: sum of sign(D(x_real)), real images
        self.pending = 0  # D updates since the last adjustment

    def forward(self, x: Tensor) -> Tensor:
        return augment(x, self.p, self.groups)

    def observe(self, real_logits: Tensor) -> None:
        """Accumulate sign(D(x_real)) of one D update; every ``interval`` updates, move p."""
        logits = real_logits.detach().float()
        if self.acc.device != logits.device:
            self.acc = self.acc.to(logits.device)
        signs = (logits - self.boundary).sign().reshape(logits.shape[0], -1).mean(1)
        self.acc += torch.stack([signs.sum(), torch.tensor(float(signs.shape[0]), device=logits.device)])
        self.pending += 1
        if self.pending >= self.interval:
            self.adjust()

    def adjust(self) -> None:
        """p ← clamp(p + sign(r_t - target) · images / (kimg · 1000), 0, 1), then reset the accumulator."""
        acc = self.acc
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            acc = acc.clone()
            torch.distributed.all_reduce(acc)
        self.rt.copy_(acc[0] / acc[1].clamp(min=1.0))
        step = torch.sign(self.rt - self.target) * acc[1] / (self.kimg * 1000)
        self.p.copy_((self.p + step).clamp(0.0, 1.0))
        self.acc.zero_()
        self.pending = 0

    def get_extra_state(self) -> dict[str, Any]:
        return {"acc": self.acc.detach().cpu().clone(), "pending": self.pending}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.acc = state["acc"].to(self.p.device).float().clone()
        self.pending = int(state["pending"])

    def per_rank_state(self) -> dict[str, Any]:
        """Each rank's share of the accumulator since the last adjustment, saved per rank (GANModule):
        the state dict holds rank 0's alone, and the all_reduce at the next adjustment needs each one."""
        return self.get_extra_state()

    def load_per_rank_state(self, state: dict[str, Any] | None) -> None:
        if state is None:  # a rank without a saved share (another world size): start it at zero
            state = {"acc": torch.zeros(2), "pending": self.pending}
        self.set_extra_state(state)

    def extra_repr(self) -> str:
        return f"target={self.target}, interval={self.interval}, kimg={self.kimg}, groups={self.groups}"


def check_ada(data_shape: Sequence[int], task: str, d_loss: str, groups: Sequence[str]) -> float:
    """Refuse what ADA does not apply to, in one line; returns the loss's real/fake boundary of D."""
    if len(data_shape) != 3:
        raise ConfigError(f"train.ada augments images, but the data has shape {tuple(data_shape)}")
    if task != "generation":
        raise ConfigError(
            f"train.ada is for task=generation: with task={task} D judges an image with its source, "
            "which one random transform per sample would have to keep aligned (not implemented)"
        )
    if "blit" in groups and data_shape[1] != data_shape[2]:
        raise ConfigError(
            f"train.ada.groups=blit rotates by 90°: needs square images, not {tuple(data_shape)}"
        )
    if d_loss not in BOUNDARIES:
        raise ConfigError(
            f"train.ada's r_t = E[sign(D(x_real))] needs a D with a fixed real/fake boundary "
            f"({', '.join(sorted(BOUNDARIES))}); {d_loss}'s D output is shift-invariant or unknown"
        )
    return BOUNDARIES[d_loss]
