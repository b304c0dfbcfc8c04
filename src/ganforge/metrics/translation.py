"""Metrics of an image-to-image generator on the held-out pairs of paired data: ``val/psnr``,
``val/ssim`` and ``val/l1`` against the ground truth (torchmetrics), ``val/fid`` of the outputs against
the targets, and ``val/class_acc`` (the metrics classifier's accuracy on the outputs against the
labels of their sources). Training and ``ganforge-eval`` both measure through this class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchmetrics import MeanAbsoluteError, Metric
from torchmetrics.classification import MulticlassAccuracy
from torchmetrics.image import (
    FrechetInceptionDistance,
    PeakSignalNoiseRatio,
    StructuralSimilarityIndexMeasure,
)

from ganforge.data.base import GANDataModule
from ganforge.errors import ConfigError
from ganforge.metrics.features import CLASSIFIER, FeatureLayer, extractor_input, inception_weights
from ganforge.metrics.suite import (
    MetricSettings,
    build_extractor,
    extractor_kind,
    extractor_protocol,
    protocol_tag,
)

TRANSLATION_METRICS = ("psnr", "ssim", "l1", "fid", "class_acc")
EXTRACTOR_METRICS = ("fid", "class_acc")  # the ones that need a feature extractor


TRUTH_METRICS = ("psnr", "ssim", "class_acc")  # compare with a known answer


def choose_translation(
    settings: MetricSettings, datamodule: GANDataModule, ground_truth: bool = True
) -> list[str]:
    """The metrics for translation data (``ground_truth``: whether outputs have a known answer); a
    ConfigError for one that cannot work on it."""
    labelled = datamodule.num_classes > 1
    names = settings.names
    if names is None:  # the default: everything that works without downloads
        names = ["psnr", "ssim", "l1"] if ground_truth else ["l1"]
        if labelled or settings.extractor == "inception":
            names.append("fid")
        if labelled and ground_truth and settings.extractor != "inception":
            names.append("class_acc")
    missing = [n for n in names if n in TRUTH_METRICS and not ground_truth]
    if missing:
        raise ConfigError(
            f"metrics {missing} compare outputs with a known answer, which {type(datamodule).__name__} "
            "does not have (data=digits_translation has one); use metrics=[fid,l1]"
        )
    wrong = [n for n in names if n not in TRANSLATION_METRICS]
    if wrong:
        raise ConfigError(
            f"metrics {wrong} are for generation; image-to-image translation measures "
            f"{', '.join(TRANSLATION_METRICS)} (metrics=[psnr,ssim,l1,fid,class_acc])"
        )
    if "class_acc" in names:
        if not labelled:
            raise ConfigError(
                "metrics=[class_acc] needs labelled data (digits, mnist, cifar10, class folders)"
            )
        if extractor_kind(settings, datamodule) != "classifier":
            raise ConfigError(
                "val/class_acc is measured by the data's classifier: use metrics.extractor=classifier"
            )
    if datamodule.data_shape[-1] < 11 and "ssim" in names:
        raise ConfigError("val/ssim uses an 11x11 window: it needs images of at least 11 px")
    if "fid" in names and extractor_kind(settings, datamodule) == "inception":
        inception_weights(settings.weights_path)
    return names


def extractor_for(
    settings: MetricSettings, datamodule: GANDataModule, cache_dir: str | Path, device: torch.device
) -> tuple[torch.nn.Module, bool, dict[str, Any]]:
    """(the built extractor giving (features, logits) — Inception: features only —, whether it takes
    RGB, what to report about it: its ``protocol`` for the FIDs measured with it)."""
    extractor = build_extractor(settings, datamodule, cache_dir, device)
    layers = ["features", "logits"] if extractor.name == CLASSIFIER else ["2048"]
    module = extractor.build(layers, device)
    protocol = extractor_protocol(extractor, layers[0])
    return module, extractor.info["rgb"], {"extractor": extractor.tag, **extractor.info, "protocol": protocol}


def held_out_protocol(base: dict[str, Any], n_generated: int, split: str, n_real: int) -> dict[str, Any]:
    """A translation FID's protocol: the extractor's part, the outputs counted, the real held-out set."""
    return {**base, "num_generated": n_generated, "reference": {"split": split, "count": n_real}}


def fid_with_real(
    extractor: torch.nn.Module, rgb: bool, real: list[Tensor], device: torch.device
) -> FrechetInceptionDistance:
    """A torchmetrics FID on the extractor's first output, holding the features of ``real`` batches."""
    probe = extractor(extractor_input(real[0][:1], rgb).to(device))[0]
    layer = FeatureLayer(extractor, 0, rgb, probe.shape[1])
    fid = FrechetInceptionDistance(feature=layer, reset_real_features=False).to(device)
    for batch in real:
        fid.update(extractor_input(batch, rgb).to(device), real=True)
    return fid


def chunks(indices: list[int], size: int) -> list[list[int]]:
    return [indices[i : i + size] for i in range(0, len(indices), size)]


def unit(x: Tensor) -> Tensor:
    """Images in [-1, 1] → [0, 1] (clamped), the range PSNR and SSIM are reported in."""
    return x.float().add(1).div(2).clamp(0, 1)


class TranslationSuite:
    """Measures ``G(source)`` on the first ``metrics.num_samples`` held-out pairs (all of them when
    fewer), each rank its share; the torchmetrics states are reduced across ranks."""

    def __init__(self, settings: MetricSettings, datamodule: GANDataModule, cache_dir: str | Path) -> None:
        self.settings, self.datamodule, self.cache_dir = settings, datamodule, cache_dir
        self.names = choose_translation(settings, datamodule)
        if datamodule.num_val_items() < 2:  # before training, not after
            raise ConfigError(
                f"the held-out split has {datamodule.num_val_items()} pairs: metrics need at least 2; "
                "raise data.val_fraction or add val/ images"
            )
        self.metrics: dict[str, Metric] = {}
        self.indices: list[int] = []
        self.extractor_module: torch.nn.Module | None = None
        self.info: dict[str, Any] = {}
        self.test_mode = "eval"  # how the task runs G for metrics (task.test_mode), part of every protocol

    @property
    def keys(self) -> set[str]:
        """The ``val/*`` keys a measurement returns (what ``metrics.monitor`` may name)."""
        return {f"val/{name}" for name in self.names}

    @property
    def monitor(self) -> str:
        """The metric that picks ``best.ckpt``: ``metrics.monitor``, else FID, else PSNR."""
        if self.settings.monitor:
            return self.settings.monitor
        return "val/fid" if "fid" in self.names else "val/psnr"

    def prepare(self, device: torch.device, rank: int = 0, world: int = 1) -> None:
        """The metric objects, the extractor, and the features of this rank's held-out targets."""
        s, dm = self.settings, self.datamodule
        n = min(s.num_samples, dm.num_val_items())
        self.indices = list(range(n))[rank::world]
        self.info = {"held_out_pairs": n, "test_mode": self.test_mode}
        # every metric's protocol says how G ran (eval mode, or the pix2pix paper's dropout + batch stats)
        self.info["protocol_tags"] = {
            f"val/{name}": f"{name}[held_out={n}|test_mode={self.test_mode}]"
            for name in self.names
            if name != "fid"
        }
        if "psnr" in self.names:
            self.metrics["psnr"] = PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3)).to(device)
        if "ssim" in self.names:
            self.metrics["ssim"] = StructuralSimilarityIndexMeasure(data_range=1.0).to(device)
        if "l1" in self.names:
            self.metrics["l1"] = MeanAbsoluteError().to(device)
        if not any(name in self.names for name in EXTRACTOR_METRICS):
            return
        module, self.rgb, info = extractor_for(s, dm, self.cache_dir, device)
        self.extractor_module = module
        self.info.update(info)
        if "fid" in self.names:
            targets = [dm.val_items(chunk)[1] for chunk in self._chunks()]
            self.metrics["fid"] = fid_with_real(module, self.rgb, targets, device)
            self.info["protocol"] = held_out_protocol(info["protocol"], n, "val", n)  # outputs vs targets
            self.info["protocol"]["test_mode"] = self.test_mode
            tag = protocol_tag("fid", self.info["protocol"])
            self.info["protocol_tags"]["val/fid"] = f"{tag[:-1]}|test_mode={self.test_mode}]"
        if "class_acc" in self.names:
            self.metrics["class_acc"] = MulticlassAccuracy(dm.num_classes, average="micro").to(device)

    def _chunks(self) -> list[list[int]]:
        return chunks(self.indices, self.settings.batch_size)

    def measure_module(self, module: Any, rank: int = 0, world: int = 1) -> dict[str, float]:
        """``val/*`` of a GANModule (prepared for this rank and world size)."""
        return self.measure(module, module.device)

    @torch.no_grad()
    def measure(self, module: Any, device: torch.device) -> dict[str, float]:
        """``val/*`` of ``module`` (its ``translate``: G, or its EMA, in eval mode) on the held-out pairs."""
        for chunk in self._chunks():
            source, target, labels = self.datamodule.val_items(chunk)
            output = module.translate(source.to(device)).float()
            target = target.to(device)
            if "psnr" in self.metrics:
                self.metrics["psnr"].update(unit(output), unit(target))
            if "ssim" in self.metrics:
                self.metrics["ssim"].update(unit(output), unit(target))
            if "l1" in self.metrics:
                self.metrics["l1"].update(output, target)
            if "fid" in self.metrics:
                self.metrics["fid"].update(extractor_input(output, self.rgb), real=False)
            if "class_acc" in self.metrics:
                assert self.extractor_module is not None
                logits = self.extractor_module(extractor_input(output, self.rgb))[1]
                self.metrics["class_acc"].update(logits.argmax(1), labels.to(device))
        values = {f"val/{name}": float(metric.compute()) for name, metric in self.metrics.items()}
        for metric in self.metrics.values():
            metric.reset()
        return values
