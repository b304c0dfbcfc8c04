"""Mode collapse with and without packing (PacGAN, Lin et al. 2018): the GAN (pack 1) against PacGAN2
(pack 2) on the 8-Gaussian ring, the 25-Gaussian grid and stacked digits, several seeds each.

Runs one ``ganforge-train`` job at a time (a finished job is not rerun: its ``summary.json`` is reused),
then writes ``results.json`` and prints a Markdown table. ``results.json`` accumulates: the runs of this
invocation replace those of the same preset, pack, seed and budget already in it, and the mean ± std of
every (preset, pack, budget) setting is recomputed from all the runs it holds. The budgets are small
(PacGAN trains 400 epochs of 100,000 samples: 400,000 steps on the toy data); choose yours with flags:

    python experiments/mode_collapse/run.py                         # 2,000 and 20,000 toy steps
    python experiments/mode_collapse/run.py --toy-steps 20000 --seeds 0 1 2 3 4
    python experiments/mode_collapse/run.py --presets pacgan_ring8 --packs 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir

from ganforge import CONFIG_DIR

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # experiments/jobs.py
from jobs import train_job  # noqa: E402

PRESETS = ("pacgan_ring8", "pacgan_grid25", "stacked_digits")
METRICS = ("val/modes", "val/hq_frac", "val/reverse_kl")


def overrides(preset: str, pack: int, seed: int, steps: int) -> list[str]:
    """The job's overrides: the preset with its pack and seed, the budget, metrics only at the end."""
    samples = 26000 if preset.startswith("stacked") else 2500  # PacGAN's counts (Sec. 5.1 and 5.2)
    return [
        f"experiment={preset}",
        f"model.pack={pack}",
        f"seed={seed}",
        f"train.steps={steps}",
        "metrics=[modes]",  # stacked digits too: the mode counts, not FID (PacGAN's tables)
        f"metrics.modes_num_samples={samples}",
        "metrics.every=0",
        "train.sample_every=0",
        "train.ckpt_every=0",
        "logger=[csv]",
        f"task_name=mode_collapse_{preset}",
    ]


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and (sample) std of each mode metric over the seeds of one setting."""
    out: dict[str, Any] = {"seeds": len(runs)}
    for name in METRICS:
        values = [r["metrics"][name] for r in runs if name in r["metrics"]]
        if values:
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            out[name] = {"mean": statistics.fmean(values), "std": std}
    out["wall_time_s"] = round(sum(r["wall_time_s"] for r in runs), 1)
    return out


def cell(agg: dict[str, Any], name: str, scale: float = 1.0, digits: int = 1, suffix: str = "") -> str:
    """``mean ± std`` of one metric of a setting (— when it was not measured)."""
    if name not in agg:
        return "—"
    m, s = agg[name]["mean"] * scale, agg[name]["std"] * scale
    return f"{m:.{digits}f} ± {s:.{digits}f}{suffix}"


def setup_of(cfg: Any) -> str:
    """What a job's preset sets up (from its composed config): G's and D's initialisation (``default``:
    torch's), the update order and the training set (``fresh``: new points every step)."""
    size = int(cfg.data.get("train_size", 0) or 0)
    return ", ".join(
        (
            str(cfg.model.generator.get("init", "default")),
            str(cfg.train.get("updates", "alternating")),
            f"set of {size:,}" if size else "fresh",
        )
    )


def composed(args: list[str]) -> Any:
    """The config a job with ``args`` trains with (the preset as it is now)."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return compose("train", overrides=args)


def slug(text: str) -> str:
    """A folder-name form of a setup (``normal_0.02, simultaneous, set of 100,000`` → ``normal_0.02-...``)."""
    return "-".join("".join(c for c in part if c.isalnum() or c in "._") for part in text.split(", "))


def setup(run: dict[str, Any]) -> str:
    """A recorded run's setup (older records have ``init`` only: alternating updates, fresh points)."""
    if "setup" in run:
        return run["setup"]
    return f"{run.get('init', 'default')}, alternating, fresh"


def settings_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std per (preset, pack, budget, setup), from every run (keyed
    ``preset/pack<k>/steps<n>/<setup>``)."""
    groups: dict[tuple[str, int, int, str], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        groups[(run["preset"], run["pack"], run["steps"], setup(run))].append(run)
    settings = {}
    for (preset, pack, steps, how), group in sorted(groups.items()):
        agg = aggregate(group) | {"preset": preset, "pack": pack, "steps": steps, "setup": how}
        settings[f"{preset}/pack{pack}/steps{steps}/{how}"] = agg
    return settings


def merge(old: dict[str, Any] | None, new_runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs of ``old`` results that ``new_runs`` do not replace (same preset, pack, seed, budget and
    setup), then ``new_runs``."""
    key = lambda r: (r["preset"], r["pack"], r["seed"], r["steps"], setup(r))  # noqa: E731
    fresh = {key(r) for r in new_runs}
    kept = [r for r in (old or {}).get("runs", []) if key(r) not in fresh]
    for run in kept:
        run["setup"] = setup(run)
        run.pop("init", None)
    return kept + new_runs


def table(results: dict[str, Any]) -> str:
    """The Markdown rows: one per (preset, pack, budget)."""
    rows = [
        "| data | method | steps | setup | seeds | modes | high-quality samples | reverse KL |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for agg in results["settings"].values():
        pack = agg["pack"]
        method = "GAN" if pack == 1 else f"PacGAN{pack}"
        rows.append(
            f"| {agg['preset']} | {method} | {agg['steps']} | {agg['setup']} | {agg['seeds']} | "
            f"{cell(agg, 'val/modes')} | {cell(agg, 'val/hq_frac', 100, 1, ' %')} | "
            f"{cell(agg, 'val/reverse_kl', 1, 2)} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    parser.add_argument("--packs", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--toy-steps", nargs="+", type=int, default=[2000, 20000], help="G-step budgets, ring and grid"
    )
    parser.add_argument("--stacked-steps", type=int, default=1000, help="generator steps on stacked digits")
    parser.add_argument("--out", type=Path, default=HERE / "runs", help="run directories (not committed)")
    parser.add_argument("--results", type=Path, default=HERE / "results.json")
    args = parser.parse_args()

    runs: list[dict[str, Any]] = []
    start = time.time()
    for preset in args.presets:
        budgets = [args.stacked_steps] if preset.startswith("stacked") else args.toy_steps
        for steps in budgets:
            for pack in args.packs:
                for seed in args.seeds:
                    job = overrides(preset, pack, seed, steps)
                    how = setup_of(composed(job))  # a changed preset trains anew, in its own folder
                    run_dir = args.out / f"{preset}_pack{pack}_seed{seed}_steps{steps}_{slug(how)}"
                    summary = train_job(run_dir, job)
                    metrics = {k: v for k, v in summary["last"].items() if k in METRICS}
                    run = {"preset": preset, "pack": pack, "seed": seed, "steps": summary["g_steps"]}
                    run |= {"setup": how, "metrics": metrics}
                    run |= {"wall_time_s": summary["wall_time_s"]}
                    print(json.dumps(run), flush=True)
                    runs.append(run)
    old = json.loads(args.results.read_text()) if args.results.is_file() else None
    runs = merge(old, runs)
    results = {"settings": settings_of(runs), "runs": runs, "elapsed_s": round(time.time() - start, 1)}
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
