"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from helpers import train_run


@pytest.fixture
def run(tmp_path: Path):
    """``run(name, *overrides)`` trains into ``tmp_path/name`` and returns (summary, output dir)."""

    def _run(name: str, *overrides: str) -> tuple[dict[str, Any], Path]:
        out = tmp_path / name
        return train_run(out, *overrides), out

    return _run
