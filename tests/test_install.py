"""A non-editable install ships the config tree: build a wheel, install it into a fresh virtual
environment (reusing this environment's dependencies), and train from an unrelated directory."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
import tomllib

from helpers import ROOT


def test_pyproject_lists_every_package() -> None:
    """``packages`` in pyproject.toml is explicit (the config tree is mapped in): it must not miss one."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    src = ROOT / "src"
    found = {
        ".".join(p.relative_to(src).parts)
        for p in src.rglob("*")
        if p.is_dir() and any(p.glob("*.py")) and "__pycache__" not in p.parts
    }
    assert found | {"ganforge.conf"} == listed


@pytest.mark.slow
def test_wheel_ships_configs_and_trains(tmp_path: Path) -> None:
    project = tmp_path / "project"  # a copy: building writes build/ and *.egg-info next to the sources
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for tree in ("src", "conf"):
        shutil.copytree(ROOT / tree, project / tree, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(project), "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    (wheel,) = wheels.glob("ganforge-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n.removeprefix("ganforge/conf/") for n in names if n.startswith("ganforge/conf/")}
    in_repo = {p.relative_to(ROOT / "conf").as_posix() for p in (ROOT / "conf").rglob("*.yaml")}
    assert in_repo <= shipped, f"configs missing from the wheel: {sorted(in_repo - shipped)}"

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    # the dependencies come from this environment (a plain path entry: its editable ganforge is not seen)
    Path(purelib, "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": ""}
    where = subprocess.run(
        [str(py), "-c", "import ganforge; print(ganforge.__file__)"],
        cwd=work, env=env, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert str(ROOT / "src") not in where and purelib in where, where
    script = env_dir / "bin" / "ganforge-train"
    shown = subprocess.run([str(script), "--cfg", "job"], cwd=work, env=env, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert "steps: 1500" in shown.stdout
    run = subprocess.run(
        [str(script), "data=ring8", "model=mlp", "metrics=[]", "logger=[csv]", "train.steps=4",
         "train.log_every=2", "hydra.run.dir=run"],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert (work / "run" / "checkpoints" / "last.ckpt").is_file()
    assert (work / "run" / "metrics.csv").is_file()
