"""How ``ganforge-compare`` scales with the number of runs: wall time and peak memory on N run dirs.

Trains one tiny real run (``ganforge-train data=ring8 model=mlp train.steps=50 metrics.every=25
logger=[csv]``, ~20 s) and clones it into a sweep of N run dirs shaped exactly as ganforge leaves
them (``-m loss=... optim.lr_d=... seed=...``): ``.hydra/config.yaml``, ``hydra.yaml`` and
``overrides.yaml`` (the real files with each job's values), ``hparams.yaml``, ``train.log``, a
``metrics.csv`` of a 1,500-step run logging every 25 steps with ``val/*`` rows every 250 steps (the
real header), ``summary.json`` (the real fields), ``samples/step_*.png`` (the real grid, three of
them) and ``checkpoints/{last,best}.ckpt`` (hard links to the real checkpoint: compare never opens
one, and 2,000 copies would take 1 GB). About 1% of the runs crashed part way and 1% are still
running (no ``summary.json``), as in a real sweep.

Then times ``ganforge-compare SWEEP --out OUT`` in a fresh process per try (wall time from start
to exit, as a user waits for it; CPU time, which other load on a shared machine does not inflate;
the process's peak RSS), for the code in the working tree (``new``) and, with ``--old REV``, the
``ganforge-compare`` of a git revision (its ``src/``, before or after compare became a package) run
the same way (``old``); with both it also checks that they
wrote the same ``comparison.csv``, the same ``comparison.md`` (but for its time stamp) and the
same PNGs (pixel for pixel). Prints JSON:

    {"runs": 2000, "new": {"wall_s": ..., "cpu_s": ..., "peak_rss_mb": ...}, "old": {...},
     "speedup": ..., "same_output": true}

    OMP_NUM_THREADS=1 python experiments/bench/compare_scale.py --runs 2000 --old HEAD
    OMP_NUM_THREADS=1 python experiments/bench/compare_scale.py --runs 200 --repeat 1   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SEED_ARGS = ["data=ring8", "model=mlp", "train.steps=50", "metrics.every=25", "logger=[csv]"]
STEPS, LOG_EVERY, VAL_EVERY, SAMPLE_EVERY = 1500, 25, 250, 500
LOSSES = ("nonsaturating", "hinge", "lsgan")
LRS = ("1e-4", "2e-4", "5e-4", "1e-3")
# runs the compare in a fresh interpreter and reports its own peak RSS and its children's (workers)
RUNNER = """
import importlib, json, resource, sys
module = importlib.import_module(sys.argv[1])
rc = module.main(sys.argv[3:])
usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
with open(sys.argv[2], "w") as f:
    json.dump({
        "rc": rc,
        "self_kb": usage[0].ru_maxrss,
        "children_kb": usage[1].ru_maxrss,
        "cpu_s": sum(u.ru_utime + u.ru_stime for u in usage),
    }, f)
"""


def seed_run(where: Path) -> Path:
    """One real tiny run, the template of every synthetic one."""
    run = where / "seed_run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    cmd = [sys.executable, "-m", "ganforge.train", *SEED_ARGS, f"hydra.run.dir={run}"]
    subprocess.run(cmd, cwd=where, env=env, check=True, capture_output=True, stdin=subprocess.DEVNULL)
    return run


def _num(value: float) -> str:
    return repr(float(value))


def metrics_csv(header: list[str], rng: random.Random, last_step: int) -> tuple[str, dict, dict, int]:
    """A CSVLogger table of a run to ``last_step``: train rows every LOG_EVERY steps, val rows every
    VAL_EVERY; returns it with the last values, the best val values and the best step."""
    lines = [",".join(header)]
    train = [k for k in header if k.startswith("train/")]
    vals = [k for k in header if k.startswith("val/")]
    last: dict[str, float] = {}
    best: dict[str, float] = {}
    best_step = 0
    d = 1.3 + rng.random() * 0.1
    for step in range(LOG_EVERY, last_step + 1, LOG_EVERY):
        d = max(0.05, d + rng.gauss(0, 0.03))
        row = {k: rng.random() for k in train}
        row.update({"train/d_loss": d, "train/d_adv": d, "train/g_loss": 2.0 - d})
        row.update({"train/lr_d": 0.0002, "train/lr_g": 0.0002})
        cells = {"step": str(step), "trainer/g_step": str(step), **{k: _num(v) for k, v in row.items()}}
        lines.append(",".join(cells.get(k, "") for k in header))
        last.update({**row, "trainer/g_step": step})
        if step % VAL_EVERY == 0:
            val = {"val/modes": float(rng.randint(1, 8)), "val/hq_frac": rng.random()}
            val["val/reverse_kl"] = rng.random() * 2
            cells = {"step": str(step), "trainer/g_step": str(step), **{k: _num(v) for k, v in val.items()}}
            lines.append(",".join(cells.get(k, "") for k in header))
            if not best or val["val/modes"] > best["val/modes"]:
                best, best_step = {k: val[k] for k in vals}, step
    return "\n".join(lines) + "\n", last, best, best_step


def make_sweep(seed: Path, sweep: Path, n: int) -> None:
    """``n`` run dirs ``sweep/0 ... sweep/n-1`` cloned from ``seed`` with each job's values."""
    hydra_text = (seed / ".hydra" / "hydra.yaml").read_text()
    config_text = (seed / ".hydra" / "config.yaml").read_text()
    hparams = (seed / "hparams.yaml").read_text()
    summary0 = json.loads((seed / "summary.json").read_text())
    header = (seed / "metrics.csv").read_text().splitlines()[0].split(",")
    grid = next((seed / "samples").glob("step_*.png"))
    ckpt = seed / "checkpoints" / "last.ckpt"
    task0 = "".join(f"    - {a}\n" for a in SEED_ARGS)
    for i in range(n):
        rng = random.Random(i)
        run = sweep / str(i)
        (run / ".hydra").mkdir(parents=True)
        loss, lr, seed_value = LOSSES[i % 3], LRS[(i // 3) % 4], i // 12
        overrides = ["data=ring8", "model=mlp", f"train.steps={STEPS}", "logger=[csv]"]
        overrides += [f"loss={loss}", f"optim.lr_d={lr}", f"seed={seed_value}"]
        (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
        task = "".join(f"    - {o}\n" for o in overrides)
        hydra = hydra_text.replace(task0, task).replace("      loss: nonsaturating", f"      loss: {loss}")
        hydra = hydra.replace("    num: ???", f"    num: {i}").replace(
            "- hydra.mode=RUN", "- hydra.mode=MULTIRUN"
        )
        (run / ".hydra" / "hydra.yaml").write_text(hydra)
        config = config_text.replace("\nseed: 42\n", f"\nseed: {seed_value}\n")
        config = config.replace("  steps: 50\n", f"  steps: {STEPS}\n", 1)
        config = config.replace(f"  lr_d: {0.0002}\n", f"  lr_d: {float(lr)}\n", 1)
        config = config.replace("nonsaturating_", f"{loss}_")
        (run / ".hydra" / "config.yaml").write_text(config)
        (run / "hparams.yaml").write_text(hparams)
        (run / "train.log").write_text("")
        status = "crashed" if i % 100 == 37 else "running" if i % 100 == 71 else "finished"
        last_step = STEPS if status == "finished" else rng.randrange(4, STEPS // LOG_EVERY) * LOG_EVERY
        text, last, best, best_step = metrics_csv(header, rng, last_step)
        (run / "metrics.csv").write_text(text)
        (run / "samples").mkdir()
        for step in range(SAMPLE_EVERY, last_step + 1, SAMPLE_EVERY):
            shutil.copyfile(grid, run / "samples" / f"step_{step:07d}.png")
        (run / "checkpoints").mkdir()
        os.link(ckpt, run / "checkpoints" / "last.ckpt")
        if best:
            os.link(ckpt, run / "checkpoints" / "best.ckpt")
        if status == "running":
            continue
        summary = dict(summary0)
        wall = last_step * 0.004 * (1 + rng.random())
        summary.update(status=status, output_dir=str(run), g_steps=last_step, d_steps=last_step)
        summary.update(steps_target=STEPS, wall_time_s=round(wall, 3), wall_time_total_s=round(wall, 3))
        summary.update(last=last, best=best, best_step=best_step)
        summary.update(checkpoint=str(run / "checkpoints" / "last.ckpt"), samples=str(run / "samples"))
        (run / "summary.json").write_text(json.dumps(summary, indent=2))


def old_module(rev: str, where: Path) -> Path:
    """The ``src/`` tree of ``rev`` (``git archive``), to import its ``ganforge.compare`` from: the module
    compare.py of older revisions, the package of newer ones (the config tree stays the installed one)."""
    tree = where / f"rev_{rev.replace('/', '_')}"
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree / "src"


def measure(source: Path | None, sweep: Path, out: Path, extra: list[str]) -> dict:
    """One ``ganforge-compare`` in a fresh interpreter (``ganforge`` imported from ``source``, a
    revision's ``src/``, or the working tree's when None): wall seconds, peak RSS (MB), exit code."""
    shutil.rmtree(out, ignore_errors=True)
    report = out.parent / f"{out.name}.rusage.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    if source is not None:  # ahead of the installed (editable) package
        env["PYTHONPATH"] = os.pathsep.join([str(source), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [
        sys.executable,
        "-c",
        RUNNER,
        "ganforge.compare",
        str(report),
        str(sweep),
        "--out",
        str(out),
        *extra,
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"compare failed ({proc.returncode}): {proc.stderr[-2000:]}")
    usage = json.loads(report.read_text())
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(usage["cpu_s"], 2),  # user + system: what other load on the machine does not change
        "peak_rss_mb": round(usage["self_kb"] / 1024, 1),
        "rc": usage["rc"],
    }


def same_output(a: Path, b: Path) -> dict[str, bool]:
    """Whether two compare outputs hold the same files: csv byte for byte, md but for its time
    stamp, PNGs pixel for pixel."""
    import numpy as np
    from PIL import Image

    same = {}
    names = sorted({p.name for p in a.iterdir()} | {p.name for p in b.iterdir()})
    for name in names:
        pa, pb = a / name, b / name
        if not (pa.exists() and pb.exists()):
            same[name] = False
        elif name.endswith(".png"):
            with Image.open(pa) as ia, Image.open(pb) as ib:
                same[name] = ia.size == ib.size and bool(np.array_equal(np.asarray(ia), np.asarray(ib)))
        elif name.endswith(".md"):
            strip = [line for line in pa.read_text().splitlines() if "written " not in line]
            same[name] = strip == [line for line in pb.read_text().splitlines() if "written " not in line]
        else:
            same[name] = pa.read_bytes() == pb.read_bytes()
    return same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=2, help="tries per version (the fastest counts)")
    parser.add_argument(
        "--old", default=None, help="also time ganforge-compare at this git revision (e.g. HEAD)"
    )
    parser.add_argument("--no-plots", action="store_true", help="pass --no-plots (the table only)")
    parser.add_argument("--keep", default=None, help="build the sweep here and keep it (default: a temp dir)")
    args = parser.parse_args()

    tmp = Path(args.keep or tempfile.mkdtemp(prefix="compare_scale_"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        sweep = tmp / f"sweep_{args.runs}"
        if not (sweep / str(args.runs - 1) / "metrics.csv").exists():
            shutil.rmtree(sweep, ignore_errors=True)
            seed = tmp / "seed_run" if (tmp / "seed_run" / "summary.json").exists() else seed_run(tmp)
            make_sweep(seed, sweep, args.runs)
        extra = ["--no-plots"] if args.no_plots else []
        versions: dict[str, Path | None] = {"new": None}
        if args.old:
            versions["old"] = old_module(args.old, tmp)
        result: dict = {"runs": args.runs, "plots": not args.no_plots, "cpus": os.cpu_count()}
        tries: dict[str, list[dict]] = {k: [] for k in versions}
        for _ in range(args.repeat):  # alternating, so that both see the same machine load
            for name, module in versions.items():
                tries[name].append(measure(module, sweep, tmp / f"out_{name}", extra))
        for name, results in tries.items():
            best = min(results, key=lambda r: r["wall_s"])
            result[name] = {**best, "wall_s_all": [r["wall_s"] for r in results]}
        if args.old:
            result["speedup"] = round(result["old"]["wall_s"] / result["new"]["wall_s"], 1)
            result["cpu_speedup"] = round(result["old"]["cpu_s"] / result["new"]["cpu_s"], 1)
            same = same_output(tmp / "out_old", tmp / "out_new")
            result["same_output"] = all(same.values())
            result["same_files"] = same
        print(json.dumps(result))
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
