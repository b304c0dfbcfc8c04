"""A conditional G draws its labels from the training data's label distribution (counted by the data
module, kept in the checkpoint), for training, metrics and ganforge-eval alike — on an imbalanced set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from ganforge.build import build
from ganforge.metrics.suite import LatentSequence
from ganforge.module import GANModule
from ganforge.restore import restore
from ganforge.settings import Optimizers
from ganforge.tasks.generation import GenerationTask
from helpers import compose_cfg, train_run

COUNTS = {"a": 6, "b": 3, "c": 1}  # an imbalanced labelled folder: 60 %, 30 %, 10 %
WANT = [0.6, 0.3, 0.1]
SMALL = ["model.generator.width=8", "model.discriminator.width=8", "data.batch_size=4", "model.z_dim=4"]


@pytest.fixture
def imbalanced(tmp_path: Path) -> list[str]:
    rng = np.random.default_rng(0)
    for cls, n in COUNTS.items():
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), "L").save(
                tmp_path / "data" / cls / f"{i}.png"
            )
    return [
        "data=image_folder", f"data.path={tmp_path / 'data'}", "data.resolution=16", "data.channels=1",
        "model.conditional=true", *SMALL,
    ]  # fmt: skip


def test_the_data_module_counts_the_labels(tmp_path, imbalanced):
    datamodule, module = build(compose_cfg(tmp_path / "run", *imbalanced))
    assert datamodule.label_counts().tolist() == [6, 3, 1]
    torch.testing.assert_close(module.task.label_probs, torch.tensor(WANT))


def test_g_draws_labels_with_the_datas_frequencies(tmp_path, imbalanced):
    _, module = build(compose_cfg(tmp_path / "run", *imbalanced))
    torch.manual_seed(0)
    freq = torch.bincount(module.task.sample_labels(60000), minlength=3) / 60000
    torch.testing.assert_close(freq, torch.tensor(WANT), atol=0.01, rtol=0)  # uniform: 1/3 each
    gen = torch.Generator().manual_seed(1)
    first = module.task.sample_labels(500, gen)
    assert torch.equal(first, module.task.sample_labels(500, torch.Generator().manual_seed(1)))  # seeded
    assert (torch.bincount(first, minlength=3) > 0).all()


class LabelRecorder(nn.Module):
    """A G that records the labels it is asked for (and makes blank 16 px images)."""

    z_dim = 4

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.seen: list[Tensor] = []

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        self.seen.append(y)
        return self.w + torch.zeros(len(z), 1, 16, 16)


def test_the_distribution_is_in_the_checkpoint_and_ganforge_eval_draws_from_it(tmp_path, imbalanced):
    train_run(tmp_path / "run", *imbalanced, "train.steps=2")
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    torch.testing.assert_close(state["task.label_probs"], torch.tensor(WANT))
    _, _, module, _ = restore(ckpt)
    torch.testing.assert_close(module.task.label_probs, torch.tensor(WANT))
    # what the metrics (training and ganforge-eval alike) generate from: labels from the same distribution
    task = GenerationTask(num_classes=3)
    task.label_probs = module.task.label_probs.clone()
    recorder = LabelRecorder()
    probe = GANModule(recorder, nn.Identity(), None, Optimizers(), task=task)
    source = LatentSequence(0, 4, probe.task.sample_labels)
    for start in range(0, 30000, 1000):
        probe.sample(*source.rows(start, start + 1000))
    freq = torch.bincount(torch.cat(recorder.seen[-30:]), minlength=3) / 30000
    torch.testing.assert_close(freq, torch.tensor(WANT), atol=0.015, rtol=0)


def test_a_checkpoint_without_the_distribution_loads_as_uniform():
    """Checkpoints from before the distribution was saved: their G drew labels uniformly."""
    task = GenerationTask(num_classes=4)
    task.label_probs = torch.tensor([0.7, 0.1, 0.1, 0.1])
    task.load_state_dict({"fixed_z": task.fixed_z})  # the grid inputs; no label_probs
    torch.testing.assert_close(task.label_probs, torch.full((4,), 0.25))


@pytest.mark.parametrize("data", ["digits", "stacked"])
def test_label_counts_of_the_bundled_and_stacked_digits(tmp_path, data):
    datamodule, module = build(compose_cfg(tmp_path, f"data={data}", "model.conditional=true", *SMALL))
    counts = datamodule.label_counts()
    assert counts.shape == (datamodule.num_classes,) and counts.sum() == datamodule.num_items()
    if data == "digits":  # scikit-learn's digits: 178 zeros ... 180 nines
        assert counts.tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    else:  # item i stacks source items table[i]: its label is their labels as base-10 digits
        _, y = datamodule.items([0, 1, 2])
        source = datamodule.source.train_labels()[datamodule.dataset.table[:3]]
        assert y.tolist() == (source * torch.tensor([100, 10, 1])).sum(1).tolist()
    torch.testing.assert_close(module.task.label_probs, counts.float() / counts.sum())


def test_a_checkpoint_with_the_grid_inputs_in_the_module_loads(tmp_path, imbalanced):
    """Checkpoints from before the task held the latents kept the fixed grid inputs as the module's
    ``fixed_z``/``fixed_y``: they load into the task, and the sample grid is the one training drew."""
    train_run(tmp_path / "run", *imbalanced, "train.steps=2")
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    state = ckpt["state_dict"]
    z, y = state.pop("task.fixed_z"), state.pop("task.fixed_y")
    z = z + 1.0  # not what the seed would give again: it must come from the file
    state["fixed_z"], state["fixed_y"] = z, y
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    _, _, module, _ = restore(old)
    assert torch.equal(module.task.fixed_z, z) and torch.equal(module.task.fixed_y, y)
    assert y.tolist() == [c for c in range(3) for _ in range(len(y) // 3)]  # one row per class
