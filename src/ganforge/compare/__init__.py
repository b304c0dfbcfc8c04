"""``ganforge-compare DIR...``: runs side by side from their run dirs alone (no W&B, no network).

Each DIR is a run dir or any folder holding run dirs (a multirun dir, ``outputs/train``). The
result is a table (terminal, ``comparison.md``, ``comparison.csv``) with one row per run, the
overrides that differ between the runs, steps, wall time, status and the final/best value of
every ``val/*`` metric, sorted by the chosen metric; and PNG plots next to it: D/G loss curves,
``val/*`` curves and a montage of each run's latest sample grid. Runs in progress and crashed
runs are read from whatever they have written so far; a run dir with a damaged file is listed
with the file and what is wrong with it, and the other runs are still compared.

Modules, each importing only those below it: ``cli`` (the command, :func:`compare`), ``plots``,
``table`` (what differs, the order, the table and its files), ``load`` (reading run dirs).
"""

from __future__ import annotations

from ganforge.compare import cli, load, plots, table
from ganforge.compare.cli import compare, default_out, main, unwritable
from ganforge.compare.load import (
    LOSSES,
    MAX_DEPTH,
    NOT_METRICS,
    STEP_KEYS,
    SUMMARY_FIELDS,
    DamagedRun,
    Run,
    _float,
    _load_yaml,
    _read_metrics,
    _why,
    find_runs,
    load_run,
    natural_key,
    parse_overrides,
    read_metrics,
    read_summary,
)
from ganforge.compare.plots import (
    LEGEND_WRAP,
    MONTAGE_MAX,
    PLOTS,
    TITLE_WRAP,
    _add_legend,
    losses_figure,
    metrics_figure,
    plot_losses,
    plot_metrics,
    plot_samples,
    robust_limits,
    samples_figure,
    smooth,
)
from ganforge.compare.table import (
    MISSING,
    PREFERRED,
    Comparison,
    build_comparison,
    differing_overrides,
    override_text,
    pick_metric,
    print_table,
    short_keys,
    sort_runs,
    value_of,
    write_csv,
    write_markdown,
    yaml_text,
)

__all__ = [
    "cli",
    "load",
    "plots",
    "table",
    "LEGEND_WRAP",
    "LOSSES",
    "MAX_DEPTH",
    "MISSING",
    "MONTAGE_MAX",
    "NOT_METRICS",
    "PLOTS",
    "PREFERRED",
    "STEP_KEYS",
    "SUMMARY_FIELDS",
    "TITLE_WRAP",
    "Comparison",
    "DamagedRun",
    "Run",
    "build_comparison",
    "compare",
    "default_out",
    "differing_overrides",
    "find_runs",
    "load_run",
    "losses_figure",
    "main",
    "metrics_figure",
    "natural_key",
    "override_text",
    "parse_overrides",
    "pick_metric",
    "plot_losses",
    "plot_metrics",
    "plot_samples",
    "print_table",
    "read_metrics",
    "read_summary",
    "robust_limits",
    "samples_figure",
    "short_keys",
    "smooth",
    "sort_runs",
    "unwritable",
    "value_of",
    "write_csv",
    "write_markdown",
    "yaml_text",
    # and the helpers the tests call or replace (their reference readers and plots)
    "_add_legend",
    "_float",
    "_load_yaml",
    "_read_metrics",
    "_why",
]
