"""Reads the lines a CDR file gained since a remembered position, a capped amount per pass.

The file is followed across logrotate's rotations as ami_bridge.cdr_follow decides. Only complete
lines are taken from the file Asterisk still writes (a last line without its newline is being
written: it is left for the next pass); a rotated file gets no more rows, so its last line counts
even unterminated, or the reader would wait on it forever.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ami_bridge.cdr_follow import FileState, Position, Source, plan

MARK_BYTES = 64  # the bytes before a position that its mark digests


@dataclass(frozen=True)
class Tail:
    lines: list[bytes]  # without their newlines
    position: Position | None  # where the next pass goes on
    caught_up: bool  # False: the cap stopped this pass, more is waiting


def rotated_path(path: Path) -> Path:
    return path.with_name(path.name + ".1")


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest() if data else ""


def _mark(f: BinaryIO, offset: int) -> str:
    start = max(0, offset - MARK_BYTES)
    f.seek(start)
    return _digest(f.read(offset - start))


def _state(path: Path, position: Position | None) -> FileState | None:
    try:
        with path.open("rb") as f:
            stat = os.fstat(f.fileno())
            holds_mark = (
                position is not None
                and stat.st_size >= position.offset
                and _mark(f, position.offset) == position.mark
            )
    except FileNotFoundError:
        return None
    return FileState(stat.st_ino, stat.st_dev, stat.st_size, holds_mark)


def read_tail(
    path: Path,
    position: Position | None,
    max_bytes: int,
    keep: Callable[[list[bytes]], int],
) -> Tail:
    """The complete lines after `position` in `path` (or its rotated file, then `path`), about
    `max_bytes` of them: a pass ends at a line boundary. When the cap stops a pass, `keep(lines)`
    says how many of them to take (at least one); the rest is read again by the next pass.
    """
    segments = plan(position, _state(path, position), _state(rotated_path(path), position))
    lines: list[bytes] = []
    budget = max_bytes
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        file = path if segment.source is Source.CURRENT else rotated_path(path)
        with file.open("rb") as f:
            stat = os.fstat(f.fileno())
            if (stat.st_ino, stat.st_dev) != (segment.file.inode, segment.file.device):
                return Tail(lines, position, caught_up=False)  # rotated meanwhile: plan again
            # the mark is taken from the bytes read, not read again after them: a copytruncate
            # in between would give the position a mark of the truncated file
            before_start = max(0, segment.start - MARK_BYTES)
            f.seek(before_start)
            before = f.read(segment.start - before_start)
            if len(before) < segment.start - before_start:
                return Tail(lines, position, caught_up=False)  # truncated meanwhile: plan again
            data = f.read(budget)
            if len(data) == budget and not data.endswith(b"\n"):
                data += f.readline()  # the cap fell inside a line: finish it
            more = f.read(1) != b""
            end = len(data) if not (more or last) else data.rfind(b"\n") + 1
            taken = data[:end].split(b"\n")
            if taken[-1] == b"":
                taken.pop()
            if more and taken:
                kept = max(1, keep(taken))
                end = sum(len(line) + 1 for line in taken[:kept])
                taken = taken[:kept]
            lines += taken
            offset = segment.start + end
            mark = _digest((before + data[:end])[-MARK_BYTES:])
            position = Position(segment.file.inode, segment.file.device, offset, mark)
        budget -= end
        if more or budget <= 0:
            return Tail(lines, position, caught_up=False)
    return Tail(lines, position, caught_up=True)
