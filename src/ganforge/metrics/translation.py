"""Metrics of an image-to-image generator on the held-out pairs of paired data: ``val/psnr``,
``val/ssim`` and ``val/l1`` against the ground truth (torchmetrics), ``val/fid`` of the outputs against
the targets, and ``val/class_acc`` (the metrics classifier's accuracy on the outputs against the
labels of their sources). Training and ``ganforge-eval`` both measure through this class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ganforge.data.base import GANDataModule
from ganforge.errors import ConfigError
from ganforge.metrics.features import inception_weights
from ganforge.metrics.held_out import HeldOutSuite, chunks, fid_with_real, held_out_protocol
from ganforge.metrics.settings import TRUTH_METRICS, MetricSettings, check_task
from ganforge.metrics.suite import extractor_kind, protocol_tag, selfsup_setup


def realism_extractor(settings: MetricSettings, datamodule: GANDataModule) -> str:
    """The extractor FID is measured with on this data (``auto``'s choice said in one log line), its
    weights found or fetched and its settings checked; a ConfigError when it cannot work here."""
    kind = extractor_kind(settings, datamodule, announce=True)
    if kind == "inception":
        inception_weights(settings.weights_path)
    if kind == "selfsup":
        selfsup_setup(settings, datamodule)
    return kind


def choose_translation(
    settings: MetricSettings,
    datamodule: GANDataModule,
    ground_truth: bool = True,
    dropped: dict[str, str] | None = None,
) -> list[str]:
    """The metrics for translation data (``ground_truth``: whether outputs have a known answer); a
    ConfigError for one asked for that cannot work on it. The default set has FID, the realism metric,
    whenever an extractor can be had (on unlabelled data: Inception, else the self-supervised network);
    when it cannot, ``dropped`` gets why (the suite says it in one log line)."""
    labelled = datamodule.num_classes > 1
    names = settings.names
    kind: str | None = None
    if names is None:  # the default: the known-answer scores, FID, and whether the label is kept
        names = ["psnr", "ssim", "l1"] if ground_truth else ["l1"]
        try:
            kind = realism_extractor(settings, datamodule)
            names.append("fid")
        except ConfigError as err:
            if dropped is not None:
                dropped["fid"] = str(err)
        if labelled and ground_truth and kind == "classifier":
            names.append("class_acc")
    missing = [n for n in names if n in TRUTH_METRICS and not ground_truth]
    if missing:
        raise ConfigError(
            f"metrics {missing} compare outputs with a known answer, which {type(datamodule).__name__} "
            "does not have (data=digits_translation has one); use metrics=[fid,l1]"
        )
    check_task(names, "paired")
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
    if "fid" in names and kind is None:
        realism_extractor(settings, datamodule)
    return names


class TranslationSuite(HeldOutSuite):
    """Measures ``G(source)`` on the first ``metrics.num_samples`` held-out pairs (all of them when
    fewer), each rank its share; the torchmetrics states are reduced across ranks."""

    def __init__(self, settings: MetricSettings, datamodule: GANDataModule, cache_dir: str | Path) -> None:
        dropped: dict[str, str] = {}
        names = choose_translation(settings, datamodule, dropped=dropped)
        super().__init__(settings, datamodule, cache_dir, names, dropped)
        if datamodule.num_val_items() < 2:  # before training, not after
            raise ConfigError(
                f"the held-out split has {datamodule.num_val_items()} pairs: metrics need at least 2; "
                "raise data.val_fraction or add val/ images"
            )
        self.indices: list[int] = []
        self.test_mode = "eval"  # how the task runs G for metrics (task.test_mode), part of every protocol

    def _share(self, rank: int, world: int) -> None:
        n = min(self.settings.num_samples, self.datamodule.num_val_items())
        self.indices = list(range(n))[rank::world]
        self.info = {"held_out_pairs": n, "test_mode": self.test_mode}
        # every metric's protocol says how G ran (eval mode, or the pix2pix paper's dropout + batch stats)
        self.info["protocol_tags"] = {
            f"val/{name}": f"{name}[held_out={n}|test_mode={self.test_mode}]"
            for name in self.names
            if name != "fid"
        }

    def _prepare_fid(
        self, extractor: torch.nn.Module, protocol: dict[str, Any], device: torch.device
    ) -> None:
        n = self.info["held_out_pairs"]
        targets = [self.datamodule.val_items(chunk)[1] for chunk in self._chunks()]
        self.metrics["fid"] = fid_with_real(extractor, self.rgb, targets, device)
        self.info["protocol"] = held_out_protocol(protocol, n, "val", n)  # outputs vs targets
        self.info["protocol"]["test_mode"] = self.test_mode
        tag = protocol_tag("fid", self.info["protocol"])
        self.info["protocol_tags"]["val/fid"] = f"{tag[:-1]}|test_mode={self.test_mode}]"

    def _chunks(self) -> list[list[int]]:
        return chunks(self.indices, self.settings.batch_size)

    def _update(self, module: Any, device: torch.device) -> None:
        for chunk in self._chunks():
            source, target, labels = self.datamodule.val_items(chunk)
            output = module.translate(source.to(device)).float()
            self._update_outputs(output, target, labels, device)
