"""The self-supervised extractor (``metrics.extractor=selfsup``): trained from a seed and cached, ranks
real images below blurred, noisy and collapsed ones, named in the protocol tag, chosen by ``auto`` on
unlabelled images without Inception weights (one log line), and measuring the translation suites, whose
``best.ckpt`` then follows FID rather than a fidelity score."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.data.degrade import DegradedDataModule
from ganforge.data.digits import DigitsDataModule
from ganforge.data.folder import ImageFolderDataModule
from ganforge.data.unpaired import UnpairedFolderDataModule
from ganforge.errors import ConfigError
from ganforge.metrics import features
from ganforge.metrics.features import INCEPTION_FILE, to_uint8
from ganforge.metrics.selfsup import SelfSupSpec, cached_selfsup, train_selfsup
from ganforge.metrics.suite import MetricSettings, MetricSuite, extractor_kind
from ganforge.metrics.suites import make_suite

OFFLINE = "http://127.0.0.1:9/weights-inception-2015-12-05-6726825d.pth"  # refused at once
TINY = {"steps": 20, "width": 8, "batch_size": 64}  # seconds of training: the code path, not good features
ROOT = Path(__file__).resolve().parents[1]
CACHE = os.environ["GANFORGE_CACHE_DIR"]


def ranking_script():
    """experiments/metrics/selfsup_ranking.py as a module: its degradations and its ranking rule."""
    spec = importlib.util.spec_from_file_location(
        "selfsup_ranking", ROOT / "experiments/metrics/selfsup_ranking.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A machine without the Inception weights and without the internet: an empty hub cache of the test's
    own, and the weights' address pointed at a port that refuses."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(features, "INCEPTION_URL", OFFLINE)
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture(scope="module")
def digit_images() -> torch.Tensor:
    """The first 400 digits at 16 px as uint8 (N, 1, 16, 16)."""
    dm = DigitsDataModule(resolution=16)
    return to_uint8(dm.items(list(range(400)))[0])


def save_all(images: torch.Tensor, folder: Path) -> None:
    folder.mkdir(parents=True)
    for i, x in enumerate(images):
        Image.fromarray(x[0].numpy()).save(folder / f"{i:04d}.png")


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory: pytest.TempPathFactory, digit_images: torch.Tensor) -> Path:
    """A user's folder: 400 grayscale digits at its top level, no class subfolders."""
    root = tmp_path_factory.mktemp("unlabelled") / "digits"
    save_all(digit_images, root)
    return root


@pytest.fixture(scope="module")
def two_domains(tmp_path_factory: pytest.TempPathFactory, digit_images: torch.Tensor) -> Path:
    """CycleGAN's layout without labels: digits in trainA/ and testA/, their negatives in trainB/, testB/."""
    root = tmp_path_factory.mktemp("a2b")
    for name, images in (("trainA", digit_images[:150]), ("testA", digit_images[150:200])):
        save_all(images, root / name)
    for name, images in (("trainB", digit_images[200:350]), ("testB", digit_images[350:])):
        save_all(255 - images, root / name)
    return root


def folder(path: Path) -> ImageFolderDataModule:
    return ImageFolderDataModule(str(path), resolution=16, channels=1)


def test_training_is_a_function_of_the_seed_and_is_cached(tmp_path: Path, digit_images: torch.Tensor) -> None:
    spec = SelfSupSpec(in_channels=1, size=16, width=8, steps=12, batch_size=32)
    a, _ = train_selfsup(digit_images, spec)
    b, _ = train_selfsup(digit_images, spec)
    other, _ = train_selfsup(digit_images, SelfSupSpec(**{**spec.__dict__, "seed": 1}))
    same, seeded = a.state_dict(), other.state_dict()
    for name, value in b.state_dict().items():
        assert torch.equal(value, same[name]), name
    assert any(not torch.equal(value, seeded[name]) for name, value in same.items())
    loads = []

    def load() -> torch.Tensor:
        loads.append(1)
        return digit_images

    start = time.time()
    path, record, cached = cached_selfsup(load, spec, "digits400", tmp_path)
    trained_s = time.time() - start
    start = time.time()
    again, record2, cached2 = cached_selfsup(load, spec, "digits400", tmp_path)
    assert not cached and cached2 and again == path and len(loads) == 1  # the second call only loads
    assert time.time() - start < min(1.0, trained_s) and record2["top1"] == record["top1"]
    assert path.name == f"digits400-{spec.digest()}.pt"  # keyed by data fingerprint + settings
    # trained again under another name (torch.save would name the archive inside after the file): the
    # same bytes, so the same hash in every protocol tag, whichever process or cache trained it
    elsewhere, _, _ = cached_selfsup(load, spec, "same-images", tmp_path / "elsewhere")
    assert elsewhere.read_bytes() == path.read_bytes()
    extractor = features.SelfSupExtractor("s", ["features"], feature_extractor_weights_path=str(path))
    with torch.no_grad():  # the cached network is the trained one
        assert torch.equal(extractor(digit_images[:16])[0], a.features(digit_images[:16]).double())


def test_fid_ranks_real_below_blurred_noisy_and_collapsed_digits() -> None:
    """900 digits the reference set (and the network's training set), 800 held-out ones the "generator",
    a few seconds of training: every degradation scores worse than the real images, and a stronger one
    worse still (the full study: experiments/metrics/README.md)."""
    script = ranking_script()
    dm = DigitsDataModule(resolution=16, limit=900)
    held = dm.held_out_items(800)
    assert held is not None
    settings = MetricSettings(
        names=["fid"], num_samples=800, batch_size=800, extractor="selfsup",
        selfsup={"steps": 40, "width": 16, "batch_size": 128},
    )  # fmt: skip
    suite = MetricSuite(settings, dm, CACHE)
    suite.prepare(torch.device("cpu"))
    fids = {
        name: suite.measure(script.as_generator(images), 1, torch.device("cpu"))["val/fid"]
        for name, images in script.candidates(*held, 800).items()
    }
    assert script.ranked(fids), fids
    sha = hashlib.sha256(Path(suite.info["selfsup"]).read_bytes()).hexdigest()
    assert suite.info["protocol_tags"]["val/fid"] == f"fid[selfsup:{sha[:8]}|n=800|ref=train:800|resize=none]"
    assert suite.info["protocol"]["extractor"] == "selfsup" and suite.info["rgb"] is False


def test_auto_takes_selfsup_on_unlabelled_images_offline_and_says_so_once(
    offline: Path, unlabelled: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dm = folder(unlabelled)
    settings = MetricSettings(num_samples=300, batch_size=300, selfsup=TINY)  # names None: fid, kid
    with caplog.at_level(logging.INFO, logger="ganforge"):
        suite = MetricSuite(settings, dm, CACHE)
        suite.prepare(torch.device("cpu"))
    said = [r.getMessage() for r in caplog.records if "chose selfsup" in r.getMessage()]
    assert len(said) == 1 and "no labels" in said[0] and "127.0.0.1:9" not in said[0]  # the reason, short
    assert suite.names == ["fid", "kid"] and suite.monitor == "val/fid"
    tags = suite.info["protocol_tags"]
    assert tags["val/fid"].startswith("fid[selfsup:") and tags["val/kid"].startswith("kid[selfsup:")
    real = dm.items(list(range(300)))[0]
    values = suite.measure(lambda z: real[: len(z)], 1, torch.device("cpu"))
    assert np.isfinite(values["val/fid"]) and np.isfinite(values["val/kid"])


def test_auto_prefers_inception_weights_when_at_hand_and_the_classifier_with_labels(
    offline: Path, unlabelled: Path, tmp_path: Path
) -> None:
    settings = MetricSettings(names=["fid"])
    assert extractor_kind(settings, DigitsDataModule()) == "classifier"
    assert extractor_kind(settings, folder(unlabelled)) == "selfsup"
    weights = features.write_random_inception_weights(tmp_path / "inception.pth")
    assert (
        extractor_kind(MetricSettings(names=["fid"], weights_path=str(weights)), folder(unlabelled))
        == "inception"
    )
    offline.mkdir(parents=True, exist_ok=True)
    (offline / INCEPTION_FILE).symlink_to(weights)  # in the hub cache, as a first fetch leaves it
    assert extractor_kind(settings, folder(unlabelled)) == "inception"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"names": ["is"], "extractor": "selfsup"}, "Inception Score needs class logits"),
        ({"selfsup": {"stepz": 3}}, "metrics.selfsup.stepz: no such setting; choose from"),
        ({"selfsup": {"batch_size": 1}}, "metrics.selfsup.batch_size must be an integer of at least 2"),
        ({"selfsup": {"crop_scale": 0}}, r"metrics.selfsup.crop_scale must lie in \(0, 1\]"),
        ({"extractor": "classifier"}, "needs labelled data .* use selfsup"),
        ({"resize": "clean"}, "is for metrics.extractor=inception .*auto chose selfsup"),
    ],
)
def test_mistakes_are_one_line_before_training(offline: Path, unlabelled: Path, overrides, message) -> None:
    settings = MetricSettings(**{"names": ["fid"], "extractor": "auto", **overrides})
    with pytest.raises(ConfigError, match=message) as info:
        MetricSuite(settings, folder(unlabelled), CACHE)
    assert "\n" not in str(info.value)


class Identity:
    """A translator whose output is its input (the degraded source, or the other domain's image)."""

    device = torch.device("cpu")

    def translate(self, source: torch.Tensor, direction: str | None = None) -> torch.Tensor:
        return source


def test_pix2pix_on_an_unlabelled_folder_measures_fid_and_best_follows_it(
    offline: Path, unlabelled: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = DegradedDataModule(folder(unlabelled), "super_resolution", scale=2, val_fraction=0.25)
    with caplog.at_level(logging.INFO, logger="ganforge"):
        suite = make_suite(MetricSettings(selfsup=TINY), data, CACHE)
    assert suite.names == ["psnr", "ssim", "l1", "fid"] and suite.monitor == "val/fid"
    assert not [r for r in caplog.records if "best.ckpt follows" in r.getMessage()]
    suite.prepare(torch.device("cpu"))
    values = suite.measure(Identity(), torch.device("cpu"))
    assert values["val/fid"] > 0 and np.isfinite(values["val/psnr"])
    assert suite.info["protocol_tags"]["val/fid"].startswith("fid[selfsup:")
    assert suite.info["protocol_tags"]["val/fid"].endswith("|ref=val:100|resize=none|test_mode=eval]")


def test_cyclegan_on_unlabelled_folders_measures_both_fids_and_best_follows_fid_ab(
    offline: Path, two_domains: Path
) -> None:
    data = UnpairedFolderDataModule(str(two_domains), resolution=16, channels=1, load_size=16, flip=False)
    suite = make_suite(MetricSettings(selfsup=TINY), data, CACHE)
    assert suite.names == ["l1", "fid"] and suite.monitor == "val/fid_ab"
    suite.prepare(torch.device("cpu"))
    values = suite.measure(Identity(), torch.device("cpu"))
    assert values["val/fid_ab"] > 0 and values["val/fid_ba"] > 0 and np.isfinite(values["val/cycle_l1"])
    tags = suite.info["protocol_tags"]
    assert tags["val/fid_ab"].startswith("fid_ab[selfsup:") and tags["val/fid_ba"].startswith(
        "fid_ba[selfsup:"
    )


def test_without_fid_best_follows_a_fidelity_score_and_a_line_says_so(
    offline: Path, unlabelled: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = DegradedDataModule(folder(unlabelled), "super_resolution", scale=2, val_fraction=0.25)
    with caplog.at_level(logging.INFO, logger="ganforge"):
        chosen = make_suite(MetricSettings(names=["psnr", "l1"]), data, CACHE)
        dropped = make_suite(MetricSettings(extractor="classifier"), data, CACHE)  # cannot measure FID here
    assert chosen.monitor == dropped.monitor == "val/psnr" and "fid" not in dropped.names
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all("best.ckpt follows val/psnr" in m for m in lines)  # one line each
    assert "no FID is among metrics=[psnr,l1]" in lines[0]
    assert "FID cannot be measured here: metrics.extractor=classifier needs labelled data" in lines[1]


def test_asking_for_fid_that_cannot_be_measured_is_one_line(offline: Path, unlabelled: Path) -> None:
    data = DegradedDataModule(folder(unlabelled), "super_resolution", scale=2, val_fraction=0.25)
    with pytest.raises(ConfigError, match="classifier needs labelled data"):
        make_suite(MetricSettings(names=["psnr", "fid"], extractor="classifier"), data, CACHE)
    with pytest.raises(ConfigError, match="could not be fetched from http://127.0.0.1:9/"):
        make_suite(MetricSettings(names=["fid"], extractor="inception"), data, CACHE)


def test_pix2pix_training_on_an_unlabelled_folder_keeps_the_best_fid(
    run, offline: Path, unlabelled: Path
) -> None:
    """The issue's case end to end: pix2pix on a user's folder (no labels, no Inception weights) logs
    val/fid by default, tagged selfsup, and best.ckpt is the step of the lowest FID."""
    summary, out = run(
        "p2p",
        "experiment=pix2pix_sr_digits",
        "data/source=image_folder",
        f"data.source.path={unlabelled}",
        "data.source.resolution=16",
        "data.source.channels=1",
        "model.generator.width=8",
        "model.discriminator.width=8",
        "metrics=default",
        *[f"metrics.selfsup.{k}={v}" for k, v in TINY.items()],
        "train.steps=4",
        "metrics.every=2",
    )
    assert summary["metrics"]["protocol_tags"]["val/fid"].startswith("fid[selfsup:")
    with open(out / "metrics.csv") as f:
        fids = [float(r["val/fid"]) for r in csv.DictReader(f) if r.get("val/fid")]
    assert len(fids) == 2 and summary["best"]["val/fid"] == min(fids)
    best = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)
    assert best["ganforge"]["g_step"] == summary["best_step"] == 2 * (1 + fids.index(min(fids)))
