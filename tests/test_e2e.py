"""Every data set x every architecture that fits x every loss trains a few steps and writes its outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from helpers import fake_mnist

LOSSES = ["minimax", "nonsaturating", "lsgan", "wgan", "wgan_gp", "hinge", "relativistic", "dragan"]
# data option -> extra overrides; the image folder is generated per session
DATA = {
    "ring8": [],
    "grid25": [],
    "digits": [],
    "image_folder": ["data.resolution=16", "data.num_workers=0"],
    "mnist": ["data.resolution=32"],
    "fashion_mnist": [],
}
MODELS = {
    "ring8": ["mlp"],
    "grid25": ["mlp"],
    "digits": ["mlp", "dcgan"],
    "image_folder": ["mlp", "dcgan"],
    "mnist": ["mlp", "dcgan"],  # resized to 32 px
    "fashion_mnist": ["mlp"],  # native 28 px
}


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory):
    """A tiny MNIST and Fashion-MNIST in torchvision's raw IDX layout."""
    root = tmp_path_factory.mktemp("torchvision")
    fake_mnist(root, "MNIST")
    fake_mnist(root, "FashionMNIST")
    return root


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory):
    """A tiny labelled folder of real PNG files: two classes, mixed sizes and modes."""
    root = tmp_path_factory.mktemp("images")
    gen = torch.Generator().manual_seed(0)
    for cls in ("cats", "dogs"):
        (root / cls).mkdir()
        for i in range(12):
            size = 20 + 4 * (i % 3)
            arr = (torch.rand(size, size, 3, generator=gen) * 255).to(torch.uint8).numpy()
            img = Image.fromarray(arr)
            img = img.convert("L") if i % 4 == 0 else img
            img.save(root / cls / f"{i:03d}.png")
    return root


COMBOS = [(d, m, loss) for d in DATA for m in MODELS[d] for loss in LOSSES]


@pytest.mark.parametrize(("data", "model", "loss"), COMBOS, ids=["-".join(c) for c in COMBOS])
def test_combination_trains_and_writes_outputs(run, image_dir, mnist_root, data, model, loss):
    extra = list(DATA[data])
    if data == "image_folder":
        extra.append(f"data.path={image_dir}")
    elif data in ("mnist", "fashion_mnist"):
        extra.append(f"data.root={mnist_root}")
    if model == "dcgan" and loss in ("wgan_gp", "dragan"):
        extra.append("model.discriminator.norm=layer")  # a gradient penalty needs a D without batch norm
    summary, out = run(
        "run",
        f"data={data}",
        f"model={model}",
        f"loss={loss}",
        *extra,
        "data.batch_size=8",
        "train.steps=3",
        "train.n_critic=2",
        "train.sample_every=2",
        "train.ckpt_every=2",
    )
    assert summary["status"] == "finished" and summary["g_steps"] == 3
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert (out / "metrics.csv").read_text().count("\n") == 4  # header + 3 logged steps
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step_0000002.png", "step_0000003.png"]
    with Image.open(out / "samples" / "step_0000003.png") as img:
        assert img.size[0] > 32
    saved = json.loads((out / "summary.json").read_text())
    assert saved["g_steps"] == 3 and len(saved["config_digest"]) == 16
    assert all(torch.isfinite(torch.tensor(v)) for v in saved["last"].values())


def test_r1_penalty_combines_with_any_loss(run):
    summary, out = run(
        "r1",
        "loss=hinge",
        "loss/penalty=r1",
        "model.discriminator.norm=none",
        "train.steps=2",
        "data.batch_size=8",
    )
    assert summary["status"] == "finished"
    assert summary["last"]["train/d_loss"] != summary["last"]["train/d_adv"]  # the penalty is in the D loss


def test_wgan_clips_critic_weights(run):
    _, out = run("wgan", "data=ring8", "model=mlp", "loss=wgan", "loss.weight_clip=0.05", "train.steps=3")
    state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    d_params = [v for k, v in state.items() if k.startswith("discriminator.")]
    assert max(float(p.abs().max()) for p in d_params) <= 0.05 + 1e-7


SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "cifar10-test-jpg.zip"


@pytest.mark.skipif(not SHARED.is_file(), reason="../shared/datasets/cifar10-test-jpg.zip is not present")
def test_dcgan_on_real_cifar10_zip(run):
    summary, out = run(
        "cifar",
        "data=image_folder",
        f"data.path={SHARED}",
        "data.num_workers=0",
        "data.batch_size=16",
        "model.discriminator.norm=layer",
        "loss=wgan_gp",
        "train.steps=2",
        "train.n_critic=2",
    )
    assert summary["status"] == "finished"
    with Image.open(out / "samples" / "step_0000002.png") as img:
        assert img.mode == "RGB"


EXPERIMENTS = sorted(
    p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "experiment").glob("*.yaml")
)


SMALL_TRANSLATION = [  # the papers' widths take minutes per step on a CPU
    "model.generator.width=8",
    "model.discriminator.width=8",
    "model.discriminator.n_layers=2",
    "metrics=[psnr,ssim,l1]",
]


@pytest.fixture(scope="session")
def pix2pix_dir(tmp_path_factory):
    """A tiny dataset in pix2pix's layout: side-by-side AB images (32 px halves) in train/ and val/."""
    root = tmp_path_factory.mktemp("facades")
    gen = torch.Generator().manual_seed(0)
    for split, n in (("train", 6), ("val", 2)):
        (root / split).mkdir()
        for i in range(n):
            arr = (torch.rand(32, 64, 3, generator=gen) * 255).to(torch.uint8).numpy()
            Image.fromarray(arr).save(root / split / f"{i}.jpg")
    return root


@pytest.fixture(scope="session")
def cyclegan_dir(tmp_path_factory):
    """A tiny dataset in CycleGAN's layout: trainA/, trainB/, testA/, testB/ of 32 px images."""
    root = tmp_path_factory.mktemp("horse2zebra")
    gen = torch.Generator().manual_seed(1)
    for folder, n in (("trainA", 5), ("trainB", 7), ("testA", 2), ("testB", 2)):
        (root / folder).mkdir()
        for i in range(n):
            arr = (torch.rand(32, 32, 3, generator=gen) * 255).to(torch.uint8).numpy()
            Image.fromarray(arr).save(root / folder / f"{i}.png")
    return root


UNPAIRED_SMALL = [
    "model.generator.width=8",
    "model.generator.n_blocks=1",
    "model.discriminator.width=8",
    "model.discriminator.n_layers=2",
    "metrics=[l1]",
]


def stand_in_data(
    name: str, image_dir: Path, mnist_root: Path, pix2pix_dir: Path, cyclegan_dir: Path
) -> list[str]:
    """Overrides that let a preset run without its real data: MNIST presets read the fake MNIST, CIFAR-10
    presets a tiny labelled image folder at 32 px (torchvision's CIFAR-10 files are checksummed),
    pix2pix_folder a tiny side-by-side folder."""
    text = (Path(__file__).resolve().parents[1] / "conf" / "experiment" / f"{name}.yaml").read_text()
    if "override /data: mnist" in text:
        return [f"data.root={mnist_root}"]
    if "override /data: stacked_mnist" in text:
        return [f"data.source.root={mnist_root}", "data.num_items=64"]
    if "override /data: class_pair" in text:
        return [
            "data/source=image_folder",
            f"data.source.path={image_dir}",
            "data.class_a=cats",
            "data.class_b=dogs",
            "data.val_fraction=0.25",
            "data.resolution=32",
            *UNPAIRED_SMALL,
        ]
    if "override /data/source: cifar10" in text:
        return ["data/source=image_folder", f"data.source.path={image_dir}", "data.resolution=32"] + [
            *SMALL_TRANSLATION
        ]
    if "override /data: paired_folder" in text:
        return [f"data.path={pix2pix_dir}", "data.resolution=32", "data.num_workers=0", *SMALL_TRANSLATION]
    if "override /data: unpaired_folder" in text:
        return [f"data.path={cyclegan_dir}", "data.resolution=32", "data.num_workers=0", *UNPAIRED_SMALL]
    if name.startswith("stylegan2") and name != "stylegan2_digits":  # CIFAR-10 and folder recipes
        return [
            "data=image_folder",
            f"data.path={image_dir}",
            "data.resolution=32",
            "data.num_workers=0",
            "model.z_dim=16",
            "model.generator.w_dim=16",
            "model.generator.channel_base=256",  # the paper's channels take minutes per step on a CPU
            "model.generator.channel_max=16",
            "model.discriminator.mbstd_group_size=4",
        ]
    if "override /data: cifar10" in text:
        return [
            "data=image_folder",
            f"data.path={image_dir}",
            "data.resolution=32",
            "data.num_workers=0",
            "model.generator.width=16",  # the papers' widths take minutes per step on a CPU
            "model.discriminator.width=16",
        ]
    return []


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_preset_composes_and_runs(
    run, image_dir, mnist_root, pix2pix_dir, cyclegan_dir, name
):
    extra = stand_in_data(name, image_dir, mnist_root, pix2pix_dir, cyclegan_dir)
    small = ["data.batch_size=8", "train.num_fixed=16"] if extra else []
    summary, _ = run(name, f"experiment={name}", "train.steps=2", *extra, *small)
    assert summary["status"] == "finished" and summary["g_steps"] == 2
