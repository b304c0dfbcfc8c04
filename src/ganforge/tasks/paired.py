"""``task=paired``: pix2pix (Isola et al. 2017) — G(source) → target; D judges (source, image) pairs;
G also minimises λ·L1 to the ground truth (``task.l1_weight``, the paper's 100)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from ganforge.errors import ConfigError
from ganforge.tasks.base import Draw, Grid, Task, Term, as_rgb


class PairedTask(Task):
    """Paired translation: loader batches are (source, target, label); D sees source and image
    concatenated along channels. ``adversarial=false`` trains G on the L1 term alone (the regression
    baseline of the paper's ablation)."""

    name = "paired"

    TEST_MODES = ("eval", "paper")
    COLUMNS = ("source", "output", "target")  # the titles of a grid's columns

    # one G forward per step for D's and G's update, as pix2pix's and CycleGAN's authors' code does
    shares_forward = True

    def __init__(
        self,
        l1_weight: float = 100.0,
        adversarial: bool = True,
        grid_examples: int = 8,
        test_mode: str = "eval",
        test_seed: int = 0,
    ) -> None:
        super().__init__()
        if test_mode not in self.TEST_MODES:
            raise ConfigError(f"task.test_mode must be eval or paper, got {test_mode!r}")
        self.test_mode, self.test_seed = test_mode, int(test_seed)
        if l1_weight < 0:
            raise ConfigError(f"task.l1_weight must be non-negative, got {l1_weight}")
        if not adversarial and l1_weight == 0:
            raise ConfigError("task.adversarial=false with task.l1_weight=0 leaves G nothing to minimise")
        self.l1_weight = float(l1_weight)
        self._adversarial = bool(adversarial)
        self.grid_examples = grid_examples
        self.register_buffer("fixed_source", torch.zeros(0))
        self.register_buffer("fixed_target", torch.zeros(0))

    @property
    def adversarial(self) -> bool:
        return self._adversarial

    def check(self, datamodule: Any) -> None:
        if not getattr(datamodule, "paired", False):
            raise ConfigError(
                f"task=paired needs paired data (data=degrade or data=paired_folder), "
                f"got {type(datamodule).__name__}"
            )

    def net_kwargs(self, datamodule: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        source, target = tuple(datamodule.source_shape), tuple(datamodule.data_shape)
        d_shape = (source[0] + target[0], *target[1:])
        return {"in_channels": source[0]}, {"data_shape": d_shape}

    def bind(self, datamodule: Any) -> None:
        """The first held-out pairs are the grid's fixed examples (the same in every grid and run)."""
        n = min(self.grid_examples, datamodule.num_val_items())
        source, target, _ = datamodule.val_items(list(range(n)))
        self.fixed_source, self.fixed_target = source.clone(), target.clone()

    def real(self, part: tuple[Tensor, ...]) -> tuple[Tensor, Tensor | None]:
        source, target = part[0], part[1]
        return target, source

    def draw(self, part: tuple[Tensor, ...]) -> Draw:
        return Draw((part[0],), part[0])

    def d_input(self, image: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor | None]:
        return torch.cat([cond, image], dim=1), None

    @contextlib.contextmanager
    def inference(self, net: nn.Module) -> Iterator[None]:
        """``test_mode=eval``: eval mode (running batch-norm statistics, no dropout). ``paper``: the
        pix2pix paper's test protocol (Isola et al. 2017, Sec. 3.3; the authors' test.py without
        ``--eval``): dropout on and batch norm with the test batch's statistics. Dropout draws from a
        generator seeded by ``test_seed`` each call, the training RNG stream is left as it was, and the
        running statistics are put back, so measuring never changes training or a resume."""
        if self.test_mode == "eval":
            with super().inference(net):
                yield
            return
        norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        saved = [{k: v.clone() for k, v in m._buffers.items() if v is not None} for m in norms]
        was_training = net.training
        devices = [d for d in {p.device for p in net.parameters()} if d.type == "cuda"]
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.test_seed)
            net.train()
            try:
                yield
            finally:
                net.train(was_training)
                for module, buffers in zip(norms, saved, strict=True):
                    for key, value in buffers.items():
                        module._buffers[key].copy_(value)

    def g_terms(self, net: nn.Module, part: tuple[Tensor, ...], fake: Tensor) -> dict[str, Term]:
        return {"l1": Term((fake - part[1]).abs().mean(), self.l1_weight)}

    def fixed_draw(self) -> Draw:
        return Draw((self.fixed_source,), self.fixed_source)

    def grid(self, module: Any) -> Grid:
        """Rows of source | output | ground truth for the fixed held-out pairs."""
        output = module.sample().float().cpu()
        channels = max(output.shape[1], self.fixed_source.shape[1])
        parts = [as_rgb(t.float().cpu(), channels) for t in (self.fixed_source, output, self.fixed_target)]
        rows = torch.stack(parts, dim=1).flatten(0, 1)  # source_0, output_0, target_0, source_1, ...
        return Grid(rows, 3, headers=[(0, self.COLUMNS)])
