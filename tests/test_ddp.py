"""DDP with 2 CPU processes (gloo): finishes without hangs, counts steps right, only rank 0 writes outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from ddp_runs import DDP_ARGS, local_scalars, metrics_rows, weights
from helpers import DDP_CPU, command

ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}


def test_ddp_two_cpu_processes(local_ddp_run):
    """The session's 2-process run of ``DDP_ARGS`` (20 steps, n_critic 2, a grid and a checkpoint every
    10): it finishes, counts G and D steps right, and only rank 0 writes the run's outputs."""
    out = local_ddp_run
    # one run dir, written once: rank 1 only adds Hydra's log of its own process
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == [
        ".hydra/config.yaml",
        ".hydra/hydra.yaml",
        ".hydra/overrides.yaml",
        "checkpoints/last.ckpt",
        "hparams.yaml",
        "metrics.csv",
        "samples/step_0000010.png",
        "samples/step_0000020.png",
        "summary.json",
        "train.log",
        "train_ddp_process_1.log",
    ]
    assert list(out.parent.iterdir()) == [out]  # no second timestamped dir from the relaunched rank
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["g_steps"] == 20 and summary["d_steps"] == 40
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 20 * 3
    assert (out / "metrics.csv").read_text().count("\n") == 21  # the header and one row per step


# Two ranks with batch 32 each see the same real samples as one process with batch 64 (the data
# stream splits each global batch by rank), but every rank draws its own latents, so the curves
# agree only up to sampling noise: observed max |difference| over 20 steps ~0.01 (d_loss), ~0.003
# (g_loss), ~0.02 (mean D outputs). Stated tolerance: 0.05 on the losses, 0.1 on the D outputs.
TOLERANCE = {"train/d_loss": 0.05, "train/g_loss": 0.05, "train/d_real": 0.1, "train/d_fake": 0.1}


def test_ddp_matches_single_process_at_the_same_global_batch(local_ddp_run, run):
    args = [a for a in DDP_ARGS if not a.startswith("data.batch_size=")]
    summary, single = run("single", *args, "data.batch_size=64")
    assert summary["status"] == "finished"
    ddp_rows, single_rows = metrics_rows(local_ddp_run), metrics_rows(single)
    assert [r["step"] for r in ddp_rows] == [r["step"] for r in single_rows] == list(range(1, 21))
    for name, tol in TOLERANCE.items():
        worst = max(abs(a[name] - b[name]) for a, b in zip(ddp_rows, single_rows, strict=True))
        assert worst <= tol, (name, worst)
    # the comparison has teeth: both runs moved away from the first step's values by more than tol
    assert abs(ddp_rows[-1]["train/d_loss"] - ddp_rows[0]["train/d_loss"]) > TOLERANCE["train/d_loss"]


def test_ddp_paired_translation(tmp_path):
    """task=paired under 2-process DDP: the alternation, the translation metrics (each rank measures its
    share of the held-out pairs, reduced across ranks) and best.ckpt."""
    out = tmp_path / "run"
    res = command(
        "train",
        *DDP_CPU,
        "experiment=pix2pix_sr_digits",
        "model.generator.width=8",
        "model.discriminator.width=8",
        "train.steps=4",
        "train.log_every=2",
        "metrics=[psnr,ssim,l1]",
        "metrics.every=2",
        "logger=[csv]",
        f"hydra.run.dir={out}",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["g_steps"] == 4
    assert (out / "checkpoints" / "best.ckpt").is_file() and (out / "samples" / "step_0000004.png").is_file()
    # each rank measured its share of the held-out pairs; reduced, that is what one process measures on
    # all of them (ganforge-eval on the last checkpoint, same step, no DDP)
    alone = eval_alone(out, "[psnr,ssim,l1]", tmp_path)
    for key in ("val/psnr", "val/ssim", "val/l1"):
        assert summary["last"][key] == pytest.approx(alone[key], rel=1e-5), key


def eval_alone(out: Path, metrics: str, tmp_path: Path, *more: str) -> dict[str, float]:
    """``val/*`` of ganforge-eval (one process, no DDP) on the last checkpoint of the run in ``out``."""
    res = command(
        "eval", f"ckpt_path={out}/checkpoints/last.ckpt", f"metrics={metrics}", f"out={tmp_path}/e.json",
        *more, cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads((tmp_path / "e.json").read_text())["metrics"]


def assert_metrics_match_one_process(out: Path, metrics: str, tmp_path: Path, *more: str) -> None:
    """The ranks' shares of the held-out items, reduced, give what one process measures on all of them
    (ganforge-eval on the last checkpoint, same step, no DDP; ``more``: the run's metrics.* settings)."""
    summary = json.loads((out / "summary.json").read_text())
    assert (out / "checkpoints" / "best.ckpt").is_file()
    alone = eval_alone(
        out, metrics, tmp_path, "allow_targets=[helpers.KeepCheckpoint]", *more
    )  # a test callback
    keys = [k for k in alone if k.startswith(("val/cycle_l1", "val/fid_"))]
    assert {"val/cycle_l1", "val/fid_ab", "val/fid_ba"} <= set(keys)
    for key in keys:
        assert summary["last"][key] == pytest.approx(alone[key], rel=1e-4, abs=1e-6), key


# WGAN-GP with n_critic 2 under 2 CPU processes: every rank draws latents and the penalty's
# interpolation weights from its own random stream, which resume must give back to each rank.
WGAN_GP_DDP = (
    *DDP_CPU,
    "data=ring8",
    "model=mlp",
    "loss=wgan_gp",
    "train.n_critic=2",
    "data.batch_size=32",
    "train.log_every=1",
    "train.sample_every=0",
    "train.ckpt_every=0",
    "logger=[csv]",
    "metrics=[]",
)
PROBE_ENV = {"PYTHONPATH": str(Path(__file__).parent), "OMP_NUM_THREADS": "1"}


def ddp_train(out: Path, *args: str) -> Path:
    res = command("train", *WGAN_GP_DDP, *args, f"hydra.run.dir={out}", cwd=out.parent, env=PROBE_ENV)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def wgan_gp_straight(tmp_path_factory) -> Path:
    """8 generator steps straight, recording each rank's training scalars before they are averaged."""
    out = tmp_path_factory.mktemp("wgan_gp") / "straight"
    probe = ("+callbacks.probe._target_=ddp_runs.LocalScalars", f"+callbacks.probe.out={out}/probe")
    return ddp_train(out, "train.steps=8", *probe)


def test_ddp_resume_gives_every_rank_its_own_random_stream(wgan_gp_straight):
    """A 2-rank run that crashes after its step-4 checkpoint (both ranks stop, exit code non-zero)
    resumes with ckpt_path=auto to the very weights of the straight run."""
    first = wgan_gp_straight.parent / "first"
    crash = ("train.ckpt_every=4", "+callbacks.crash={_target_:helpers.CrashAt,step:5}")
    res = command("train", *WGAN_GP_DDP, "train.steps=8", *crash, f"hydra.run.dir={first}",
                  cwd=first.parent, env=PROBE_ENV)  # fmt: skip
    assert res.returncode != 0 and "injected crash" in res.stderr, res.stderr[-3000:]
    saved = torch.load(first / "checkpoints" / "last.ckpt", weights_only=True)["ganforge"]
    assert saved["g_step"] == 4 and len(saved["rng"]["per_rank"]) == 2
    assert not torch.equal(saved["rng"]["per_rank"][0]["cpu"], saved["rng"]["per_rank"][1]["cpu"])
    resumed = ddp_train(first, "train.steps=8", "train.ckpt_every=4", "ckpt_path=auto")
    straight, again = weights(wgan_gp_straight), weights(resumed)
    assert straight.keys() == again.keys()
    for key, value in straight.items():
        assert torch.equal(value, again[key]), key


def test_ddp_logged_training_scalars_are_the_mean_over_ranks(wgan_gp_straight):
    logged = metrics_rows(wgan_gp_straight)
    ranks = [local_scalars(wgan_gp_straight / "probe", r) for r in (0, 1)]
    assert [r["step"] for r in logged] == [r["step"] for r in ranks[0]] == [r["step"] for r in ranks[1]]
    names = ("train/d_loss", "train/d_adv", "train/g_loss", "train/d_real", "train/d_fake")
    for row, zero, one in zip(logged, *ranks, strict=True):
        for name in names:
            assert row[name] == pytest.approx((zero[name] + one[name]) / 2, rel=1e-6, abs=1e-7), name
    # the ranks' own values differ (their own latents and data), so rank 0's alone would not pass
    assert any(abs(a["train/d_fake"] - b["train/d_fake"]) > 1e-3 for a, b in zip(*ranks, strict=True))


# Per-rank state beyond the RNG: CycleGAN's image pools and ADA's accumulator. A straight 2-rank run keeps
# its step-3 checkpoint (what a run that crashed after step 3 resumes from; a real crash under DDP:
# test_ddp_resume_gives_every_rank_its_own_random_stream); a run resumed from it (ckpt_path=auto)
# reaches the very weights of the straight run. CycleGAN's straight run also measures both directions
# (each rank its share of the held-out images).
PER_RANK_CASES = {
    "cyclegan_pools": (
        "experiment=cyclegan_digits", "model.generator.width=8", "model.generator.n_blocks=1",
        "model.discriminator.width=8", "data.batch_size=2", "task.pool_size=3", "metrics=[l1,fid]",
        "metrics.every=2", "metrics.classifier.steps=50",
    ),
    # StyleGAN2 with ADA stopped mid-interval (its accumulator per rank), lazy R1, path length (pl_mean),
    # style mixing, w_avg and the EMA half-life
    "stylegan2_ada_mid_interval": (
        "experiment=stylegan2_digits", "model.z_dim=16", "model.generator.w_dim=16",
        "model.generator.channel_base=128", "model.generator.channel_max=16", "data.batch_size=4",
        "train.ada.enabled=true", "train.ada.interval=2", "train.ada.kimg=0.01", "train.ada.p=0.3",
        "loss.penalties.r1.every=2", "loss.g_penalties.path_length.every=2", "metrics=[]",
    ),
}  # fmt: skip


PER_RANK_BASE = (*DDP_CPU, "train.log_every=1", "train.sample_every=0", "logger=[csv]")


@pytest.mark.parametrize("case", list(PER_RANK_CASES))
def test_ddp_resume_restores_each_ranks_own_state(tmp_path, case):
    args = (*PER_RANK_BASE, *PER_RANK_CASES[case], "train.steps=6", "train.ckpt_every=3")

    def train(out: Path, *more: str):
        return command("train", *args, *more, f"hydra.run.dir={out}", cwd=tmp_path, env=PROBE_ENV)

    kept = tmp_path / "crashed" / "checkpoints" / "last.ckpt"
    src = tmp_path / "straight" / "checkpoints" / "last.ckpt"
    keep = f"+callbacks.keep={{_target_:helpers.KeepCheckpoint,step:3,src:{src},to:{kept}}}"
    res = train(tmp_path / "straight", keep)
    assert res.returncode == 0, res.stderr[-3000:]
    if "metrics=[l1,fid]" in args:
        settings = [arg for arg in args if arg.startswith("metrics.classifier.")]
        assert_metrics_match_one_process(tmp_path / "straight", "[l1,fid]", tmp_path, *settings)
    saved = torch.load(kept, weights_only=True)["ganforge"]
    assert saved["g_step"] == 3 and len(saved["per_rank_state"]) == 2
    res = train(tmp_path / "crashed", "ckpt_path=auto")
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((tmp_path / "crashed" / "summary.json").read_text())["resumed_from"] == str(kept)
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "crashed")
    assert a.keys() == b.keys()
    same = lambda x, y: torch.equal(torch.as_tensor(x), torch.as_tensor(y))  # noqa: E731
    differ = [
        k
        for k, v in a.items()
        if not (all(same(v[i], b[k][i]) for i in v) if isinstance(v, dict) else same(v, b[k]))
    ]
    assert not differ, f"{len(differ)} of {len(a)} tensors differ: {differ[:5]}"
