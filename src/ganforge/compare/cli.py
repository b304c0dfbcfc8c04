"""``ganforge-compare`` on top of the table and the plots: where the comparison goes, whether it
can be written there, and the command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ganforge.compare.plots import PLOTS, plot_losses, plot_metrics, plot_samples, plot_spread
from ganforge.compare.table import (
    ALL_BUT_SEED,
    VS_BEST,
    Comparison,
    UnknownKey,
    build_comparison,
    group_keys,
    print_table,
    write_csv,
    write_markdown,
)


def compare(
    dirs: Sequence[str | Path],
    metric: str | None = None,
    out: str | Path | None = None,
    plots: bool = True,
    show: bool = True,
    comparison: Comparison | None = None,
    group_by: str | Sequence[str] | None = ALL_BUT_SEED,
) -> dict[str, Any]:
    """Compare the runs under ``dirs``; write table and plots into ``out``; returns what it wrote.

    ``out`` defaults to the single DIR given, or ``./comparison`` for several. ``comparison``: the
    runs already read by :func:`build_comparison` (with ``exclude=out``), not read again.
    ``group_by``: which runs share a row, as :func:`build_comparison` takes it (default: runs whose
    configs differ only in the seed, shown as mean ± std).
    """
    paths = [Path(d) for d in dirs]
    out_dir = default_out(paths, out)
    comp = comparison
    if comp is None:
        comp = build_comparison(paths, metric, exclude=out_dir, group_by=group_by)
    for p, why in comp.skipped if show else ():  # else the caller says it (the Hydra callback logs it)
        print(f"ganforge-compare: skipped {p}: {why}", file=sys.stderr)
    result: dict[str, Any] = {"comparison": comp, "files": {}}
    if not comp.runs:
        return result
    out_dir.mkdir(parents=True, exist_ok=True)
    made: dict[str, Path] = {}
    if plots:
        groups = comp.groups
        for key, fn in (
            ("losses", lambda p: plot_losses(comp.runs, p, groups)),
            ("metrics", lambda p: plot_metrics(comp.runs, comp.metrics, p, groups)),
            ("spread", lambda p: plot_spread(groups, comp.metrics, p) if groups is not None else None),
            ("samples", lambda p: plot_samples(comp.runs, p, comp.keys)),
        ):
            written = fn(out_dir / PLOTS[key])
            if written is not None:
                made[key] = written
    files = {
        "md": write_markdown(comp, made, out_dir / "comparison.md"),
        "csv": write_csv(comp, out_dir / "comparison.csv"),
        **made,
    }
    result["files"] = files
    if show:
        print_table(comp)
        print(f"written: {files['md']} (+ comparison.csv, {len(made)} plots)")
    return result


def default_out(paths: Sequence[Path], out: str | Path | None) -> Path:
    """Where the comparison goes: ``out``, else the single DIR given, else ``./comparison``."""
    return Path(out) if out else (paths[0] if len(paths) == 1 else Path("comparison"))


def unwritable(out: Path) -> str | None:
    """Why the comparison cannot be written into ``out`` (None: it can). Probed with a temporary file
    in ``out``, or in its nearest existing parent when it is still to be made, that is removed at once,
    so that a read-only place is refused before any run is read, and nothing is left behind."""
    import tempfile

    place = out
    while not place.exists():
        if place.is_symlink():  # a dangling link: mkdir would fail on it
            return f"{place} is a broken link"
        if place.parent == place:
            break
        place = place.parent
    if not place.is_dir():
        return f"{place} is not a directory"
    try:
        with tempfile.TemporaryFile(dir=place):
            pass
    except OSError as exc:
        return f"{place} is not writable ({exc.strerror or type(exc).__name__})"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ganforge-compare``; exit code 1 when no run was found, 2 for a metric none
    logged, a ``--group-by`` key no run has or an ``--out`` that cannot be written."""
    verdicts = "; ".join(f"'{word}': {meaning}" for word, meaning in VS_BEST.items())
    parser = argparse.ArgumentParser(
        prog="ganforge-compare",
        description="Compare ganforge runs: a table and plots from run dirs or multirun dirs. "
        "GAN results move with the seed (Lucic et al. 2018): by default, runs whose configs differ "
        "only in seed share a row, with mean ± std over them and their count n; the column 'vs best' "
        "compares each row's mean of its runs' best --metric with the best row's, so that the "
        f"differences beyond the seed spread stand out ({verdicts}).",
    )
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="run dirs, multirun dirs or folders of runs")
    parser.add_argument(
        "--metric", default=None, help="sort by this metric (default: val/fid, else the first val/* logged)"
    )
    parser.add_argument(
        "--out",
        default=None,
        help="where to write comparison.md/.csv and plots (default: DIR, or ./comparison)",
    )
    parser.add_argument("--no-plots", action="store_true", help="only the table")
    parser.add_argument(
        "--group-by",
        default=ALL_BUT_SEED,
        metavar="KEY[,KEY]",
        help="runs with equal values of these keys share a row (overrides, group choices such as "
        "loss, or dotted config keys such as model.discriminator.norm); 'none': one row per run, as "
        f"before; default '{ALL_BUT_SEED}': runs whose configs differ only in seed",
    )
    args = parser.parse_args(argv)
    try:
        group_by = group_keys(args.group_by)
    except UnknownKey as exc:
        print(f"ganforge-compare: error: --group-by {exc}", file=sys.stderr)
        return 2
    paths = [Path(d) for d in args.dirs]
    out = default_out(paths, args.out)
    why = unwritable(out) if args.out is not None or out.exists() else None
    if why is not None:  # before reading thousands of runs
        hint = "" if args.out is not None else " (choose another place with --out)"
        print(
            f"ganforge-compare: error: cannot write the comparison into {out}: {why}{hint}", file=sys.stderr
        )
        return 2
    try:  # read once, for the checks and the table
        comp = build_comparison(paths, args.metric, exclude=out, group_by=group_by)
    except UnknownKey as exc:
        print(f"ganforge-compare: error: --group-by {exc}", file=sys.stderr)
        return 2
    if args.metric:  # a metric no run logged would sort by nothing: say so before writing anything
        runs = comp.runs
        logged = sorted({n for r in runs for n in r.metric_names()})
        if runs and args.metric not in logged:
            shown = ", ".join(n for n in logged if n.startswith(("val/", "train/"))) or "none"
            print(
                f"ganforge-compare: error: --metric {args.metric}: no run logged it; logged: {shown}",
                file=sys.stderr,
            )
            return 2
    result = compare(args.dirs, metric=args.metric, out=out, plots=not args.no_plots, comparison=comp)
    if not result["comparison"].runs:
        print("ganforge-compare: error: no runs found", file=sys.stderr)
        return 1
    return 0
