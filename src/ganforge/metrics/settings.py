"""The ``metrics`` config group as settings, the metric names each task measures, and the checks that
need neither the data nor the metric libraries: an entry point runs them before its heavy imports."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from omegaconf import OmegaConf

from ganforge import CONFIG_DIR
from ganforge.errors import ConfigError

IMAGE_METRICS = ("fid", "kid", "is", "prc", "dc")
PAIRED_ONLY = ("psnr", "ssim", "l1", "class_acc")  # image-to-image translation (metrics/translation.py)
CONDITIONAL_METRICS = ("intra_fid", "cas")  # class-conditional generators on labelled data
KNOWN = (*IMAGE_METRICS, *CONDITIONAL_METRICS, "modes", *PAIRED_ONLY)
REFERENCE_METRICS = ("fid", "kid", "prc", "dc", "intra_fid")  # compared with a real reference set: a tag
TRANSLATION_METRICS = ("psnr", "ssim", "l1", "fid", "class_acc")
TRUTH_METRICS = ("psnr", "ssim", "class_acc")  # compare with a known answer
EXTRACTORS = ("classifier", "inception", "selfsup")
RESIZES = ("torch_fidelity", "clean")  # metrics.resize: how images reach Inception's 299 px input


@dataclass
class MetricSettings:
    """``metrics.*`` of the config. ``names`` None means: the metrics that fit the data."""

    names: list[str] | None = None
    num_samples: int = 2000
    batch_size: int = 250
    extractor: str = "auto"
    weights_path: str | None = None
    seed: int = 0
    every: int = 500
    monitor: str | None = None
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    isc_splits: int = 10
    prc_neighborhood: int = 3
    dc_neighborhood: int = 5  # density and coverage: k of the real k-NN balls (Naeem et al. 2020)
    modes_num_samples: int | None = None  # None: what the data's literature uses (mode_samples)
    resize: str = "torch_fidelity"  # Inception's input resize: torch_fidelity (TF1 bilinear) | clean
    reference: str = "train"  # the real set: train (the training items) | all (the population they came from)
    classifier: dict[str, Any] = field(default_factory=dict)
    selfsup: dict[str, Any] = field(default_factory=dict)  # the self-supervised extractor's settings
    conditional: bool | None = None  # the model is class-conditional (None: not known yet, see check)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> MetricSettings | None:
        """None when the config selects no metrics (``metrics=[]``): then no metric is named and, as no
        option of the group is there, not all of its shared settings (``base.yaml``) are, only what a
        preset set (``metrics.every``, ``metrics.num_samples``)."""
        if not cfg:
            return None
        names = [name for name in KNOWN if cfg.get(name)]
        if not names and not shared_settings() <= set(cfg):
            return None
        known = {f.name for f in fields(cls)} - {"names", "classifier", "selfsup"}
        plain = {k: v for k, v in dict(cfg).items() if k in known}
        nets = {k: dict(cfg.get(k) or {}) for k in ("classifier", "selfsup")}
        return cls(names=names or None, **nets, **plain)


@functools.cache
def shared_settings() -> frozenset[str]:
    """The settings of ``metrics/base.yaml``, which every option of the group includes."""
    return frozenset(str(key) for key in OmegaConf.load(CONFIG_DIR / "metrics" / "base.yaml"))


def check_values(settings: MetricSettings) -> None:
    """A ConfigError for a ``metrics.extractor`` or ``metrics.resize`` that names no choice."""
    if settings.extractor != "auto" and settings.extractor not in EXTRACTORS:
        raise ConfigError(
            f"metrics.extractor={settings.extractor}: choose classifier, inception or auto (or selfsup: a "
            "network trained on the images themselves, for unlabelled data)"
        )
    if settings.resize not in RESIZES:
        raise ConfigError(f"metrics.resize={settings.resize}: choose {' or '.join(RESIZES)}")


def check_task(names: list[str] | None, task: str) -> None:
    """A ConfigError for metrics the task's outputs cannot have: ground-truth scores for ``generation``,
    sample metrics for the translation tasks (``paired``, ``unpaired``)."""
    if task == "generation":
        paired_only = [n for n in names or [] if n in PAIRED_ONLY]
        if paired_only:
            raise ConfigError(
                f"metrics {paired_only} compare with a ground truth: they need paired data (task=paired)"
            )
        return
    wrong = [n for n in names or [] if n not in TRANSLATION_METRICS]
    if wrong:
        raise ConfigError(
            f"metrics {wrong} are for generation; image-to-image translation measures "
            f"{', '.join(TRANSLATION_METRICS)} (metrics=[psnr,ssim,l1,fid,class_acc])"
        )


def check_request(settings: MetricSettings | None, task: str) -> MetricSettings:
    """What a command that measures a checkpoint of ``task`` can check of its ``metrics`` before it reads
    any data: that some are selected, the choices' values, and that they fit the task."""
    if settings is None:
        raise ConfigError("no metrics selected: pass e.g. metrics=[fid,kid]")
    check_values(settings)
    check_task(settings.names, task)
    return settings
