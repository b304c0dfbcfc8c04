"""What the suites of translators share (paired: ``metrics/translation.py``, two-way:
``metrics/unpaired.py``): torchmetrics objects built once by ``prepare`` on this rank's share of the
held-out data, updated batch by batch by ``measure``, then computed and reset, so that both suites
measure the same way."""

from __future__ import annotations

import logging
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
from ganforge.metrics.features import CLASSIFIER, FeatureLayer, extractor_input
from ganforge.metrics.suite import MetricSettings, build_extractor, extractor_protocol

log = logging.getLogger(__name__)

EXTRACTOR_METRICS = ("fid", "class_acc")  # the ones that need a feature extractor
TRUTH_SCORES = ("psnr", "ssim", "l1")  # outputs against their known answers


def extractor_for(
    settings: MetricSettings, datamodule: GANDataModule, cache_dir: str | Path, device: torch.device
) -> tuple[torch.nn.Module, bool, dict[str, Any]]:
    """(the built extractor giving (features, logits) — Inception, selfsup: features only —, whether it takes
    RGB, what to report about it: its ``protocol`` for the FIDs measured with it)."""
    extractor = build_extractor(settings, datamodule, cache_dir, device)
    layers = [extractor.layers["fid"], *(["logits"] if extractor.name == CLASSIFIER else [])]
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


def truth_score(name: str) -> Metric:
    """The torchmetrics object of ``psnr``, ``ssim`` or ``l1`` (images in [0, 1] for the first two)."""
    if name == "psnr":
        return PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3))
    if name == "ssim":
        return StructuralSimilarityIndexMeasure(data_range=1.0)
    return MeanAbsoluteError()


class HeldOutSuite:
    """The prepare/measure skeleton; a subclass says which held-out items this rank measures
    (:meth:`_share`), which real images its FIDs compare with (:meth:`_prepare_fid`) and how it runs
    the translator on them (:meth:`_update`)."""

    # (metric name, key in ``metrics``) of the PSNR/SSIM/L1 objects, in the order they are built
    SCORES: tuple[tuple[str, str], ...] = (("psnr", "psnr"), ("ssim", "ssim"), ("l1", "l1"))
    CLASS_ACC = "class_acc"  # the key of the classifier's accuracy in ``metrics``
    OUTPUTS: dict[str, tuple[str, ...]] = {}  # the val/* keys of a metric name, where not the name itself
    MONITOR = ("val/fid", "val/psnr", "val/ssim", "val/l1")  # best.ckpt's default: the first measured
    REALISM = ("val/fid",)  # how real the outputs look, not how close to the ground truth

    def __init__(
        self,
        settings: MetricSettings,
        datamodule: GANDataModule,
        cache_dir: str | Path,
        names: list[str],
        dropped: dict[str, str] | None = None,
    ) -> None:
        self.settings, self.datamodule, self.cache_dir = settings, datamodule, cache_dir
        self.names = names
        self._say_monitor(dropped or {})
        self.metrics: dict[str, Metric] = {}
        self.extractor_module: torch.nn.Module | None = None
        self.rgb = False
        self.info: dict[str, Any] = {}

    @property
    def keys(self) -> set[str]:
        """The ``val/*`` keys a measurement returns (what ``metrics.monitor`` may name)."""
        return {f"val/{k}" for name in self.names for k in self.OUTPUTS.get(name, (name,))}

    @property
    def monitor(self) -> str:
        """The metric that picks ``best.ckpt``: ``metrics.monitor``, else the first of :attr:`MONITOR` this
        suite measures: FID (realism) whenever it is measured, a fidelity score (PSNR, L1) only without it."""
        if self.settings.monitor:
            return self.settings.monitor
        keys = self.keys
        return next((key for key in self.MONITOR if key in keys), self.MONITOR[-1])

    def _say_monitor(self, dropped: dict[str, str]) -> None:
        """One log line when a default metric cannot be measured (``dropped``: why) or ``best.ckpt`` follows
        a fidelity score by default: without a realism metric it keeps the checkpoint closest to the ground
        truth on average, which favours the blurriest outputs."""
        why = f"FID cannot be measured here: {dropped['fid']}" if "fid" in dropped else ""
        if not self.settings.monitor and self.monitor not in self.REALISM:
            log.warning(
                "metrics: best.ckpt follows %s, a fidelity score that favours blurry outputs, because %s; "
                "add fid, or choose with metrics.monitor",
                self.monitor,
                why or f"no FID is among metrics=[{','.join(self.names)}]",
            )
        elif why:
            log.warning("metrics: %s", why)

    def prepare(self, device: torch.device, rank: int = 0, world: int = 1) -> None:
        """The metric objects, the extractor, and the features of this rank's real held-out images."""
        self._share(rank, world)
        for name, key in self.SCORES:
            if name in self.names:
                self.metrics[key] = truth_score(name).to(device)
        if not any(name in self.names for name in EXTRACTOR_METRICS):
            return
        module, self.rgb, info = extractor_for(self.settings, self.datamodule, self.cache_dir, device)
        self.extractor_module = module
        self.info.update(info)
        if "fid" in self.names:
            self._prepare_fid(module, info["protocol"], device)
        if "class_acc" in self.names:
            accuracy = MulticlassAccuracy(self.datamodule.num_classes, average="micro")
            self.metrics[self.CLASS_ACC] = accuracy.to(device)

    def _share(self, rank: int, world: int) -> None:
        """This rank's held-out items, and the counts ``info`` reports."""
        raise NotImplementedError

    def _prepare_fid(
        self, extractor: torch.nn.Module, protocol: dict[str, Any], device: torch.device
    ) -> None:
        """The FID objects holding the real features, and their protocols in ``info``."""
        raise NotImplementedError

    def _update(self, module: Any, device: torch.device) -> None:
        """Run ``module``'s translators on this rank's held-out items and update the metrics."""
        raise NotImplementedError

    def _update_outputs(
        self, output: Tensor, truth: Tensor | None, labels: Tensor, device: torch.device, suffix: str = ""
    ) -> None:
        """Update the metrics of one direction (keys ending in ``suffix``) with a batch of outputs, their
        known answers ``truth`` (PSNR, SSIM, L1) and their sources' labels (the classifier's accuracy)."""
        m = self.metrics
        if truth is not None and any(name + suffix in m for name in TRUTH_SCORES):
            truth = truth.to(device)
        if (key := "psnr" + suffix) in m:
            m[key].update(unit(output), unit(truth))
        if (key := "ssim" + suffix) in m:
            m[key].update(unit(output), unit(truth))
        if (key := "l1" + suffix) in m:
            m[key].update(output, truth)
        if (key := "fid" + suffix) in m:
            m[key].update(extractor_input(output, self.rgb), real=False)
        if (key := "class_acc" + suffix) in m:
            assert self.extractor_module is not None
            logits = self.extractor_module(extractor_input(output, self.rgb))[1]
            m[key].update(logits.argmax(1), labels.to(device))

    def _combine(self, values: dict[str, float]) -> dict[str, float]:
        """The computed values, by key in ``metrics``, as reported (without the ``val/`` prefix)."""
        return values

    def measure_module(self, module: Any, rank: int = 0, world: int = 1) -> dict[str, float]:
        """``val/*`` of a GANModule (prepared for this rank and world size)."""
        return self.measure(module, module.device)

    @torch.no_grad()
    def measure(self, module: Any, device: torch.device) -> dict[str, float]:
        """``val/*`` of ``module``'s ``translate`` (its translators, or their EMA, in eval mode)."""
        self._update(module, device)
        values = {name: float(metric.compute()) for name, metric in self.metrics.items()}
        for metric in self.metrics.values():
            metric.reset()
        return {f"val/{name}": value for name, value in self._combine(values).items()}
