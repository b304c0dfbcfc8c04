"""Hydra's command-line forms: every ``--cfg``/``--info`` form of every entry point exits 0, and
``ganforge-train --help`` lists each config group's options (generated from the tree), the key
settings and examples, without the internal configs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ganforge import CONFIG_DIR
from ganforge.cli_help import WIDTH, commented_keys, describe
from helpers import entry_point

FORMS = [
    ["--cfg", "job"],
    ["--cfg", "job", "--resolve"],
    ["--cfg", "hydra"],
    ["--cfg", "hydra", "--resolve"],
    ["--cfg", "all"],
    ["--cfg", "all", "--resolve"],
    ["--info"],
    ["--info", "defaults-tree"],
    ["--info", "searchpath"],
    ["--help"],
    ["--hydra-help"],
]


def cli(
    name: str, *args: str, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str]:
    """``ganforge-<name> *args`` in this process (Hydra's parsing and printing, no training):
    (exit code, stdout)."""
    res = entry_point(name, *args, cwd=Path.cwd())
    return res.returncode, res.stdout


@pytest.mark.parametrize("name", ["train", "eval", "sample"])
def test_every_cfg_and_info_form_exits_0(name, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for form in FORMS:
        code, out = cli(name, *form, capsys=capsys, monkeypatch=monkeypatch)
        assert code == 0, (name, form, out[-2000:])
        assert out.strip(), (name, form)
    assert not list(tmp_path.iterdir())  # printing a config creates no run dir


def test_cfg_resolve_shows_the_run_dir_and_no_wandb_id_yet(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    _, out = cli("train", "--cfg", "all", "--resolve", capsys=capsys, monkeypatch=monkeypatch)
    assert "dir: outputs/train/" in out  # the task name, read from the whole config
    assert "id: null" in out  # no run dir before the run: W&B's id is left to W&B
    _, out = cli(
        "train", "experiment=ring8_mlp", "--cfg", "hydra", "--resolve", capsys=capsys, monkeypatch=monkeypatch
    )
    assert "dir: outputs/<task_name>/" in out  # the hydra node printed alone has no task_name


def test_cfg_job_resolve_through_the_console_script(tmp_path):
    """The reported crash, as a user runs it: a 147-line traceback before."""
    script = Path(sys.executable).with_name("ganforge-train")
    env = {**os.environ, "WANDB_MODE": "offline"}
    res = subprocess.run(
        [str(script), "--cfg", "job", "--resolve"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    assert "steps: 1500" in res.stdout


def help_listing(text: str) -> dict[str, dict[str, bool]]:
    """``{group: {option: chosen}}`` from the groups section of the help page."""
    section = text.split("== Config groups", 1)[1].split("== Settings", 1)[0].splitlines()[1:]
    groups: dict[str, dict[str, bool]] = {}
    group = ""
    for line in section:
        if not line.strip():
            continue
        if not line.startswith(" "):
            group = line.split(":")[0]
            groups[group] = {}
        else:
            groups[group][line[4:].split()[0]] = line[2] == "*"
    return groups


def option_files() -> dict[str, set[str]]:
    """The option files of the tree, by group, as a user names them (``loss/penalty``)."""
    files: dict[str, set[str]] = {}
    for path in CONFIG_DIR.rglob("*.yaml"):
        group = path.parent.relative_to(CONFIG_DIR).as_posix()
        if group != ".":
            files.setdefault(group, set()).add(path.stem)
    return files


def test_help_lists_every_option_and_no_internal_config(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, out = cli(
        "train", "loss=hinge", "logger=[csv,tensorboard]", "--help", capsys=capsys, monkeypatch=monkeypatch
    )
    assert code == 0
    listed = help_listing(out)
    files = option_files()
    assert "base" in files["model"] and "base" in files["metrics"]  # the internal configs exist ...
    for group, options in files.items():
        if group == "hydra":  # ganforge's own Hydra settings: not a choice
            assert group not in listed
            continue
        assert set(listed[group]) == options - {"base"}, group  # ... and are not offered
    assert "hydra/launcher" in listed and {"local", "slurm"} <= set(listed["hydra/launcher"])
    # this run's choices are marked, also the ones given as a list
    assert [o for o, chosen in listed["loss"].items() if chosen] == ["hinge"]
    assert sorted(o for o, chosen in listed["logger"].items() if chosen) == ["csv", "tensorboard"]
    assert [o for o, chosen in listed["data"].items() if chosen] == ["digits"]
    # descriptions come from the files' first comment lines
    ring8 = next(line for line in out.splitlines() if line.strip().split()[:1] == ["ring8"])
    assert describe(CONFIG_DIR / "data" / "ring8.yaml")[:40] in ring8
    assert "loss:  the adversarial loss" in out  # a group line says what the group is for
    # the key settings with this run's values, then three examples
    assert "train.steps=1500" in out and "train.n_critic=1" in out and "seed=42" in out
    assert "logger=[csv,tensorboard]" not in out.split("== Settings")[1].split("== Examples")[0]
    examples = [line.split() for line in out.split("== Examples ==", 1)[1].splitlines()]
    examples = [words for words in examples if words[:1] == ["ganforge-train"]]
    assert len(examples) == 3
    for words in examples:  # the options they use exist
        for group, _, value in (w.partition("=") for w in words if "=" in w):
            if group in files:
                assert set(value.strip("[]").split(",")) <= files[group], words
    assert "Powered by Hydra" not in out and "metrics: base" not in out
    assert max(map(len, out.splitlines())) <= WIDTH


def test_commented_keys_reads_sections_nesting_and_comments(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "# file comment\n"
        "defaults:\n"
        "  - _self_\n"
        "  - data: digits   # the data\n"
        "  # presets\n"
        "  - experiment: null\n"
        "seed: 1      # a seed\n"
        "train:\n"
        "  steps: 5   # budget\n"
        "  ema:       # averaging\n"
        "    decay: null  # off\n"
        "  # about lr\n"
        "  lr: 0.1\n"
        "  url: http://x   # has a colon\n"
    )
    assert commented_keys(path, "defaults") == [("data", "the data"), ("experiment", "presets")]
    assert commented_keys(path, "train") == [
        ("steps", "budget"),
        ("ema", "averaging"),
        ("ema.decay", "off"),
        ("lr", "about lr"),
        ("url", "has a colon"),
    ]
    assert commented_keys(path) == [("defaults", "file comment"), ("seed", "a seed"), ("train", "")]
