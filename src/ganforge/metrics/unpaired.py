"""Metrics of a two-way translator (CycleGAN) on the held-out images of both domains: ``val/fid_ab``
(G_AB(A) against B) and ``val/fid_ba``, ``val/cycle_l1`` (both cycles), and where the data knows the
answer T(a): ``val/psnr_ab``, ``val/ssim_ab`` and ``val/class_acc_ab`` (the metrics classifier's
accuracy on G_AB(a) against a's label: does the translation keep the digit?)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torchmetrics import MeanAbsoluteError, Metric
from torchmetrics.classification import MulticlassAccuracy
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from ganforge.data.base import GANDataModule
from ganforge.errors import ConfigError
from ganforge.metrics.features import extractor_input
from ganforge.metrics.suite import MetricSettings, protocol_tag
from ganforge.metrics.translation import (
    EXTRACTOR_METRICS,
    choose_translation,
    chunks,
    extractor_for,
    fid_with_real,
    held_out_protocol,
    unit,
)


class UnpairedSuite:
    """Measures both translators on the first ``metrics.num_samples`` held-out images of each domain,
    each rank its share; the torchmetrics states are reduced across ranks."""

    def __init__(self, settings: MetricSettings, datamodule: GANDataModule, cache_dir: str | Path) -> None:
        self.settings, self.datamodule, self.cache_dir = settings, datamodule, cache_dir
        self.names = choose_translation(settings, datamodule, bool(datamodule.has_ground_truth))
        if min(datamodule.num_val_a(), datamodule.num_val_b()) < 2:  # before training, not after
            raise ConfigError(
                f"metrics need at least 2 held-out images in each domain; the data holds out "
                f"{datamodule.num_val_a()} (A) and {datamodule.num_val_b()} (B): raise data.val_fraction "
                "or add testA/ and testB/ images"
            )
        self.metrics: dict[str, Metric] = {}
        self.index_a: list[int] = []
        self.index_b: list[int] = []
        self.extractor_module: torch.nn.Module | None = None
        self.rgb = False
        self.info: dict[str, Any] = {}

    @property
    def keys(self) -> set[str]:
        """The ``val/*`` keys a measurement returns (what ``metrics.monitor`` may name)."""
        outputs = {
            "l1": ("cycle_l1",),
            "fid": ("fid_ab", "fid_ba"),
            "psnr": ("psnr_ab",),
            "ssim": ("ssim_ab",),
        }
        outputs["class_acc"] = ("class_acc_ab",)
        return {f"val/{k}" for name in self.names for k in outputs.get(name, (name,))}

    @property
    def monitor(self) -> str:
        """The metric that picks ``best.ckpt``: ``metrics.monitor``, else FID A → B, else the cycle L1."""
        if self.settings.monitor:
            return self.settings.monitor
        return "val/fid_ab" if "fid" in self.names else "val/cycle_l1"

    def prepare(self, device: torch.device, rank: int = 0, world: int = 1) -> None:
        s, dm = self.settings, self.datamodule
        n_a, n_b = min(s.num_samples, dm.num_val_a()), min(s.num_samples, dm.num_val_b())
        self.index_a, self.index_b = list(range(n_a))[rank::world], list(range(n_b))[rank::world]
        self.info = {"held_out_a": n_a, "held_out_b": n_b}
        if "l1" in self.names:
            self.metrics["cycle_a"] = MeanAbsoluteError().to(device)
            self.metrics["cycle_b"] = MeanAbsoluteError().to(device)
        if "psnr" in self.names:
            self.metrics["psnr_ab"] = PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3)).to(device)
        if "ssim" in self.names:
            self.metrics["ssim_ab"] = StructuralSimilarityIndexMeasure(data_range=1.0).to(device)
        if not any(name in self.names for name in EXTRACTOR_METRICS):
            return
        module, self.rgb, info = extractor_for(s, dm, self.cache_dir, device)
        self.extractor_module = module
        self.info.update(info)
        if "fid" in self.names:  # G_AB's outputs against real B images, G_BA's against real A images
            real_b = [dm.val_b(chunk)[0] for chunk in chunks(self.index_b, s.batch_size)]
            real_a = [dm.val_a(chunk)[0] for chunk in chunks(self.index_a, s.batch_size)]
            self.metrics["fid_ab"] = fid_with_real(module, self.rgb, real_b, device)
            self.metrics["fid_ba"] = fid_with_real(module, self.rgb, real_a, device)
            self.info["protocol"] = {
                "fid_ab": held_out_protocol(info["protocol"], n_a, "val_b", n_b),
                "fid_ba": held_out_protocol(info["protocol"], n_b, "val_a", n_a),
            }
            self.info["protocol_tags"] = {
                f"val/{name}": protocol_tag(name, protocol)
                for name, protocol in self.info["protocol"].items()
            }
        if "class_acc" in self.names:
            self.metrics["class_acc_ab"] = MulticlassAccuracy(dm.num_classes, average="micro").to(device)

    def measure_module(self, module: Any, rank: int = 0, world: int = 1) -> dict[str, float]:
        return self.measure(module, module.device)

    @torch.no_grad()
    def measure(self, module: Any, device: torch.device) -> dict[str, float]:
        """``val/*`` of ``module``'s ``translate`` (the translators, or their EMA, in eval mode)."""
        m, size = self.metrics, self.settings.batch_size
        for chunk in chunks(self.index_a, size):
            a, labels, truth = self.datamodule.val_a(chunk)
            a = a.to(device)
            fake_b = module.translate(a, "AtoB").float()
            if "cycle_a" in m:
                m["cycle_a"].update(module.translate(fake_b, "BtoA").float(), a)
            if "psnr_ab" in m:
                m["psnr_ab"].update(unit(fake_b), unit(truth.to(device)))
            if "ssim_ab" in m:
                m["ssim_ab"].update(unit(fake_b), unit(truth.to(device)))
            if "fid_ab" in m:
                m["fid_ab"].update(extractor_input(fake_b, self.rgb), real=False)
            if "class_acc_ab" in m:
                logits = self.extractor_module(extractor_input(fake_b, self.rgb))[1]
                m["class_acc_ab"].update(logits.argmax(1), labels.to(device))
        for chunk in chunks(self.index_b, size):
            b = self.datamodule.val_b(chunk)[0].to(device)
            fake_a = module.translate(b, "BtoA").float()
            if "cycle_b" in m:
                m["cycle_b"].update(module.translate(fake_a, "AtoB").float(), b)
            if "fid_ba" in m:
                m["fid_ba"].update(extractor_input(fake_a, self.rgb), real=False)
        values = {name: float(metric.compute()) for name, metric in m.items()}
        for metric in m.values():
            metric.reset()
        if "cycle_a" in values:  # both cycles, equally weighted
            values["cycle_l1"] = (values.pop("cycle_a") + values.pop("cycle_b")) / 2
        return {f"val/{name}": value for name, value in values.items()}
