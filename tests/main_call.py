"""Call a command's entry point as the command would run it: its argv, what it prints and its exit code.
Imports nothing heavy itself, so a fresh interpreter can use it to see what a command imports."""

from __future__ import annotations

import contextlib
import importlib
import io
import sys

from hydra.core.global_hydra import GlobalHydra


def call_main(name: str, args: list[str]) -> tuple[int, str, str]:
    """``ganforge-<name> *args`` through ``ganforge.<name>.main`` in this process: (exit code, stdout,
    stderr); ``sys.argv`` and Hydra's global state are put back afterwards."""
    main = importlib.import_module(f"ganforge.{name}").main
    out, err, argv = io.StringIO(), io.StringIO(), sys.argv
    sys.argv = [f"ganforge-{name}", *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        GlobalHydra.instance().clear()  # an early exit (--help, --cfg) leaves Hydra initialised
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()
