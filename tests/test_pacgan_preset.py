"""The PacGAN 2D presets against the authors' code (fjxmlzn/PacGAN, synthetic_data_experiments/):
2DRing_GAN&PacGAN/config.py and 2DGrid_GAN&PacGAN/config.py (hyperparameters), 2DGrid_GAN&PacGAN/
pacgan_task.py (the nets, their initialisation, the optimiser), PacGAN/pacgan/bricks.py (the loss).
The values below are written out from those files, not read from ganforge; the built nets' weight
statistics are measured independently of the init code."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ganforge.build import build
from ganforge.errors import ConfigError
from ganforge.nets.mlp import Maxout, MLPDiscriminator, MLPGenerator
from helpers import compose_cfg

# From the authors' config.py / pacgan_task.py
AUTHORS = {
    "num_zdim": 2,
    "gen_hidden_size": 400,  # 4 hidden layers, each Linear (no bias) -> BatchNormalization -> Rectifier
    "gen_layers": 4,
    "disc_hidden_size": 200,  # 3 LinearMaxout layers, then Linear to 1 logit; no norm, no dropout
    "disc_layers": 3,
    "disc_maxout_pieces": 5,
    "weights_init_std": 0.02,  # IsotropicGaussian(0.02) for every weight, G and D
    "biases_init": 0.0,  # Constant(0.0)
    "learning_rate": 1e-4,  # Adam, the same step rule for G and D, no decay
    "beta1": 0.8,
    "batch_size": 100,  # packed inputs per step
    "num_epoch": 400,  # of num_sample=100,000 packed inputs: 1,000 steps per epoch
    "num_sample": 100000,
}
DATA_STD = {"pacgan_ring8": 0.01, "pacgan_grid25": 0.05}


@pytest.mark.parametrize("name", ["pacgan_ring8", "pacgan_grid25"])
def test_preset_matches_the_authors_settings(tmp_path, name):
    cfg = compose_cfg(tmp_path, f"experiment={name}")
    g, d = cfg.model.generator, cfg.model.discriminator
    assert cfg.model.z_dim == AUTHORS["num_zdim"]
    assert list(g.hidden) == [AUTHORS["gen_hidden_size"]] * AUTHORS["gen_layers"]
    assert (g.act, g.norm) == ("relu", "batch")
    assert list(d.hidden) == [AUTHORS["disc_hidden_size"]] * AUTHORS["disc_layers"]
    assert (d.act, d.maxout_pieces, d.norm, d.spectral_norm) == ("maxout", 5, "none", False)
    assert g.init == d.init == "normal_0.02"  # N(0, 0.02) weights, zero biases: not torch's default
    assert cfg.optim.lr_g == cfg.optim.lr_d == AUTHORS["learning_rate"]
    assert list(cfg.optim.betas) == [AUTHORS["beta1"], 0.999]
    assert cfg.optim.get("scheduler") is None  # a constant learning rate
    assert cfg.train.n_critic == 1 and cfg.train.ema.decay is None
    # bricks.py: D softplus(-D(x)) + softplus(D(G(z))), G softplus(-D(G(z))): the non-saturating loss
    assert cfg.loss.d_loss._target_.endswith("nonsaturating_d") and not cfg.loss.penalties
    assert cfg.loss.g_loss._target_.endswith("nonsaturating_g") and cfg.loss.label_smoothing == 0
    assert cfg.data.std == DATA_STD[name]
    for pack in (1, 2):
        packed = compose_cfg(tmp_path, f"experiment={name}", f"model.pack={pack}")
        assert packed.data.batch_size == AUTHORS["batch_size"] * pack
    assert cfg.data.train_size == AUTHORS["num_sample"]  # one fixed training set, reshuffled per epoch
    assert cfg.train.updates == "simultaneous"  # ali_algorithm: D and G step together from one batch
    steps_per_epoch = AUTHORS["num_sample"] // AUTHORS["batch_size"]
    assert cfg.train.steps == AUTHORS["num_epoch"] * steps_per_epoch


def _linears(net: nn.Module) -> list[nn.Linear]:
    return [m for m in net.modules() if isinstance(m, nn.Linear)]


@pytest.mark.parametrize("name", ["pacgan_ring8", "pacgan_grid25"])
@pytest.mark.parametrize("pack", [1, 2])
def test_built_nets_are_initialised_normal_0_02(tmp_path, name, pack):
    torch.manual_seed(0)
    _, module = build(compose_cfg(tmp_path, f"experiment={name}", f"model.pack={pack}", "seed=3"))
    std = AUTHORS["weights_init_std"]
    for net in (module.generator, module.discriminator):
        layers = _linears(net)
        assert layers
        for layer in layers:
            w = layer.weight.detach()
            # N(0, 0.02): sample std within 4 standard errors (std of a sample std: std / sqrt(2n))
            tol = 4 * std / (2 * w.numel()) ** 0.5
            assert abs(w.std().item() - std) < tol, (layer, w.std().item())
            assert abs(w.mean().item()) < 4 * std / w.numel() ** 0.5
            # normal, not uniform: a N(0, s) sample reaches past 2.5 s; a uniform of std s stops at 1.73 s
            if w.numel() >= 800:
                assert w.abs().max().item() > 2.5 * std
            assert torch.all(layer.bias == AUTHORS["biases_init"])
    for bn in (m for m in module.generator.modules() if isinstance(m, nn.BatchNorm1d)):
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    # torch's default for the first D layer (fan-in 2*pack) would be U(±1/sqrt(fan_in)): std 0.2 to 0.4
    first = next(m for m in module.discriminator.modules() if isinstance(m, Maxout)).linear
    assert first.weight.std().item() < 0.025


def test_default_init_is_unchanged():
    """Other configs keep torch's initialisation: the same weights as before the init option."""
    torch.manual_seed(5)
    g = MLPGenerator((2,), z_dim=2, hidden=(400, 400), act="relu", norm="batch")
    torch.manual_seed(5)
    want = [nn.Linear(2, 400), nn.BatchNorm1d(400), nn.ReLU(), nn.Linear(400, 400)]
    torch.testing.assert_close(g.net[0].weight, want[0].weight)
    torch.testing.assert_close(g.net[3].weight, want[3].weight)
    bound = 2**-0.5  # kaiming-uniform(a=sqrt(5)) of fan-in 2: U(±1/sqrt(2))
    assert g.net[0].weight.abs().max().item() <= bound and g.net[0].weight.std().item() > 0.3
    d = MLPDiscriminator((4,), hidden=(200,), act="maxout", maxout_pieces=5)
    assert d.net[0].linear.weight.std().item() > 0.2 and d.net[0].linear.bias.abs().sum() > 0


def test_normal_init_with_spectral_norm_wraps_after_init():
    torch.manual_seed(0)
    d = MLPDiscriminator((4,), hidden=(200, 200), act="maxout", spectral_norm=True, init="normal_0.02")
    for layer in _linears(d):
        raw = layer.parametrizations.weight.original
        assert abs(raw.std().item() - 0.02) < 4 * 0.02 / (2 * raw.numel()) ** 0.5
        # u, v computed on the initialised weight: the normalised weight has spectral norm 1 at once
        with torch.no_grad():
            sigma = torch.linalg.matrix_norm(layer.weight, ord=2).item()
        assert sigma == pytest.approx(1.0, abs=0.1)


def test_unknown_init_is_refused():
    with pytest.raises(ConfigError, match="init"):
        MLPGenerator((2,), z_dim=2, init="xavier")
    with pytest.raises(ConfigError, match="init"):
        MLPDiscriminator((2,), init="normal")
