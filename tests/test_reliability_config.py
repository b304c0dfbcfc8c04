"""Issue 25, disk and config: train.log on a full disk is dropped (no ``--- Logging error ---``), a run
refused before training leaves nothing behind, keys nothing reads and groups given one value are
refused in one line, and the bad job of a sweep gets its one line (no traceback)."""

from __future__ import annotations

import json
import logging
import os

import pytest
import torch

from helpers import assert_refused_before_training, command

TOY = ("data=ring8", "model=mlp", "logger=[csv]", "metrics=[]")


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("ganforge-train: error:")]


# --- disk -----------------------------------------------------------------------------------------------
def test_a_log_file_that_hits_a_full_disk_is_dropped_with_one_warning(capsys):
    """A real FileHandler on /dev/full (every write: ENOSPC), as train.log on a full disk."""
    from ganforge.fit import drop_log_files_on_full_disk

    logger = logging.getLogger("ganforge.test_full_log")
    handler, other = logging.FileHandler("/dev/full"), logging.NullHandler()  # other: the terminal's
    logger.addHandler(handler)
    logger.addHandler(other)
    logger.propagate = False
    try:
        drop_log_files_on_full_disk()
        logger.warning("first line")
        logger.warning("second line")
    finally:
        logger.removeHandler(handler)
        logger.removeHandler(other)
    err = capsys.readouterr().err
    assert "Logging error" not in err and "Traceback" not in err
    assert err.splitlines() == [
        "ganforge-train: warning: cannot write /dev/full (no space left on device); it is dropped and "
        "the log goes on in the terminal only"
    ]
    assert handler not in logger.handlers


def test_a_real_full_disk_mid_run_prints_no_logging_error(tiny_tmpfs, tmp_path):
    """The disk fills up for good after the first checkpoint (a filler takes what is left)."""
    out = tiny_tmpfs / "run"
    filler = tiny_tmpfs / "filler"
    res = command(
        "train", *TOY, "train.steps=400", "train.ckpt_every=20", "train.log_every=1",
        "+callbacks.fill._target_=test_reliability_config.FillDiskAt", f"+callbacks.fill.path={filler}",
        f"hydra.run.dir={out}", cwd=tmp_path, env={"PYTHONPATH": os.path.dirname(__file__)},
    )  # fmt: skip
    assert res.returncode == 4, res.stderr[-3000:]
    assert "Logging error" not in res.stderr and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert len(error_lines(res.stderr)) == 1
    assert "ganforge-train: warning: cannot write" in res.stderr and "train.log" in res.stderr
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["ganforge"]["g_step"] == 20


class FillDiskAt:
    """After generator step 25, a file takes all the space left on the run dir's filesystem; then a log
    line longer than a page is written (train.log's last page may still hold a short one)."""

    def __new__(cls, path: str):  # a Lightning callback built lazily (the test module imports no Lightning)
        import pytorch_lightning as pl

        class _Fill(pl.Callback):
            def on_train_batch_end(self, trainer, pl_module, *args):
                if pl_module.g_step >= 25 and not os.path.exists(path):
                    with open(path, "wb") as f:
                        try:
                            while True:
                                f.write(bytes(64 * 1024))
                                f.flush()
                        except OSError:
                            pass
                    logging.getLogger(__name__).warning("the disk is full now: %s", "x" * 8192)

        return _Fill()


def test_a_run_refused_before_training_leaves_no_run_dir(tmp_path):
    out = tmp_path / "some" / "run"
    res = command("train", *TOY, "train.steps=0", f"hydra.run.dir={out}", cwd=tmp_path)
    assert res.returncode == 2 and len(error_lines(res.stderr)) == 1, res.stderr[-3000:]
    assert not (tmp_path / "some").exists()  # not the run dir, nor the folder made for it
    res = command("train", *TOY, "train.steps=0", cwd=tmp_path)  # Hydra's outputs/<task>/<date>_<time>
    assert res.returncode == 2, res.stderr[-3000:]
    assert not (tmp_path / "outputs").exists()


def test_a_refusal_in_a_run_dir_that_holds_a_run_puts_back_what_hydra_wrote(tmp_path):
    out = tmp_path / "run"
    assert command("train", *TOY, "train.steps=2", f"hydra.run.dir={out}", cwd=tmp_path).returncode == 0
    before = {p.name: p.read_bytes() for p in (out / ".hydra").iterdir()}
    log_size = (out / "train.log").stat().st_size
    res = command("train", *TOY, "train.steps=0", "ckpt_path=auto", f"hydra.run.dir={out}", cwd=tmp_path)
    assert res.returncode == 2, res.stderr[-3000:]
    assert {p.name: p.read_bytes() for p in (out / ".hydra").iterdir()} == before
    assert (out / "train.log").stat().st_size == log_size
    assert json.loads((out / "summary.json").read_text())["status"] == "finished"


# --- config -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("+train.foo=1",), "train.foo is not a key of the config and nothing would read it; the keys"),
        (("+train.stepz=1",), "train.stepz is not a key of the config and nothing would read it; did "
                              "you mean train.steps?"),
        (("+train.ema.decy=0.9",), "did you mean train.ema.decay?"),
        (("train.ada=true",), "train.ada=true: train.ada is a group of settings (enabled, target, "
                              "interval, kimg, p, groups), not one value; set one of them, e.g. "
                              "train.ada.enabled=true"),
        (("train.ema=0.999",), "e.g. train.ema.decay=0.999"),
        (("train.instance_noise=0.1",), "e.g. train.instance_noise.std=0.1"),
        (("callbacks.guard=false",), "turn the callback off with ~callbacks.guard"),
    ],
)  # fmt: skip
def test_keys_nothing_reads_and_groups_given_one_value_are_one_line(tmp_path, args, message):
    assert_refused_before_training(tmp_path, *TOY, *args, message=message)


def test_the_bad_job_of_a_sweep_gets_one_line(tmp_path):
    sweep = tmp_path / "sweep"
    res = command("train", "-m", "train.steps=20,0", *TOY, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert res.returncode == 1, res.stderr[-3000:]  # Hydra's exit code for a sweep with a failed job
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    message = "ganforge-train: error: train.steps must be a positive integer, got 0"
    assert message in error_lines(res.stderr)
    assert json.loads((sweep / "0" / "summary.json").read_text())["status"] == "finished"
    assert not (sweep / "1").exists()  # the refused job left nothing behind
