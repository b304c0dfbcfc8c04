"""W&B offline logging: the real CLI's run-*.wandb file holds the curves on the generator-step axis, the
config, W&B's own best/last summaries and a finished run; a crashed and resumed run is one W&B run whose
segments continue one history."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import wandb
from wandb.proto import wandb_internal_pb2 as pb

from helpers import train_run
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
def wandb_run(tmp_path_factory) -> tuple[Path, Path, str]:
    """Train with CSV and W&B loggers through ``ganforge-train``: (run dir, .wandb file, stderr)."""
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
    return run_dir, files[0], proc.stderr


def d_loss_rows(path: Path) -> list[dict[str, Any]]:
    return [row for row in history(path) if "train/d_loss" in row]


@pytest.mark.slow
def test_history_has_every_logged_step(wandb_run):
    _, path, _ = wandb_run
    rows = d_loss_rows(path)
    assert len(rows) >= STEPS // LOG_EVERY
    assert [row["trainer/g_step"] for row in rows] == list(range(LOG_EVERY, STEPS + 1, LOG_EVERY))


@pytest.mark.slow
def test_history_matches_the_csv_logger(wandb_run):
    run_dir, path, _ = wandb_run
    with open(run_dir / "metrics.csv", newline="") as f:
        csv_rows = [r for r in csv.DictReader(f) if r.get("train/d_loss")]
    csv_curve = [(int(float(r["trainer/g_step"])), float(r["train/d_loss"])) for r in csv_rows]
    wandb_curve = [(row["trainer/g_step"], row["train/d_loss"]) for row in d_loss_rows(path)]
    assert [s for s, _ in wandb_curve] == [s for s, _ in csv_curve]
    assert [v for _, v in wandb_curve] == pytest.approx([v for _, v in csv_curve], abs=1e-6)


@pytest.mark.slow
def test_config_record_holds_the_run_config(wandb_run):
    _, path, _ = wandb_run
    cfg = config(path)
    assert cfg["train"]["steps"] == STEPS
    assert cfg["train"]["log_every"] == LOG_EVERY
    assert cfg["train"]["sample_every"] == 0
    assert cfg["seed"] == 42
    assert cfg["loss"]["d_loss"]["_target_"] == "ganforge.losses.nonsaturating_d"


@pytest.mark.slow
def test_run_is_finished(wandb_run):
    _, path, _ = wandb_run
    records = read_records(path)
    kinds = [r.WhichOneof("record_type") for r in records]
    assert kinds[0] == "header"
    assert "run" in kinds
    run = records[kinds.index("run")].run
    assert run.project == "ganforge"
    task_name = config(path)["task_name"]  # named by task_name and a short id (one run dir, one id)
    assert run.display_name == f"{task_name}-{run.run_id[:6]}" and len(run.run_id) == 16
    assert kinds.count("exit") == 1
    exit_at = kinds.index("exit")
    assert records[exit_at].exit.exit_code == 0
    assert exit_at > max(i for i, k in enumerate(kinds) if k == "history")


@pytest.mark.slow
def test_every_row_is_at_its_generator_step(wandb_run):
    """W&B's own step is the generator step: rows of one step (losses, metrics, samples) are one row."""
    _, path, _ = wandb_run
    rows = history(path)
    assert [row["_step"] for row in rows] == [row["trainer/g_step"] for row in rows]
    assert [row["_step"] for row in rows] == list(range(LOG_EVERY, STEPS + 1, LOG_EVERY))
    assert "trainer/global_step" not in {key for row in rows for key in row}


def metric_records(path: Path) -> dict[str, Any]:
    """The define_metric records of a .wandb file, by metric name or glob."""
    return {
        r.metric.name or r.metric.glob_name: r.metric
        for r in read_records(path)
        if r.WhichOneof("record_type") == "metric"
    }


@pytest.mark.slow
def test_metrics_are_declared_on_the_generator_step_axis(wandb_run):
    _, path, _ = wandb_run
    declared = metric_records(path)
    assert declared["trainer/g_step"].step_metric == ""
    for name in ("train/*", "val/*", "val/modes", "val/hq_frac", "val/reverse_kl"):
        assert declared[name].step_metric == "trainer/g_step", name
    # each val/* keeps its best value (the better direction, from directions.py) and its last value
    for name, best in (("val/modes", "max"), ("val/hq_frac", "max"), ("val/reverse_kl", "min")):
        summary_kind = declared[name].summary
        assert getattr(summary_kind, best) and summary_kind.last, name
        assert not getattr(summary_kind, "min" if best == "max" else "max"), name
    assert not any(r.metric.step_metric == "trainer/global_step" for r in read_records(path) if r.metric.name)


@pytest.mark.slow
def test_summary_holds_the_best_and_the_last_value_of_each_metric(wandb_run):
    """val/* in the run summary (the runs table): W&B's own best so far and the last value."""
    _, path, _ = wandb_run
    rows = [row for row in history(path) if "val/modes" in row]
    assert [row["trainer/g_step"] for row in rows] == [10, 20, 30]
    final = summary(path)
    assert final["val/modes"] == {"max": max(r["val/modes"] for r in rows), "last": rows[-1]["val/modes"]}
    assert final["val/reverse_kl"] == {
        "min": min(r["val/reverse_kl"] for r in rows),
        "last": rows[-1]["val/reverse_kl"],
    }


@pytest.mark.slow
def test_no_anonymous_setting_warning(wandb_run):
    _, _, stderr = wandb_run
    assert "wandb" in stderr  # W&B did print its offline notice: its warnings would show here
    assert "anonymous" not in stderr


# --- a crashed run, resumed: two offline segments of one W&B run -------------------------------
RESUME = (
    *TINY,
    "metrics=default",
    "logger=[csv,wandb]",
    "train.steps=20",
    "train.log_every=2",
    "train.ckpt_every=5",
    "train.steps_per_batch=1",  # the crash callback sees every step
)
CRASH_AT, CKPT_STEP = 14, 10  # the crash comes after step 14 was logged and step 10 checkpointed


@pytest.fixture(scope="module")
def resumed_segments(tmp_path_factory) -> tuple[Path, list[Path]]:
    """Crash at generator step 14, resume with ``ckpt_path=auto``: (run dir, .wandb files by start time)."""
    from ganforge.process import finish_wandb

    out = tmp_path_factory.mktemp("wandb_resume") / "run"
    with pytest.raises(RuntimeError, match="injected crash"):
        train_run(
            out, *RESUME, "metrics.every=5", f"+callbacks.crash={{_target_:helpers.CrashAt,step:{CRASH_AT}}}"
        )
    finish_wandb(exit_code=1)  # what ganforge-train does when training raises
    try:
        summary = train_run(out, *RESUME, "metrics.every=5", "ckpt_path=auto")
    finally:
        finish_wandb()
        wandb.teardown()  # stops this process's W&B service: the files are complete once it returns
    assert summary["status"] == "finished" and summary["resumed_from"]
    files = list(out.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 2, files
    return out, sorted(files, key=lambda f: run_record(f).start_time.ToMicroseconds())


def run_record(path: Path) -> pb.RunRecord:
    return next(r.run for r in read_records(path) if r.WhichOneof("record_type") == "run")


@pytest.mark.slow
def test_resumed_run_is_one_wandb_run(resumed_segments):
    from ganforge.resolvers import wandb_id

    out, (first, second) = resumed_segments
    assert run_record(first).run_id == run_record(second).run_id == wandb_id(str(out))
    exits = [
        next(r.exit.exit_code for r in read_records(f) if r.WhichOneof("record_type") == "exit")
        for f in (first, second)
    ]
    assert exits == [1, 0]


@pytest.mark.slow
def test_resumed_history_continues_the_generator_step_axis(resumed_segments):
    """What ``wandb sync`` uploads, segment after segment: one history along ``trainer/g_step``."""
    _, (first, second) = resumed_segments
    rows = {path: [row for row in history(path) if "train/d_loss" in row] for path in (first, second)}
    for path_rows in rows.values():
        assert [row["_step"] for row in path_rows] == [row["trainer/g_step"] for row in path_rows]
    assert [row["_step"] for row in rows[first]] == list(range(2, CRASH_AT + 1, 2))
    # the second segment starts after the checkpoint, not at 0: steps 12 and 14 were logged before the
    # crash and are logged again with the same values (the resume is exact), then it goes on to the end
    assert [row["_step"] for row in rows[second]] == list(range(CKPT_STEP + 2, 21, 2))
    replayed = {row["_step"]: row["train/d_loss"] for row in rows[second]}
    overlap = [row for row in rows[first] if row["_step"] in replayed]
    assert [row["_step"] for row in overlap] == [12, 14]
    for row in overlap:
        assert replayed[row["_step"]] == pytest.approx(row["train/d_loss"], rel=1e-6)
    steps = sorted({row["_step"] for path_rows in rows.values() for row in path_rows})
    assert steps == list(range(2, 21, 2))
    val_steps = [
        row["trainer/g_step"] for path in (first, second) for row in history(path) if "val/modes" in row
    ]
    assert val_steps == [5, 10, 15, 20]


def test_run_id_of_each_start(tmp_path):
    """Resumes continue the dir's latest W&B run; a start from scratch over a run gets a new id."""
    from ganforge.loggers import wandb_run_id

    assert wandb_run_id(tmp_path, "abc", resuming=False) == "abc"  # a new run dir
    assert wandb_run_id(tmp_path, "abc", resuming=True) == "abc"  # resumed from another dir's checkpoint
    (tmp_path / "wandb" / "offline-run-20260101_120000-abc").mkdir(parents=True)
    (tmp_path / "wandb" / "latest-run").mkdir()
    assert wandb_run_id(tmp_path, "abc", resuming=True) == "abc"
    again = wandb_run_id(tmp_path, "abc", resuming=False)
    assert again not in ("abc", None) and len(again) == 16
    (tmp_path / "wandb" / f"run-20260102_080000-{again}").mkdir()  # that start ran online
    assert wandb_run_id(tmp_path, "abc", resuming=True) == again  # the latest start, by its time
    third = wandb_run_id(tmp_path, "abc", resuming=False)
    assert third not in ("abc", again)
    assert wandb_run_id(tmp_path, None, resuming=True) is None  # id: null lets W&B choose


@pytest.mark.slow
def test_overwrite_starts_a_new_wandb_run(tmp_path):
    from ganforge.process import finish_wandb
    from ganforge.resolvers import wandb_id

    out = tmp_path / "run"
    tiny = (*TINY, "logger=[csv,wandb]", "train.steps=2")
    try:
        train_run(out, *tiny)
        finish_wandb()
        train_run(out, *tiny, "train.overwrite=true")
        finish_wandb()
        train_run(out, *tiny[:-1], "train.steps=4", "ckpt_path=auto")
    finally:
        finish_wandb()
        wandb.teardown()
    files = sorted(out.glob("wandb/offline-run-*/run-*.wandb"))
    starts = sorted((run_record(f).start_time.ToMicroseconds(), run_record(f).run_id) for f in files)
    first, second, third = (run_id for _, run_id in starts)
    assert first == wandb_id(str(out)) != second == third
