"""``ganforge-export``: a checkpoint's generator alone (the EMA G when the run keeps one), with the config
and task buffers that rebuilding and sampling it need, as a small file for sharing and for
``ganforge-sample ckpt_path=<file>`` (which draws the same images as from the checkpoint).

The file is a dict of tensors, numbers and strings (it loads with ``torch.load(weights_only=True)``):
``generator`` (G's state dict), ``task`` (the task's buffers: label_probs, fixed_z, fixed examples),
``config`` (``model``, ``task``, ``seed``, ``num_fixed`` of the run config; only targets ganforge writes
are built from it, as from a checkpoint's), ``data`` (shapes, classes), ``g_step``, ``ema``, ``metrics``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from ganforge import CONFIG_PACKAGE
from ganforge.checkpoint_file import (
    EXPORT_KEY,
    MB,
    check_writable,
    tensor_bytes,
    write_atomically,
)
from ganforge.config import check_required
from ganforge.errors import ConfigError, one_line_errors
from ganforge.stored import read_run
from ganforge.targets import trusted_targets

FORMAT_VERSION = 1
REAL_POINTS = 2000  # real points stored with a 2D generator: what ganforge-sample's scatter plot shows


def default_out(ckpt_path: str | Path) -> Path:
    """Where the export goes when ``out`` is not given: next to the checkpoint (best.ckpt ->
    best.generator.pt)."""
    ckpt = Path(ckpt_path).expanduser()
    return ckpt.with_name(f"{ckpt.stem}.generator.pt")


def _plain(tensor: Tensor) -> Tensor:
    """A CPU copy with storage of its own (a view would save the whole storage it looks into)."""
    return tensor.detach().to("cpu", copy=True).contiguous()


def data_facts(cfg: DictConfig, datamodule: Any) -> dict[str, Any]:
    """What G's build and ganforge-sample ask of the data: its kind, shapes and (conditional models) its
    classes and their names, with no path of the machine it was trained on."""
    kind = next((k for k in ("paired", "unpaired") if getattr(datamodule, k, False)), "generation")
    num_classes = int(datamodule.num_classes) if cfg.model.get("conditional", False) else 0
    names: list[str] = []
    if num_classes:
        try:
            from ganforge.data.unpaired import class_names

            names = class_names(datamodule) or []
        except Exception:  # noqa: BLE001 - names are a nicety (row labels): indices do without them
            names = []
    return {
        "kind": kind,
        "data_shape": [int(d) for d in datamodule.data_shape],
        "source_shape": [int(d) for d in datamodule.source_shape] if kind == "paired" else None,
        "num_classes": num_classes,
        "classes": [str(n) for n in names],
    }


def exported_generator(
    cfg: DictConfig, datamodule: Any, module: Any, metrics: dict[str, float] | None = None
) -> dict[str, Any]:
    """The export of a restored run (:func:`ganforge.restore.restore`): G's weights (the EMA G's, with
    the standing batch-norm statistics sampling would compute for this step), the task's buffers, the
    config that rebuilds G, the data's facts and the checkpoint's last ``metrics`` (a record)."""
    module.refresh_ema_stats()  # what sampling the checkpoint does first: baked into the weights
    net = module.ema_generator if module.ema_generator is not None else module.generator
    config = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(config, dict)
    examples: dict[str, Tensor] = {}
    if len(datamodule.data_shape) == 1 and hasattr(datamodule, "real_batch"):  # 2D points: the plot's reals
        examples["real"] = _plain(datamodule.real_batch(REAL_POINTS, seed=0))
    return {
        EXPORT_KEY: FORMAT_VERSION,
        "generator": {k: _plain(v) for k, v in net.state_dict().items()},
        "task": {k: _plain(v) for k, v in module.task.named_buffers(recurse=False)},
        "examples": examples,
        "config": {
            "model": config["model"],
            "task": config.get("task") or {"_target_": "ganforge.tasks.generation.GenerationTask"},
            "seed": int(config.get("seed", 0)),
            "num_fixed": int((config.get("train") or {}).get("num_fixed", 64)),
        },
        "data": data_facts(cfg, datamodule),
        "g_step": int(module.g_step),
        "ema": module.ema_generator is not None,
        "metrics": {str(k): float(v) for k, v in (metrics or {}).items()},
    }


def export_generator(ckpt_path: str, out: str | Path) -> Path:
    """Write the export of the checkpoint ``ckpt_path`` to ``out`` (atomically); returns the path."""
    path = Path(out).expanduser()
    source = Path(ckpt_path).expanduser()
    if path.exists() and source.exists() and path.resolve() == source.resolve():
        raise ConfigError(f"out={out}: is the checkpoint itself; write the generator to another file")
    run = read_run(ckpt_path, exported=True)
    if run.exported:
        raise ConfigError(f"ckpt_path={ckpt_path}: already an exported generator (G alone): share it as is")
    from ganforge.restore import restore  # Lightning: seconds of imports, after the file is checked

    cfg, datamodule, module, saved = restore(run, "cpu")
    metrics = (saved.get("ganforge") or {}).get("last_metrics") or {}
    payload = exported_generator(cfg, datamodule, module, metrics)
    path.parent.mkdir(parents=True, exist_ok=True)
    needed = tensor_bytes([payload["generator"], payload["task"], payload["examples"]]) + 64 * 1024
    write_atomically(path, lambda tmp: torch.save(payload, tmp), needed=needed)
    return path


@hydra.main(version_base="1.3", config_path=CONFIG_PACKAGE, config_name="export")
def main(cfg: DictConfig) -> None:
    """Entry point of ``ganforge-export``: mistakes exit with one line and code 2."""
    with one_line_errors("ganforge-export"):
        check_required(cfg)
        out = Path(cfg.out) if cfg.get("out") else default_out(cfg.ckpt_path)
        check_writable(out, "out")  # before the checkpoint is read
        with trusted_targets(cfg.get("allow_targets")):
            path = export_generator(cfg.ckpt_path, out)
    print(f"wrote {path} ({path.stat().st_size / MB:.1f} MB)", file=sys.stderr)


if __name__ == "__main__":
    main()
