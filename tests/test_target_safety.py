"""A checkpoint's stored config (and a run dir's ``.hydra/config.yaml``) builds only what ganforge
writes: a crafted target is refused in one line naming it, exit 2, before anything runs."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from helpers import command, train_run


def crafted(config: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """``config`` with the dotted ``key`` set to ``value`` (a copy)."""
    out = yaml.safe_load(yaml.safe_dump(config))
    node = out
    *parents, last = key.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    return out


def open_victim(victim: Path) -> dict[str, Any]:
    return {"_target_": "builtins.open", "_args_": [str(victim), "w"]}


# (where in the stored config, what is put there, the target the error must name)
ATTACKS = {
    "builtins.open": ("task", lambda v: open_victim(v), "builtins.open"),
    "os.system": ("task", lambda v: {"_target_": "os.system", "_args_": [f"rm {v}"]}, "os.system"),
    "subprocess.run": (
        "task",
        lambda v: {"_target_": "subprocess.run", "_args_": [["rm", str(v)]]},
        "subprocess.run",
    ),
    # a ganforge path that is not ganforge's: Hydra's instantiate imported into ganforge.config
    "ganforge_reexport": (
        "task",
        lambda v: {"_target_": "ganforge.config.instantiate", "config": open_victim(v)},
        "ganforge.config.instantiate",
    ),
    "ganforge_attribute_path": (
        "task",
        lambda v: {"_target_": "ganforge.checkpoint_file.os.remove", "_args_": [str(v)]},
        "ganforge.checkpoint_file.os.remove",
    ),
    "lookalike_package": (
        "task",
        lambda v: {"_target_": "ganforge_nets.Generator"},
        "ganforge_nets.Generator",
    ),
    # nested: an argument of a partial, an element of a list
    "inside_partial": (
        "loss.d_loss",
        lambda v: {"_target_": "ganforge.losses.minimax_d", "_partial_": True, "extra": open_victim(v)},
        "builtins.open",
    ),
    "inside_list": (
        "loss.penalties",
        lambda v: {
            "r1": {"_target_": "ganforge.losses.r1_penalty", "_partial_": True, "gamma": [open_victim(v)]}
        },
        "builtins.open",
    ),
    "partial_of_foreign": (
        "optim.generator",
        lambda v: {"_target_": "shutil.rmtree", "_partial_": True, "path": str(v)},
        "shutil.rmtree",
    ),
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "run"
    train_run(out, "data=ring8", "model=mlp", "train.steps=2")
    return out


def stored_config(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    return ckpt, ckpt["ganforge"]["config"]


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_check_targets_refuses_what_ganforge_does_not_write(
    trained: Path, tmp_path: Path, attack: str
) -> None:
    from ganforge.errors import ConfigError
    from ganforge.targets import check_targets

    key, payload, named = ATTACKS[attack]
    _, config = stored_config(trained)
    bad = crafted(config, key, payload(tmp_path / "victim.txt"))
    with pytest.raises(ConfigError, match=rf"refused: .*={re.escape(named)}, which ganforge does not"):
        check_targets(bad, "ckpt_path=x")
    check_targets(bad, "ckpt_path=x", allow=[named, "builtins.open"])  # what the user names is trusted


def test_nested_targets_need_their_own_allowance(trained: Path, tmp_path: Path) -> None:
    from ganforge.errors import ConfigError
    from ganforge.targets import check_targets

    _, config = stored_config(trained)
    for attack in ("inside_partial", "inside_list"):
        key, payload, _ = ATTACKS[attack]
        bad = crafted(config, key, payload(tmp_path / "victim.txt"))
        with pytest.raises(ConfigError, match="builtins.open"):
            check_targets(bad, "ckpt_path=x", allow=["ganforge.losses.minimax_d"])
        check_targets(bad, "ckpt_path=x", allow=["builtins.open"])


def test_what_ganforge_writes_passes(trained: Path) -> None:
    """Every target of a real run's stored config, and every target of the shipped tree, is allowed;
    a ganforge class no shipped config names is allowed too (defined in ganforge)."""
    from ganforge.targets import check_targets, ganforge_defined, iter_targets, shipped_targets

    _, config = stored_config(trained)
    assert len(list(iter_targets(config))) >= 8  # data, task, model.*, loss.*, optim.*, callbacks, logger
    check_targets(config, "ckpt_path=x")
    assert {"torch.optim.Adam", "ganforge.nets.dcgan.DCGANGenerator", "ganforge.losses.r1_penalty"} <= (
        shipped_targets()
    )
    assert ganforge_defined("ganforge.ema.standing_stats")
    assert not ganforge_defined("ganforge.config.instantiate")  # imported there, defined by Hydra
    assert not ganforge_defined("ganforge.train.os.system")
    assert not ganforge_defined("ganforge")


def test_an_interpolation_cannot_smuggle_a_target(trained: Path, tmp_path: Path) -> None:
    from ganforge.errors import ConfigError
    from ganforge.targets import check_targets

    _, config = stored_config(trained)
    hidden = "${oc.decode:'{_target_: builtins.open, _args_: [" + str(tmp_path / "v") + ", w]}'}"
    with pytest.raises(ConfigError, match="builtins.open"):
        check_targets(crafted(config, "task", hidden), "ckpt_path=x")


@pytest.mark.slow
@pytest.mark.parametrize(
    "attack", ["builtins.open", "os.system", "subprocess.run", "ganforge_reexport", "inside_list"]
)
def test_crafted_stored_config_is_refused_by_every_command(
    trained: Path, tmp_path: Path, attack: str
) -> None:
    """The exact case of the report: a checkpoint of only strings and tensors whose config names
    ``builtins.open(victim, "w")`` (and the other attacks): sample, eval and train refuse it in one line
    naming the target, exit 2, and the victim file is untouched (eval and train on the report's case;
    the three commands share :func:`ganforge.restore.restore`)."""
    key, payload, named = ATTACKS[attack]
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    ckpt, config = stored_config(trained)
    ckpt["ganforge"]["config"] = crafted(config, key, payload(victim))
    evil = tmp_path / "last.ckpt"
    torch.save(ckpt, evil)
    names = ("sample",) if attack != "builtins.open" else ("sample", "eval", "train")
    for name in names:
        args = {"sample": [f"out={tmp_path}/s.png"], "eval": ["metrics=[fid]", f"out={tmp_path}/e.json"]}
        extra = args.get(name, ["data=ring8", "model=mlp", "metrics=[]", "logger=[csv]"])
        res = command(name, f"ckpt_path={evil}", *extra, f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
        assert victim.read_text() == "precious", f"ganforge-{name} ran the stored target"
        if name == "train":  # resuming compares the stored setup but never builds from it
            continue
        assert res.returncode == 2, res.stderr[-2000:]
        errors = [line for line in res.stderr.splitlines() if "error:" in line]
        assert len(errors) == 1 and "refused" in errors[0] and named in errors[0], res.stderr[-2000:]
        assert "Traceback" not in res.stderr


@pytest.mark.slow
def test_allow_targets_trusts_a_named_class(trained: Path, tmp_path: Path) -> None:
    """A user's own class in a stored config is built when ``allow_targets`` names it (here a subclass
    of the MLP generator living outside ganforge)."""
    module = tmp_path / "mylab_nets.py"
    module.write_text(
        "from ganforge.nets.mlp import MLPGenerator\n\nclass MyGenerator(MLPGenerator):\n    pass\n"
    )
    ckpt, config = stored_config(trained)
    config["model"]["generator"]["_target_"] = "mylab_nets.MyGenerator"
    ckpt["ganforge"]["config"] = config
    mine = tmp_path / "mine.ckpt"
    torch.save(ckpt, mine)
    env = {"PYTHONPATH": str(tmp_path)}
    refused = command("sample", f"ckpt_path={mine}", f"out={tmp_path}/a.png", cwd=tmp_path, env=env)
    assert refused.returncode == 2 and "allow_targets=[mylab_nets.MyGenerator]" in refused.stderr
    ok = command(
        "sample",
        f"ckpt_path={mine}",
        f"out={tmp_path}/b.png",
        "allow_targets=[mylab_nets.MyGenerator]",
        cwd=tmp_path,
        env=env,
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert (tmp_path / "b.png").is_file()


@pytest.mark.slow
def test_a_run_dirs_config_read_back_is_checked(trained: Path, tmp_path: Path) -> None:
    """``ganforge-train -cd <run>/.hydra -cn config`` reruns a run from its saved config; a crafted
    target there is refused like one in a checkpoint."""
    hydra_dir = tmp_path / "downloaded" / ".hydra"
    shutil.copytree(trained / ".hydra", hydra_dir) if (trained / ".hydra").is_dir() else None
    if not hydra_dir.is_dir():  # in-process runs write no .hydra: make one as Hydra would
        hydra_dir.mkdir(parents=True)
        (hydra_dir / "hydra.yaml").write_text("hydra: {}\n")
        (hydra_dir / "overrides.yaml").write_text("[]\n")
    _, config = stored_config(trained)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    config = crafted(config, "task", open_victim(victim))
    config.pop("paths", None)
    config["paths"] = {"output_dir": "${hydra:runtime.output_dir}", "cache_dir": str(tmp_path / "cache")}
    (hydra_dir / "config.yaml").write_text(yaml.safe_dump(config))
    res = command(
        "train", "-cd", str(hydra_dir), "-cn", "config", f"hydra.run.dir={tmp_path}/rerun", cwd=tmp_path
    )
    assert victim.read_text() == "precious"
    assert res.returncode == 2, res.stderr[-3000:]
    errors = [line for line in res.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "builtins.open" in errors[0] and ".hydra/config.yaml" in errors[0], res.stderr
