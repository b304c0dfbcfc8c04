"""A checkpoint from someone else cannot run code: every command reads checkpoints with
``weights_only=True`` and refuses one that holds anything but tensors, numbers, strings and containers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import command


class WritesAFile:
    """Unpickling this calls ``open(marker, "w")``: what a malicious checkpoint could do instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize(
    ("name", "args"),
    [("train", ["data=ring8", "model=mlp", "metrics=[]", "logger=[csv]"]), ("eval", []), ("sample", [])],
)
def test_crafted_checkpoint_runs_no_code(tmp_path: Path, name: str, args: list[str]) -> None:
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "ganforge": {"g_step": 1, "payload": WritesAFile(marker)}}, ckpt)
    res = command(name, f"ckpt_path={ckpt}", *args, f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert not marker.exists(), "unpickling the checkpoint ran code"
    assert res.returncode == 2, res.stderr[-2000:]
    errors = [line for line in res.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "refused" in errors[0] and "io.open" in errors[0], res.stderr[-2000:]
    assert "Traceback" not in res.stderr


def test_ganforge_checkpoints_load_weights_only(tmp_path: Path) -> None:
    """What ganforge writes (with EMA, a scheduler, metrics state) loads under weights_only=True."""
    from helpers import train_run

    train_run(
        tmp_path, "data=ring8", "model=mlp", "train.steps=4", "train.ema.decay=0.9", "optim/scheduler=linear"
    )
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["ganforge"]["g_step"] == 4


def test_a_run_dir_as_ckpt_path_names_its_checkpoint(tmp_path: Path) -> None:
    from ganforge.checkpoint_file import read_checkpoint
    from ganforge.errors import ConfigError

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    with pytest.raises(
        ConfigError, match=r"a directory, not a checkpoint file; did you mean ckpt_path=.*last\.ckpt\?"
    ):
        read_checkpoint(tmp_path)
