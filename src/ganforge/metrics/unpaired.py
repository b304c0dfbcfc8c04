"""Metrics of a two-way translator (CycleGAN) on the held-out images of both domains: ``val/fid_ab``
(G_AB(A) against B) and ``val/fid_ba``, ``val/cycle_l1`` (both cycles), and where the data knows the
answer T(a): ``val/psnr_ab``, ``val/ssim_ab`` and ``val/class_acc_ab`` (the metrics classifier's
accuracy on G_AB(a) against a's label: does the translation keep the digit?)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ganforge.data.base import GANDataModule
from ganforge.errors import ConfigError
from ganforge.metrics.held_out import HeldOutSuite, chunks, fid_with_real, held_out_protocol
from ganforge.metrics.suite import MetricSettings, protocol_tag
from ganforge.metrics.translation import choose_translation


class UnpairedSuite(HeldOutSuite):
    """Measures both translators on the first ``metrics.num_samples`` held-out images of each domain,
    each rank its share; the torchmetrics states are reduced across ranks."""

    # both cycles (averaged into val/cycle_l1) and the A → B outputs against their known answers
    SCORES = (("l1", "cycle_a"), ("l1", "cycle_b"), ("psnr", "psnr_ab"), ("ssim", "ssim_ab"))
    CLASS_ACC = "class_acc_ab"
    OUTPUTS = {
        "l1": ("cycle_l1",),
        "fid": ("fid_ab", "fid_ba"),
        "psnr": ("psnr_ab",),
        "ssim": ("ssim_ab",),
        "class_acc": ("class_acc_ab",),
    }
    MONITOR = ("val/fid_ab", "val/cycle_l1", "val/psnr_ab", "val/ssim_ab")
    REALISM = ("val/fid_ab", "val/fid_ba")

    def __init__(self, settings: MetricSettings, datamodule: GANDataModule, cache_dir: str | Path) -> None:
        dropped: dict[str, str] = {}
        names = choose_translation(settings, datamodule, bool(datamodule.has_ground_truth), dropped)
        super().__init__(settings, datamodule, cache_dir, names, dropped)
        if min(datamodule.num_val_a(), datamodule.num_val_b()) < 2:  # before training, not after
            raise ConfigError(
                f"metrics need at least 2 held-out images in each domain; the data holds out "
                f"{datamodule.num_val_a()} (A) and {datamodule.num_val_b()} (B): raise data.val_fraction "
                "or add testA/ and testB/ images"
            )
        self.index_a: list[int] = []
        self.index_b: list[int] = []

    def _share(self, rank: int, world: int) -> None:
        s, dm = self.settings, self.datamodule
        n_a, n_b = min(s.num_samples, dm.num_val_a()), min(s.num_samples, dm.num_val_b())
        self.index_a, self.index_b = list(range(n_a))[rank::world], list(range(n_b))[rank::world]
        self.info = {"held_out_a": n_a, "held_out_b": n_b}

    def _prepare_fid(
        self, extractor: torch.nn.Module, protocol: dict[str, Any], device: torch.device
    ) -> None:
        """G_AB's outputs against real B images, G_BA's against real A images."""
        s, dm = self.settings, self.datamodule
        n_a, n_b = self.info["held_out_a"], self.info["held_out_b"]
        real_b = [dm.val_b(chunk)[0] for chunk in chunks(self.index_b, s.batch_size)]
        real_a = [dm.val_a(chunk)[0] for chunk in chunks(self.index_a, s.batch_size)]
        self.metrics["fid_ab"] = fid_with_real(extractor, self.rgb, real_b, device)
        self.metrics["fid_ba"] = fid_with_real(extractor, self.rgb, real_a, device)
        self.info["protocol"] = {
            "fid_ab": held_out_protocol(protocol, n_a, "val_b", n_b),
            "fid_ba": held_out_protocol(protocol, n_b, "val_a", n_a),
        }
        self.info["protocol_tags"] = {
            f"val/{name}": protocol_tag(name, fid) for name, fid in self.info["protocol"].items()
        }

    def _update(self, module: Any, device: torch.device) -> None:
        m, size = self.metrics, self.settings.batch_size
        for chunk in chunks(self.index_a, size):
            a, labels, truth = self.datamodule.val_a(chunk)
            a = a.to(device)
            fake_b = module.translate(a, "AtoB").float()
            if "cycle_a" in m:
                m["cycle_a"].update(module.translate(fake_b, "BtoA").float(), a)
            self._update_outputs(fake_b, truth, labels, device, "_ab")
        for chunk in chunks(self.index_b, size):
            b, labels = self.datamodule.val_b(chunk)
            b = b.to(device)
            fake_a = module.translate(b, "BtoA").float()
            if "cycle_b" in m:
                m["cycle_b"].update(module.translate(fake_a, "AtoB").float(), b)
            self._update_outputs(fake_a, None, labels, device, "_ba")

    def _combine(self, values: dict[str, float]) -> dict[str, float]:
        if "cycle_a" in values:  # both cycles, equally weighted
            values["cycle_l1"] = (values.pop("cycle_a") + values.pop("cycle_b")) / 2
        return values
