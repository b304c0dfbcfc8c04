"""Warnings a GAN user needs, each once per run: NaN/Inf, D has won, G has collapsed.

The checks run every ``every`` generator steps (and when training ends) on what the module has
already copied to the host (``module.last_metrics``) plus one small forward pass on the fixed
noise, so the hot loop gains no host syncs.
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor

# D objectives that are >= 0 and reach 0 only when D separates real from fake perfectly
BOUNDED_D_LOSSES = {"minimax_d", "nonsaturating_d", "lsgan_d", "hinge_d"}


class GANHealthWarning(UserWarning):
    """A training pathology: ``warnings.filterwarnings("ignore", category=GANHealthWarning)`` hides them."""


def spread(x: Tensor) -> float:
    """How different the samples of a batch are: the per-feature standard deviation, averaged."""
    x = x.detach().flatten(1).float()
    return float(x.std(dim=0).mean()) if len(x) > 1 else 0.0


def d_loss_name(module: Any) -> str:
    """The function name of the module's adversarial D loss (``functools.partial`` unwrapped)."""
    fn = getattr(getattr(module, "loss", None), "d_loss", None)
    fn = getattr(fn, "func", fn)
    return getattr(fn, "__name__", "")


class HealthCheck(Callback):
    """Checks every ``every`` generator steps and warns once per kind (``issued`` keeps the kinds).

    - ``nonfinite``: a logged scalar or the fixed-noise samples are NaN/Inf.
    - ``d_won``: the adversarial D loss (bounded losses only) stayed below ``d_loss_floor`` for
      ``patience`` generator steps: D separates real from fake and G gets little signal.
    - ``collapse``: the spread of the fixed-noise samples is below ``collapse_ratio`` of the
      spread of real data (after ``warmup`` steps: a fresh generator's outputs are all alike).
    """

    def __init__(
        self,
        every: int = 100,
        warmup: int = 200,
        collapse_ratio: float = 0.05,
        d_loss_floor: float = 0.05,
        patience: int = 300,
    ) -> None:
        self.every = every
        self.warmup = warmup
        self.collapse_ratio = collapse_ratio
        self.d_loss_floor = d_loss_floor
        self.patience = patience
        self.issued: list[str] = []
        self.real_spread: float | None = None
        self._low_since: int | None = None
        self._last_checked = -1

    def warn(self, kind: str, message: str) -> None:
        if kind not in self.issued:
            self.issued.append(kind)
            rank_zero_warn(message, category=GANHealthWarning)

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        datamodule = trainer.datamodule
        if self.real_spread is None and hasattr(datamodule, "real_batch") and trainer.is_global_zero:
            n = max(2, pl_module.num_fixed)
            self.real_spread = spread(datamodule.real_batch(n, seed=pl_module.seed))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        if pl_module.reached(self.every):
            self.run_checks(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.run_checks(trainer, pl_module)

    def run_checks(self, trainer: pl.Trainer, pl_module: Any) -> None:
        """All checks at the current generator step (rank 0 only; once per step)."""
        step = pl_module.g_step
        if step == self._last_checked or not trainer.is_global_zero:
            return
        self._last_checked = step
        last = dict(getattr(pl_module, "last_metrics", {}) or {})
        bad = [
            k
            for k, v in last.items()
            if k.startswith("train/") and isinstance(v, float) and not math.isfinite(v)
        ]
        if bad:
            self.warn(
                "nonfinite",
                f"NaN/Inf in {', '.join(bad)} at generator step {step}: training has diverged. Lower the "
                "learning rates, clip gradients (train.clip_grad_d/g) or add a penalty (loss/penalty=r1).",
            )
        self._check_d_won(step, last, d_loss_name(pl_module))
        if step >= self.warmup:
            self._check_collapse(step, pl_module)

    def _check_d_won(self, step: int, last: dict[str, float], loss_name: str) -> None:
        value = last.get("train/d_adv", last.get("train/d_loss"))
        if loss_name not in BOUNDED_D_LOSSES or value is None or not math.isfinite(value):
            return
        if value >= self.d_loss_floor:
            self._low_since = None
            return
        if self._low_since is None:
            self._low_since = step
        if step - self._low_since >= self.patience:
            self.warn(
                "d_won",
                f"the discriminator loss has stayed below {self.d_loss_floor} since generator step "
                f"{self._low_since} (now {value:.2g} at step {step}): D has won and G gets vanishing "
                "gradients. Try a lower optim.lr_d, train.n_critic=1, loss/penalty=r1 or spectral norm in D.",
            )

    def _check_collapse(self, step: int, pl_module: Any) -> None:
        with torch.no_grad():
            fake = pl_module.sample()
        if not bool(torch.isfinite(fake).all()):
            self.warn("nonfinite", f"the generator outputs NaN/Inf at generator step {step}")
            return
        reference = self.real_spread if self.real_spread else 1.0
        ratio = spread(fake) / reference
        if ratio < self.collapse_ratio:
            self.warn(
                "collapse",
                f"mode collapse at generator step {step}: the fixed-noise samples are nearly identical "
                f"(spread {ratio:.3f} of the real data's). Try a lower optim.lr_g, another loss "
                "(wgan_gp, hinge), loss/penalty=r1, or optim=ttur.",
            )


def health_issues(callbacks: list[Any]) -> list[str]:
    """The kinds of warning the :class:`HealthCheck` among ``callbacks`` issued (for summary.json)."""
    return [kind for cb in callbacks if isinstance(cb, HealthCheck) for kind in cb.issued]
