"""How a metric was measured: the protocol dict and tag of every FID/KID, clean-fid's resize for
Inception, and the Fréchet distance checked against an independent implementation (pytorch-fid)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_fid.fid_score import calculate_frechet_distance
from torchmetrics.image import FrechetInceptionDistance

from ganforge.data.digits import DigitsDataModule
from ganforge.errors import ConfigError
from ganforge.metrics.conditional import frechet_distance, gaussian_statistics
from ganforge.metrics.features import (
    INCEPTION,
    INCEPTION_CLEAN,
    CleanResizeInception,
    FeatureLayer,
    clean_resize,
    write_random_inception_weights,
)
from ganforge.metrics.suite import MetricSettings, MetricSuite, build_extractor, protocol_tag

CACHE = os.environ["GANFORGE_CACHE_DIR"]


def hand_made_image() -> torch.Tensor:
    """A 3x6x6 uint8 image: a ramp, a checkerboard and a bright square, one per channel (values kept
    away from 0 and 255: PIL's uint8 path clips the overshoot of bicubic between its two passes)."""
    ramp = 20 + torch.arange(36).reshape(6, 6) * 6
    checker = 70 + (torch.arange(6)[:, None] + torch.arange(6)[None, :]) % 2 * 110
    square = torch.full((6, 6), 60)
    square[1:4, 2:5] = 190
    return torch.stack([ramp, checker, square]).clamp(0, 255).to(torch.uint8)


def test_clean_resize_is_pil_bicubic_on_the_uint8_image():
    """Against PIL's own uint8 RGB bicubic resize: the same filter, which rounds once at the end."""
    image = hand_made_image()
    ours = clean_resize(image[None], 17)[0]
    pil = Image.fromarray(image.permute(1, 2, 0).numpy(), mode="RGB").resize(
        (17, 17), Image.Resampling.BICUBIC
    )
    theirs = torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1).float()
    assert ours.dtype == torch.float32 and ours.shape == (3, 17, 17)
    assert (ours - theirs).abs().max() <= 1.0  # PIL's uint8 path rounds; clean-fid does not quantize
    assert (ours.round() != ours).any()  # float output: not quantized again
    flat = clean_resize(torch.full((1, 3, 5, 5), 77, dtype=torch.uint8), 299)
    assert torch.allclose(flat, torch.full_like(flat, 77.0), atol=1e-3)
    with pytest.raises(ValueError, match="uint8"):
        clean_resize(image.float()[None], 17)


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    """FID Inception architecture with random weights: the code path, not FID values."""
    return write_random_inception_weights(tmp_path_factory.mktemp("inception") / "inception.pth")


def test_clean_inception_is_torch_fidelitys_network_behind_another_resize(inception_file):
    """At 299 px both resizes are the identity, so the two extractors must give the same features."""
    layers = ["768", "2048", "logits_unbiased", "logits"]
    ours = CleanResizeInception(INCEPTION_CLEAN, layers, feature_extractor_weights_path=str(inception_file))
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    ref = FeatureExtractorInceptionV3(INCEPTION, layers, feature_extractor_weights_path=str(inception_file))
    x = torch.randint(0, 256, (2, 3, 299, 299), generator=torch.Generator().manual_seed(0)).to(torch.uint8)
    with torch.no_grad():
        for a, b in zip(ours(x), ref(x), strict=True):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)


def test_the_resize_option_reaches_the_extractor_and_the_tag(inception_file):
    dm = DigitsDataModule(resolution=8)
    settings = MetricSettings(
        names=["fid"], num_samples=4, batch_size=4, extractor="inception", resize="clean"
    )
    settings.weights_path = str(inception_file)
    extractor = build_extractor(settings, dm, CACHE, torch.device("cpu"))
    assert extractor.name == INCEPTION_CLEAN and isinstance(extractor.build(["2048"]), CleanResizeInception)
    suite = MetricSuite(settings, dm, CACHE)
    suite.prepare(torch.device("cpu"))
    sha = hashlib.sha256(inception_file.read_bytes()).hexdigest()
    protocol = suite.info["protocol"]
    assert protocol["weights_sha256"] == sha and protocol["resize"] == "clean"
    assert suite.info["protocol_tags"]["val/fid"] == f"fid[inception:{sha[:8]}|n=4|ref=train:4|resize=clean]"
    default = build_extractor(
        MetricSettings(extractor="inception", weights_path=str(inception_file)), dm, CACHE, "cpu"
    )
    assert default.name == INCEPTION and default.info["resize"] == "torch_fidelity"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"resize": "clean", "extractor": "classifier"}, "is for metrics.extractor=inception"),
        ({"resize": "lanczos"}, "choose torch_fidelity or clean"),
    ],
)
def test_resize_mistakes_are_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message):
        MetricSuite(MetricSettings(names=["fid"], **overrides), DigitsDataModule(resolution=8), CACHE)


@pytest.mark.slow  # trains the metrics classifier and measures real samples
def test_classifier_protocol_tag_and_truncation():
    """Digits with the classifier: resize none, the classifier file's hash; a ψ set by eval is named."""
    suite = MetricSuite(
        MetricSettings(names=["fid", "kid"], num_samples=300, batch_size=300), DigitsDataModule(), CACHE
    )
    suite.prepare(torch.device("cpu"))
    sha = hashlib.sha256(open(suite.info["classifier"], "rb").read()).hexdigest()
    tags = suite.info["protocol_tags"]
    assert tags["val/fid"] == f"fid[classifier:{sha[:8]}|n=300|ref=train:300|resize=none]"
    assert tags["val/kid"].startswith("kid[classifier:") and suite.info["protocol"]["truncation"] is None
    suite.truncation = 0.7
    suite.measure(lambda z: torch.tanh(z[:, :1, None, None].expand(-1, 1, 16, 16)), 4, torch.device("cpu"))
    assert suite.info["protocol"]["truncation"] == 0.7
    assert suite.info["protocol_tags"]["val/fid"].endswith("|resize=none|truncation=0.7]")
    assert protocol_tag("fid", {**suite.info["protocol"], "truncation": None}) == tags["val/fid"]


def test_frechet_distance_agrees_with_pytorch_fid():
    """The same features through pytorch-fid (scipy's sqrtm), ours (symmetric eigenproblems) and
    torchmetrics (what training logs as val/fid): agreement to 1e-6 relative."""
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(500, 24, generator=gen, dtype=torch.float64)
    fake = (
        torch.randn(400, 24, generator=gen, dtype=torch.float64) @ (torch.eye(24) * 1.3 + 0.1).double() + 0.4
    )
    (mu1, s1), (mu2, s2) = gaussian_statistics(fake), gaussian_statistics(real)
    theirs = calculate_frechet_distance(mu1.numpy(), s1.numpy(), mu2.numpy(), s2.numpy())
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(theirs, rel=1e-6)
    fid = FrechetInceptionDistance(feature=FeatureLayer(torch.nn.Identity(), 0, False, 24))
    fid.update(real, real=True)
    fid.update(fake, real=False)
    assert float(fid.compute()) == pytest.approx(theirs, rel=1e-6)
    assert theirs > 1.0  # a real difference, not two zeros


WANDB_SCRIPT = """
import sys
from ganforge.loggers import WandbLogger
from ganforge.process import finish_wandb
logger = WandbLogger(project="ganforge-test", save_dir=sys.argv[1], offline=True)
logger.log_protocols({"val/fid": sys.argv[2]})
finish_wandb()
"""


def test_protocol_tags_reach_the_wandb_summary_and_config(tmp_path):
    """An offline W&B run (its own process, so its file is complete when read): ``val/fid_protocol``
    in the run's summary and config."""
    from wandb_records import config, summary

    tag = "fid[classifier:ab12cd34|n=1797|ref=train:1797|resize=none]"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    for name in ("CONFIG", "CACHE", "DATA"):
        env[f"WANDB_{name}_DIR"] = str(tmp_path / name.lower())
    proc = subprocess.run(
        [sys.executable, "-c", WANDB_SCRIPT, str(tmp_path), tag],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    assert summary(path)["val/fid_protocol"] == tag and config(path)["val/fid_protocol"] == tag


@pytest.mark.slow  # trains the metrics classifier and measures real samples
def test_translation_fids_state_their_held_out_reference():
    """Paired and two-domain translation: the FIDs against held-out images carry their protocol too."""
    from ganforge.data.digits_pairs import DigitsTranslationPairs
    from ganforge.data.unpaired import DigitsTranslationDataModule
    from ganforge.metrics.suites import make_suite

    settings = MetricSettings(names=["fid"], num_samples=50, batch_size=50, classifier={"steps": 50})
    paired = make_suite(settings, DigitsTranslationPairs(), CACHE)
    paired.prepare(torch.device("cpu"))
    n = paired.info["held_out_pairs"]
    tag = paired.info["protocol_tags"]["val/fid"]
    assert tag.startswith("fid[classifier:") and tag.endswith(
        f"|n={n}|ref=val:{n}|resize=none|test_mode=eval]"
    )
    two_way = make_suite(settings, DigitsTranslationDataModule(), CACHE)
    two_way.prepare(torch.device("cpu"))
    tags = two_way.info["protocol_tags"]
    assert f"ref=val_b:{two_way.info['held_out_b']}" in tags["val/fid_ab"]
    assert f"ref=val_a:{two_way.info['held_out_a']}" in tags["val/fid_ba"]


TRAIN_ONCE = """
import sys, time
from pathlib import Path
import torch
from ganforge.metrics.classifier import ClassifierSpec, cached_classifier

cache, me = Path(sys.argv[1]), sys.argv[2]
(cache / f"ready_{me}").touch()
while not (cache / "go").exists():
    time.sleep(0.01)

def load():
    time.sleep(1.0)  # slow data: without the lock both processes would be training by now
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8, generator=g), torch.arange(64) % 2

spec = ClassifierSpec(in_channels=1, num_classes=2, width=4, steps=5, batch_size=16)
print(cached_classifier(load, spec, "fingerprint", cache)[2])
"""


def test_processes_starting_together_train_the_classifier_once(tmp_path):
    """Two processes (a sweep's jobs starting at once) need the same classifier: one trains it under the
    cache file's lock, the other waits and reads it from the cache."""
    import subprocess
    import sys
    import time

    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TRAIN_ONCE, str(tmp_path), name], stdout=subprocess.PIPE, text=True
        )
        for name in ("a", "b")
    ]
    deadline = time.time() + 120
    while not all((tmp_path / f"ready_{n}").exists() for n in ("a", "b")) and time.time() < deadline:
        time.sleep(0.05)
    (tmp_path / "go").touch()
    cached = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert cached == ["False", "True"]  # trained once, read once
    assert len(list((tmp_path / "classifiers").glob("*.pt"))) == 1
