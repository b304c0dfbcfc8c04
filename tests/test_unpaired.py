"""Unpaired translation (task=unpaired, CycleGAN) through the real config tree: logged terms and
metrics, grids, exact resume with the image pools, ganforge-eval agreeing with training,
ganforge-sample translating a folder either way, and one-line mistakes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import assert_refused_before_training, command
from test_resume import assert_same_training_state

CG = [
    "experiment=cyclegan_digits",
    "model.generator.width=8",
    "model.generator.n_blocks=1",
    "model.discriminator.width=8",
    "data.batch_size=8",
]
METRICS = [
    "metrics=default",
    "metrics.classifier.steps=50",
]  # fid_ab, fid_ba, cycle_l1, psnr/ssim/class_acc_ab


def last(out: Path) -> dict:
    return torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)


def test_unpaired_run_logs_its_terms_metrics_and_cycle_grid(run):
    summary, out = run("cg", *CG, *METRICS, "train.steps=4", "train.log_every=2", "metrics.every=2")
    assert summary["status"] == "finished" and summary["g_steps"] == 4
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    logged = [r for r in rows if r.get("train/g_cycle")]
    assert [int(r["trainer/g_step"]) for r in logged] == [2, 4]
    # the objective against the paper's formulas: test_unpaired_task.py, on hand-made nets
    assert all(r.get("train/g_adv") and r.get("train/g_identity") for r in logged)
    val = [r for r in rows if r.get("val/fid_ab")]
    assert [int(r["trainer/g_step"]) for r in val] == [2, 4]
    for key in ("fid_ab", "fid_ba", "cycle_l1", "psnr_ab", "ssim_ab", "class_acc_ab"):
        assert np.isfinite(float(val[-1][f"val/{key}"])), key
    assert summary["best"]["val/fid_ab"] == min(float(r["val/fid_ab"]) for r in val)
    state = last(out)["state_dict"]  # two translators, two discriminators, the pools
    assert {"generator.ab", "generator.ba", "discriminator.a", "discriminator.b"} <= {
        ".".join(k.split(".")[:2]) for k in state
    }
    assert int(state["task.pool_a.count"]) == int(state["task.pool_b.count"]) == 4 * 8  # 4 D steps of 8
    with Image.open(out / "samples" / "step_0000004.png") as img:  # 4 + 4 rows of three 64 px images
        w, h = img.size
    assert w > 3 * 64 and h > 8 * 64


@pytest.mark.parametrize("pool", [3, 50])  # a full pool (swaps draw from the RNG) and a filling one
def test_unpaired_resume_is_exact_with_the_pools(run, pool):
    """A run that dies after its step-3 checkpoint continues (ckpt_path=auto) to the very weights, optimizer
    states, LR schedule (constant, then linear decay over train.steps) and image pools of a straight run."""
    args = [
        *CG,
        "metrics=[]",
        f"task.pool_size={pool}",
        "data.batch_size=2",
        "train.steps=6",
        "train.ckpt_every=3",
    ]
    _, straight = run("straight", *args)
    with pytest.raises(RuntimeError, match="injected crash"):
        run("crashed", *args, "+callbacks.crash={_target_:helpers.CrashAt,step:4}")
    summary, second = run("crashed", *args, "ckpt_path=auto")
    assert summary["g_steps"] == 6 and summary["resumed_from"].endswith("last.ckpt")
    a, b = last(straight), last(second)
    assert_same_training_state(a, b)
    for key in ("task.pool_a.images", "task.pool_b.images", "task.pool_a.count"):
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["task=unpaired"], "task=unpaired needs two-domain data"),
        (["data=digits_translation"], "use task=unpaired"),
        (["task=unpaired", "data=degrade", "model=cyclegan"], "task=unpaired needs two-domain data"),
        ([*CG, "model.conditional=true"], "model.conditional=true is for task=generation"),
        ([*CG, "data=class_pair", "data/source=digits", "data.class_a=3", "data.class_b=8", "metrics=[psnr]"],
         "known answer"),
        ([*CG, "task.pool_size=-1"], "task.pool_size"),
    ],
)  # fmt: skip
def test_unpaired_mistakes_are_one_line(tmp_path, args, message):
    assert_refused_before_training(tmp_path, *args, message=message)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    from helpers import train_run

    out = tmp_path_factory.mktemp("cg")
    train_run(out, *CG, *METRICS, "train.steps=4", "metrics.every=0")
    return out


def test_eval_on_an_unpaired_checkpoint_agrees_with_training(trained, tmp_path):
    summary = json.loads((trained / "summary.json").read_text())
    ckpt = f"ckpt_path={trained}/checkpoints/last.ckpt"
    res = command("eval", ckpt, *METRICS, f"out={tmp_path}/eval.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["held_out_a"] == result["held_out_b"] == 90
    for key in ("fid_ab", "fid_ba", "cycle_l1", "psnr_ab", "ssim_ab", "class_acc_ab"):
        assert result["metrics"][f"val/{key}"] == pytest.approx(
            summary["last"][f"val/{key}"], rel=1e-6, abs=1e-9
        )


def test_sample_translates_a_folder_either_way_and_draws_cycle_rows(trained, tmp_path):
    ckpt = f"ckpt_path={trained}/checkpoints/last.ckpt"
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for name in ("x.png", "y.png"):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(inputs / name)
    outs = {}
    for direction in ("AtoB", "BtoA"):
        res = command(
            "sample",
            ckpt,
            f"input={inputs}",
            f"direction={direction}",
            f"out={tmp_path}/{direction}",
            cwd=tmp_path,
        )
        assert res.returncode == 0, res.stderr[-2000:]
        assert sorted(p.name for p in (tmp_path / direction).iterdir()) == ["x.png", "y.png"]
        outs[direction] = np.asarray(Image.open(tmp_path / direction / "x.png"))
    assert outs["AtoB"].shape == (16, 16, 3) and not np.array_equal(outs["AtoB"], outs["BtoA"])
    grid = command("sample", ckpt, "n=3", f"out={tmp_path}/rows.png", cwd=tmp_path)
    assert grid.returncode == 0, grid.stderr[-2000:]
    with Image.open(tmp_path / "rows.png") as img:  # 3 + 3 rows of a | G_AB(a) | G_BA(G_AB(a))
        assert img.size[1] > 1.5 * img.size[0]
        from ganforge.callbacks.samples import grid_image

        plain = grid_image(torch.zeros(18, 3, 16, 16), 3)  # without the two bands of titles
        assert img.size[0] == plain.size[0] and img.size[1] > plain.size[1]
    bad = command("sample", ckpt, f"input={inputs}", "direction=sideways", f"out={tmp_path}/z", cwd=tmp_path)
    assert bad.returncode == 2 and "direction=sideways" in bad.stderr


@pytest.mark.slow
def test_cyclegan_digits_keeps_the_digit(run):
    """The benchmark's point: 150 steps of the preset (its nets and settings, ~30 s), and G_AB(a) both
    reads as a's digit and is close to the answer T(a). Measured at 150 steps (seed 42): class accuracy
    0.78, PSNR_ab 24.0 dB (at 100 steps 0.67 and 22.4 dB: too close to the bar; at 200, 0.92 and 25.6),
    read by the default 500-step feature classifier; the test trains a 150-step one (15 s less): 0.82.
    For scale (experiments/translation, 2,000 steps): without the cycle term G_AB collapses to one digit
    (class accuracy 0.12, chance 0.1, PSNR_ab 17.3 dB); the identity map keeps the digit (0.99: the
    classifier learned both styles) but is far from T(a) (PSNR_ab 11.0 dB). So the class threshold
    separates the ablation and the PSNR threshold the identity map."""
    summary, _ = run(
        "cg",
        "experiment=cyclegan_digits",
        "train.steps=150",
        "metrics=default",
        "metrics.classifier.steps=150",
        "metrics.every=0",
        "logger=[csv]",
    )
    assert summary["status"] == "finished"
    assert summary["last"]["val/class_acc_ab"] > 0.6
    assert summary["last"]["val/psnr_ab"] > 20.0
