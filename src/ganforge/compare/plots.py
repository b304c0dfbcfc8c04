"""The comparison's plots (matplotlib figures, no pyplot): D/G loss curves, ``val/*`` curves, the
spread of each row's runs and a montage of each run's latest sample grid, titled as the table names
the runs. With rows of several runs (seeds), a row's runs share a colour and its curves show
mean ± std error bars."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ganforge.compare.load import LOSSES, Run
from ganforge.compare.table import Group, short_keys, spread, value_of
from ganforge.directions import mode

MONTAGE_MAX = 36  # sample grids in the montage (the best runs first)
PLOTS = {
    "losses": "comparison_losses.png",
    "metrics": "comparison_metrics.png",
    "spread": "comparison_spread.png",
    "samples": "comparison_samples.png",
}
POINTS_MAX = 10  # a row of up to this many runs shows each run's values beside its mean ± std
LEGEND_WRAP = 70  # characters per legend line: long labels wrap, never cut
TITLE_WRAP = 38  # characters per line of a montage title


def _figure_grid(
    rows: int, cols: int, width: float, height: float, heights: Sequence[float] | None = None
) -> tuple[Any, Any]:
    """A matplotlib Figure and its axes grid, without pyplot (no global backend or figure state);
    with row ``heights``, laid out by matplotlib's constrained layout (titles never overlap)."""
    from matplotlib.figure import Figure

    if heights is None:
        fig = Figure(figsize=(width, height), dpi=100)
        return fig, fig.subplots(rows, cols, squeeze=False)
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False, gridspec_kw={"height_ratios": list(heights)})


def smooth(values: Sequence[float], weight: float | None = None) -> list[float]:
    """Debiased exponential moving average (TensorBoard's smoothing); the weight grows with the length."""
    if weight is None:
        weight = min(0.9, max(0.0, 1 - 8 / max(len(values), 1)))
    out, avg, norm = [], 0.0, 0.0
    for v in values:
        avg = weight * avg + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out.append(avg / norm)
    return out


def _quantile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile of sorted values, linearly interpolated."""
    pos = q * (len(ordered) - 1)
    i = int(pos)
    return ordered[i] if i + 1 >= len(ordered) else ordered[i] + (pos - i) * (ordered[i + 1] - ordered[i])


def robust_limits(
    values: Sequence[float], min_points: int = 20, fence: float = 5.0
) -> tuple[float, float] | None:
    """Y-limits that leave out only far outliers (a diverging run shooting off), so the other curves
    stay readable: points more than ``fence`` widths of the central 90% beyond it. None (matplotlib's
    own limits: every point shown) when there is no such point or fewer than ``min_points`` points."""
    ordered = sorted(v for v in values if math.isfinite(v))
    if len(ordered) < min_points:
        return None
    lo, hi = _quantile(ordered, 0.05), _quantile(ordered, 0.95)
    width = max(hi - lo, 1e-3 * max(abs(lo), abs(hi)), 1e-12)
    kept = [v for v in ordered if lo - fence * width <= v <= hi + fence * width]
    if len(kept) == len(ordered):
        return None
    pad = 0.05 * max(kept[-1] - kept[0], width)
    return kept[0] - pad, kept[-1] + pad


def _limit_axes(ax: Any, values: Sequence[float]) -> None:
    """Apply :func:`robust_limits` and say on the panel how many points it left out."""
    limits = robust_limits(values)
    if limits is None:
        return
    ax.set_ylim(*limits)
    off = sum(1 for v in values if math.isfinite(v) and not limits[0] <= v <= limits[1])
    ax.text(
        0.99,
        0.98,
        f"{off} points off the axes",
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=7,
        color="gray",
    )


LOG_SPAN = 100.0  # positive values whose largest is this many times the smallest: a log axis


def _log_if_wide(ax: Any, values: Sequence[float]) -> None:
    """A log y axis when the values are positive and span :data:`LOG_SPAN` or more (a collapsed run's FID
    of 200 beside FIDs of 3 would flatten every other row into one line)."""
    finite = [v for v in values if math.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) >= LOG_SPAN * min(finite):
        ax.set_yscale("log")


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _add_legend(fig: Any, runs: Sequence[Run | Group], colors: Sequence[Any], panels_height: float) -> Any:
    """One legend for all panels (an entry per run, or per row of runs), below them; the figure
    grows (taller, and wider for long labels) so that the legend is whole and clear of the panels."""
    import textwrap

    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, lw=2) for c in colors]
    labels = [f"{r.name}: {r.label}" if r.label != r.name else r.name for r in runs]
    labels = ["\n".join(textwrap.wrap(text, LEGEND_WRAP, subsequent_indent="  ")) for text in labels]
    ncol = 1 if len(runs) <= 3 else 2
    legend = fig.legend(
        handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=ncol, fontsize=8, frameon=False
    )
    box = legend.get_window_extent()  # its size alone (no draw of every curve just to measure it)
    legend_w, legend_h = box.width / fig.dpi + 0.3, box.height / fig.dpi + 0.2
    height = panels_height + legend_h
    fig.set_size_inches(max(fig.get_figwidth(), legend_w), height)
    fig.tight_layout(rect=(0, legend_h / height, 1, 1))
    return legend


def _panels(n_panels: int) -> tuple[Any, list[Any], float]:
    """Panels, three to a row (the others hidden); the figure and the panels' height in inches."""
    from matplotlib.ticker import MaxNLocator

    cols = min(3, n_panels)
    rows = math.ceil(n_panels / cols)
    fig, axes = _figure_grid(rows, cols, 5.2 * cols, 3.6 * rows)
    for ax in axes.flat[n_panels:]:
        ax.axis("off")
    for ax in axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig, list(axes.flat[:n_panels]), 3.6 * rows


def _better(name: str) -> str:
    return "lower" if mode(name) == "min" else "higher"


def losses_figure(runs: Sequence[Run], groups: Sequence[Group] | None = None) -> Any | None:
    """D and G loss of every run against the generator step: smoothed lines, the raw values faint.
    With ``groups`` (rows of the table), the runs of a row share its colour: their spread shows."""
    if not any(r.series.get(k) for r in runs for k in LOSSES):
        return None
    fig, axes, height = _panels(2)
    items: Sequence[Any] = runs if groups is None else groups
    colors = _colors(len(items))
    members = [[item] for item in runs] if groups is None else [g.runs for g in groups]
    for ax, key in zip(axes, LOSSES, strict=True):
        seen: list[float] = []
        for item_runs, color in zip(members, colors, strict=True):
            for run in item_runs:
                points = [(s, v) for s, v in run.series.get(key, []) if math.isfinite(v)]
                if not points:
                    continue
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, color=color, alpha=0.2 if len(item_runs) == 1 else 0.1, lw=0.8)
                ax.plot(xs, smooth(ys), color=color, lw=1.6 if len(item_runs) == 1 else 1.1)
                seen.extend(ys)
        _limit_axes(ax, seen)
        ax.set_title(key)
        ax.set_xlabel("generator step")
        ax.grid(alpha=0.3)
    _add_legend(fig, items, colors, height)
    return fig


def _mean_curve(runs: Sequence[Run], name: str) -> tuple[list[int], list[float], list[float]]:
    """Steps, mean and std (0 where one run logged the step) of ``name`` over ``runs``."""
    at: dict[int, list[float]] = {}
    for run in runs:
        for step, value in run.series.get(name, []):
            if math.isfinite(value):
                at.setdefault(step, []).append(value)
    steps = sorted(at)
    stats = [spread(at[s]) for s in steps]
    return steps, [st.mean for st in stats], [st.std or 0.0 for st in stats]  # type: ignore[misc]


def metrics_figure(
    runs: Sequence[Run], metrics: Sequence[str], groups: Sequence[Group] | None = None
) -> Any | None:
    """Every ``val/*`` metric against the generator step, one panel each. With ``groups``, a row of
    several runs is its mean with ± std error bars, each run's values as faint points (up to
    :data:`POINTS_MAX` runs)."""
    metrics = [m for m in metrics if any(r.series.get(m) for r in runs)]
    if not metrics:
        return None
    fig, axes, height = _panels(len(metrics))
    items: Sequence[Any] = runs if groups is None else groups
    colors = _colors(len(items))
    for ax, name in zip(axes, metrics, strict=True):
        _log_if_wide(ax, [v for run in runs for _, v in run.series.get(name, [])])
        for item, color in zip(items, colors, strict=True):
            if isinstance(item, Group) and item.n > 1:
                xs, means, stds = _mean_curve(item.runs, name)
                if xs:
                    ax.errorbar(
                        xs, means, yerr=stds, color=color, marker="o", ms=3, lw=1.4, capsize=3, zorder=3
                    )
                for run in item.runs if item.n <= POINTS_MAX else ():  # more: the spread plot has them
                    points = [(s, v) for s, v in run.series.get(name, []) if math.isfinite(v)]
                    if points:
                        ax.plot(*zip(*points, strict=True), color=color, ls="none", marker=".", alpha=0.35)
                continue
            run = item.runs[0] if isinstance(item, Group) else item
            points = [(s, v) for s, v in run.series.get(name, []) if math.isfinite(v)]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, color=color, marker="o", ms=3, lw=1.4)
        ax.set_title(f"{name} ({_better(name)} is better)")
        ax.set_xlabel("generator step")
        ax.grid(alpha=0.3)
    _add_legend(fig, items, colors, height)
    return fig


def spread_figure(groups: Sequence[Group], metrics: Sequence[str]) -> Any | None:
    """Each run's best value of every metric as a point over its row, with the row's mean ± std
    error bar (Lucic et al. 2018: a GAN's result moves with the seed); rows in the table's order.
    None when no row holds two runs with a value."""
    metrics = [m for m in metrics if any(len(g.values(m)) > 1 for g in groups)]
    if not metrics:
        return None
    fig, axes, height = _panels(len(metrics))
    colors = _colors(len(groups))
    for ax, name in zip(axes, metrics, strict=True):
        _log_if_wide(ax, [v for group in groups for v in group.values(name)])
        for x, (group, color) in enumerate(zip(groups, colors, strict=True)):
            values = group.values(name)
            if not values:
                continue
            offsets = (
                [0.0]
                if len(values) == 1
                else [0.3 * (i / (len(values) - 1) - 0.5) for i in range(len(values))]
            )
            ax.plot([x + o for o in offsets], values, color=color, ls="none", marker="o", ms=4, alpha=0.6)
            stats = spread([v for v in values if math.isfinite(v)])
            if stats.mean is not None:
                ax.errorbar(
                    [x], [stats.mean], yerr=[stats.std or 0.0], color="black", marker="_", ms=14, capsize=6
                )
        ax.set_xticks(range(len(groups)), [str(i + 1) for i in range(len(groups))])
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set_title(f"{name}: best of each run ({_better(name)} is better)")
        ax.set_xlabel("row of the table (best first); black: mean ± std")
        ax.grid(alpha=0.3, axis="y")
    _add_legend(fig, groups, colors, height)
    return fig


def samples_figure(runs: Sequence[Run], keys: Sequence[str] = ()) -> Any | None:
    """Each run's latest sample grid (2D runs: scatter plots, on the same axes for the same data),
    titled with its differing overrides ``keys`` (shortened as in the terminal table), step and
    status; every row as tall as its tallest grid and its titles."""
    import textwrap

    from PIL import Image

    shown = list(runs[:MONTAGE_MAX])
    if not any(r.latest_samples() for r in shown):
        return None
    cols = min(4, len(shown))
    rows = math.ceil(len(shown) / cols)
    cell_w = 3.4
    pictures: list[Any] = []
    titles: list[str] = []
    short = short_keys(keys)
    for run in shown:
        grid = run.latest_samples()
        label = (
            " ".join([f"{run.name}:", *(f"{short[k]}={value_of(run, k)}" for k in keys)])
            if keys
            else run.name
        )
        title = "\n".join(textwrap.wrap(label, TITLE_WRAP))
        if grid is None:
            pictures.append(None)
            titles.append(f"{title}\n{run.status}")
            continue
        with Image.open(grid) as image:
            pictures.append(image.convert("RGB"))
        step = grid.stem.removeprefix("step_").lstrip("0") or "0"
        titles.append(f"{title}\nstep {step}, {run.status}")
    heights = []
    for r in range(rows):
        row = [p for p in pictures[r * cols : (r + 1) * cols] if p is not None]
        aspect = max((p.height / p.width for p in row), default=1.0)
        lines = max(t.count("\n") + 1 for t in titles[r * cols : (r + 1) * cols])
        heights.append(cell_w * aspect + 0.16 * lines + 0.15)
    fig, axes = _figure_grid(rows, cols, cell_w * cols, sum(heights), heights)
    for ax in axes.flat:
        ax.axis("off")
    for ax, picture, title in zip(axes.flat, pictures, titles, strict=False):
        if picture is None:
            ax.text(0.5, 0.5, "no samples yet", ha="center", va="center", color="gray")
        else:
            ax.imshow(picture, interpolation="nearest")
        ax.set_title(title, fontsize=8)
    return fig


def _save(fig: Any | None, path: Path) -> Path | None:
    if fig is None:
        return None
    import gc

    fig.savefig(path)
    fig.clear()  # a figure of thousands of curves is large: freed now, not next to the next one
    del fig
    gc.collect()
    return path


def plot_losses(runs: Sequence[Run], path: Path, groups: Sequence[Group] | None = None) -> Path | None:
    """:func:`losses_figure` as a PNG at ``path`` (None when no run logged a loss)."""
    return _save(losses_figure(runs, groups), path)


def plot_metrics(
    runs: Sequence[Run], metrics: Sequence[str], path: Path, groups: Sequence[Group] | None = None
) -> Path | None:
    """:func:`metrics_figure` as a PNG at ``path`` (None when no run logged a metric)."""
    return _save(metrics_figure(runs, metrics, groups), path)


def plot_spread(groups: Sequence[Group], metrics: Sequence[str], path: Path) -> Path | None:
    """:func:`spread_figure` as a PNG at ``path`` (None when no row has two runs with a value)."""
    return _save(spread_figure(groups, metrics), path)


def plot_samples(runs: Sequence[Run], path: Path, keys: Sequence[str] = ()) -> Path | None:
    """:func:`samples_figure` as a PNG at ``path`` (None when no run has a sample grid yet)."""
    return _save(samples_figure(runs, keys), path)
