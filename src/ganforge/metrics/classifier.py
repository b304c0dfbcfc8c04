"""A small CNN trained on the dataset's own labels; its penultimate layer is the feature space
of "FID with a domain classifier" for data Inception was not made for (digits, MNIST)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.checkpoint_file import file_lock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassifierSpec:
    """What defines a classifier (its cache key together with the data fingerprint)."""

    in_channels: int
    num_classes: int
    width: int = 32
    steps: int = 500
    batch_size: int = 128
    lr: float = 1e-3
    holdout: float = 0.1
    seed: int = 0

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


class ClassifierNet(nn.Module):
    """Three conv blocks, global average pooling (4·width features), a linear head.

    Takes uint8 images (N, C·k, H, W). With ``k > 1`` groups of ``in_channels`` channels (stacked
    digits) every group is classified on its own: features are concatenated, logits are
    returned per group as (N, k, classes).
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 32) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1),
            nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 4 * width, 3, 2, 1),
            nn.BatchNorm2d(4 * width),
            nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(4 * width, num_classes)
        self.num_features = 4 * width

    def groups(self, x: Tensor) -> int:
        if x.shape[1] % self.in_channels:
            raise ValueError(f"{x.shape[1]} channels are not a multiple of {self.in_channels}")
        return x.shape[1] // self.in_channels

    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """uint8 or [-1, 1] float images → (features (N, k·F), logits (N, k, classes))."""
        k, n = self.groups(x), x.shape[0]
        if x.dtype == torch.uint8:
            x = x.float().div(127.5).sub(1.0)
        x = x.reshape(n * k, self.in_channels, *x.shape[2:])
        feats = self.body(x)
        logits = self.head(feats)
        return feats.reshape(n, -1), logits.reshape(n, k, -1)


def holdout_split(n: int, spec: ClassifierSpec) -> tuple[Tensor, Tensor]:
    """(held-out indices, training indices) of ``n`` labelled items: a ``spec.holdout`` share, fixed by
    ``spec.seed``. The feature classifier and the classification accuracy score use the same split."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(spec.seed))
    n_test = max(1, int(n * spec.holdout))
    return perm[:n_test], perm[n_test:]


def train_classifier(
    images: Tensor, labels: Tensor, spec: ClassifierSpec, device: torch.device | str = "cpu"
) -> ClassifierNet:
    """A :class:`ClassifierNet` trained on all of (uint8 ``images``, ``labels``) for ``spec.steps``
    steps (Adam, one-cycle learning rate, random ±1 px shifts); returned in eval mode."""
    gen = torch.Generator().manual_seed(spec.seed + 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        net = ClassifierNet(spec.in_channels, spec.num_classes, spec.width).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=spec.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=spec.lr, total_steps=spec.steps)
    net.train()
    for _ in range(spec.steps):
        idx = torch.randint(len(images), (spec.batch_size,), generator=gen)
        x = images[idx].to(device)
        shift = torch.randint(-1, 2, (2,), generator=gen).tolist()  # small translations: robust features
        x = torch.roll(x, shifts=shift, dims=(2, 3))
        _, logits = net.features_and_logits(x)
        loss = F.cross_entropy(logits[:, 0], labels[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


@torch.no_grad()
def accuracy(net: ClassifierNet, images: Tensor, labels: Tensor, device: torch.device | str = "cpu") -> float:
    """Share of (uint8 ``images``, ``labels``) that ``net`` classifies right."""
    correct = 0
    for x, y in zip(images.split(1024), labels.split(1024), strict=True):
        _, logits = net.features_and_logits(x.to(device))
        correct += int((logits[:, 0].argmax(1).cpu() == y).sum())
    return correct / len(images)


def fit_classifier(
    images: Tensor, labels: Tensor, spec: ClassifierSpec, device: torch.device | str = "cpu"
) -> tuple[ClassifierNet, float]:
    """Train on all but a held-out ``spec.holdout`` share; returns the net (eval mode) and its
    held-out accuracy."""
    test, train = holdout_split(len(images), spec)
    net = train_classifier(images[train], labels[train], spec, device)
    return net, accuracy(net, images[test], labels[test], device)


def write_record(record: dict[str, Any], path: Path) -> None:
    """``record`` saved at ``path`` atomically, its bytes a function of its contents alone: torch.save names
    the archive inside after the file it writes, so it writes to a buffer, not to the temporary file (whose
    name holds the process id). The file's SHA-256 identifies the network in every protocol tag."""
    buffer = io.BytesIO()
    torch.save(record, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)


def save_classifier(net: ClassifierNet, spec: ClassifierSpec, accuracy: float, path: Path) -> None:
    """Weights plus the spec that rebuilds them; written atomically."""
    state = {k: v.cpu() for k, v in net.state_dict().items()}
    write_record({"spec": asdict(spec), "state_dict": state, "accuracy": accuracy}, path)


def load_classifier(path: str | Path) -> tuple[ClassifierNet, dict[str, Any]]:
    """The classifier stored at ``path`` (eval mode) and its record (spec, accuracy)."""
    record = torch.load(path, map_location="cpu", weights_only=True)
    spec = record["spec"]
    net = ClassifierNet(spec["in_channels"], spec["num_classes"], spec["width"])
    net.load_state_dict(record["state_dict"])
    net.eval().requires_grad_(False)
    return net, record


def cached_classifier(
    load: Callable[[], tuple[Tensor, Tensor]],
    spec: ClassifierSpec,
    data_fingerprint: str,
    cache_dir: str | Path,
    device: torch.device | str = "cpu",
) -> tuple[Path, float, bool]:
    """Path of the classifier for this data and spec, training it on first use on ``load()``'s
    (uint8 images, labels). Returns (path, held-out accuracy, whether it came from the cache)."""
    path = Path(cache_dir).expanduser() / "classifiers" / f"{data_fingerprint}-{spec.digest()}.pt"
    with file_lock(path):  # processes starting together: one trains, the others wait and read it
        if path.is_file():
            _, record = load_classifier(path)
            return path, float(record["accuracy"]), True
        start = time.time()
        net, accuracy = fit_classifier(*load(), spec, device)
        save_classifier(net, spec, accuracy, path)
    log.info(
        "trained the feature classifier in %.1f s: held-out accuracy %.3f", time.time() - start, accuracy
    )
    return path, accuracy, False
