"""The paper presets: every preset composes; the PacGAN ones build the paper's nets and batches; the
maxout layer is hand-checked. (tests/test_e2e.py trains every preset for two steps.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from ganforge.build import build
from ganforge.errors import ConfigError
from ganforge.nets.mlp import Maxout, MLPDiscriminator
from ganforge.nets.packing import Packed
from helpers import compose_cfg, train_run

PRESETS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "experiment").glob("*.yaml"))


def test_maxout_is_the_max_of_its_linear_pieces():
    layer = Maxout(2, 2, pieces=3)
    with torch.no_grad():
        # unit 0: pieces x0, x1, -x0 - 1; unit 1: pieces 2*x1, 0, x0 + x1
        layer.linear.weight.copy_(torch.tensor([[1, 0], [0, 1], [-1, 0], [0, 2], [0, 0], [1, 1.0]]))
        layer.linear.bias.copy_(torch.tensor([0, 0, -1, 0, 0, 0.0]))
    x = torch.tensor([[1.0, 2.0], [-3.0, -1.0]])
    want = torch.tensor([[max(1, 2, -2), max(4, 0, 3)], [max(-3, -1, 2), max(-2, 0, -4)]]).float()
    torch.testing.assert_close(layer(x), want)


def test_maxout_needs_two_pieces():
    with pytest.raises(ConfigError, match="maxout_pieces"):
        MLPDiscriminator((2,), act="maxout", maxout_pieces=1)


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_composes(tmp_path, name):
    cfg = compose_cfg(tmp_path, f"experiment={name}")
    assert cfg.task_name == name and cfg.train.steps > 0


@pytest.mark.parametrize(("name", "std"), [("pacgan_ring8", 0.01), ("pacgan_grid25", 0.05)])
@pytest.mark.parametrize("pack", [1, 2])
def test_pacgan_presets_build_the_paper_setup(tmp_path, name, std, pack):
    datamodule, module = build(compose_cfg(tmp_path, f"experiment={name}", f"model.pack={pack}"))
    assert datamodule.batch_size == 100 * pack and datamodule.std == std  # 100 packed inputs per batch
    assert module.task.z_dim == 2
    g_layers = [m for m in module.generator.modules() if isinstance(m, nn.Linear)]
    assert [m.out_features for m in g_layers] == [400, 400, 400, 400, 2]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in module.generator.modules()) == 4
    assert sum(isinstance(m, nn.ReLU) for m in module.generator.modules()) == 4
    d = module.discriminator
    assert isinstance(d, Packed) == (pack > 1)
    maxouts = [m for m in d.modules() if isinstance(m, Maxout)]
    assert [(m.linear.in_features, m.linear.out_features, m.pieces) for m in maxouts] == [
        (2 * pack, 1000, 5),
        (200, 1000, 5),
        (200, 1000, 5),
    ]
    opt_g, _ = module.configure_optimizers()
    assert opt_g.defaults["lr"] == 1e-4 and opt_g.defaults["betas"] == (0.8, 0.999)


@pytest.mark.parametrize("pack", [1, 2])
def test_stacked_presets_pack_dcgan(tmp_path, pack):
    for name in ("stacked_digits", "stacked_mnist"):
        cfg = compose_cfg(tmp_path, f"experiment={name}", f"model.pack={pack}")
        assert cfg.model.pack == pack and cfg.data.batch_size == 64 * pack
        assert cfg.model.generator._target_.endswith("DCGANGenerator")


def test_pacgan_baseline_trains_and_counts_modes(tmp_path):
    summary = train_run(
        tmp_path,
        "experiment=pacgan_ring8",
        "model.pack=1",
        "train.steps=5",
        "metrics=[modes]",
        "metrics.every=0",
    )
    assert summary["status"] == "finished" and summary["g_steps"] == 5
    assert 0 <= summary["last"]["val/modes"] <= 8 and "val/hq_frac" in summary["last"]
