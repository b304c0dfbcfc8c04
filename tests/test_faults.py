"""Faults of the machine during a run (issue 15): a full disk, a batch too big for memory, a checkpoint
of another setup. Each is one line with its exit code, and nothing already saved is lost."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from ganforge.checkpoint_file import temp_path, write_text_atomically
from ganforge.errors import ResourceError
from helpers import command

TOY = ("data=ring8", "model=mlp", "metrics=[]", "train.steps=30", "train.ckpt_every=10")


def fill_disk_after(monkeypatch: pytest.MonkeyPatch, good_writes: int) -> None:
    """Checkpoint writes after the first ``good_writes`` fail as on a full disk: part of the file is
    written, then ENOSPC."""
    save = TorchCheckpointIO.save_checkpoint
    calls = {"n": 0}

    def save_until_full(self, checkpoint, path, storage_options=None):
        calls["n"] += 1
        if calls["n"] <= good_writes:
            return save(self, checkpoint, path, storage_options)
        Path(path).write_bytes(b"\x80part of a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", save_until_full)


def test_a_full_disk_mid_run_keeps_last_ckpt_and_stops_in_one_line(run, monkeypatch, tmp_path):
    fill_disk_after(monkeypatch, good_writes=1)  # the write at step 10 succeeds, the one at 20 fails
    with pytest.raises(ResourceError) as info:
        run("full", *TOY)
    out = tmp_path / "full"
    message = str(info.value)
    assert info.value.exit_code == 4 and "\n" not in message
    assert f"cannot write {out / 'checkpoints' / 'last.ckpt'}: no space left" in message
    assert "it needs about 0.6 MB" in message  # the ring8/MLP checkpoint with Adam's state: 0.55 MB
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["ganforge"]["g_step"] == 10  # the previous checkpoint, whole
    assert not temp_path(out / "checkpoints" / "last.ckpt").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["g_steps"] == 20
    assert "no space left" in summary["error"]


def test_a_disk_too_full_for_one_checkpoint_is_refused_before_training(run, monkeypatch, tmp_path):
    real = __import__("shutil").disk_usage
    monkeypatch.setattr(
        "ganforge.checkpoint_file.shutil.disk_usage", lambda p: real(p)._replace(free=300 * 1024)
    )
    with pytest.raises(ResourceError, match=r"not enough free space for checkpoints in .*checkpoints: "):
        run("nearly_full", *TOY)
    assert not (tmp_path / "nearly_full" / "checkpoints").exists()
    assert not (tmp_path / "nearly_full" / "metrics.csv").exists()  # no logger started


def test_a_text_file_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    write_text_atomically(path, '{"status": "running"}\n')

    def full(self, text):
        Path.write_bytes(self, text.encode()[:3])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(ResourceError, match=r"cannot write .*summary.json: no space left"):
        write_text_atomically(path, '{"status": "finished"}\n')
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"status": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_real_full_disk_mid_run(tiny_tmpfs, tmp_path):
    """On 2 MB with 0.9 MB free: the first checkpoint (0.55 MB) fits, the second one does not."""
    (tiny_tmpfs / "filler").write_bytes(bytes(1_150_000))
    out = tiny_tmpfs / "run"
    res = command("train", *TOY, "train.steps=100", "train.ckpt_every=20", "logger=[csv]",
                  f"hydra.run.dir={out}", cwd=tmp_path)  # fmt: skip
    assert res.returncode == 4, res.stderr[-3000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("ganforge-train: error:")]
    assert len(errors) == 1 and f"cannot write {out}/checkpoints/last.ckpt: no space left" in errors[0]
    assert "Traceback" not in res.stderr
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["ganforge"]["g_step"] == 20
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.ckpt"]
    assert json.loads((out / "summary.json").read_text())["status"] == "failed"


# --- memory -------------------------------------------------------------------------------------------
def test_a_batch_that_cannot_fit_is_refused_before_training(tmp_path):
    from helpers import entry_point  # the command's entry point in this process: its line and exit code

    res = entry_point("train", "data=ring8", "model=mlp", "metrics=[]", "logger=[csv]", "train.steps=5",
                      "data.batch_size=100000000", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)  # fmt: skip
    assert res.returncode == 4, res.stderr[-2000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("ganforge-train: error:")]
    assert len(errors) == 1 and "data.batch_size=100000000 cannot fit" in errors[0], res.stderr[-2000:]
    assert "GB of host memory" in errors[0] and "Traceback" not in res.stderr
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "metrics.csv").exists()


def test_activations_are_counted_per_layer_output():
    from ganforge.memory import counting_outputs

    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    with counting_outputs(net) as count:
        net(torch.zeros(5, 2))
    assert count[0] == 5 * (3 + 3 + 1)


class OutOfMemoryAt(pl.Callback):
    """Raises CUDA's out-of-memory error at the start of the batch after generator step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module, *args) -> None:
        if pl_module.g_step >= self.step:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def test_out_of_memory_during_training_names_the_batch_size(run, tmp_path):
    oom = "+callbacks.oom={_target_:test_faults.OutOfMemoryAt,step:15}"
    with pytest.raises(ResourceError) as info:
        run("oom", *TOY, "train.steps_per_batch=5", "data.batch_size=32", oom)
    assert info.value.exit_code == 4
    assert str(info.value).startswith("out of GPU memory at generator step 16 with data.batch_size=32 ")
    out = tmp_path / "oom"
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["ganforge"]["g_step"] == 10
    assert json.loads((out / "summary.json").read_text())["status"] == "failed"


# --- corrupt data ---------------------------------------------------------------------------------------
def test_a_zip_of_only_corrupt_images_is_refused_before_loggers_start(run, tmp_path):
    import zipfile

    from ganforge.errors import DataError

    with zipfile.ZipFile(tmp_path / "broken.zip", "w") as zf:
        for i in range(40):
            zf.writestr(f"img_{i:02d}.png", b"\x89PNG but not really")
    with pytest.raises(DataError) as info:
        run("corrupt", "data=image_folder", f"data.path={tmp_path}/broken.zip", "logger=[csv,wandb]")
    assert info.value.exit_code == 2 and "\n" not in str(info.value)
    assert str(info.value).startswith(f"40 of the 40 images tried in {tmp_path}/broken.zip could not be read")
    assert (
        not (tmp_path / "corrupt" / "metrics.csv").exists() and not (tmp_path / "corrupt" / "wandb").exists()
    )


def test_corrupt_images_are_counted_over_those_read(tmp_path):
    import numpy as np
    from PIL import Image

    from ganforge.data.folder import ImageFolderDataModule
    from ganforge.errors import DataError

    for i in range(10):
        if i in (3, 4):
            (tmp_path / f"{i}.png").write_bytes(b"broken")
        else:
            Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(tmp_path / f"{i}.png")
    dm = ImageFolderDataModule(str(tmp_path), resolution=8, max_bad_fraction=0.1)
    dm.check()  # most images read: training may start
    dm.dataset[0], dm.dataset[1]
    with pytest.raises(DataError, match=r"^2 of the 4 images read so far \(of 10\) in .* could not be read"):
        dm.dataset[3]  # 3 is broken, then 4 (tried next): more than 10% of the 10


def test_a_full_disk_for_a_sample_grid_is_one_line(run, monkeypatch, tmp_path):
    import matplotlib.figure
    from PIL import Image

    def full(self, fp, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(fp))

    monkeypatch.setattr(Image.Image, "save", full)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full)
    with pytest.raises(ResourceError, match=r"^cannot write .*/samples/\S+: no space left on the device"):
        run("grid", *TOY, "train.sample_every=10")
    assert json.loads((tmp_path / "grid" / "summary.json").read_text())["status"] == "failed"


def test_the_gpu_memory_check_takes_one_process_one_gpu():
    from ganforge.memory import single_gpu

    assert single_gpu(1) == 0 and single_gpu([3]) == 3
    assert single_gpu(2) is None and single_gpu([0, 1]) is None and single_gpu("auto") is None
