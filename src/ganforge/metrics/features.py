"""Feature extractors for FID/KID/IS/PRC, registered with torch-fidelity and usable in torchmetrics.

Three kinds (``metrics.extractor``):
- ``inception``: torch-fidelity's ``inception-v3-compat``, the network of the FID paper
  (Heusel et al. 2017). Its weights come from ``metrics.weights_path`` or torch's hub cache, where they
  are fetched once from torch-fidelity's release when missing (:func:`inception_weights`). Images
  reach its 299 px input by torch-fidelity's TensorFlow-compatible bilinear resize, or with
  ``metrics.resize=clean`` by clean-fid's PIL bicubic resize (:class:`CleanResizeInception`).
- ``classifier``: :class:`~ganforge.metrics.classifier.ClassifierNet` trained on the data's labels.
- ``selfsup``: :class:`~ganforge.metrics.selfsup.SelfSupNet` trained without labels on the reference
  images (contrastive learning): FID on unlabelled folders offline.
All take uint8 images; generated images in [-1, 1] go through :func:`to_uint8` first.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torch_fidelity import register_feature_extractor
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, FeatureExtractorInceptionV3
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from ganforge.errors import ConfigError
from ganforge.metrics.classifier import load_classifier
from ganforge.metrics.selfsup import load_selfsup, resize_uint8

log = logging.getLogger(__name__)

CLASSIFIER = "ganforge-classifier"
SELFSUP = "ganforge-selfsup"
INCEPTION = "inception-v3-compat"
INCEPTION_CLEAN = "ganforge-inception-v3-clean"  # the same network behind clean-fid's resize
INCEPTION_URL = URL_INCEPTION_V3  # torch-fidelity's release of the FID weights, what it downloads itself
INCEPTION_FILE = INCEPTION_URL.rsplit("/", 1)[-1]
# pytorch-fid's copy of the same converted TensorFlow weights (same keys and shapes), also found in the cache
PYTORCH_FID_FILE = "pt_inception-2015-12-05-6726825d.pth"
DOWNLOAD_TIMEOUT_S = 20.0  # seconds without an answer before a fetch of the weights counts as offline


def to_uint8(x: Tensor) -> Tensor:
    """Images in [-1, 1] → uint8 in [0, 255] (the input every extractor expects)."""
    return x.detach().float().add(1).mul(127.5).round_().clamp_(0, 255).to(torch.uint8)


def extractor_input(x: Tensor, rgb: bool) -> Tensor:
    """Images (uint8, or float in [-1, 1]; batched or not) as an extractor takes them: uint8, and
    grayscale repeated to 3 channels when the extractor is an RGB network (Inception)."""
    x = x if x.dtype == torch.uint8 else to_uint8(x)
    channels = x.shape[-3]
    return x.expand(*x.shape[:-3], 3, *x.shape[-2:]) if rgb and channels == 1 else x


class OwnNetExtractor(FeatureExtractorBase):
    """A torch-fidelity extractor around a network of ganforge's (not compiled by torch-fidelity)."""

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> Tensor:
        raise NotImplementedError

    @staticmethod
    def weights_path(kwargs: dict[str, Any], what: str, network: str) -> str:
        """The ``feature_extractor_weights_path`` torch-fidelity passes; a ConfigError naming the ``what``
        extractor and the ``network`` it needs when it is missing."""
        path = kwargs.get("feature_extractor_weights_path")
        if not path:
            raise ConfigError(f"the {what} extractor needs feature_extractor_weights_path ({network})")
        return str(path)


class ClassifierExtractor(OwnNetExtractor):
    """torch-fidelity's view of the domain classifier: ``features`` (penultimate) and ``logits``.

    Built by torch-fidelity as ``cls(name, features_list, feature_extractor_weights_path=...)``;
    the weights file is the cached classifier (:func:`~ganforge.metrics.classifier.save_classifier`).
    Features are float64 so FID statistics are computed in double precision.
    """

    def __init__(self, name: str, features_list: list[str], **kwargs: Any) -> None:
        super().__init__(name, features_list)
        self.net, _ = load_classifier(self.weights_path(kwargs, "classifier", "a trained classifier"))

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return ("features", "logits")

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return "logits" if metric == "isc" else "features"

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        feats, logits = self.net.features_and_logits(x)
        out = {"features": feats.double(), "logits": logits.flatten(1).double()}
        return tuple(out[name] for name in self.features_list)


def clean_resize(x: Tensor, size: int = FeatureExtractorInceptionV3.INPUT_IMAGE_SIZE) -> Tensor:
    """uint8 images (N, C, H, W) → float32 (N, C, size, size) as clean-fid resizes them (Parmar et al.
    2022, "On aliased resizing and surprising subtleties in GAN evaluation"): each channel a float
    PIL image, bicubic (antialiased) resize, clipped to [0, 255], not quantized again."""
    if x.dtype != torch.uint8:
        raise ValueError(f"clean_resize takes uint8 images, got {x.dtype}")
    pixels = x.detach().cpu().numpy().astype(np.float32)
    out = np.empty((*x.shape[:2], size, size), dtype=np.float32)
    for i, image in enumerate(pixels):
        for c, channel in enumerate(image):
            out[i, c] = np.asarray(Image.fromarray(channel).resize((size, size), Image.Resampling.BICUBIC))
    return torch.from_numpy(out.clip(0, 255)).to(x.device)


class CleanResizeInception(FeatureExtractorInceptionV3):
    """torch-fidelity's FID Inception-v3 with clean-fid's PIL bicubic resize in front of it instead of
    the TensorFlow 1.x bilinear one: same weights, same layers, same outputs."""

    STAGES = (  # the network in order; the named feature is the spatial mean after each stage
        ("64", ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1")),
        ("192", ("Conv2d_3b_1x1", "Conv2d_4a_3x3", "MaxPool_2")),
        ("768", (*(f"Mixed_5{c}" for c in "bcd"), *(f"Mixed_6{c}" for c in "abcde"))),
        ("2048", ("Mixed_7a", "Mixed_7b", "Mixed_7c")),
    )

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected uint8 images (N, 3, H, W), got {tuple(x.shape)}")
        x = clean_resize(x, self.INPUT_IMAGE_SIZE).to(self.feature_extractor_internal_dtype)
        x = (x - 128) / 128
        feats: dict[str, Tensor] = {}
        for name, stage in self.STAGES:
            for layer in stage:
                x = getattr(self, layer)(x)
            pooled = F.adaptive_avg_pool2d(x, 1).flatten(1)
            feats[name] = pooled.to(torch.float32)
            if all(f in feats for f in self.features_list):
                return tuple(feats[f] for f in self.features_list)
        unbiased = pooled.mm(self.fc.weight.T)
        feats["logits_unbiased"] = unbiased.to(torch.float32)
        feats["logits"] = (unbiased + self.fc.bias.unsqueeze(0)).to(torch.float32)
        return tuple(feats[f] for f in self.features_list)


class SelfSupExtractor(OwnNetExtractor):
    """torch-fidelity's view of the self-supervised network: ``features`` (its pooled encoder output,
    float64), the images first resized to the side it was trained at. No logits: no Inception Score."""

    def __init__(self, name: str, features_list: list[str], **kwargs: Any) -> None:
        super().__init__(name, features_list)
        self.net, record = load_selfsup(self.weights_path(kwargs, "selfsup", "a trained network"))
        self.size = int(record["spec"]["size"])

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return ("features",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return "features"

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        return (self.net.features(resize_uint8(x, self.size)).double(),)


_REGISTER = (
    (CLASSIFIER, ClassifierExtractor),
    (SELFSUP, SelfSupExtractor),
    (INCEPTION_CLEAN, CleanResizeInception),
)
for _name, _cls in _REGISTER:
    if _name not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(_name, _cls)


_HASHES: dict[tuple[str, int, int], str] = {}


def weights_sha256(path: str | Path) -> str:
    """The SHA-256 of a weights file (hex), computed once per file version: the extractor's identity in a
    metric's protocol (the FID Inception file's name carries the first 8 digits of it)."""
    stat = Path(path).stat()
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def hub_checkpoints() -> Path:
    """torch's hub cache of downloaded weights (``$TORCH_HOME/hub/checkpoints``), where torch-fidelity and
    pytorch-fid keep the FID Inception weights."""
    return Path(torch.hub.get_dir()) / "checkpoints"


class InceptionUnavailable(ConfigError):
    """The FID Inception weights are neither on this machine nor fetchable; ``reason`` says why."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


_UNREACHABLE: dict[tuple[str, str], str] = {}  # (url, destination) → why a fetch failed: once a process


def fetch_inception_weights(url: str | None = None, timeout: float | None = None) -> Path:
    """Download the FID Inception weights (from ``url``, else ``$GANFORGE_INCEPTION_URL`` (a mirror), else
    :data:`INCEPTION_URL`) into torch's hub cache, once: later runs find them there, as torch-fidelity
    does. Offline (no answer within ``timeout`` s, default :data:`DOWNLOAD_TIMEOUT_S`): an
    :class:`InceptionUnavailable` line."""
    url = url or os.environ.get("GANFORGE_INCEPTION_URL") or INCEPTION_URL
    timeout = DOWNLOAD_TIMEOUT_S if timeout is None else timeout
    dest = hub_checkpoints() / INCEPTION_FILE
    key = (url, str(dest))
    if key not in _UNREACHABLE:
        try:
            log.info("metrics: fetching the FID Inception weights %s into %s (once)", url, dest.parent)
            _download(url, dest, timeout)
            return dest
        except (OSError, ValueError, http.client.HTTPException) as exc:
            _UNREACHABLE[key] = f"{type(exc).__name__}: {exc}"
    reason = _UNREACHABLE[key]
    raise InceptionUnavailable(
        f"metrics.extractor=inception needs the FID Inception-v3 weights and they could not be fetched from "
        f"{url} ({reason}): run once with internet access (they are then kept at {dest}), or download that "
        f"file elsewhere and copy it to {dest} or pass metrics.weights_path=<file>; offline, "
        "metrics.extractor=selfsup measures FID with a network trained on your images (its values do not "
        "compare with Inception FIDs; labelled data: metrics.extractor=classifier)",
        reason,
    )


def _download(url: str, dest: Path, timeout: float) -> None:
    """``url`` streamed to ``dest`` through a temporary file, kept only when it holds the Inception state
    dict (not an HTML error page or a truncated file)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as f:
            for block in iter(lambda: response.read(1 << 20), b""):
                f.write(block)
        try:
            state = torch.load(tmp, map_location="cpu", weights_only=True)
        except Exception as exc:  # unpickling errors of many types
            raise ValueError(f"the file fetched is not a weights file ({type(exc).__name__})") from None
        if not isinstance(state, dict) or "Mixed_7c.branch_pool.conv.weight" not in state:
            raise ValueError("the file fetched is not the FID Inception-v3 state dict")
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)


def inception_weights(weights_path: str | None, url: str | None = None, timeout: float | None = None) -> str:
    """The local file of the FID Inception weights: ``weights_path``, else the copy in torch's hub cache
    (torch-fidelity's or pytorch-fid's), else one fetched there from ``url``; a ConfigError line when
    none can be had."""
    if weights_path:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise ConfigError(f"metrics.weights_path={weights_path}: no such file")
        return str(path)
    for name in (INCEPTION_FILE, PYTORCH_FID_FILE):
        if (hub_checkpoints() / name).is_file():
            return str(hub_checkpoints() / name)
    return str(fetch_inception_weights(url, timeout))


@dataclass
class Extractor:
    """A feature extractor ready to build: torch-fidelity name, weights, and an id for cache keys."""

    name: str
    weights_path: str
    tag: str
    info: dict[str, Any] = field(default_factory=dict)

    def fidelity_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``torch_fidelity.calculate_metrics`` that select this extractor."""
        return {"feature_extractor": self.name, "feature_extractor_weights_path": self.weights_path}

    def build(self, layers: list[str], device: torch.device | str = "cpu") -> FeatureExtractorBase:
        """The torch-fidelity module (eval mode, no grad) giving ``layers``."""
        module = FEATURE_EXTRACTORS_REGISTRY[self.name](
            self.name, layers, feature_extractor_weights_path=self.weights_path, verbose=False
        )
        return module.eval().requires_grad_(False).to(device)

    @property
    def layers(self) -> dict[str, str]:
        """Feature layer per metric (fid, kid, prc, isc)."""
        cls = FEATURE_EXTRACTORS_REGISTRY[self.name]
        return {m: cls.get_default_feature_layer_for_metric(m) for m in ("fid", "kid", "prc", "isc")}


class FeatureLayer(nn.Module):
    """One layer of an extractor as a plain module, for torchmetrics' ``feature=`` argument.

    Takes uint8 images (grayscale is repeated to RGB for Inception). A 2-D float tensor is
    taken as features already computed (the cached real-data features) and passed through.
    """

    def __init__(self, extractor: nn.Module, index: int, rgb: bool, num_features: int) -> None:
        super().__init__()
        self.extractor = extractor
        self.index = index  # position of the layer in the extractor's output tuple
        self.rgb = rgb
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2 and x.is_floating_point():
            return x
        return self.extractor(extractor_input(x, self.rgb))[self.index]


def write_random_inception_weights(path: str | Path, seed: int = 0) -> Path:
    """A weights file of the FID Inception architecture with *random* values.

    For timing the extractor and testing the Inception code path where the real weights cannot
    be downloaded; the numbers it gives are not FID values.
    """
    from torch_fidelity import feature_extractor_inceptionv3 as tfi

    cls, download = tfi.FeatureExtractorInceptionV3, tfi.load_state_dict_from_url
    load = cls.load_state_dict
    tfi.load_state_dict_from_url = lambda *args, **kwargs: {}  # nothing to download: random init
    cls.load_state_dict = lambda self, *args, **kwargs: None  # type: ignore[method-assign]
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls(INCEPTION, ["2048"])
    finally:
        tfi.load_state_dict_from_url, cls.load_state_dict = download, load  # type: ignore[method-assign]
    path = Path(path)
    torch.save(model.state_dict(), path)
    return path
