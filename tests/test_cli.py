"""The command line as a user meets it: help, config printing, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}


def cli(*args: str, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "ganforge.train", *args]
    return subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


# ganforge-train's answers that need no training, all from one new interpreter (which must not have
# imported Lightning or the metric libraries by the end: a refusal, --help and --cfg answer without them)
TRAIN_CASES = {
    "help": ["--help"],
    "cfg": ["data=ring8", "model=mlp", "loss=wgan_gp", "train.steps=2000", "--cfg", "job"],
    "steps_0": ["train.steps=0", "logger=[csv]", "hydra.run.dir={tmp}/run"],
    "unknown_option": ["loss=no_such_loss"],
    "file_as_run_dir": ["logger=[csv]", "hydra.run.dir={tmp}/taken"],
    "typo": ["data=ring8", "train.stepz=5", "hydra.run.dir={tmp}/run"],
    "missing_ckpt": ["ckpt_path={tmp}/none.ckpt", "hydra.run.dir={tmp}/run"],
}


@pytest.fixture(scope="module")
def train_answers(tmp_path_factory) -> tuple[dict[str, subprocess.CompletedProcess], list[str], Path]:
    """(what ganforge-train answered to each of TRAIN_CASES, the heavy libraries imported, its tmp dir)."""
    from helpers import mains_in_a_fresh_process

    tmp = tmp_path_factory.mktemp("cli")
    (tmp / "taken").write_text("a file")
    cases = [("train", [arg.format(tmp=tmp) for arg in args]) for args in TRAIN_CASES.values()]
    done, heavy = mains_in_a_fresh_process(cases, tmp)
    return dict(zip(TRAIN_CASES, done, strict=True)), heavy, tmp


def test_help_lists_the_config_groups(train_answers):
    res = train_answers[0]["help"]
    assert res.returncode == 0
    for group in ("data:", "model:", "loss:", "optim:", "trainer:", "logger:", "callbacks:", "experiment:"):
        assert group in res.stdout, group
    for option in (
        "ring8",
        "grid25",
        "digits",
        "mnist",
        "cifar10",
        "image_folder",
        "wgan_gp",
        "hinge",
        "dcgan",
    ):
        assert option in res.stdout, option


def test_cfg_job_prints_the_composed_config(train_answers):
    res = train_answers[0]["cfg"]
    assert res.returncode == 0
    assert "ganforge.data.toy.RingDataModule" in res.stdout and "steps: 2000" in res.stdout
    assert "gradient_penalty" in res.stdout


def test_refusals_help_and_cfg_do_not_import_lightning(train_answers):
    """A config mistake or a checkpoint that is not there is refused (one line, exit 2, no run dir left)
    before Lightning and the metric libraries are imported (seconds), and so are --help and --cfg answered."""
    answers, heavy, tmp = train_answers
    for case, message in (
        ("steps_0", "train.steps must be a positive integer, got 0"),
        ("missing_ckpt", f"ckpt_path={tmp}/none.ckpt: no such file"),
    ):
        res = answers[case]
        errors = [line for line in res.stderr.splitlines() if line.startswith("ganforge-train: error:")]
        assert res.returncode == 2 and len(errors) == 1 and message in errors[0], res.stderr[-2000:]
    assert not (tmp / "run").exists()
    assert heavy == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train.steps=0"], "train.steps must be a positive integer"),
        (["train.n_critic=-1"], "train.n_critic must be a positive integer"),
        (["optim.lr_d=0"], "optim.lr_d must be a positive number"),
        (["ckpt_path=nowhere/last.ckpt"], "ckpt_path=nowhere/last.ckpt: no such file"),
        (["data=cifar10"], "CIFAR-10: the dataset files are missing"),
        (["data=digits", "data.resolution=20"], "model dcgan makes square images of 16/32/64 px"),
        (["data=image_folder", "data.path=no/such/dir"], "no/such/dir"),
        (["loss=wgan_gp"], "the penalties (gp) need a discriminator without batch norm"),
        (["data=image_folder"], "data.path is required: pass data.path=<value>"),
        (["seed=abc"], "seed must be an integer, got 'abc'"),
        (["ckpt_path=."], "ckpt_path=.: a directory, not a checkpoint file"),
        (["metrics.every=-5"], "metrics.every must be a non-negative integer, got -5"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_2(tmp_path, args, message):
    """ganforge-train's entry point in this process (the same Hydra main, argv, output and exit code as
    the command; the command itself: the test below)."""
    from helpers import entry_point

    res = entry_point("train", *args, "logger=[csv]", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert res.returncode == 2, res.stderr[-2000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("ganforge-train: error:")]
    assert len(errors) == 1 and message in errors[0], res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()  # failed before training


def test_a_user_mistake_through_the_command_is_one_line_and_exit_2(tmp_path):
    res = cli("train.steps=0", "logger=[csv]", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert res.returncode == 2, res.stderr[-2000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("ganforge-train: error:")]
    assert len(errors) == 1 and "train.steps must be a positive integer" in errors[0], res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()  # failed before training


def test_unknown_group_option_is_hydras_message(train_answers):
    res = train_answers[0]["unknown_option"]
    assert res.returncode != 0
    assert "Could not find 'loss/no_such_loss'" in res.stderr


def test_default_job_prints_where_outputs_are(tmp_path):
    res = cli("train.steps=4", "logger=[csv]", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert str(tmp_path / "run") in res.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert summary["metrics"]["extractor"].startswith("clf")  # the default job ends with FID on them
    # what it logged is what ganforge-eval measures on the final checkpoint, in another process
    from helpers import command

    res = command(
        "eval", f"ckpt_path={tmp_path}/run/checkpoints/last.ckpt", f"out={tmp_path}/e.json", cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr[-3000:]
    alone = json.loads((tmp_path / "e.json").read_text())["metrics"]
    assert summary["last"]["val/fid"] == pytest.approx(alone["val/fid"], rel=1e-5)


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("eval", [], "ganforge-eval: error: ckpt_path is required: pass ckpt_path=<value>"),
        (
            "sample",
            ["ckpt_path=x.ckpt", "n=abc"],
            "ganforge-sample: error: n must be a positive integer, got 'abc'",
        ),
        (
            "sample",
            ["ckpt_path=x.ckpt", "n=0"],
            "ganforge-sample: error: n must be a positive integer, got 0",
        ),
    ],
)
def test_eval_and_sample_mistakes_are_one_line(tmp_path, name, args, message):
    cmd = [sys.executable, "-m", f"ganforge.{name}", *args]
    res = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr[-2000:]
    assert res.stderr.strip().splitlines() == [message]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["metrics=[modes]", "data=ring8", "model=mlp", "metrics.modes_num_samples=-1"],
            "metrics.modes_num_samples",
        ),
        (["metrics=[fid]", "metrics.num_samples=0"], "metrics.num_samples must be a positive integer, got 0"),
        (
            ["metrics=[kid]", "metrics.kid_subset_size=0"],
            "metrics.kid_subset_size must be a positive integer",
        ),
        (["model.z_dim=0"], "model.z_dim must be a positive integer, got 0"),
        (["metrics=[fid]", "metrics.every=2.5"], "metrics.every must be a non-negative integer, got 2.5"),
    ],
)
def test_metric_settings_that_cannot_work_are_refused(tmp_path, args, message):
    """Checked by check_config, before anything is built (the CLI turns it into one line, exit 2)."""
    from ganforge.config import check_config
    from ganforge.errors import ConfigError
    from helpers import compose_cfg

    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        check_config(compose_cfg(tmp_path, *args))
    assert info.value.exit_code == 2 and "\n" not in str(info.value)


def test_a_run_dir_that_is_a_file_is_one_line(train_answers):
    res, tmp = train_answers[0]["file_as_run_dir"], train_answers[2]
    assert res.returncode == 2, res.stderr[-2000:]
    assert res.stderr.strip().splitlines() == [
        f"ganforge-train: error: hydra.run.dir={tmp}/taken: {tmp}/taken is a file, not a directory"
    ]


def test_a_key_typo_gets_a_did_you_mean_line(train_answers):
    res = train_answers[0]["typo"]
    assert res.returncode == 1  # Hydra's own message and exit code, then the hint
    assert "Key 'stepz' is not in struct" in res.stderr
    assert res.stderr.strip().splitlines()[-1] == (
        "ganforge-train: train.stepz is not a key of the config; did you mean train.steps?"
    )


def test_read_only_places_are_one_line_each(read_only_dir, tmp_path):
    """The entry points in this process (their one line and exit code are what is under test); only the
    tool's own lines compared (a library may warn on stderr before the refusal)."""
    from ganforge.errors import ConfigError
    from helpers import command, entry_point, train_run

    def own(stderr: str, tool: str) -> list[str]:
        return [line for line in stderr.strip().splitlines() if line.startswith(f"{tool}:")]

    res = entry_point("train", "logger=[csv]", f"hydra.run.dir={read_only_dir}/run", cwd=tmp_path)
    assert res.returncode == 2, res.stderr[-2000:]
    assert own(res.stderr, "ganforge-train") == [
        f"ganforge-train: error: hydra.run.dir={read_only_dir}/run: cannot write in {read_only_dir} "
        "(read-only, or no permission)"
    ], res.stderr[-2000:]
    res = command("sample", "ckpt_path=x.ckpt", f"out={read_only_dir}/grid.png", cwd=tmp_path)
    assert res.returncode == 2 and own(res.stderr, "ganforge-sample") == [
        f"ganforge-sample: error: out={read_only_dir}/grid.png: cannot write in {read_only_dir} "
        "(read-only, or no permission)"
    ], res.stderr[-2000:]
    with pytest.raises(ConfigError, match=rf"^paths.cache_dir={read_only_dir}/cache: cannot write in "):
        train_run(
            tmp_path / "run",
            "data=ring8",
            "model=mlp",
            "metrics=[modes]",
            f"paths.cache_dir={read_only_dir}/cache",
        )
    assert not (tmp_path / "run" / "checkpoints").exists()
