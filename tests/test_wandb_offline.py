"""W&B offline logging: the real CLI's run-*.wandb file holds the curves, the config and a finished run."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from wandb.proto import wandb_internal_pb2 as pb

from wandb_records import (
    BLOCK_SIZE,
    CHUNK_HEADER,
    FILE_HEADER,
    FIRST,
    FULL,
    IDENT,
    LAST,
    MAGIC,
    MIDDLE,
    WandbFileError,
    checksum,
    config,
    history,
    iter_payloads,
    read_records,
    summary,
)

STEPS, LOG_EVERY = 30, 5
# the small 2-D setup: W&B sees the same curves and config as with images, in half the time
TINY = ("data=ring8", "model=mlp")


# --- the reader on files built here --------------------------------------------------------------
def encode(payloads: list[bytes]) -> bytes:
    """A version 0 .wandb file holding ``payloads``, split into chunks the way LevelDB's log writer does."""
    out = bytearray(FILE_HEADER.pack(IDENT, MAGIC, 0))
    for payload in payloads:
        rest, first = payload, True
        while True:
            room = BLOCK_SIZE - len(out) % BLOCK_SIZE
            if room < CHUNK_HEADER.size:
                out += bytes(room)
                continue
            piece, rest = rest[: room - CHUNK_HEADER.size], rest[room - CHUNK_HEADER.size :]
            last = not rest
            kind = (FULL if last else FIRST) if first else (LAST if last else MIDDLE)
            out += CHUNK_HEADER.pack(checksum(kind, piece), len(piece), kind) + piece
            first = False
            if last:
                break
    return bytes(out)


def chunk_kinds(raw: bytes) -> list[int]:
    """The type of every chunk of ``raw``, skipping block trailers."""
    kinds, pos = [], FILE_HEADER.size
    while pos < len(raw):
        room = BLOCK_SIZE - pos % BLOCK_SIZE
        if room < CHUNK_HEADER.size:
            pos += room
            continue
        _, length, kind = CHUNK_HEADER.unpack_from(raw, pos)
        kinds.append(kind)
        pos += CHUNK_HEADER.size + length
    return kinds


def split_payloads() -> list[bytes]:
    """Payloads that exercise every layout: a 3-byte block trailer, an empty FIRST chunk, 3-block records."""
    h, c = FILE_HEADER.size, CHUNK_HEADER.size
    return [
        b"a" * (BLOCK_SIZE - h - c - 3),  # fills block 0 but 3 bytes: the next chunk starts in block 1
        b"b" * (BLOCK_SIZE - c - c),  # leaves exactly one chunk header of room: an empty FIRST chunk
        bytes(range(256)) * 300,  # 76800 bytes: FIRST, MIDDLE, LAST
        b"",
        b"tail",
    ]


def test_reader_joins_chunks_across_blocks():
    payloads = split_payloads()
    raw = encode(payloads)
    assert chunk_kinds(raw) == [FULL, FULL, FIRST, MIDDLE, MIDDLE, LAST, FULL, FULL]
    assert list(iter_payloads(raw)) == payloads


def test_reader_rejects_damaged_files():
    raw = encode(split_payloads())
    with pytest.raises(WandbFileError, match="checksum"):
        list(iter_payloads(raw[:100] + bytes([raw[100] ^ 1]) + raw[101:]))
    with pytest.raises(WandbFileError):
        list(iter_payloads(raw[: BLOCK_SIZE + 100]))
    with pytest.raises(WandbFileError, match="header"):
        list(iter_payloads(b"LDB\x00" + raw[4:]))


def test_history_and_config_of_a_file_built_here(tmp_path):
    run = pb.Record()
    run.run.run_id = "abc"
    run.run.config.update.add(key="seed", value_json="42")
    row = pb.Record()
    row.history.item.add(nested_key=["train", "d_loss"], value_json="0.5")
    row.history.item.add(key="_step", value_json="0")
    row.history.item.add(key="big", value_json=json.dumps("x" * 70000))  # spans three blocks
    cfg = pb.Record()
    cfg.config.update.add(key="train", value_json='{"steps": 3}')
    path = tmp_path / "run-abc.wandb"
    path.write_bytes(encode([r.SerializeToString() for r in (run, row, cfg)]))

    assert [r.WhichOneof("record_type") for r in read_records(path)] == ["run", "history", "config"]
    assert history(path) == [{"train/d_loss": 0.5, "_step": 0, "big": "x" * 70000}]
    assert config(path) == {"seed": 42, "train": {"steps": 3}}


# --- the real CLI, offline -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def wandb_run(tmp_path_factory) -> tuple[Path, Path]:
    """Train with the CSV and W&B loggers through ``ganforge-train``; returns (run dir, .wandb file)."""
    tmp = tmp_path_factory.mktemp("wandb_offline")
    run_dir = tmp / "run"
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_CONFIG_DIR": str(tmp / "wandb-config"),
        "WANDB_CACHE_DIR": str(tmp / "wandb-cache"),
        "WANDB_DATA_DIR": str(tmp / "wandb-data"),
    }
    cli = Path(sys.executable).with_name("ganforge-train")
    proc = subprocess.run(
        [
            str(cli),
            f"train.steps={STEPS}",
            f"train.log_every={LOG_EVERY}",
            "train.sample_every=0",
            "logger=[csv,wandb]",
            "metrics.every=10",
            f"hydra.run.dir={run_dir}",
            *TINY,
        ],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    files = sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    return run_dir, files[0]


def d_loss_rows(path: Path) -> list[dict[str, Any]]:
    return [row for row in history(path) if "train/d_loss" in row]


@pytest.mark.slow
def test_history_has_every_logged_step(wandb_run):
    _, path = wandb_run
    rows = d_loss_rows(path)
    assert len(rows) >= STEPS // LOG_EVERY
    assert [row["trainer/g_step"] for row in rows] == list(range(LOG_EVERY, STEPS + 1, LOG_EVERY))


@pytest.mark.slow
def test_history_matches_the_csv_logger(wandb_run):
    run_dir, path = wandb_run
    with open(run_dir / "metrics.csv", newline="") as f:
        csv_rows = [r for r in csv.DictReader(f) if r.get("train/d_loss")]
    csv_curve = [(int(float(r["trainer/g_step"])), float(r["train/d_loss"])) for r in csv_rows]
    wandb_curve = [(row["trainer/g_step"], row["train/d_loss"]) for row in d_loss_rows(path)]
    assert [s for s, _ in wandb_curve] == [s for s, _ in csv_curve]
    assert [v for _, v in wandb_curve] == pytest.approx([v for _, v in csv_curve], abs=1e-6)


@pytest.mark.slow
def test_config_record_holds_the_run_config(wandb_run):
    _, path = wandb_run
    cfg = config(path)
    assert cfg["train"]["steps"] == STEPS
    assert cfg["train"]["log_every"] == LOG_EVERY
    assert cfg["train"]["sample_every"] == 0
    assert cfg["seed"] == 42
    assert cfg["loss"]["d_loss"]["_target_"] == "ganforge.losses.nonsaturating_d"


@pytest.mark.slow
def test_run_is_finished(wandb_run):
    _, path = wandb_run
    records = read_records(path)
    kinds = [r.WhichOneof("record_type") for r in records]
    assert kinds[0] == "header"
    assert "run" in kinds
    assert records[kinds.index("run")].run.project == "ganforge"
    assert kinds.count("exit") == 1
    exit_at = kinds.index("exit")
    assert records[exit_at].exit.exit_code == 0
    assert exit_at > max(i for i, k in enumerate(kinds) if k == "history")


@pytest.mark.slow
def test_summary_holds_the_best_value_of_each_metric(wandb_run):
    """val/* in the run summary (the runs table) is the best so far, not the last value."""
    _, path = wandb_run
    rows = [row for row in history(path) if "val/modes" in row]
    assert [row["trainer/g_step"] for row in rows] == [10, 20, 30]
    final = summary(path)
    assert final["val/modes"] == max(row["val/modes"] for row in rows)
    assert final["val/reverse_kl"] == min(row["val/reverse_kl"] for row in rows)
