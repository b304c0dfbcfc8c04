"""Every allocation a setting can make huge is bounded (refused in one line, exit 4, before it is made;
or, for ganforge-sample's arrays, streamed), and bad input to eval and sample gets one line, not a
traceback (issue 25)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import assert_refused_before_training, command, entry_point, train_run

SR = ["experiment=pix2pix_sr_digits", "model.generator.width=8", "model.discriminator.width=8"]


def error_lines(res, name: str = "train") -> list[str]:
    return [line for line in res.stderr.splitlines() if line.startswith(f"ganforge-{name}: error:")]


@pytest.fixture(scope="module")
def ring(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ring") / "run"
    train_run(out, "data=ring8", "model=mlp", "train.steps=2")
    return out / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def pix2pix(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pix2pix") / "run"
    train_run(out, *SR, "train.steps=2")
    return out / "checkpoints" / "last.ckpt"


# --- settings that size an allocation: refused from shapes, before anything is allocated -------------
@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["train.num_fixed=100000000"], "train.num_fixed=100000000 cannot fit"),
        (["train.ema.decay=0.999", "train.ema.standing_batch_size=100000000"], "standing_batch_size"),
        ([*SR, "data.resolution=65536"], "data.resolution=65536 cannot fit"),
        (["experiment=cyclegan_digits", "data.resolution=256", "data.batch_size=1000000"], "data.batch_size"),
    ],
    ids=["num_fixed", "ema_standing", "unet_65536px", "cyclegan_batch"],
)
def test_settings_that_size_an_allocation_are_one_line(tmp_path, args, key):
    """ganforge-train's entry point in this process: its one line and exit code are what is under test."""
    res = entry_point(
        "train", *args, "metrics=[]", "logger=[csv]", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path
    )
    assert res.returncode == 4, res.stderr[-2000:]
    errors = error_lines(res)
    assert len(errors) == 1 and key in errors[0] and "GB of host memory" in errors[0], res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_in_memory_data_checks_its_size_before_resizing():
    from ganforge.data.digits import DigitsDataModule
    from ganforge.errors import ResourceError

    with pytest.raises(
        ResourceError,
        match=r"data.resolution=4096 cannot fit: the digits at this resolution take at least 1\d\d\.\d GB",
    ):
        DigitsDataModule(resolution=4096).setup()  # 1,797 images of 4096² float32: 120 GB


# --- ganforge-sample: arrays streamed, images bounded, writes atomic ------------------------------------
def test_npz_is_streamed_and_sample_i_does_not_depend_on_n(ring, tmp_path):
    for n, name in ((2600, "many"), (5, "few")):  # 2600: several chunks of the writer and the latents
        res = command(
            "sample", f"ckpt_path={ring}", f"n={n}", "seed=3", f"out={tmp_path}/{name}.npz", cwd=tmp_path
        )
        assert res.returncode == 0, res.stderr[-2000:]
    many, few = np.load(tmp_path / "many.npz"), np.load(tmp_path / "few.npz")
    assert many["samples"].shape == (2600, 2) and many["z"].shape[0] == 2600 and int(many["seed"]) == 3
    assert np.array_equal(many["samples"][:5], few["samples"]) and np.array_equal(many["z"][:5], few["z"])
    assert len(np.unique(many["z"][:, 0])) == 2600  # every sample its own latent, across chunks
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_sample_sizes_are_bounded_in_one_line(ring, tmp_path):
    res = command("sample", f"ckpt_path={ring}", "n=1000000000", f"out={tmp_path}/x.npz", cwd=tmp_path)
    assert res.returncode == 4 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert len(errors := error_lines(res, "sample")) == 1 and "n=1000000000 samples need about" in errors[0]
    res = command("sample", f"ckpt_path={ring}", "n=1000000000", f"out={tmp_path}/x.png", cwd=tmp_path)
    assert res.returncode == 4 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert len(errors := error_lines(res, "sample")) == 1 and "out=<file>.npz streams" in errors[0]
    assert not list(tmp_path.glob("*x.*"))


def test_npz_on_a_full_disk_is_one_line_and_leaves_nothing(tiny_tmpfs):
    from ganforge.errors import ResourceError
    from ganforge.sample import write_npz_streaming

    noise = np.random.default_rng(0)  # 4 MB of float noise on a 2 MB disk: it cannot fit
    arrays = {"samples": ((1000, 1000), lambda lo, hi: noise.random((hi - lo, 1000), dtype=np.float32))}
    with pytest.raises(ResourceError, match=r"cannot write .*x\.npz: no space left on the device"):
        write_npz_streaming(tiny_tmpfs / "x.npz", arrays, {"seed": 0})
    assert list(tiny_tmpfs.iterdir()) == []


def test_eval_checks_its_destination_before_measuring(ring, read_only_dir, tmp_path):
    res = command("eval", f"ckpt_path={ring}", f"out={read_only_dir}/eval.json", cwd=tmp_path)
    assert res.returncode == 2, res.stderr[-2000:]
    assert error_lines(res, "eval") == [
        f"ganforge-eval: error: out={read_only_dir}/eval.json: cannot write in {read_only_dir} "
        "(read-only, or no permission)"
    ]


# --- bad input ------------------------------------------------------------------------------------------
def test_random_bytes_as_a_checkpoint_are_one_line():
    from ganforge.checkpoint_file import read_checkpoint
    from ganforge.errors import ConfigError

    path = Path(__file__).parent / ".random.ckpt"
    try:
        for seed in range(300):  # some read as a legacy pickle and failed with IndexError or KeyError
            path.write_bytes(np.random.default_rng(seed).bytes(64 if seed % 2 else 4096))
            with pytest.raises(ConfigError, match="not a readable checkpoint"):
                read_checkpoint(path)
    finally:
        path.unlink(missing_ok=True)


def test_unreadable_images_in_an_input_folder_are_skipped_and_counted(pix2pix, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.full((16, 16), 40 * i, dtype=np.uint8)).save(folder / f"ok{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    res = command("sample", f"ckpt_path={pix2pix}", f"input={folder}", f"out={tmp_path}/out", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "ganforge-sample: skipped 1 of 3 unreadable images: broken.png" in res.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ok0.png", "ok1.png"]
    res = command(
        "sample",
        f"ckpt_path={pix2pix}",
        f"input={folder}",
        f"out={tmp_path}/o2",
        "direction=BtoA",
        cwd=tmp_path,
    )
    assert res.returncode == 2 and len(errors := error_lines(res, "sample")) == 1, res.stderr[-2000:]
    assert "direction=BtoA" in errors[0] and "one-way model (task=paired)" in errors[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data.num_workers=-2"], "data.num_workers must be a non-negative integer"),
        (["metrics=[prc]", "metrics.num_samples=3", "metrics.prc_neighborhood=10"], "prc_neighborhood=10"),
        (["metrics=[fid]", "metrics.monitor=val/nope"], "metrics.monitor=val/nope: no metric of this run"),
        (["data=ring8", "model=mlp", "metrics.monitor=val/fid"], "choose one of val/hq_frac, val/modes"),
    ],
    ids=["num_workers", "prc_k", "monitor", "monitor_toy"],
)
def test_bad_values_are_refused_before_training(tmp_path, args, message):
    assert_refused_before_training(tmp_path, *args, message=message)


def test_monitor_keys_are_what_a_measurement_logs():
    """The keys ``metrics.monitor`` is checked against are those a measurement returns (toy data)."""
    from ganforge.data.toy import RingDataModule
    from ganforge.metrics.suite import MetricSettings, MetricSuite

    suite = MetricSuite(MetricSettings(names=["modes"], modes_num_samples=200), RingDataModule(), "unused")
    suite.prepare(torch.device("cpu"))
    values = suite.measure(lambda z: torch.randn(len(z), 2), 2, torch.device("cpu"))
    assert set(values) == suite.keys


def test_the_archive_is_a_plain_npz(tmp_path):
    from ganforge.sample import write_npz_streaming

    rows = np.arange(1200 * 3, dtype=np.float32).reshape(1200, 3)
    write_npz_streaming(tmp_path / "a.npz", {"x": ((1200, 3), lambda lo, hi: rows[lo:hi])}, {"g_step": 7})
    with zipfile.ZipFile(tmp_path / "a.npz") as archive:
        assert sorted(archive.namelist()) == ["g_step.npy", "x.npy"]
    data = np.load(tmp_path / "a.npz")
    assert np.array_equal(data["x"], rows) and int(data["g_step"]) == 7
