"""Pictures a person can read: sample grids enlarged to at least 512 px with labelled class rows,
the same grid from training and from ganforge-sample, 2D scatter plots on shared axes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.callbacks.samples import GRID_MIN_WIDTH, grid_image, scatter_figure, scatter_limit
from ganforge.sample import write_samples


def pixels(picture: Image.Image) -> np.ndarray:
    return np.asarray(picture.convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize("size", [8, 16])
def test_small_images_are_enlarged_by_an_integer_factor_to_a_readable_grid(size):
    images = torch.rand(64, 1, size, size) * 2 - 1
    picture = grid_image(images, 8)
    factor = {8: 8, 16: 4}[size]  # the smallest integer factor that makes 8 columns >= 512 px
    assert picture.size == (8 * (size * factor + 2) + 2,) * 2
    assert picture.width >= GRID_MIN_WIDTH
    # nearest neighbour: the first image is its pixels as factor x factor blocks (2 px padding before it)
    first = pixels(picture)[2 : 2 + size * factor, 2 : 2 + size * factor, 0]
    blocks = first.reshape(size, factor, size, factor)
    assert (blocks == blocks[:, :1, :, :1]).all()
    expected = ((images[0, 0] + 1) / 2 * 255 + 0.5).clamp(0, 255).to(torch.uint8).numpy()
    assert np.array_equal(blocks[:, 0, :, 0], expected)


def test_images_are_enlarged_only_as_far_as_the_grid_needs():
    assert grid_image(torch.zeros(64, 3, 64, 64), 8).size == (8 * 66 + 2,) * 2  # 530 px: as they are
    assert grid_image(torch.zeros(16, 3, 64, 64), 4).size == (4 * 130 + 2,) * 2  # 266 px: x2


def test_conditional_rows_are_labelled_at_the_left():
    images = torch.full((10 * 6, 1, 16, 16), -1.0)  # black images: any bright pixel on the left is text
    plain = grid_image(images, 6)
    labelled = grid_image(images, 6, [f"{c} class" for c in range(10)])
    margin = labelled.width - plain.width
    assert labelled.height == plain.height and 20 < margin < 200
    assert np.array_equal(pixels(labelled)[:, margin:], pixels(plain))  # the grid itself is unchanged
    row = (plain.height - 2) // 10
    column = pixels(labelled)[:, :margin].max(axis=2)
    for i in range(10):  # text in every row's band, none in the padding between rows
        assert column[2 + i * row : (i + 1) * row].max() > 128, i
    assert np.array_equal(
        np.asarray(labelled.crop((0, 0, margin, labelled.height)))[:, :, 0] > 128, column > 128
    )


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    from helpers import train_run

    out = tmp_path_factory.mktemp("cond")
    train_run(
        out,
        "model=dcgan",
        "model.conditional=true",
        "model.generator.width=8",
        "model.discriminator.width=8",
        "data.batch_size=8",
        "train.steps=2",
        "seed=7",
    )
    return out


def test_training_grid_has_a_labelled_row_per_class(conditional_run):
    with Image.open(conditional_run / "samples" / "step_0000002.png") as picture:
        width, height = picture.size
    # 64 fixed samples, 10 classes: 10 rows of 6 digits of 16 px, enlarged x6 to 96 px, labels at the left
    assert height == 10 * 98 + 2 and width > 6 * 98 + 2 >= GRID_MIN_WIDTH


@pytest.mark.parametrize("extra", [[], ["nrow=3"]], ids=["default", "nrow"])
def test_sample_command_draws_the_training_grid(conditional_run, tmp_path, extra):
    ckpt = conditional_run / "checkpoints" / "last.ckpt"
    nrow = int(extra[0].split("=")[1]) if extra else None
    out = write_samples(str(ckpt), 64, str(tmp_path / "grid.png"), seed=7, nrow=nrow, device="cpu")
    with Image.open(out) as sampled, Image.open(conditional_run / "samples" / "step_0000002.png") as trained:
        if nrow is None:  # the same latents, labels, layout and labels: the same picture
            assert np.array_equal(pixels(sampled), pixels(trained))
        else:  # 3 per class row, rows still one per class
            assert sampled.height > trained.height and sampled.width < trained.width


def test_unconditional_sample_command_draws_the_training_grid(tmp_path):
    from helpers import train_run

    train_run(tmp_path / "run", "train.steps=1", "seed=3", "train.num_fixed=16")
    out = write_samples(
        str(tmp_path / "run" / "checkpoints" / "last.ckpt"), 16, str(tmp_path / "g.png"), seed=3, device="cpu"
    )
    with Image.open(out) as sampled, Image.open(tmp_path / "run" / "samples" / "step_0000001.png") as trained:
        assert sampled.size == (4 * (16 * 8 + 2) + 2,) * 2
        assert np.array_equal(pixels(sampled), pixels(trained))


def test_scatter_plots_of_runs_on_the_same_data_share_their_axes():
    from ganforge.data.toy import RingDataModule

    data = RingDataModule()
    real = data.real_batch(500, seed=1)
    assert scatter_limit(real) == scatter_limit(data.real_batch(500, seed=2)) == 1.5  # radius 1 (+ noise)
    collapsed = torch.zeros(500, 2) + 0.01 * torch.randn(500, 2)
    spread = 5 * torch.randn(500, 2)
    spread[0] = float("nan")
    figures = [scatter_figure(fake, real, "run") for fake in (collapsed, spread)]
    limits = {(fig.axes[0].get_xlim(), fig.axes[0].get_ylim()) for fig in figures}
    assert limits == {((-1.5, 1.5), (-1.5, 1.5))}
    outside = int((~(spread.abs() <= 1.5).all(dim=1)).sum())
    assert figures[1].axes[0].get_title() == f"run ({outside} of 500 outside)"
    assert figures[0].axes[0].get_title() == "run"


@pytest.mark.parametrize(("extent", "limit"), [(0.8, 1.0), (1.0, 1.5), (4.1, 5), (40, 50), (0.05, 0.06)])
def test_scatter_limit_rounds_the_data_extent_up(extent, limit):
    assert scatter_limit(torch.tensor([[extent, -extent / 2]])) == pytest.approx(limit)
