"""D's overfitting, measured (callbacks.overfit): its outputs on the training reals and on the digits
``data.limit`` kept back, recomputed here from scikit-learn's digits; the measurement leaves training
untouched; ``metrics.reference=all`` compares with training + held-out items."""

from __future__ import annotations

import csv

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from ganforge.data.digits import DigitsDataModule
from ganforge.errors import ConfigError
from ganforge.metrics.suite import MetricSettings
from ganforge.metrics.suites import make_suite
from ganforge.restore import restore
from helpers import ROOT, assert_refused_before_training, train_run
from test_resume import final_state, same

LIMIT = 100
RUN = (
    f"data.limit={LIMIT}",
    "train.steps=4",
    "model.discriminator.norm=none",  # no batch statistics: D(x) of a set is the mean of per-image values
    "callbacks.overfit.every=4",
    "callbacks.overfit.num_samples=64",
)


def digits16() -> torch.Tensor:
    """All 1,797 digits as the data module should hold them: 16 px bilinear, in [-1, 1]."""
    x = torch.as_tensor(load_digits().images, dtype=torch.float32).unsqueeze(1) / 16.0
    return F.interpolate(x, size=16, mode="bilinear", align_corners=False).clamp(0, 1) * 2 - 1


def test_logged_values_are_d_on_the_kept_and_the_held_back_digits(tmp_path):
    train_run(tmp_path, *RUN)
    rows = [r for r in csv.DictReader(open(tmp_path / "metrics.csv")) if r.get("val/d_gap")]
    assert [int(r["trainer/g_step"]) for r in rows] == [4]
    logged = {k: float(v) for k, v in rows[0].items() if k.startswith("val/") and v}
    order = torch.randperm(1797, generator=torch.Generator().manual_seed(0))  # data.limit's fixed subset
    images = digits16()
    kept, rest = images[order[:LIMIT].sort().values], images[order[LIMIT:].sort().values]
    train_set = kept[torch.randperm(LIMIT, generator=torch.Generator().manual_seed(0))[:64]]
    _, _, module, _ = restore(tmp_path / "checkpoints" / "last.ckpt")
    with torch.no_grad():
        d_train = module.discriminator(train_set).flatten()
        d_held = module.discriminator(rest[:64]).flatten()
    assert logged["val/d_train"] == pytest.approx(d_train.mean().item(), abs=1e-5)
    assert logged["val/d_heldout"] == pytest.approx(d_held.mean().item(), abs=1e-5)
    assert logged["val/d_gap"] == pytest.approx((d_train.mean() - d_held.mean()).item(), abs=1e-5)
    assert logged["val/rt_train"] == pytest.approx(d_train.sign().mean().item())  # ADA's r_t
    assert logged["val/rt_heldout"] == pytest.approx(d_held.sign().mean().item())


def test_measuring_changes_nothing_in_training(tmp_path):
    train_run(tmp_path / "on", *RUN[:-2], "callbacks.overfit.every=1", "train.steps=6")
    train_run(tmp_path / "off", *RUN[:-2], "train.steps=6")
    on, off = final_state(tmp_path / "on"), final_state(tmp_path / "off")
    assert same(on["state_dict"], off["state_dict"])


def test_without_held_out_data_only_the_training_values_are_logged(tmp_path):
    train_run(tmp_path, "train.steps=2", "callbacks.overfit.every=2", "callbacks.overfit.num_samples=8")
    row = next(r for r in csv.DictReader(open(tmp_path / "metrics.csv")) if r.get("val/d_train"))
    assert row["val/rt_train"] and not row.get("val/d_gap") and not row.get("val/d_heldout")


def test_translation_data_is_refused_in_one_line(tmp_path):
    assert_refused_before_training(
        tmp_path,
        "experiment=pix2pix_sr_digits",
        "callbacks.overfit.every=10",
        message="callbacks.overfit.every",
    )


def test_reference_all_is_every_digit_in_order_whatever_the_limit(tmp_path):
    settings = MetricSettings(names=["fid"], reference="all", classifier={"steps": 5}, num_samples=2000)
    suite = make_suite(settings, DigitsDataModule(resolution=16, limit=LIMIT), str(tmp_path))
    x, _ = suite.datamodule.items(range(1797))
    assert suite.datamodule.num_items() == 1797 and torch.allclose(x, digits16(), atol=1e-6)
    full = make_suite(settings, DigitsDataModule(resolution=16), str(tmp_path))
    assert full.datamodule.fingerprint() == suite.datamodule.fingerprint()  # one classifier, one reference
    suite.prepare(torch.device("cpu"))
    assert suite.info["n_real"] == 1797
    assert "|ref=all:1797|" in suite.info["protocol_tags"]["val/fid"]
    data = DigitsDataModule(resolution=16, limit=LIMIT)
    train_only = make_suite(MetricSettings(names=["fid"], classifier={"steps": 5}), data, str(tmp_path))
    assert train_only.datamodule.num_items() == LIMIT


def test_an_unknown_reference_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="choose train or all"):
        make_suite(MetricSettings(names=["fid"], reference="held"), DigitsDataModule(), str(tmp_path))


PRESETS_WITH_METRICS = sorted(
    p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml") if "\nmetrics:" in p.read_text()
)


@pytest.mark.parametrize("preset", PRESETS_WITH_METRICS)
def test_metrics_off_stays_off_under_a_preset_that_sets_metrics_values(tmp_path, preset):
    """``metrics=[]`` measures nothing, also under a preset that sets ``metrics.every`` or
    ``metrics.num_samples`` (four presets set the latter; it used to switch the metrics back on)."""
    from helpers import compose_cfg

    cfg = compose_cfg(tmp_path, f"experiment={preset}", "metrics=[]")
    assert cfg.metrics  # what the preset set is still there ...
    assert MetricSettings.from_config(cfg.metrics) is None  # ... and measures nothing
    assert MetricSettings.from_config(
        compose_cfg(tmp_path, f"experiment={preset}", "metrics=default").metrics
    )
