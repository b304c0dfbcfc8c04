"""Read the records of a W&B ``run-*.wandb`` file (what an offline run writes) without the W&B service.

The file is a LevelDB-style log (https://github.com/google/leveldb/blob/main/doc/log_format.md):

    file   := header block*
    header := ident ":W&B" (4 bytes), magic 0xBEE1 (uint16 LE), version (uint8)
    block  := chunk* padding?         32 KiB, counted from the start of the file (the header sits in block 0)
    chunk  := checksum (uint32 LE), length (uint16 LE), type (uint8), data[length]
    type   := FULL 1 | FIRST 2 | MIDDLE 3 | LAST 4

A record is the data of one FULL chunk, or of a FIRST chunk, any MIDDLE chunks and a LAST chunk joined;
it is a serialized ``wandb_internal_pb2.Record``. A chunk never crosses a block boundary: a block tail
shorter than a chunk header is zero padding. In version 0 files the checksum is the CRC-32 (zlib's) of
the type byte followed by the data.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

FILE_HEADER = struct.Struct("<4sHB")
CHUNK_HEADER = struct.Struct("<IHB")
IDENT = b":W&B"
MAGIC = 0xBEE1
BLOCK_SIZE = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


class WandbFileError(ValueError):
    """The file is not a well-formed W&B log."""


def checksum(kind: int, data: bytes) -> int:
    """The chunk checksum of a version 0 file: CRC-32 of the type byte, then the data."""
    return zlib.crc32(data, zlib.crc32(bytes([kind])))


def iter_payloads(raw: bytes) -> Iterator[bytes]:
    """The serialized records in ``raw`` (a whole .wandb file), in order."""
    if len(raw) < FILE_HEADER.size:
        raise WandbFileError("shorter than the file header")
    ident, magic, version = FILE_HEADER.unpack_from(raw)
    if ident != IDENT or magic != MAGIC:
        raise WandbFileError(f"bad file header: ident {ident!r}, magic {magic:#x}")
    pos = FILE_HEADER.size
    pending: bytearray | None = None  # the parts of a record split over chunks
    while pos < len(raw):
        room = BLOCK_SIZE - pos % BLOCK_SIZE
        if room < CHUNK_HEADER.size:  # block trailer
            pos += room
            continue
        if pos + CHUNK_HEADER.size > len(raw):
            raise WandbFileError(f"truncated chunk header at byte {pos}")
        crc, length, kind = CHUNK_HEADER.unpack_from(raw, pos)
        start, end = pos + CHUNK_HEADER.size, pos + CHUNK_HEADER.size + length
        if length > room - CHUNK_HEADER.size or end > len(raw):
            raise WandbFileError(f"chunk at byte {pos} runs past its block or the file")
        data = raw[start:end]
        if version == 0 and crc != checksum(kind, data):
            raise WandbFileError(f"checksum mismatch in the chunk at byte {pos}")
        if kind == FULL:
            if pending is not None:
                raise WandbFileError(f"FULL chunk inside a split record at byte {pos}")
            yield data
        elif kind == FIRST:
            if pending is not None:
                raise WandbFileError(f"FIRST chunk inside a split record at byte {pos}")
            pending = bytearray(data)
        elif kind in (MIDDLE, LAST):
            if pending is None:
                raise WandbFileError(f"chunk of type {kind} without a FIRST at byte {pos}")
            pending += data
            if kind == LAST:
                yield bytes(pending)
                pending = None
        else:
            raise WandbFileError(f"unknown chunk type {kind} at byte {pos}")
        pos = end
    if pending is not None:
        raise WandbFileError("the file ends inside a split record")


def read_records(path: str | Path) -> list[pb.Record]:
    """Every record of the .wandb file at ``path``."""
    records = []
    for payload in iter_payloads(Path(path).read_bytes()):
        record = pb.Record()
        record.ParseFromString(payload)
        records.append(record)
    return records


def item_key(item: Any) -> str:
    """The metric name of a history, summary or config item: its ``nested_key`` joined by '/', or ``key``."""
    return "/".join(item.nested_key) if len(item.nested_key) else item.key


def history(path: str | Path) -> list[dict[str, Any]]:
    """One dict per history record of the file (a ``wandb.log`` row): metric name → decoded value."""
    return [
        {item_key(item): json.loads(item.value_json) for item in record.history.item}
        for record in read_records(path)
        if record.WhichOneof("record_type") == "history"
    ]


def config(path: str | Path) -> dict[str, Any]:
    """The run config: the updates of the run record and of every config record, applied in order."""
    out: dict[str, Any] = {}
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        if kind not in ("run", "config"):
            continue
        for item in (record.run.config if kind == "run" else record.config).update:
            out[item_key(item)] = json.loads(item.value_json)
    return out


def summary(path: str | Path) -> dict[str, Any]:
    """The run summary: the updates of every summary record, applied in order (last value wins)."""
    out: dict[str, Any] = {}
    for record in read_records(path):
        if record.WhichOneof("record_type") == "summary":
            for item in record.summary.update:
                out[item_key(item)] = json.loads(item.value_json)
    return out
