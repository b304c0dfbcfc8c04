"""A label-free feature network for FID on unlabelled data: a small CNN trained once per data set by
contrastive learning on the reference images themselves (Chen et al. 2020, "A simple framework for
contrastive learning of visual representations", SimCLR), cached like the metrics classifier.

Its augmentations suit small images and keep what FID must see: random resized crops (area 35–100 %),
horizontal flips, colour jitter and random grayscale, but no blur and no noise, so that blurred or noisy
images do not land where the sharp, clean ones do."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.checkpoint_file import file_lock
from ganforge.metrics.classifier import write_record

log = logging.getLogger(__name__)

MAX_SIZE = 64  # the largest side the network works at (larger images are resized down to it)


@dataclass(frozen=True)
class SelfSupSpec:
    """What defines the self-supervised extractor (its cache key together with the data fingerprint)."""

    in_channels: int
    size: int  # side of the images the network sees (the data's, or MAX_SIZE for larger images)
    width: int = 16  # 4·width features: few dimensions keep FID's bias small on small held-out sets
    proj_dim: int = 64
    steps: int = 300
    batch_size: int = 128
    lr: float = 2e-3
    temperature: float = 0.2
    crop_scale: float = 0.35  # smallest crop area, a share of the image
    jitter: float = 0.4  # colour jitter strength (brightness, contrast, saturation)
    max_items: int = 20000  # reference images it is trained on (a fixed random subset when more)
    seed: int = 0

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def input_size(resolution: int) -> int:
    """The side the network works at for images of ``resolution`` px: their own, at most MAX_SIZE."""
    return min(int(resolution), MAX_SIZE)


def resize_uint8(x: Tensor, size: int) -> Tensor:
    """uint8 images (N, C, H, W) at ``size`` px: unchanged at that size, else resized (bilinear,
    antialiased when shrinking)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    y = F.interpolate(x.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return y.round_().clamp_(0, 255).to(torch.uint8)


def _block(cin: int, cout: int, stride: int) -> list[nn.Module]:
    kernel = 4 if stride == 2 else 3
    return [nn.Conv2d(cin, cout, kernel, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SelfSupNet(nn.Module):
    """Encoder (five conv blocks, two of them stride 2, global average pooling: 4·width features) and the
    projection head of SimCLR (a two-layer MLP), used only in training. Takes images at ``spec.size``."""

    def __init__(self, in_channels: int, width: int = 16, proj_dim: int = 64) -> None:
        super().__init__()
        w = width
        self.encoder = nn.Sequential(
            *_block(in_channels, w, 1),
            *_block(w, 2 * w, 2),
            *_block(2 * w, 2 * w, 1),
            *_block(2 * w, 4 * w, 2),
            *_block(4 * w, 4 * w, 1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.num_features = 4 * w
        self.head = nn.Sequential(nn.Linear(4 * w, 4 * w), nn.ReLU(inplace=True), nn.Linear(4 * w, proj_dim))

    def features(self, x: Tensor) -> Tensor:
        """uint8 images, or floats in [-1, 1] → features (N, 4·width)."""
        if x.dtype == torch.uint8:
            x = x.float().div(127.5).sub(1.0)
        return self.encoder(x)


def random_views(x: Tensor, spec: SelfSupSpec, gen: torch.Generator) -> Tensor:
    """One augmented view of each uint8 image (N, C, H, W) as floats in [-1, 1]: a random resized crop
    (area ``crop_scale``–1, aspect 3/4–4/3) flipped half the time, then colour jitter (probability 0.8)
    and, for RGB, grayscale (0.2), every draw from ``gen``: the views are a function of the seed."""
    n, c = x.shape[:2]
    area = torch.empty(n).uniform_(spec.crop_scale, 1.0, generator=gen)
    ratio = torch.exp(torch.empty(n).uniform_(math.log(3 / 4), math.log(4 / 3), generator=gen))
    sx, sy = (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)
    tx = (torch.rand(n, generator=gen) * 2 - 1) * (1 - sx)
    ty = (torch.rand(n, generator=gen) * 2 - 1) * (1 - sy)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx * flip, tx, sy, ty
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    v = F.grid_sample(x.float() / 255, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    s = spec.jitter
    on = (torch.rand(n, 1, 1, 1, generator=gen) < 0.8).to(v)
    bright = 1 + on * torch.empty(n, 1, 1, 1).uniform_(-s, s, generator=gen).to(v)
    contrast = 1 + on * torch.empty(n, 1, 1, 1).uniform_(-s, s, generator=gen).to(v)
    v = v * bright
    mean = v.mean(dim=(1, 2, 3), keepdim=True)
    v = (v - mean) * contrast + mean
    if c == 3:
        luma = torch.tensor([0.299, 0.587, 0.114], device=v.device).view(1, 3, 1, 1)
        gray = (v * luma).sum(1, keepdim=True)
        saturation = 1 + on * torch.empty(n, 1, 1, 1).uniform_(-s, s, generator=gen).to(v)
        saturation = saturation * (torch.rand(n, 1, 1, 1, generator=gen) >= 0.2).to(v)  # 0: grayscale
        v = gray + (v - gray) * saturation
    return v.clamp(0, 1).mul(2).sub(1)


def contrastive_loss(z1: Tensor, z2: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """SimCLR's NT-Xent loss of two views' projections (each view's positive is the other view of its
    image, the other 2N − 2 projections its negatives) and the share of views whose nearest projection is
    their positive (top-1: how well the network tells the images apart)."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    n = len(z1)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    top1 = (sim.argmax(1) == target).float().mean()
    return F.cross_entropy(sim, target), top1


def train_selfsup(
    images: Tensor, spec: SelfSupSpec, device: torch.device | str = "cpu"
) -> tuple[SelfSupNet, float]:
    """A :class:`SelfSupNet` trained on uint8 ``images`` (at ``spec.size``) for ``spec.steps`` steps (Adam,
    one-cycle learning rate), the same weights for the same seed and data; returned in eval mode with the
    top-1 of the last tenth of the steps."""
    gen = torch.Generator().manual_seed(spec.seed + 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        net = SelfSupNet(spec.in_channels, spec.width, spec.proj_dim).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=spec.lr, weight_decay=1e-6)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=spec.lr, total_steps=spec.steps)
    batch = min(spec.batch_size, len(images))
    tail: list[Tensor] = []
    net.train()
    for step in range(spec.steps):
        x = images[torch.randint(len(images), (batch,), generator=gen)].to(device)
        v1, v2 = random_views(x, spec, gen), random_views(x, spec, gen)  # drawn on the CPU: any device
        z = net.head(net.features(torch.cat([v1, v2])))
        loss, top1 = contrastive_loss(z[:batch], z[batch:], spec.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step >= spec.steps - max(1, spec.steps // 10):
            tail.append(top1.detach())
    return net.eval().requires_grad_(False), float(torch.stack(tail).mean())


def save_selfsup(net: SelfSupNet, spec: SelfSupSpec, record: dict[str, Any], path: Path) -> None:
    """Weights plus the spec that rebuilds them and what training reported (nothing that varies from run
    to run: the same data and spec give the same file, so the same hash in the protocol tags)."""
    state = {k: v.cpu() for k, v in net.state_dict().items()}
    write_record({**record, "spec": asdict(spec), "state_dict": state}, path)


def load_selfsup(path: str | Path) -> tuple[SelfSupNet, dict[str, Any]]:
    """The network stored at ``path`` (eval mode) and its record (spec, top-1, images)."""
    record = torch.load(path, map_location="cpu", weights_only=True)
    spec = record["spec"]
    net = SelfSupNet(spec["in_channels"], spec["width"], spec["proj_dim"])
    net.load_state_dict(record["state_dict"])
    return net.eval().requires_grad_(False), record


def cached_selfsup(
    load: Callable[[], Tensor],
    spec: SelfSupSpec,
    data_fingerprint: str,
    cache_dir: str | Path,
    device: torch.device | str = "cpu",
) -> tuple[Path, dict[str, Any], bool]:
    """Path of the extractor for this data and spec, trained on first use on ``load()``'s uint8 images
    (at ``spec.size``). Returns (path, its record, whether it came from the cache)."""
    path = Path(cache_dir).expanduser() / "selfsup" / f"{data_fingerprint}-{spec.digest()}.pt"
    with file_lock(path):  # processes starting together: one trains, the others wait and read it
        if path.is_file():
            return path, load_selfsup(path)[1], True
        start = time.time()
        images = load()
        log.info(
            "metrics: training the self-supervised extractor on %d reference images (%d steps, once per "
            "data set; cached at %s)",
            len(images),
            spec.steps,
            path,
        )
        net, top1 = train_selfsup(images, spec, device)
        record = {"top1": top1, "num_images": len(images)}
        save_selfsup(net, spec, record, path)
    log.info(
        "metrics: trained the self-supervised extractor in %.1f s: top-1 %.3f", time.time() - start, top1
    )
    return path, record, False
