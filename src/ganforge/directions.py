"""Which way is better for each metric: one table for comparisons, checkpoints and summaries.

Names may be given bare (``fid``) or with their logging prefix (``val/fid``, ``best/fid``); the
last path component decides. Unknown metrics count as lower-is-better, the usual case for losses.
"""

from __future__ import annotations

import math

METRIC_MODES: dict[str, str] = {
    "fid": "min",
    "intra_fid": "min",
    "cas": "max",
    "cas_real": "max",
    "kid": "min",
    "reverse_kl": "min",
    "is": "max",
    "precision": "max",
    "recall": "max",
    "density": "max",  # 1 for fakes from the real distribution; above 1: crowded where reals are dense
    "coverage": "max",
    "modes": "max",
    "hq_frac": "max",
    "psnr": "max",
    "ssim": "max",
    "l1": "min",
    "class_acc": "max",
    "fid_ab": "min",
    "fid_ba": "min",
    "cycle_l1": "min",
    "psnr_ab": "max",
    "ssim_ab": "max",
    "class_acc_ab": "max",
}


def mode(name: str) -> str:
    """``"min"`` or ``"max"`` for a metric name such as ``val/fid`` or ``kid``."""
    return METRIC_MODES.get(name.rsplit("/", 1)[-1], "min")


def better(name: str, a: float | None, b: float | None) -> bool:
    """Whether value ``a`` of metric ``name`` is strictly better than ``b`` (None and NaN never are)."""
    if a is None or math.isnan(a):
        return False
    if b is None or math.isnan(b):
        return True
    return a < b if mode(name) == "min" else a > b


def best(name: str, values: list[float]) -> float | None:
    """The best value of ``values`` for metric ``name``, ignoring NaN; None when there is none."""
    result: float | None = None
    for value in values:
        if better(name, value, result):
            result = value
    return result
