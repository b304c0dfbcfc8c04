"""Metrics in real runs: val/* logged and best.ckpt kept, the reference cache reused, mode metrics on
toy and stacked data, clear errors, and the ganforge-eval / ganforge-sample commands."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from ganforge.errors import ConfigError
from ganforge.metrics.features import INCEPTION_FILE, write_random_inception_weights
from helpers import DDP_CPU, command

SMALL = ["metrics.num_samples=300", "metrics.batch_size=300"]


class TrainModeProbe(pl.Callback):
    """Records whether G is in train mode at every batch end (after the metrics callback ran)."""

    seen: list[bool] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        TrainModeProbe.seen.append(pl_module.generator.training)


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_training_logs_val_metrics_and_keeps_best_checkpoint(run):
    TrainModeProbe.seen = []
    summary, out = run(
        "digits",
        "metrics=default",
        *SMALL,
        "metrics.every=5",
        "train.steps=10",
        "train.ckpt_every=5",
        "+callbacks.probe._target_=test_metrics_run.TrainModeProbe",
    )
    assert summary["status"] == "finished"
    val = [r for r in rows(out / "metrics.csv") if r.get("val/fid")]
    assert [int(r["trainer/g_step"]) for r in val] == [5, 10]  # every 5 steps; the end is step 10
    fids = [float(r["val/fid"]) for r in val]
    assert all(f > 0 for f in fids) and all(float(r["val/kid"]) == float(r["val/kid"]) for r in val)
    assert summary["best"]["val/fid"] == min(fids)
    assert summary["best_step"] == [5, 10][fids.index(min(fids))]
    best = torch.load(out / "checkpoints" / "best.ckpt", weights_only=False)
    assert best["ganforge"]["g_step"] == summary["best_step"]
    assert summary["last"]["val/fid"] == fids[-1]
    assert (
        all(TrainModeProbe.seen) and len(TrainModeProbe.seen) == 2
    )  # G back in train mode (5 steps a batch)


def test_reference_features_come_from_the_cache_on_a_second_run(run):
    overrides = ("metrics=[fid]", *SMALL, "metrics.seed=7", "train.steps=2")  # a reference set of its own
    first, _ = run("first", *overrides)
    second, _ = run("second", *overrides)
    assert first["metrics"]["reference_cached"] is False
    assert second["metrics"]["reference_cached"] is True
    assert second["metrics"]["classifier_cached"] is True
    cache = Path(os.environ["GANFORGE_CACHE_DIR"]) / "fidelity"
    assert len(list(cache.glob("*-s7-*features-features.pt"))) == 1


def test_ring_reports_mode_coverage(run):
    summary, out = run("ring", "data=ring8", "model=mlp", "metrics=default", "train.steps=5")
    last = summary["last"]
    assert set(summary["best"]) == {"val/modes", "val/hq_frac", "val/reverse_kl"}
    assert 0 <= last["val/modes"] <= 8 and 0 <= last["val/hq_frac"] <= 1
    assert 0 <= last["val/reverse_kl"] <= np.log(8) + 1e-9
    assert (out / "checkpoints" / "best.ckpt").is_file()


def test_stacked_digits_train_with_modes_and_fid(run):
    summary, _ = run(
        "stacked", "data=stacked", "metrics=default", *SMALL, "metrics.modes_num_samples=400", "train.steps=3"
    )
    last = summary["last"]
    assert {"val/fid", "val/modes", "val/reverse_kl"} <= set(last)
    assert 1 <= last["val/modes"] <= 400 and "val/hq_frac" not in last


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data=ring8", "model=mlp", "metrics=[fid]"], "need image data"),
        (["metrics=[modes]"], "needs data with known modes"),
        (["metrics=[fid]", "metrics.extractor=resnet"], "choose classifier, inception or auto"),
        (
            ["metrics=[fid]", "metrics.extractor=inception", "metrics.weights_path=/no/such/file.pth"],
            "no such file",
        ),
    ],
)
def test_metric_mistakes_fail_before_training(run, overrides, message):
    with pytest.raises(ConfigError, match=message):
        run("bad", *overrides)


def test_missing_inception_weights_fail_before_training(tmp_path):
    # no weights in the hub cache, and the download refused at once (the discard port): offline anywhere
    env_home = {"TORCH_HOME": str(tmp_path / "torch"), "GANFORGE_INCEPTION_URL": "http://127.0.0.1:9/w.pth"}
    res = command(
        "train",
        "metrics=[fid]",
        "metrics.extractor=inception",
        "logger=[csv]",
        f"hydra.run.dir={tmp_path}/run",
        cwd=tmp_path,
        env=env_home,
    )
    assert res.returncode == 2
    errors = [line for line in res.stderr.splitlines() if line.startswith("ganforge-train: error:")]
    assert len(errors) == 1 and INCEPTION_FILE in errors[0] and "metrics.weights_path=" in errors[0]
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "metrics.csv").exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A short digits run with a checkpoint to evaluate and sample from."""
    from helpers import train_run

    out = tmp_path_factory.mktemp("trained")
    train_run(out, "train.steps=3")
    return out / "checkpoints" / "last.ckpt"


def test_eval_writes_a_table_and_eval_json(trained, tmp_path):
    res = command(
        "eval", f"ckpt_path={trained}", "metrics=[fid,kid,is,prc]", "metrics.num_samples=300", cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads((trained.parent / "eval.json").read_text())
    assert set(result["metrics"]) >= {"val/fid", "val/kid", "val/is", "val/precision", "val/recall"}
    assert result["num_samples"] == 300 and result["seed"] == 0 and result["extractor"].startswith("clf")
    assert result["g_step"] == 3 and "val/fid" in res.stdout
    tags = result["protocol_tags"]  # how each value was measured (the classifier: no resize)
    assert set(tags) == {"val/fid", "val/kid", "val/prc"} and tags["val/kid"].startswith("kid[classifier:")
    assert tags["val/fid"].endswith("|n=300|ref=train:300|resize=none]")
    assert result["protocol"]["reference"] == {"split": "train", "count": 300, "seed": 0}
    assert list(tmp_path.iterdir()) == []  # nothing written where it was launched


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory) -> Path:
    """A weights file of the FID Inception architecture (random values: the code path, not FID values)."""
    return write_random_inception_weights(tmp_path_factory.mktemp("inception") / "inception.pth")


def test_training_with_inception_features(run, inception_weights):
    summary, _ = run(
        "inception",
        "metrics=[fid,is]",
        "metrics.extractor=inception",
        f"metrics.weights_path={inception_weights}",
        "metrics.num_samples=8",
        "metrics.batch_size=8",
        "train.steps=2",
    )
    assert summary["metrics"]["extractor"] == "inception" and summary["metrics"]["rgb"] is True
    protocol = summary["metrics"]["protocol"]
    assert protocol["resize"] == "torch_fidelity" and protocol["layer"] == "2048"
    assert summary["metrics"]["protocol_tags"]["val/fid"] == (
        f"fid[inception:{protocol['weights_sha256'][:8]}|n=8|ref=train:8|resize=torch_fidelity]"
    )
    assert summary["last"]["val/fid"] >= 0 and summary["last"]["val/is"] >= 1


def test_eval_with_inception_weights_from_a_local_file(trained, tmp_path, inception_weights):
    """The Inception path of ganforge-eval (torch-fidelity's calculate_metrics), grayscale → RGB."""
    weights = inception_weights
    out = tmp_path / "eval.json"
    res = command(
        "eval",
        f"ckpt_path={trained}",
        "metrics=[fid]",
        "metrics.extractor=inception",
        f"metrics.weights_path={weights}",
        "metrics.num_samples=12",
        "metrics.batch_size=12",
        f"out={out}",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["extractor"] == "inception" and result["metrics"]["val/fid"] >= 0


def test_eval_of_a_corrupt_checkpoint_is_one_line(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    res = command("eval", f"ckpt_path={bad}", cwd=tmp_path)
    assert res.returncode == 2 and res.stderr.strip().splitlines()[-1].startswith("ganforge-eval: error:")
    assert str(bad) in res.stderr


def test_sample_png_grid_and_npz(trained, tmp_path):
    res = command("sample", f"ckpt_path={trained}", "n=16", f"out={tmp_path}/grid.png", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    with Image.open(tmp_path / "grid.png") as image:
        assert image.size == (4 * 128 + 5 * 2,) * 2  # 4x4 grid of 16 px enlarged x8 (>= 512 px), 2 px padding
    res = command(
        "sample", f"ckpt_path={trained}", "n=5", "format=npz", "seed=3", f"out={tmp_path}/s.npz", cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr[-3000:]
    data = np.load(tmp_path / "s.npz")
    assert data["samples"].shape == (5, 1, 16, 16) and np.abs(data["samples"]).max() <= 1
    again = command(
        "sample", f"ckpt_path={trained}", "n=5", "format=npz", "seed=3", f"out={tmp_path}/t.npz", cwd=tmp_path
    )
    assert again.returncode == 0
    assert np.array_equal(np.load(tmp_path / "t.npz")["samples"], data["samples"])  # the seed fixes them


def test_ddp_ranks_share_the_samples_and_only_rank_0_logs(tmp_path):
    """2 CPU processes: rank 0 prepares the cache, both generate half, the states are reduced, and
    both ranks compute the same values, also KID's random subsets and IS's splits, so both agree on
    best.ckpt by val/kid (a disagreement would leave one rank waiting in the collective save)."""
    out = tmp_path / "run"
    res = command(
        "train",
        *DDP_CPU,
        "train.steps=4",
        "metrics=[fid,kid,is,prc]",
        "metrics.monitor=val/kid",
        "metrics.kid_subset_size=100",
        "metrics.every=2",
        "metrics.num_samples=301",
        "metrics.batch_size=100",
        "logger=[csv]",
        "train.sample_every=0",
        "+callbacks.ranks._target_=ddp_runs.RankMetrics",
        f"+callbacks.ranks.out={out}/ranks",
        f"hydra.run.dir={out}",
        cwd=tmp_path,
        env={"PYTHONPATH": str(Path(__file__).parent)},
        timeout=240,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    val = [r for r in rows(out / "metrics.csv") if r.get("val/fid")]
    assert [int(r["trainer/g_step"]) for r in val] == [2, 4]  # logged once per evaluation
    summary = json.loads((out / "summary.json").read_text())
    assert summary["last"]["val/fid"] == float(val[-1]["val/fid"]) > 0
    assert 0 <= summary["last"]["val/precision"] <= 1 and (out / "checkpoints" / "best.ckpt").is_file()
    ranks = [json.loads((out / "ranks" / f"metrics_rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1] and {"val/kid", "val/is"} <= set(ranks[0]["latest"])
    assert summary["best_step"] == ranks[0]["best_step"]
    assert summary["metrics"]["n_real"] == summary["metrics"]["n_fake"] == 301


@pytest.mark.parametrize(
    "overrides",
    [
        ["metrics=[fid,kid,prc]", *SMALL, "metrics.kid_subset_size=100"],
        ["data=ring8", "model=mlp", "metrics=default"],
    ],
    ids=["digits", "ring8"],
)
def test_eval_reproduces_the_values_logged_at_the_checkpoints_step(run, tmp_path, overrides):
    """ganforge-eval on best.ckpt with the training run's metrics settings gives the val/* logged at
    that step: one code path (same samples, reference set and extractor)."""
    summary, out = run("train", *overrides, "metrics.every=2", "train.steps=4")
    step = summary["best_step"]
    val = [r for r in rows(out / "metrics.csv") if any(v for k, v in r.items() if k.startswith("val/"))]
    logged = next(r for r in val if int(r["trainer/g_step"]) == step)
    ckpt = out / "checkpoints" / "best.ckpt"
    res = command(
        "eval",
        f"ckpt_path={ckpt}",
        *[o for o in overrides if o.startswith("metrics")],
        f"out={tmp_path}/eval.json",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["g_step"] == step and set(result["metrics"]) == set(summary["best"])
    for name, value in result["metrics"].items():
        assert value == pytest.approx(float(logged[name]), rel=1e-6, abs=1e-9), name
