"""Checkpoints and disk: best.ckpt holds weights only (no optimizer state, smaller than last.ckpt) and
serves eval and sample but not a resume; ``callbacks.checkpoint.save_best=false`` writes none; and
``ganforge-export`` writes G alone, which ``ganforge-sample`` draws the same images from."""

from __future__ import annotations

import csv
import filecmp
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import command, entry_point, mains_in_a_fresh_process, train_run

# digits DCGAN with an EMA G (its batch norm gets standing statistics) and a FID that picks best.ckpt
DCGAN = [
    "experiment=digits_dcgan",
    "model.generator.width=8",
    "model.discriminator.width=8",
    "train.steps=4",
    "train.ema.decay=0.9",
    "metrics=[fid]",
    "metrics.num_samples=300",
    "metrics.batch_size=300",
    "metrics.every=2",
]
SR = ["experiment=pix2pix_sr_digits", "model.generator.width=8", "model.discriminator.width=8"]


@pytest.fixture(scope="module")
def dcgan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dcgan") / "run"
    train_run(out, *DCGAN)
    return out


@pytest.fixture(scope="module")
def exported(dcgan: Path) -> Path:
    """best.ckpt of the DCGAN run, exported next to it (the command's default ``out``)."""
    res = entry_point("export", f"ckpt_path={dcgan}/checkpoints/best.ckpt", cwd=dcgan)
    assert res.returncode == 0, res.stderr[-2000:]
    return dcgan / "checkpoints" / "best.generator.pt"


def errors(res, name: str) -> list[str]:
    return [line for line in res.stderr.splitlines() if line.startswith(f"ganforge-{name}: error:")]


def test_best_ckpt_holds_weights_but_no_optimizer_state(dcgan: Path) -> None:
    best = torch.load(dcgan / "checkpoints" / "best.ckpt", weights_only=True)
    last = torch.load(dcgan / "checkpoints" / "last.ckpt", weights_only=True)
    for key in ("optimizer_states", "lr_schedulers", "callbacks"):
        assert key in last and key not in best, key
    assert best["state_dict"].keys() == last["state_dict"].keys()  # G, EMA G, D, the task's buffers
    assert any(k.startswith("ema_generator.") for k in best["state_dict"])
    assert best["ganforge"]["config"] == last["ganforge"]["config"]
    size = {name: (dcgan / "checkpoints" / name).stat().st_size for name in ("best.ckpt", "last.ckpt")}
    assert size["best.ckpt"] < 0.6 * size["last.ckpt"], size  # Adam's two moments of G and D are gone


def test_eval_and_sample_work_on_best_ckpt(dcgan: Path, tmp_path: Path) -> None:
    best = dcgan / "checkpoints" / "best.ckpt"
    res = command("eval", f"ckpt_path={best}", "metrics=[fid]", "metrics.num_samples=300", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    res = command("sample", f"ckpt_path={best}", "n=16", f"out={tmp_path}/grid.png", cwd=tmp_path)
    assert res.returncode == 0 and (tmp_path / "grid.png").is_file(), res.stderr[-2000:]


def test_resuming_from_best_ckpt_is_refused_in_one_line(dcgan: Path, tmp_path: Path) -> None:
    """Before anything is written: the line names the run's last.ckpt instead."""
    res = command(
        "train", *DCGAN, "train.steps=8", f"ckpt_path={dcgan}/checkpoints/best.ckpt",
        f"hydra.run.dir={tmp_path}/resumed", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 2, res.stderr[-2000:]
    assert errors(res, "train") == [
        f"ganforge-train: error: ckpt_path={dcgan}/checkpoints/best.ckpt: holds the weights only (for "
        "ganforge-eval and ganforge-sample), not the optimizer state a resume needs; resume from "
        f"{dcgan}/checkpoints/last.ckpt (or ckpt_path=auto with hydra.run.dir=<that run>)"
    ]
    assert "Traceback" not in res.stderr and not (tmp_path / "resumed" / "summary.json").exists()


def test_save_best_false_writes_no_best_ckpt_but_still_measures(tmp_path: Path) -> None:
    summary = train_run(tmp_path, *DCGAN, "callbacks.checkpoint.save_best=false")
    assert summary["status"] == "finished" and summary["best_step"] in (2, 4)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.ckpt"]
    with open(tmp_path / "metrics.csv", newline="") as f:
        fids = [r["val/fid"] for r in csv.DictReader(f) if r.get("val/fid")]
    assert len(fids) == 2 and summary["best"]["val/fid"] == min(map(float, fids))


def test_exported_generator_is_small_and_loads_weights_only(dcgan: Path, exported: Path) -> None:
    from ganforge.checkpoint_file import tensor_bytes

    saved = torch.load(exported, weights_only=True)
    best = torch.load(dcgan / "checkpoints" / "best.ckpt", weights_only=True)
    assert saved["ema"] is True and saved["g_step"] == best["ganforge"]["g_step"]
    prefix = "ema_generator."
    ema = {k.removeprefix(prefix): v for k, v in best["state_dict"].items() if k.startswith(prefix)}
    assert saved["generator"].keys() == ema.keys()
    for key, value in ema.items():  # the EMA weights; batch norm's statistics are the standing ones
        if "running_" not in key and "num_batches" not in key:
            assert torch.equal(saved["generator"][key], value), key
    assert set(saved["task"]) == {"label_probs", "fixed_z"}
    assert set(saved["config"]) == {"model", "task", "seed", "num_fixed"}  # no data paths, no optim
    weights = tensor_bytes([saved["generator"], saved["task"]])  # the file: these and a little pickle
    best_size = (dcgan / "checkpoints" / "best.ckpt").stat().st_size
    assert exported.stat().st_size < min(1.1 * weights + 64 * 1024, best_size)


@pytest.mark.parametrize("fmt", ["png", "npz"])
def test_sample_from_the_export_equals_sample_from_the_checkpoint(
    dcgan: Path, exported: Path, tmp_path: Path, fmt: str
) -> None:
    outs = []
    for name, path in (("ckpt", dcgan / "checkpoints" / "best.ckpt"), ("export", exported)):
        out = tmp_path / f"{name}.{fmt}"
        res = command("sample", f"ckpt_path={path}", "n=20", "seed=3", f"out={out}", cwd=tmp_path)
        assert res.returncode == 0, res.stderr[-2000:]
        outs.append(out)
    if fmt == "png":
        assert filecmp.cmp(*outs, shallow=False)
    else:
        a, b = (np.load(p) for p in outs)
        assert np.array_equal(a["samples"], b["samples"]) and np.array_equal(a["z"], b["z"])


def test_a_pix2pix_export_translates_as_its_checkpoint(tmp_path: Path) -> None:
    """The grid of held-out pairs (the run's fixed examples travel with G) and a folder of inputs."""
    from PIL import Image

    run = tmp_path / "run"
    train_run(run, *SR, "train.steps=2", "train.ema.decay=0.9")
    ckpt, export = run / "checkpoints" / "last.ckpt", tmp_path / "sr.pt"
    assert entry_point("export", f"ckpt_path={ckpt}", f"out={export}", cwd=tmp_path).returncode == 0
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(3):
        pixels = np.random.default_rng(i).integers(0, 256, (8, 8), dtype=np.uint8)
        Image.fromarray(pixels).save(inputs / f"{i}.png")
    for name, path in (("ckpt", ckpt), ("export", export)):
        for args in (["n=8", f"out={tmp_path}/{name}.png"], [f"input={inputs}", f"out={tmp_path}/{name}"]):
            res = command("sample", f"ckpt_path={path}", *args, cwd=tmp_path)
            assert res.returncode == 0, res.stderr[-2000:]
    assert filecmp.cmp(tmp_path / "ckpt.png", tmp_path / "export.png", shallow=False)
    for i in range(3):
        assert filecmp.cmp(tmp_path / "ckpt" / f"{i}.png", tmp_path / "export" / f"{i}.png", shallow=False)


def test_an_export_naming_a_foreign_target_is_refused(exported: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    saved = torch.load(exported, weights_only=True)
    saved["config"]["model"]["generator"] = {"_target_": "builtins.open", "file": str(victim), "mode": "w"}
    evil = tmp_path / "evil.pt"
    torch.save(saved, evil)
    torch.load(evil, weights_only=True)  # a file of plain types: only its config is the attack
    res = command("sample", f"ckpt_path={evil}", f"out={tmp_path}/s.png", cwd=tmp_path)
    assert victim.read_text() == "precious"
    assert res.returncode == 2, res.stderr[-2000:]
    assert errors(res, "sample") == [
        f"ganforge-sample: error: ckpt_path={evil}: refused: its stored config names "
        "model.generator._target_=builtins.open, which ganforge does not write; pass "
        "allow_targets=[builtins.open] if you trust it"
    ]


def test_an_export_is_not_a_training_checkpoint(exported: Path, tmp_path: Path) -> None:
    """ganforge-eval, a resume and a second export each say what the file is, in one line."""
    res = command("eval", f"ckpt_path={exported}", "metrics=[fid]", f"out={tmp_path}/e.json", cwd=tmp_path)
    assert res.returncode == 2 and len(errors(res, "eval")) == 1, res.stderr[-2000:]
    assert "an exported generator (ganforge-export)" in errors(res, "eval")[0]
    res = entry_point("export", f"ckpt_path={exported}", f"out={tmp_path}/again.pt", cwd=tmp_path)
    assert res.returncode == 2 and errors(res, "export") == [
        f"ganforge-export: error: ckpt_path={exported}: already an exported generator (G alone): share it "
        "as is"
    ]
    from ganforge.checkpoint_file import read_checkpoint
    from ganforge.errors import ConfigError

    with pytest.raises(ConfigError, match="a resume its last.ckpt"):  # what resolving ckpt_path reads
        read_checkpoint(exported)


def test_export_mistakes_are_one_line(dcgan: Path, tmp_path: Path) -> None:
    best = dcgan / "checkpoints" / "best.ckpt"
    cases = [
        ([], "ckpt_path is required: pass ckpt_path=<value>"),
        ([f"ckpt_path={tmp_path}/none.ckpt"], f"ckpt_path={tmp_path}/none.ckpt: no such file"),
        ([f"ckpt_path={best}", f"out={best}"], f"out={best}: is the checkpoint itself"),
    ]
    for args, message in cases:
        res = entry_point("export", *args, cwd=tmp_path)
        assert res.returncode == 2 and len(errors(res, "export")) == 1, res.stderr[-2000:]
        assert message in errors(res, "export")[0]


def test_mistakes_are_refused_before_lightning_is_imported(
    dcgan: Path, exported: Path, tmp_path: Path
) -> None:
    """eval, sample and export read the checkpoint and check the request with torch alone: each of these
    mistakes is one line and exit 2 in a process that never imports Lightning or the metric libraries
    (seconds of imports: what ganforge-eval's start-up was mostly made of)."""
    best = str(dcgan / "checkpoints" / "best.ckpt")
    saved = torch.load(best, weights_only=True)
    saved["ganforge"]["config"]["model"]["generator"]["_target_"] = "os.system"
    tampered = tmp_path / "tampered.ckpt"
    torch.save(saved, tampered)
    out = f"out={tmp_path}/x.json"
    cases = [
        ("eval", [f"ckpt_path={best}", "metrics=[psnr]", out], "metrics ['psnr'] compare with a ground"),
        ("eval", [f"ckpt_path={best}", "metrics.extractor=vgg", out], "metrics.extractor=vgg: choose"),
        ("eval", [f"ckpt_path={best}", "truncation=-1", out], "truncation=-1: give a positive threshold"),
        ("eval", [f"ckpt_path={exported}", out], "an exported generator (ganforge-export)"),
        ("eval", [f"ckpt_path={tampered}", out], "model.generator._target_=os.system, which ganforge does"),
        ("eval", [f"ckpt_path={tmp_path}", out], f"ckpt_path={tmp_path}:"),
        ("eval", [f"ckpt_path={best}", "eval_split=test", out], "(DigitsDataModule) has no held-out split"),
        ("sample", [f"ckpt_path={best}", f"input={tmp_path}", f"out={tmp_path}/t"], "not an image-to-image"),
        ("sample", [f"ckpt_path={best}", "n=0", f"out={tmp_path}/s.png"], "n must be a positive integer"),
        ("sample", [f"ckpt_path={tampered}", f"out={tmp_path}/s.png"], "which ganforge does not write"),
        ("export", [f"ckpt_path={exported}", f"out={tmp_path}/e.pt"], "already an exported generator"),
    ]
    if not torch.cuda.is_available():
        cases.append(("eval", [f"ckpt_path={best}", "device=cuda", out], "device=cuda: this machine has no"))
    done, heavy = mains_in_a_fresh_process([(name, args) for name, args, _ in cases], tmp_path)
    for (name, args, message), res in zip(cases, done, strict=True):
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2 and len(lines) == 1, (name, args, lines)
        assert lines[0].startswith(f"ganforge-{name}: error: ") and message in lines[0], (name, args, lines)
    assert heavy == []
    assert not list(tmp_path.glob("x.json")) and not (tmp_path / "t").exists()
