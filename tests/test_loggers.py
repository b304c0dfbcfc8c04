"""Loggers: a backend that fails to start is dropped with a warning; TensorBoard gets scalars and images."""

from __future__ import annotations

from typing import Any

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


def hparams_records(path) -> dict[str, Any]:
    """The HParams plugin's records in the event files under ``path``: experiment and session start."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = EventAccumulator(str(path)).Reload().PluginTagToContent("hparams")
    records = {}
    for raw in content.values():
        data = plugin_data_pb2.HParamsPluginData.FromString(raw)
        records[data.WhichOneof("data")] = getattr(data, data.WhichOneof("data"))
    return records


def test_tensorboard_hparams_carry_the_config_and_the_final_metrics(run):
    """The HParams tab: one session per run with the flattened config, and the final metrics by name;
    ``trainer/g_step`` is the step of every scalar, not a scalar of its own."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, out = run(
        "run",
        "data=ring8",
        "model=mlp",
        "logger=[tensorboard]",
        "train.steps=6",
        "train.log_every=2",
        "metrics=default",
        "metrics.every=3",
    )
    acc = EventAccumulator(str(out / "tensorboard")).Reload()
    assert "trainer/g_step" not in acc.Tags()["scalars"]
    assert [e.step for e in acc.Scalars("train/d_loss")] == [2, 4, 6]
    assert [e.step for e in acc.Scalars("val/modes")] == [3, 6]

    records = hparams_records(out / "tensorboard")
    metrics = [info.name.tag for info in records["experiment"].metric_infos]
    assert sorted(metrics) == ["train/d_loss", "train/g_loss", "val/hq_frac", "val/modes", "val/reverse_kl"]
    params = records["session_start_info"].hparams
    assert params["train/steps"].number_value == 6
    assert params["data/_target_"].string_value == "ganforge.data.toy.RingDataModule"
    assert params["metrics/every"].number_value == 3
    assert {"experiment", "session_start_info", "session_end_info"} <= set(records)
