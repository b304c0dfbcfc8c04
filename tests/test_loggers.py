"""Loggers: a backend that fails to start is dropped with a warning; TensorBoard gets scalars and images."""

from __future__ import annotations

import pytest


def test_failing_wandb_warns_and_training_goes_on(run):
    with pytest.warns(UserWarning, match="logger 'wandb' failed to start and is disabled"):
        summary, out = run("run", "logger=[csv,wandb]", "logger.wandb.mode=bogus", "train.steps=3")
    assert summary["status"] == "finished"
    assert (out / "metrics.csv").read_text().count("\n") == 4
    assert not (out / "wandb").exists()


def test_tensorboard_receives_scalars_and_sample_images(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, out = run("run", "logger=[tensorboard]", "train.steps=4", "train.sample_every=2")
    (events,) = list((out / "tensorboard").glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(events)).Reload()
    assert [e.step for e in acc.Scalars("train/d_loss")] == [1, 2, 3, 4]
    assert [e.step for e in acc.Images("samples")] == [2, 4]
