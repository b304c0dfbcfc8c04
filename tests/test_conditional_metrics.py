"""Metrics of class-conditional models: intra-FID (Miyato & Koyama 2018) and the classification
accuracy score (Ravuri & Vinyals 2019), on hand-made features and generators, and in a real run."""

from __future__ import annotations

import json
import os

import pytest
import torch
from torchmetrics.image import FrechetInceptionDistance

from ganforge.data.digits import DigitsDataModule
from ganforge.data.toy import RingDataModule
from ganforge.errors import ConfigError
from ganforge.metrics.conditional import IntraFID
from ganforge.metrics.features import FeatureLayer
from ganforge.metrics.suite import MetricSettings, MetricSuite

CACHE = os.environ["GANFORGE_CACHE_DIR"]
FAST_CLASSIFIER = {"steps": 150}  # enough for ~95% on the digits, a few seconds


def test_intra_fid_is_the_mean_of_per_class_fids():
    """Three classes of hand-made features, fed in two batches: each class value equals torchmetrics'
    FID of that class alone, and their mean is intra-FID."""
    gen = torch.Generator().manual_seed(0)
    real_y = torch.arange(3).repeat_interleave(torch.tensor([80, 120, 100]))
    fake_y = torch.arange(3).repeat_interleave(torch.tensor([90, 70, 110]))
    real = torch.randn(len(real_y), 6, generator=gen).double() + real_y[:, None]
    fake = torch.randn(len(fake_y), 6, generator=gen).double() * 1.2 + fake_y[:, None] * 1.5
    intra = IntraFID(real, real_y, 3)
    perm = torch.randperm(len(fake_y), generator=gen)
    for part in perm.split(150):
        intra.update(fake[part], fake_y[part])
    per_class = intra.compute()
    for c in range(3):
        fid = FrechetInceptionDistance(feature=FeatureLayer(torch.nn.Identity(), 0, False, 6))
        fid.update(real[real_y == c], real=True)
        fid.update(fake[fake_y == c], real=False)
        assert float(per_class[c]) == pytest.approx(float(fid.compute()), rel=1e-6)
    assert float(per_class.mean()) > 0.5  # the classes differ: not a vacuous zero


def test_a_class_without_samples_is_left_out_of_the_mean():
    real_y = torch.tensor([0] * 10 + [1] * 10)
    real = torch.randn(20, 3, generator=torch.Generator().manual_seed(1)).double()
    intra = IntraFID(real, real_y, 2)
    intra.update(real[:10], real_y[:10])  # class 1 never generated
    out = intra.compute()
    assert abs(float(out[0])) < 1e-9 and torch.isnan(out[1])


@pytest.mark.parametrize(
    ("settings", "data", "message"),
    [
        (
            MetricSettings(names=["intra_fid"], conditional=False),
            DigitsDataModule(),
            "model.conditional=true",
        ),
        (
            MetricSettings(names=["fid", "cas"], conditional=False),
            DigitsDataModule(),
            "model.conditional=true",
        ),
        (MetricSettings(names=["cas"]), RingDataModule(), "need image data"),
    ],
)
def test_conditional_metrics_refuse_unconditional_models_and_unlabelled_data(settings, data, message):
    with pytest.raises(ConfigError, match=message):
        MetricSuite(settings, data, CACHE)


class RealDigits(torch.nn.Module):
    """A hand-made conditional "generator": for each asked label, a real digit of that class from the
    classifier's training share (never its held-out share), picked by the latent."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        super().__init__()
        self.images, self.labels = images, labels

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = torch.empty(len(y), *self.images.shape[1:])
        for i, (code, label) in enumerate(zip(z[:, 0].tolist(), y.tolist(), strict=True)):
            pool = (self.labels == label).nonzero().flatten()
            out[i] = self.images[pool[int(abs(code) * 1e6) % len(pool)]]
        return out


@pytest.fixture(scope="module")
def conditional_suite() -> tuple[MetricSuite, RealDigits]:
    dm = DigitsDataModule(resolution=16)
    settings = MetricSettings(
        names=["fid", "intra_fid", "cas"],
        num_samples=600,
        batch_size=300,
        conditional=True,
        classifier=FAST_CLASSIFIER,
    )
    suite = MetricSuite(settings, dm, CACHE)
    suite.prepare(torch.device("cpu"))
    holdout = suite.holdout
    assert holdout is not None
    images = holdout.images[holdout.train].float().div(127.5).sub(1)
    return suite, RealDigits(images, holdout.labels[holdout.train])


@pytest.mark.slow  # trains classifiers on generated and real digits
def test_cas_of_a_generator_of_real_digits_is_the_real_accuracy(conditional_suite):
    suite, generator = conditional_suite
    labels = lambda n, gen: torch.randint(10, (n,), generator=gen)  # noqa: E731
    values = suite.measure(generator, 4, torch.device("cpu"), labels=labels)
    assert values["val/cas_real"] == suite.info["classifier_accuracy"] > 0.85
    assert values["val/cas"] == pytest.approx(values["val/cas_real"], abs=0.05)
    assert suite.info["protocol_tags"]["val/cas"].startswith("cas[classifier:")
    # intra-FID of real digits: each class close to its own real images
    per_class = suite.info["intra_fid_per_class"]
    assert sorted(per_class, key=int) == [str(c) for c in range(10)]
    assert values["val/intra_fid"] == pytest.approx(sum(per_class.values()) / 10)
    assert suite.info["protocol_tags"]["val/intra_fid"].startswith("intra_fid[classifier:")
    noisy = lambda z, y: (generator(z, y) + 0.5 * torch.randn(len(y), 1, 16, 16)).clamp(-1, 1)  # noqa: E731
    worse = suite.measure(noisy, 4, torch.device("cpu"), labels=labels, final=False)
    assert worse["val/intra_fid"] > 5 * values["val/intra_fid"] and "val/cas" not in worse


def test_a_conditional_run_reports_intra_fid_and_cas_and_eval_too(run, tmp_path):
    """Training at its last step measures all three; ganforge-eval's code path measures CAS of any
    checkpoint; an unconditional model is refused before training."""
    from ganforge.eval import evaluate

    common = ["metrics.num_samples=300", "metrics.batch_size=300", "metrics.classifier.steps=150"]
    summary, out = run(
        "cgan", "model.conditional=true", "metrics=[fid,intra_fid,cas]", "train.steps=2", *common
    )
    assert {"val/fid", "val/intra_fid", "val/cas", "val/cas_real"} <= set(summary["last"])
    assert len(summary["metrics"]["intra_fid_per_class"]) == 10
    assert set(summary["metrics"]["protocol_tags"]) == {"val/fid", "val/intra_fid", "val/cas"}
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["metrics"]["protocol_tags"]["val/fid"].startswith("fid[classifier:")
    result = evaluate(
        str(out / "checkpoints" / "last.ckpt"),
        {"cas": True, "num_samples": 300, "batch_size": 300, "classifier": FAST_CLASSIFIER},
        CACHE,
        "cpu",
    )
    assert result["metrics"]["val/cas"] == pytest.approx(summary["last"]["val/cas"])
    assert result["protocol_tags"]["val/cas"] == summary["metrics"]["protocol_tags"]["val/cas"]
    with pytest.raises(ConfigError, match="model.conditional=true"):
        run("plain", "metrics=[intra_fid]", "train.steps=1", *common)
