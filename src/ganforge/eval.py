"""``ganforge-eval``: the metrics of a checkpoint, measured as training measures them, printed and
written as JSON."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from ganforge import CONFIG_PACKAGE
from ganforge.checkpoint_file import check_writable, write_text_atomically
from ganforge.config import check_required
from ganforge.errors import ConfigError, one_line_errors
from ganforge.latents import check_truncation, truncation_value
from ganforge.metrics.settings import MetricSettings, check_request
from ganforge.stored import StoredRun, pick_device, read_run
from ganforge.targets import trusted_targets


def evaluate(
    ckpt_path: str | StoredRun,
    metrics: DictConfig | dict,
    cache_dir: str,
    device: str = "auto",
    truncation: float | None = None,
    eval_split: str | None = None,
) -> dict[str, Any]:
    """Metrics of the generator in ``ckpt_path``; ``metrics`` is the ``metrics`` config group.

    The very code path training measures with (the suite of the data, its reference set, extractor
    and fixed sample sequence), so with the settings of a training run it reproduces the ``val/*``
    values that run logged at the checkpoint's step. ``truncation`` ψ draws those latents truncated to
    [-ψ, ψ] (Brock et al. 2019; task=generation only), and the result says which ψ it used.
    ``eval_split`` (val or test) measures image folders on that held-out split instead of the one the
    run used (its ``data.eval_split``).

    The checkpoint, its task and the request are checked first, with torch alone: Lightning and the
    metric libraries, seconds of imports, come after (what depends on the data is checked once it is
    built, before any feature network or sample).
    """
    psi = truncation_value(truncation)
    run = ckpt_path if isinstance(ckpt_path, StoredRun) else read_run(ckpt_path)
    settings = check_request(MetricSettings.from_config(metrics), run.task)
    check_truncation(psi, run.task)
    if eval_split is not None:
        choose_split(run, eval_split)
    dev = pick_device(device)
    from ganforge.metrics.suite import MetricSuite  # the heavy imports, now that the request is sound
    from ganforge.metrics.suites import make_suite
    from ganforge.restore import restore

    _, datamodule, module, _ = restore(run, dev)
    settings.conditional = bool(module.task.num_classes)  # intra_fid, cas: refused before any work if not
    start = time.time()
    suite = make_suite(settings, datamodule, cache_dir, module.task)
    if psi is not None:  # before prepare: the protocol (and its tags) records the ψ and where it applies
        suite.truncation = psi
        suite.truncation_space = "z" if module.use_truncation(psi) is not None else "w"
    suite.prepare(dev)
    # final: the classification accuracy score too (training measures it only at its last step)
    values = (
        suite.measure_module(module, final=True)
        if isinstance(suite, MetricSuite)
        else suite.measure_module(module)
    )
    info = suite.info
    if "held_out_pairs" in info or "held_out_a" in info:  # translation: the held-out images
        num_samples = info.get("held_out_pairs") or info["held_out_a"] + info["held_out_b"]
    else:  # generation: as many samples as the reference set holds (or the mode metrics' count)
        num_samples = info.get("n_fake") or info.get("n_modes", 0)
    return {
        "checkpoint": run.path,
        "g_step": module.g_step,
        "metrics": values,
        "truncation": psi,
        "eval_split": run.config["data"].get("eval_split"),
        "num_samples": num_samples,
        "seed": settings.seed,
        "time_s": round(time.time() - start, 3),
        **info,
    }


def choose_split(run: StoredRun, split: str) -> None:
    """The run's data config set to measure on ``split``; a ConfigError for data without that choice."""
    data = run.config.get("data") or {}
    if "eval_split" not in data:
        name = str(data.get("_target_", "?")).rsplit(".", 1)[-1]
        raise ConfigError(
            f"eval_split={split}: the checkpoint's data ({name}) has no held-out split to choose; "
            "eval_split is for paired and unpaired image folders (data.eval_split)"
        )
    data["eval_split"] = split  # checked (val, test) where the folder is indexed, against what it holds


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    psi = result.get("truncation")
    title = f"ganforge-eval: step {result['g_step']}, {result['num_samples']} samples"
    table = Table(title=title + ("" if psi is None else f", truncation ψ={psi:g}"))
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    for name, value in result["metrics"].items():
        table.add_row(name, f"{value:.5g}")
    Console().print(table)


@hydra.main(version_base="1.3", config_path=CONFIG_PACKAGE, config_name="eval")
def main(cfg: DictConfig) -> None:
    """Entry point of ``ganforge-eval``: mistakes exit with one line and code 2."""
    with one_line_errors("ganforge-eval"):
        check_required(cfg)
        out = Path(cfg.out) if cfg.out else Path(cfg.ckpt_path).expanduser().parent / "eval.json"
        check_writable(out, "out")  # before the measurement, not after it
        with trusted_targets(cfg.get("allow_targets")):
            result = evaluate(
                cfg.ckpt_path,
                cfg.get("metrics") or {},
                cfg.paths.cache_dir,
                cfg.device,
                cfg.get("truncation"),
                cfg.get("eval_split"),
            )
        result["config"] = OmegaConf.to_container(cfg.get("metrics") or {}, resolve=True)
        write_text_atomically(out, json.dumps(result, indent=2) + "\n")  # e.g. a disk filled meanwhile
    print_table(result)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
