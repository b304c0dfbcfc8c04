"""Lightning's own mechanisms work on ganforge runs: ``train/*`` and ``val/*`` reach
``trainer.callback_metrics`` (EarlyStopping and ModelCheckpoint act on them), the checkpoint callback is a
``ModelCheckpoint`` (W&B artifacts, ``ckpt_path=last``), the trainer flags users pass work or are refused
in one line, and summary.json reports the wall time of a segment and of the whole run."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import torch

from helpers import assert_refused_before_training, command, train_run
from wandb_records import read_records

TINY = ("data=ring8", "model=mlp")
PL = "pytorch_lightning.callbacks"
FID = ("metrics=[fid]", "metrics.num_samples=200", "metrics.every=4")


def logged(out: Path, key: str) -> dict[int, float]:
    """``key`` per generator step in the run's metrics.csv."""
    with (out / "metrics.csv").open() as f:
        return {int(row["step"]): float(row[key]) for row in csv.DictReader(f) if row.get(key)}


def test_train_and_val_metrics_reach_callback_metrics(tmp_path):
    out, seen = tmp_path / "run", tmp_path / "seen.jsonl"
    train_run(
        out,
        "train.steps=8",
        "train.log_every=2",
        *FID,
        f"+callbacks.seen={{_target_:job_callbacks.SeenMetrics,path:{seen}}}",
    )
    rows = [json.loads(line) for line in seen.read_text().splitlines()]
    d_loss, fid = logged(out, "train/d_loss"), logged(out, "val/fid")
    assert sorted(fid) == [4, 8] and sorted(d_loss) == [2, 4, 6, 8]
    # what Lightning's callbacks see is what the loggers got, at the same generator step
    for row in rows:
        if row["g_step"] in d_loss:
            assert row["train/d_loss"] == pytest.approx(d_loss[row["g_step"]], rel=1e-6)
        assert row["trainer/g_step"] <= row["g_step"]
    assert [r["val/fid"] for r in rows if r["g_step"] == 4] == [pytest.approx(fid[4], rel=1e-6)]
    assert rows[-1]["val/fid"] == pytest.approx(fid[8], rel=1e-6)  # the final evaluation, at the end


def test_early_stopping_on_val_fid_stops_the_run(tmp_path):
    stop = f"+callbacks.stop={{_target_:{PL}.EarlyStopping,monitor:val/fid,stopping_threshold:1e9}}"
    summary = train_run(tmp_path / "run", "train.steps=40", *FID, stop)
    assert summary["status"] == "stopped" and summary["g_steps"] == 4  # the first evaluation is below 1e9


def test_a_user_model_checkpoint_keeps_the_best_val_fid(tmp_path):
    top = f"+callbacks.top={{_target_:{PL}.ModelCheckpoint,monitor:val/fid,dirpath:{tmp_path}/top}}"
    summary = train_run(tmp_path / "run", "train.steps=12", *FID, top)
    (path,) = (tmp_path / "top").glob("*.ckpt")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = next(v for k, v in ckpt["callbacks"].items() if "'monitor': 'val/fid'" in k)
    assert summary["status"] == "finished"
    assert float(state["best_model_score"]) == pytest.approx(summary["best"]["val/fid"], rel=1e-6)


def test_ckpt_path_last_continues_the_run(tmp_path):
    out = tmp_path / "run"
    train_run(out, *TINY, "train.steps=6", "train.ckpt_every=3")
    summary = train_run(out, *TINY, "train.steps=10", "ckpt_path=last")
    assert summary["resumed_from"] == str(out / "checkpoints" / "last.ckpt") and summary["g_steps"] == 10


def test_checkpoints_become_wandb_artifacts_with_log_model(tmp_path):
    out = tmp_path / "run"
    train_run(
        out, *TINY, "train.steps=6", "train.ckpt_every=3", "logger=[wandb]", "logger.wandb.log_model=true"
    )
    from ganforge.process import finish_wandb

    finish_wandb()
    (path,) = out.glob("wandb/offline-run-*/run-*.wandb")
    artifacts = [r.artifact for r in read_records(path) if r.WhichOneof("record_type") == "artifact"]
    assert artifacts and {a.type for a in artifacts} == {"model"}
    assert any("latest" in a.aliases for a in artifacts)


def test_summary_reports_the_segment_and_the_total_wall_time(tmp_path):
    out = tmp_path / "run"
    first = train_run(out, *TINY, "train.steps=6", "train.ckpt_every=3")
    stored = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["ganforge"]["wall_time_s"]
    second = train_run(out, *TINY, "train.steps=12", "ckpt_path=auto")
    assert 0 < stored <= first["wall_time_total_s"] == first["wall_time_s"]
    assert second["wall_time_total_s"] == pytest.approx(stored + second["wall_time_s"], abs=1e-2)


def test_max_time_stops_the_run_and_saves_it(tmp_path):
    out = tmp_path / "run"
    slow = "+callbacks.slow={_target_:job_callbacks.Throttle,seconds:0.2}"
    summary = train_run(out, *TINY, "train.steps=100000", "trainer.max_time=00:00:00:02", slow)
    assert summary["status"] == "stopped" and 0 < summary["g_steps"] < 100
    assert (
        torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["ganforge"]["g_step"]
        == summary["g_steps"]
    )


def test_fast_dev_run_trains_a_few_steps_and_writes_nothing(tmp_path):
    res = command(
        "train",
        *TINY,
        "trainer.fast_dev_run=true",
        "logger=[csv,wandb]",
        "train.steps=50",
        f"hydra.run.dir={tmp_path}/run",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    left = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert left == [".hydra", "train.log"], left  # Hydra's config and log: no checkpoint, grid, metrics
    done = re.search(r"generator steps\W+(\d+) / 50", res.stderr)  # one batch: train.steps_per_batch steps
    assert done and 0 < int(done.group(1)) <= 10, res.stderr[-2000:]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+trainer.max_steps=20", "trainer.max_steps=20: the training budget is train.steps"),
        ("trainer.max_epochs=3", "trainer.max_epochs=3: the training budget is train.steps"),
        (
            "+trainer.limit_train_batches=5",
            "trainer.limit_train_batches=5: the training budget is train.steps",
        ),
    ],
)
def test_lightning_budgets_are_refused_in_one_line(tmp_path, override, message):
    assert_refused_before_training(tmp_path, *TINY, override, message=message)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_gpu_trainer_without_a_gpu_is_one_line(tmp_path):
    assert_refused_before_training(tmp_path, *TINY, "trainer=gpu", message="this machine has no CUDA GPU")
