"""A researcher with her own folders (paired: pix2pix's side-by-side layout and A/B folders; unpaired:
CycleGAN's layout in a zip): CPU presets, a warning for upsampled images, data.num_workers=auto,
CycleGAN's per-domain terms, titled sample grids, the L1-only baseline without D, train.log and its
steps/s, and data.eval_split. Every image here is generated."""

from __future__ import annotations

import copy
import csv
import logging
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.callbacks.samples import SampleGrid, grid_image, save_grid
from ganforge.data.folder import ImageFolderDataModule, auto_workers
from ganforge.data.paired import PairedFolderDataModule
from ganforge.data.unpaired import UnpairedFolderDataModule
from ganforge.errors import ConfigError, DataError
from ganforge.tasks.base import Grid
from helpers import assert_refused_before_training, compose_cfg, entry_point, train_run

RES = 16
NO_VAL = {"trainA": 3, "trainB": 3, "testA": 1, "testB": 1}  # a CycleGAN zip without valA/, valB/
SPLITS = {"train": 8, "val": 3, "test": 4}  # pairs per split; the blue channel tells the split apart
BLUE = {"train": 0, "val": 100, "test": 200}
TINY_P2P = ["model.generator.width=8", "model.discriminator.width=8", "data.batch_size=4"]
TINY_CG = ["model.generator.width=8", "model.discriminator.width=8", "data.batch_size=2"]


# --- generated folders ---------------------------------------------------------------------------------
def image(split: str, i: int, size: int = RES) -> np.ndarray:
    """Image ``i`` of ``split``: red = a ramp over columns, green over rows, blue = BLUE[split] + 10 i."""
    y, x = np.mgrid[0:size, 0:size]
    blue = np.full_like(x, BLUE[split] + 10 * i)
    return np.stack([x * 255 // size, y * 255 // size, blue], axis=-1).astype(np.uint8)


def save(img: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


def side_by_side(root: Path, size: int = RES, splits: dict[str, int] = SPLITS) -> Path:
    """pix2pix's layout: AB images (left A, right its negative B) in train/, val/, test/."""
    for split, n in splits.items():
        for i in range(n):
            a = image(split, i, size)
            save(np.concatenate([a, 255 - a], axis=1), root / split / f"{i:02d}.png")
    return root


def ab_folders(root: Path, size: int = RES, splits: dict[str, int] = SPLITS) -> Path:
    """A/ and B/ folders in train/, val/, test/, paired by file name."""
    for split, n in splits.items():
        for i in range(n):
            save(image(split, i, size), root / split / "A" / f"{i:02d}.png")
            save(255 - image(split, i, size), root / split / "B" / f"{i:02d}.png")
    return root


def cyclegan_zip(path: Path, size: int = RES, folders: dict[str, int] | None = None) -> Path:
    """CycleGAN's layout zipped under a wrapper folder: trainA/ trainB/ testA/ testB/ valA/ valB/."""
    folders = folders or {"trainA": 6, "trainB": 6, "testA": 3, "testB": 3, "valA": 2, "valB": 2}
    with zipfile.ZipFile(path, "w") as zf:
        for folder, n in folders.items():
            split = "train" if folder.startswith("train") else folder[:-1]
            for i in range(n):
                img = image(split, i, size) if folder.endswith("A") else 255 - image(split, i, size)
                buf = Path(path.parent / "tmp.png")
                Image.fromarray(img).save(buf)
                zf.write(buf, f"wrap/{folder}/{i:02d}.png")
                buf.unlink()
    return path


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("folders")
    return SimpleNamespace(
        sbs=side_by_side(root / "sbs"),
        ab=ab_folders(root / "ab"),
        cg=cyclegan_zip(root / "h2z.zip"),
        sbs32=side_by_side(root / "sbs32", size=32),
        cg32=cyclegan_zip(root / "cg32.zip", size=32),
    )


def blues(x: torch.Tensor) -> list[int]:
    """The blue value of each image's first pixel (images in [-1, 1]): which split and item it is."""
    return [round(float(v)) for v in (x[:, 2, 0, 0] + 1) * 127.5]


def rows(out: Path) -> list[dict[str, str]]:
    with open(out / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


# --- 1. CPU presets -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("preset", "data", "batch"), [("pix2pix_folder_cpu", "sbs32", 16), ("cyclegan_folder_cpu", "cg32", 8)]
)
def test_cpu_presets_are_32px_small_and_train_on_a_folder(tmp_path, folders, preset, data, batch):
    cfg = compose_cfg(tmp_path, f"experiment={preset}", f"data.path={getattr(folders, data)}")
    assert cfg.data.resolution == 32 and cfg.data.num_workers == 0 and cfg.data.batch_size == batch
    assert cfg.train.steps == 2000 and cfg.model.generator.width <= 32
    summary = train_run(tmp_path / "run", f"experiment={preset}", f"data.path={getattr(folders, data)}",
                        "train.steps=2", "data.batch_size=4")  # fmt: skip
    assert summary["status"] == "finished" and summary["g_steps"] == 2


# --- 2. images smaller than data.resolution -------------------------------------------------------------
def test_small_images_get_one_warning_line(tmp_path, caplog):
    small = {"train": 6, "val": 2}
    modules = [
        PairedFolderDataModule(str(side_by_side(tmp_path / "sbs", 8, small)), resolution=64),
        PairedFolderDataModule(str(ab_folders(tmp_path / "ab", 8, small)), resolution=64),
        UnpairedFolderDataModule(str(cyclegan_zip(tmp_path / "cg.zip", 8, NO_VAL)), resolution=64),
        ImageFolderDataModule(str(tmp_path / "ab" / "train" / "A"), resolution=64),
    ]
    for dm in modules:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="ganforge"):
            dm.check()
            dm.setup("fit")
            dm.check()  # once per module, however often it is checked
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warned) == 1, (type(dm).__name__, warned)
        assert "8x8 px" in warned[0] and "upsampled 8x" in warned[0] and "data.resolution=8" in warned[0]
        assert "\n" not in warned[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ganforge"):
        PairedFolderDataModule(str(tmp_path / "sbs"), resolution=8).check()
        UnpairedFolderDataModule(str(tmp_path / "cg.zip"), resolution=8).check()
    assert not caplog.records  # at their own size (or smaller): nothing to say


# --- 3. data.num_workers=auto -------------------------------------------------------------------------
def test_num_workers_auto_is_zero_on_the_cpu_and_a_share_of_the_cpus_on_a_gpu(tmp_path, folders, recwarn):
    from pytorch_lightning.accelerators import CPUAccelerator, CUDAAccelerator

    from ganforge.cpu import usable_cpus

    for name in ("paired_folder", "unpaired_folder", "image_folder"):
        assert compose_cfg(tmp_path, f"data={name}").data.num_workers == "auto"
    for name in ("pix2pix_folder", "cyclegan_folder"):  # the GPU recipes: no 4 workers on 2 cores
        assert compose_cfg(tmp_path, f"experiment={name}").data.num_workers == "auto"
    cpu = SimpleNamespace(accelerator=CPUAccelerator(), num_devices=1)
    gpu = SimpleNamespace(accelerator=CUDAAccelerator(), num_devices=1)
    assert auto_workers(cpu) == 0
    assert auto_workers(gpu) == max(0, min(4, usable_cpus() - 1))
    assert auto_workers(SimpleNamespace(accelerator=CUDAAccelerator(), num_devices=64)) == 0  # DDP ranks
    dm = PairedFolderDataModule(str(folders.sbs), resolution=RES)  # auto by default
    dm.trainer = SimpleNamespace(  # what the loader asks of the trainer
        accelerator=CPUAccelerator(), num_devices=1, lightning_module=None, global_rank=0, world_size=1
    )
    assert dm.train_dataloader().num_workers == 0
    assert PairedFolderDataModule(str(folders.sbs), resolution=RES, num_workers=1).num_workers == 1
    for bad in (-1, "many", True, 1.5):
        with pytest.raises(ConfigError, match=r"^data.num_workers must be a non-negative integer") as info:
            UnpairedFolderDataModule(str(folders.cg), resolution=RES, num_workers=bad)
        assert "\n" not in str(info.value)
    # the GPU recipe on this CPU: trains without torch's "worker processes" warning
    summary = train_run(tmp_path / "gpu_recipe", "experiment=pix2pix_folder", f"data.path={folders.sbs32}",
                        "data.resolution=32", *TINY_P2P, "train.steps=2")  # fmt: skip
    assert summary["status"] == "finished"
    assert not [w for w in recwarn if "worker processes" in str(w.message)]


# --- 4. CycleGAN's per-domain terms ---------------------------------------------------------------------
CG = ["experiment=cyclegan_folder_cpu", f"data.resolution={RES}", *TINY_CG]


def test_cyclegan_logs_each_domains_terms_and_they_sum_to_the_totals(tmp_path, folders):
    train_run(tmp_path, *CG, f"data.path={folders.cg}", "train.steps=3")
    logged = [r for r in rows(tmp_path) if r.get("train/g_cycle")]
    assert [int(r["trainer/g_step"]) for r in logged] == [1, 2, 3]
    for r in logged:
        for total, parts in (
            ("d_adv", ("d_adv_a", "d_adv_b")),
            ("g_adv", ("g_adv_ab", "g_adv_ba")),
            ("g_cycle", ("g_cycle_a", "g_cycle_b")),
            ("g_identity", ("g_identity_a", "g_identity_b")),
        ):
            values = [float(r[f"train/{p}"]) for p in parts]
            assert all(v >= 0 for v in values)
            assert sum(values) == pytest.approx(float(r[f"train/{total}"]), rel=1e-5), total


def test_cyclegan_per_domain_terms_are_recomputed_from_the_nets(tmp_path, folders):
    """Step 0's logged terms against the paper's formulas on the nets before the step (D's and the cycle
    and identity terms), and G_AB's adversarial term against D_B after D's update (G's update judges
    with it); the same real batch the loader gives, the pool returning the fakes as they are."""
    from ganforge.build import build
    from test_steps import bare_trainer

    cfg = compose_cfg(tmp_path, *CG, f"data.path={folders.cg}", "train.steps=1")
    datamodule, module = build(cfg)
    g0, d0 = copy.deepcopy(module.generator), copy.deepcopy(module.discriminator)
    n = cfg.data.batch_size
    a, b = (t[:n] for t in next(iter(datamodule.train_dataloader()))[:2])
    bare_trainer(max_steps=module.optimizer_steps(1)).fit(module, datamodule=datamodule)
    got = module.last_metrics

    def mse(x: torch.Tensor, target: float) -> float:
        return float(((x - target) ** 2).mean())

    def l1(x: torch.Tensor, y: torch.Tensor) -> float:
        return float((x - y).abs().mean())

    with torch.no_grad():
        fake_b, fake_a = g0.ab(a), g0.ba(b)
        expected = {
            "train/d_adv_a": 0.5 * (mse(d0.a(a), 1.0) + mse(d0.a(fake_a), 0.0)),
            "train/d_adv_b": 0.5 * (mse(d0.b(b), 1.0) + mse(d0.b(fake_b), 0.0)),
            "train/g_cycle_a": l1(g0.ba(fake_b), a),
            "train/g_cycle_b": l1(g0.ab(fake_a), b),
            "train/g_identity_a": l1(g0.ba(a), a),
            "train/g_identity_b": l1(g0.ab(b), b),
            "train/g_adv_ab": mse(module.discriminator.b(fake_b), 1.0),  # D_B after its update
            "train/g_adv_ba": mse(module.discriminator.a(fake_a), 1.0),
        }
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key


# --- 5. sample grids with column titles ----------------------------------------------------------------
def test_grid_titles_are_a_band_above_the_unchanged_grid(tmp_path):
    images = torch.full((12, 3, RES, RES), -1.0)  # black images: any bright pixel above them is text
    plain = save_grid(Grid(images, 3), None, tmp_path / "plain.png")
    titled = save_grid(
        Grid(images, 3, headers=[(0, ("source", "output", "target"))]), None, tmp_path / "t.png"
    )
    with Image.open(tmp_path / "plain.png") as p, Image.open(tmp_path / "t.png") as t:  # the files
        plain_px, titled_px = np.asarray(p.convert("RGB")), np.asarray(t.convert("RGB"))
    assert titled.width == plain.width and 10 < titled.height - plain.height < 60
    band = titled.height - plain.height
    assert np.array_equal(titled_px[band:], plain_px)
    cell = (plain.width - 2) // 3
    for j in range(3):  # text over every column
        assert titled_px[:band, 2 + j * cell : (j + 1) * cell].max() > 128, j
    # two blocks (CycleGAN's a rows, then b rows): a band above each
    two = grid_image(images, 3, headers=[(0, ("a", "G_AB(a)", "G_BA(G_AB(a))")), (2, ("b", "G_BA(b)", "x"))])
    assert two.width == plain.width and 20 < two.height - plain.height - 2 < 120  # + 2: a block's padding


def test_translation_runs_draw_titled_grids_and_caption_them(tmp_path, folders):
    train_run(tmp_path / "p2p", "experiment=pix2pix_folder_cpu", f"data.path={folders.sbs}",
              f"data.resolution={RES}", *TINY_P2P, "train.steps=2")  # fmt: skip
    train_run(tmp_path / "cg", *CG, f"data.path={folders.cg}", "train.steps=2")
    for run, n_rows, bands in (("p2p", 3, 1), ("cg", 6, 2)):  # 3 val pairs; 3 testA + 3 testB images
        with Image.open(tmp_path / run / "samples" / "step_0000002.png") as img:
            width, height = img.size
            pixels = np.asarray(img.convert("RGB"))
        cell = (width - 2) // 3  # three columns
        plain = n_rows * cell + 2
        assert height > plain + 10 * bands, run
        assert pixels[:30].max() > 128  # the first band's text at the top
    # W&B gets the same PNG, captioned with the step
    from ganforge.loggers import WandbLogger

    class Recorder(WandbLogger):
        def __init__(self) -> None:  # no W&B run: records what would be logged
            self.calls: list[tuple] = []

        def log_image(self, key, images, step=None, **kwargs) -> None:
            self.calls.append((key, images, step, kwargs))

    recorder = Recorder()
    path = tmp_path / "p2p" / "samples" / "step_0000002.png"
    SampleGrid._log(SimpleNamespace(loggers=[recorder]), path, 2)
    assert recorder.calls == [("samples", [str(path)], 2, {"caption": ["step 2"]})]


# --- 6. task.adversarial=false: no D at all ------------------------------------------------------------
def test_l1_only_baseline_never_runs_or_steps_d_and_g_learns(tmp_path, folders):
    from ganforge.build import build
    from test_steps import bare_trainer

    steps = 30
    cfg = compose_cfg(tmp_path, "experiment=pix2pix_folder_cpu", f"data.path={folders.sbs}",
                      f"data.resolution={RES}", *TINY_P2P, "task.adversarial=false",
                      f"train.steps={steps}", "optim.lr_g=2e-3")  # fmt: skip
    datamodule, module = build(cfg)
    d_before = copy.deepcopy(module.discriminator.state_dict())  # weights and batch-norm statistics
    forwards: list[int] = []
    module.discriminator.register_forward_hook(lambda *_: forwards.append(1))
    source, target, _ = datamodule.val_items(list(range(datamodule.num_val_items())))
    before = float((module.translate(source) - target).abs().mean())
    trainer = bare_trainer(max_steps=module.optimizer_steps(steps))
    trainer.fit(module, datamodule=datamodule)
    assert module.g_step == steps and trainer.global_step == steps  # G's steps only
    assert not forwards and not trainer.optimizers[1].state  # no D forward, no D optimizer step
    for key, value in module.discriminator.state_dict().items():
        assert torch.equal(value, d_before[key]), key
    after = float((module.translate(source) - target).abs().mean())
    assert after < 0.7 * before  # G learns from the L1 term alone
    assert "train/g_l1" in module.last_metrics and "train/d_loss" not in module.last_metrics


def test_l1_only_baseline_refuses_joint_updates(tmp_path, folders):
    assert_refused_before_training(
        tmp_path, "experiment=pix2pix_folder_cpu", f"data.path={folders.sbs}", f"data.resolution={RES}",
        "task.adversarial=false", "train.updates=simultaneous",
        message="task.adversarial=false trains G alone",
    )  # fmt: skip


# --- 7. train.log ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["p2p", "cg"])
def test_translation_runs_write_train_log_with_steps_per_second(tmp_path, folders, kind):
    args = (
        ["experiment=pix2pix_folder_cpu", f"data.path={folders.ab}", *TINY_P2P]
        if kind == "p2p"
        else [*CG, f"data.path={folders.cg}"]
    )
    out = tmp_path / "run"
    res = entry_point("train", *args, f"data.resolution={RES}", "train.steps=20", "train.log_every=10",
                      "metrics=[]", "logger=[csv]", "callbacks.progress.log_fraction=0.5",
                      f"hydra.run.dir={out}", cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    log = (out / "train.log").read_text()
    progress = [
        line.split(" - ", 1)[1] for line in log.splitlines() if "[ganforge.callbacks.progress]" in line
    ]
    # steps_per_batch is 10: the first line follows the first update, where rich has no speed yet
    assert [p.split()[1] for p in progress] == ["10/20", "20/20"], log
    assert all("steps/s" in p and "ETA" in p for p in progress), log
    assert "g_loss=" in progress[-1]
    assert "training pairs" in log if kind == "p2p" else "domain A 6 training and 3 held-out" in log
    assert "[ganforge.train][INFO] - finished: 20/20 generator steps" in log
    printed = [line for line in res.stdout.splitlines() if line.startswith("train ")]
    assert printed == progress  # the console shows each line once (no logging prefix)


def test_live_bar_column_falls_back_to_the_average_since_the_start():
    from rich.progress import Progress

    from ganforge.callbacks.progress import StepsPerSecond

    progress = Progress()
    task_id = progress.add_task("train", total=100, completed=40, first_step=40)
    progress.update(task_id, completed=50)  # one update: rich has no estimate of its own
    task = progress.tasks[0]
    assert task.speed is None
    assert "steps/s" in StepsPerSecond().render(task).plain


# --- 8. data.eval_split -----------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["sbs", "ab"])
def test_eval_split_picks_val_or_test_pairs(folders, layout):
    path = str(getattr(folders, layout))
    for split, expected in (("auto", "val"), ("val", "val"), ("test", "test")):
        dm = PairedFolderDataModule(path, resolution=RES, eval_split=split)
        assert dm.num_val_items() == SPLITS[expected] and dm.held_out_from == expected
        source, _, _ = dm.val_items(list(range(dm.num_val_items())))
        assert sorted(blues(source)) == [BLUE[expected] + 10 * i for i in range(SPLITS[expected])]
        assert dm.num_items() == SPLITS["train"]


def test_eval_split_picks_cyclegan_test_or_val_folders(folders):
    for split, expected, n in (("auto", "test", 3), ("test", "test", 3), ("val", "val", 2)):
        dm = UnpairedFolderDataModule(str(folders.cg), resolution=RES, eval_split=split)
        assert dm.held_out_from == (f"{expected}A", f"{expected}B")
        assert dm.num_val_a() == dm.num_val_b() == n
        assert sorted(blues(dm.val_a(list(range(n)))[0])) == [BLUE[expected] + 10 * i for i in range(n)]


def test_eval_split_mistakes_are_one_line(tmp_path, folders):
    no_test = side_by_side(tmp_path / "no_test", splits={"train": 4, "val": 2})
    no_val = cyclegan_zip(tmp_path / "no_val.zip", folders=NO_VAL)
    cases = [
        (PairedFolderDataModule, no_test, "test", DataError, "has no test/ split"),
        (UnpairedFolderDataModule, no_val, "val", DataError, "has no wrap/valA/ folder"),
        (PairedFolderDataModule, folders.sbs, "train", ConfigError, "data.eval_split must be auto"),
        (UnpairedFolderDataModule, folders.cg, "testA", ConfigError, "data.eval_split must be auto"),
    ]
    for cls, path, split, error, message in cases:
        with pytest.raises(error) as info:
            cls(str(path), resolution=RES, eval_split=split).check()
        assert message in str(info.value) and "\n" not in str(info.value)
    assert_refused_before_training(
        tmp_path, "experiment=pix2pix_folder_cpu", f"data.path={no_test}", "data.eval_split=test",
        message="data.eval_split=test",
    )  # fmt: skip


def test_a_run_measures_and_draws_the_test_split(tmp_path, folders):
    summary = train_run(tmp_path, "experiment=pix2pix_folder_cpu", f"data.path={folders.sbs}",
                        f"data.resolution={RES}", *TINY_P2P, "train.steps=2", "data.eval_split=test",
                        "metrics=[psnr,l1]")  # fmt: skip
    assert summary["metrics"]["held_out_pairs"] == SPLITS["test"]
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert sorted(blues(state["task.fixed_source"])) == [BLUE["test"] + 10 * i for i in range(SPLITS["test"])]
    # ganforge-eval measures the run's split, or the one eval_split names
    import json

    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    for args, split in (([], "test"), (["eval_split=val"], "val"), (["eval_split=test"], "test")):
        out = tmp_path / f"eval_{split}_{len(args)}.json"
        res = entry_point("eval", f"ckpt_path={ckpt}", "metrics=[psnr,l1]", f"out={out}", *args, cwd=tmp_path)
        assert res.returncode == 0, res.stderr[-2000:]
        result = json.loads(out.read_text())
        assert result["held_out_pairs"] == SPLITS[split] and result["eval_split"] == split, result
    res = entry_point("eval", f"ckpt_path={ckpt}", "metrics=[psnr]", "eval_split=train", cwd=tmp_path)
    assert res.returncode == 2 and "data.eval_split must be auto" in res.stderr, res.stderr[-2000:]
