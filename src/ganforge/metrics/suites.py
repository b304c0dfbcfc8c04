"""Which suite measures the generators of a data set: sample metrics (FID, KID, IS, PR, modes) for
generation, the held-out pairs for paired translation, both directions for two-domain data."""

from __future__ import annotations

from pathlib import Path

from ganforge.data.base import GANDataModule
from ganforge.metrics.suite import MetricSettings, MetricSuite
from ganforge.metrics.translation import TranslationSuite
from ganforge.metrics.unpaired import UnpairedSuite

Suite = MetricSuite | TranslationSuite | UnpairedSuite


def make_suite(settings: MetricSettings, datamodule: GANDataModule, cache_dir: str | Path) -> Suite:
    """The suite for ``datamodule``; a ConfigError (from the suite) for metrics that do not fit it."""
    if getattr(datamodule, "paired", False):
        return TranslationSuite(settings, datamodule, cache_dir)
    if getattr(datamodule, "unpaired", False):
        return UnpairedSuite(settings, datamodule, cache_dir)
    return MetricSuite(settings, datamodule, cache_dir)
