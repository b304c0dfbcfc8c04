"""The GAN zoo's architectures: ResNet, norms, conditional G/D (projection, ACGAN), PacGAN packing,
minibatch std — shapes, what each layer computes, gradient routing and short end-to-end runs."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from ganforge.build import build
from ganforge.errors import ConfigError
from ganforge.nets.conditional import ConditionalNorm
from ganforge.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from ganforge.nets.layers import MinibatchStd
from ganforge.nets.mlp import MLPDiscriminator, MLPGenerator
from ganforge.nets.packing import Packed, packed_shape
from ganforge.nets.resnet import ResNetDiscriminator, ResNetGenerator
from ganforge.settings import Optimizers, Schedule
from ganforge.tasks.generation import GenerationTask
from helpers import compose_cfg
from test_steps import RecordingModule, bare_trainer

NETS = {"dcgan": (DCGANGenerator, DCGANDiscriminator), "resnet": (ResNetGenerator, ResNetDiscriminator)}
NORMS = ["batch", "layer", "instance", "none"]
SMALL = {"width": 8}
CONDITIONAL = [("dcgan", "projection"), ("resnet", "acgan")]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize(
    ("arch", "res", "norm"), list(itertools.product(NETS, (16, 32, 64), NORMS)), ids=lambda v: str(v)
)
def test_shapes_every_architecture_resolution_and_norm(arch, res, norm):
    gen_cls, disc_cls = NETS[arch]
    g = gen_cls((3, res, res), z_dim=8, norm=norm, **SMALL)
    for sn in (False, True):
        d = disc_cls((3, res, res), norm=norm, spectral_norm=sn, **SMALL)
        x = g(torch.randn(4, 8))
        assert x.shape == (4, 3, res, res) and x.abs().max() <= 1
        assert d(x).shape == (4,)


@pytest.mark.parametrize("norm", ["none", "batch", "layer"])
def test_mlp_norms(norm):
    g = MLPGenerator((2,), z_dim=4, hidden=(16,), norm=norm)
    d = MLPDiscriminator((2,), hidden=(16,), norm=norm, spectral_norm=True)
    assert d(g(torch.randn(5, 4))).shape == (5,)


def test_norm_choices_are_checked():
    with pytest.raises(ConfigError, match="spectral_norm=true"):
        DCGANDiscriminator((1, 16, 16), norm="spectral")
    with pytest.raises(ConfigError, match="batch, layer, instance, none"):
        ResNetGenerator((1, 16, 16), norm="group")
    with pytest.raises(ConfigError, match="needs images"):
        MLPDiscriminator((2,), norm="instance")
    with pytest.raises(ConfigError, match="16/32/64"):
        ResNetDiscriminator((1, 28, 28))


def test_resnet_follows_the_papers_at_32px():
    g, d = ResNetGenerator((3, 32, 32)), ResNetDiscriminator((3, 32, 32))
    assert len(g.blocks) == 3 and len(d.blocks) == 4  # SNGAN / WGAN-GP CIFAR-10 nets
    assert all(hasattr(m, "parametrizations") for m in d.modules() if isinstance(m, torch.nn.Conv2d))
    assert len(ResNetDiscriminator((3, 16, 16)).blocks) == 3  # fewer blocks for the 16 px digits


@pytest.mark.parametrize(("arch", "cond"), list(itertools.product(NETS, ("projection", "acgan"))))
def test_conditional_shapes(arch, cond):
    gen_cls, disc_cls = NETS[arch]
    g = gen_cls((1, 16, 16), z_dim=8, num_classes=10, **SMALL)
    d = disc_cls((1, 16, 16), num_classes=10, cond=cond, **SMALL)
    assert any(isinstance(m, ConditionalNorm) for m in g.modules())
    assert g.label_input == (10 if arch == "dcgan" else 0)  # the one-hot label joins z (dcgan default)
    assert gen_cls((1, 16, 16), z_dim=8, num_classes=10, label_input=True, **SMALL)(
        torch.randn(2, 8), torch.tensor([3, 4])
    ).shape == (2, 1, 16, 16)
    y = torch.arange(6) % 10
    x = g(torch.randn(6, 8), y)
    assert x.shape == (6, 1, 16, 16)
    out = d(x, y)
    if cond == "acgan":
        logits, classes = out
        assert logits.shape == (6,) and classes.shape == (6, 10)
    else:
        assert out.shape == (6,)


@pytest.mark.parametrize("arch", NETS)
def test_generator_and_projection_depend_on_the_label(arch):
    gen_cls, disc_cls = NETS[arch]
    g = gen_cls((1, 16, 16), z_dim=8, num_classes=3, **SMALL).eval()
    d = disc_cls((1, 16, 16), num_classes=3, cond="projection", **SMALL).eval()
    with torch.no_grad():  # non-trivial class embeddings
        for m in g.modules():
            if isinstance(m, ConditionalNorm):
                m.gain.weight.normal_(1.0, 0.5)
    z, x = torch.randn(4, 8), torch.randn(4, 1, 16, 16)
    y0, y1 = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
    assert not torch.allclose(g(z, y0), g(z, y1))
    assert not torch.allclose(d(x, y0), d(x, y1))
    with pytest.raises(ValueError, match="labels"):
        d(x)


def test_minibatch_std_adds_the_mean_std_channel():
    x = torch.randn(4, 3, 5, 5)
    out = MinibatchStd(group_size=4)(x)
    assert out.shape == (4, 4, 5, 5) and torch.equal(out[:, :3], x)
    expected = x.std(0, unbiased=False).mean()
    torch.testing.assert_close(out[:, 3], expected.expand(4, 5, 5), atol=1e-5, rtol=1e-5)
    # groups of 2: samples i and i + B/2 share their group's std
    out = MinibatchStd(group_size=2)(x)
    first = torch.stack([x[0], x[2]]).std(0, unbiased=False).mean()
    torch.testing.assert_close(out[2, 3, 0, 0], first, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", NETS)
def test_minibatch_std_option(arch):
    d = NETS[arch][1]((1, 16, 16), minibatch_std=True, **SMALL)
    assert any(isinstance(m, MinibatchStd) for m in d.modules())
    assert d(torch.randn(8, 1, 16, 16)).shape == (8,)


@pytest.mark.parametrize(
    ("net", "shape"),
    [
        (lambda s: MLPDiscriminator(s, hidden=(16,)), (2,)),
        (lambda s: DCGANDiscriminator(s, **SMALL), (1, 16, 16)),
        (lambda s: ResNetDiscriminator(s, **SMALL), (3, 32, 32)),
    ],
    ids=["mlp", "dcgan", "resnet"],
)
def test_packing_judges_k_samples_jointly(net, shape):
    k = 2
    inner = net(packed_shape(shape, k))
    packed = Packed(inner, k).eval()  # eval: spectral norm's power iteration stays put between calls
    x = torch.randn(6, *shape)
    out = packed(x)
    assert out.shape == (3,)
    joint = torch.cat([x[0::2], x[1::2]], dim=1)  # pack i = samples 2i and 2i+1, side by side
    torch.testing.assert_close(out, inner(joint))
    with pytest.raises(ValueError, match="divide"):
        packed(torch.randn(5, *shape))


@pytest.mark.parametrize(("model", "cond"), CONDITIONAL, ids=["dcgan-projection", "resnet-acgan"])
def test_conditional_gradients_reach_only_the_network_being_updated(tmp_path, model, cond):
    cfg = compose_cfg(
        tmp_path,
        f"model={model}",
        "model.conditional=true",
        f"model.cond={cond}",
        "model.generator.width=8",
        "model.discriminator.width=8",
        "data.batch_size=8",
        "train.steps=2",
        "train.n_critic=2",
    )
    datamodule, base = build(cfg)
    module = RecordingModule(
        base.generator,
        base.discriminator,
        base.loss,
        Optimizers(base.optimizer_g, base.optimizer_d),
        Schedule(steps=2, n_critic=2, log_every=1),
        GenerationTask(),  # a conditional G names its classes
    )
    assert module.task.num_classes == 10
    g_before = [p.detach().clone() for p in module.generator.parameters()]
    bare_trainer(max_steps=6).fit(module, datamodule=datamodule)
    assert module.events == [{"discriminator"}, {"discriminator"}, {"generator"}] * 2
    # the class embeddings of cBN learn too
    assert all(not torch.equal(a, b) for a, b in zip(g_before, module.generator.parameters(), strict=True))
    assert ("train/d_cls" in module.last_metrics) == (cond == "acgan")


SMALL_NETS = ["model.generator.width=8", "model.discriminator.width=8", "data.batch_size=8"]


@pytest.mark.parametrize(
    "overrides",
    [
        ["model=resnet"],
        ["model=resnet", "model.discriminator.minibatch_std=true", "model.discriminator.norm=layer"],
        ["model=dcgan", "model.discriminator.minibatch_std=true"],
        ["model=dcgan", "model.pack=2"],
        ["model=resnet", "model.pack=2", "loss=wgan_gp"],
    ],
    ids=["resnet", "resnet-mbstd", "dcgan-mbstd", "dcgan-pack2", "resnet-pack2-gp"],
)
def test_architecture_options_train_on_digits(run, overrides):
    summary, _ = run("run", *overrides, *SMALL_NETS, "train.steps=3")
    assert summary["status"] == "finished" and summary["g_steps"] == 3


def test_pack_on_ring8_mlp(run):
    summary, _ = run("ring", "data=ring8", "model=mlp", "model.pack=2", "data.batch_size=16", "train.steps=3")
    assert summary["status"] == "finished"


@pytest.mark.parametrize(("model", "cond"), CONDITIONAL, ids=["dcgan-projection", "resnet-acgan"])
def test_conditional_trains_with_a_row_per_class_and_metrics(run, model, cond):
    summary, out = run(
        "cond",
        f"model={model}",
        "model.conditional=true",
        f"model.cond={cond}",
        *SMALL_NETS,
        "train.steps=2",
        "train.num_fixed=20",
        "metrics=[fid]",
        "metrics.num_samples=100",
        "metrics.classifier.steps=20",
    )
    assert summary["status"] == "finished" and "val/fid" in summary["last"]
    with Image.open(out / "samples" / "step_0000002.png") as img:  # 10 rows (classes) x 2 columns
        w, h = img.size
    assert h > 4 * w
    if cond == "acgan":
        assert "train/d_cls" in summary["last"] and "train/g_cls" in summary["last"]


def test_conditional_samples_cover_every_class(tmp_path):
    cfg = compose_cfg(tmp_path, "model.conditional=true", *SMALL_NETS, "train.num_fixed=30")
    _, module = build(cfg)
    assert module.task.fixed_y.tolist() == [c for c in range(10) for _ in range(3)]
    assert torch.equal(module.task.fixed_z[:3], module.task.fixed_z[3:6])  # the same latents in every row
    assert module.sample().shape == (30, 1, 16, 16)
    assert module.sample(torch.randn(7, module.task.z_dim)).shape == (7, 1, 16, 16)  # labels cycle
    thousand = GenerationTask()  # more classes than grid samples (stacked digits: 1,000)
    thousand.attach(SimpleNamespace(z_dim=8, num_classes=1000), num_fixed=8, seed=0)
    assert thousand.grid_columns is None and thousand.fixed_y.tolist()[::7] == [
        0,
        999,
    ]  # stacked digits: spread


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data=ring8", "model=dcgan", "model.conditional=true"], "labelled data"),
        (["data=ring8", "model=mlp", "model.pack=3", "data.batch_size=16"], "divisible"),
        (["model=dcgan", "model.pack=3"], "divisible"),
        (["model=mlp", "model.conditional=true"], "no conditional version"),
        (["model=dcgan", "model.conditional=true", "model.cond=infogan"], "projection, acgan"),
    ],
    ids=["conditional-ring8", "pack-ring8", "pack-digits", "conditional-mlp", "unknown-cond"],
)
def test_config_errors_before_training(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        build(compose_cfg(tmp_path, *overrides))


def spectral_normed(net: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in net.modules() if hasattr(m, "parametrizations") and "weight" in m.parametrizations]


def weight_matrix(m: torch.nn.Module, weight: torch.Tensor) -> torch.Tensor:
    """The matrix spectral norm normalises: the weight with its output dim first, flattened."""
    dim = 1 if isinstance(m, torch.nn.ConvTranspose2d) else 0
    return weight.detach().movedim(dim, 0).flatten(1)


@pytest.mark.parametrize("cond", ["none", "projection", "acgan"])
@pytest.mark.parametrize("res", [16, 32])
def test_dcgan_spectral_norm_holds_from_the_first_forward(res, cond):
    """DCGAN's N(0, 0.02) init comes before spectral norm's power iteration. Wrapped first, the vectors
    belonged to the weights before re-initialisation: the first forward's norms were 1.1-1.7, not 1."""
    classes = 0 if cond == "none" else 10
    g = DCGANGenerator((1, res, res), z_dim=100, width=32, spectral_norm=True, num_classes=classes)
    d = DCGANDiscriminator(
        (1, res, res), width=32, norm="none", spectral_norm=True, num_classes=classes, cond=cond
    )
    stages = {16: 2, 32: 3}[res]  # 4x4 → res
    # every layer: G's transposed convs; D's convs, the head's linear and its embedding or classifier
    layers = spectral_normed(g) + spectral_normed(d)
    assert len(layers) == (stages + 1) + (stages + 1 + (1 if classes else 0))
    for m in layers:
        # the power iteration ran on the weights as they are: its last step is v = Wᵀu / ‖Wᵀu‖
        sn = m.parametrizations.weight
        wu = weight_matrix(m, sn.original).T @ sn[0]._u
        torch.testing.assert_close(sn[0]._v, wu / wu.norm(), rtol=0, atol=1e-5)
    y = torch.arange(4) if classes else None
    d(g(torch.randn(4, 100), y), y)  # the first forward, in training mode: one more power iteration
    g.eval()
    d.eval()  # in eval mode the weight is computed with the vectors that forward used
    norms = [float(torch.linalg.matrix_norm(weight_matrix(m, m.weight), ord=2)) for m in layers]
    # 16 power iterations leave an error of a few % on these random weights (as for the ResNet nets)
    assert max(norms) <= 1.1, norms
