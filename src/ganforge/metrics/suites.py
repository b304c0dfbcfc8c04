"""Which suite measures the generators of a data set: sample metrics (FID, KID, IS, PR, modes) for
generation, the held-out pairs for paired translation, both directions for two-domain data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ganforge.data.base import GANDataModule
from ganforge.metrics.suite import MetricSettings, MetricSuite
from ganforge.metrics.translation import TranslationSuite
from ganforge.metrics.unpaired import UnpairedSuite

Suite = MetricSuite | TranslationSuite | UnpairedSuite


def make_suite(
    settings: MetricSettings, datamodule: GANDataModule, cache_dir: str | Path, task: Any = None
) -> Suite:
    """The suite for ``datamodule``; a ConfigError (from the suite) for metrics that do not fit it.
    ``task``: how G runs for the measurements (pix2pix's ``test_mode``), recorded in the protocols."""
    if getattr(datamodule, "paired", False):
        suite = TranslationSuite(settings, datamodule, cache_dir)
        suite.test_mode = getattr(task, "test_mode", "eval")
        return suite
    if getattr(datamodule, "unpaired", False):
        return UnpairedSuite(settings, datamodule, cache_dir)
    return MetricSuite(settings, datamodule, cache_dir)
