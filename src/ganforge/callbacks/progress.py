"""A progress bar that counts generator steps against ``train.steps`` and never syncs the device."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar

SHOWN = {"train/d_loss": "d_loss", "train/g_loss": "g_loss", "val/fid": "fid"}


class GANProgressBar(TQDMProgressBar):
    """Generator steps done / ``train.steps``, steps/s, ETA and the latest logged D/G losses."""

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        bar = self.train_progress_bar
        bar.reset(total=pl_module.total_steps)
        bar.initial = pl_module.g_step
        bar.n = pl_module.g_step
        bar.set_description("train")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        n = pl_module.g_step
        if n % self.refresh_rate == 0 or n >= pl_module.total_steps:
            bar = self.train_progress_bar
            bar.n = n
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            bar.refresh()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        pass

    def get_metrics(self, trainer: pl.Trainer, pl_module: Any) -> dict[str, Any]:
        last = getattr(pl_module, "last_metrics", {})
        return {short: f"{last[key]:.3g}" for key, short in SHOWN.items() if key in last}
