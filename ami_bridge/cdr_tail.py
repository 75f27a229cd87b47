"""Reads the rows a CDR file gained since a remembered position, a capped amount per pass.

The file is followed across logrotate's rotations as ami_bridge.cdr_follow decides. Only complete
rows are taken from the file Asterisk still writes (a last row without its newline is being
written: it is left for the next pass); a rotated file gets no more rows, so its last row counts
even unterminated, or the reader would wait on it forever.

A row is a CSV record, not a line: cdr_csv writes a field as it is between its quotes, and a
caller's name (set by a CNAM lookup, say) may hold a newline. A pass never ends inside one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ami_bridge.cdr_follow import FileState, Position, Source, plan

log = logging.getLogger(__name__)

MARK_BYTES = 64  # the bytes before a position that its mark digests
#: the most lines one row is joined from: a line torn by a write cut short (a full disk) leaves
#: a quote open, and costs the few rows after it instead of the rest of the file
ROW_LINES = 4
#: what a pass reads on into the new file when its budget ran out at the end of the rotated one
#: and the rotated file's rest is one call's rows: that call's other rows, a few hundred bytes
AFTER_ROTATION_BYTES = 64 * 1024


@dataclass(frozen=True)
class Tail:
    rows: list[bytes]  # CSV rows (a newline inside a quoted field kept), without their own
    position: Position | None  # where the next pass goes on
    caught_up: bool  # False: the cap stopped this pass, more is waiting
    settling: bool = False  # the file was just written: its last call's rows were left
    #: a file was there but could not be read (its rows wait until it can be): the time the
    #: position was kept must not move on (pbx.pbx_link.reconcile_missed's look back)
    unreadable: bool = False


#: logrotate's `compress` suffixes (compressext): a compressed file is not read (README)
COMPRESSED = (
    ".gz",
    ".bz2",
    ".xz",
    ".zst",
    ".lz4",
    ".lzma",
    ".lz",
    ".lzo",
    ".Z",
    ".br",
    ".zip",
    ".7z",
)


def rotated_path(path: Path) -> Path:
    """The file logrotate moved `path` to last: `Master.csv.1`, or with `dateext` (the default
    of CentOS's and so FreePBX's logrotate.conf) `Master.csv-20261203`, whatever its
    `dateformat` makes of the date: of the files beside `path` named after it, the one written
    last (a rename keeps the time of the last row; a copy is newer still), and of two written
    in the same tick (a file system that keeps whole seconds), `.1` before `.2`. Not the one
    holding our inode: after two create-mode rotations that is `Master.csv.2`, and reading its
    tail then the new file would skip `Master.csv.1` whole. `Master.csv.1` when there is none,
    or when the folder cannot be listed (a daemon may be allowed into it without reading it)."""
    found: list[tuple[float, int, str]] = []
    try:
        with os.scandir(path.parent) as entries:
            for entry in entries:
                rest = entry.name.removeprefix(path.name)
                if rest == entry.name or not (rest[:1] in (".", "-", "_") or rest[:1].isdigit()):
                    continue
                try:  # a file may go meanwhile (compressed, pruned): only it is left out
                    if rest.endswith(COMPRESSED) or not entry.is_file():
                        continue
                    written = entry.stat().st_mtime
                except OSError:
                    continue
                number = rest[1:]
                newer_first = -int(number) if rest[0] == "." and number.isdigit() else 0
                found.append((written, newer_first, entry.name))
    except OSError:
        found = []
    return path.with_name(max(found)[2] if found else path.name + ".1")


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest() if data else ""


def _mark(f: BinaryIO, offset: int) -> str:
    start = max(0, offset - MARK_BYTES)
    f.seek(start)
    return _digest(f.read(offset - start))


def _state(path: Path, position: Position | None, refused: list[Path]) -> FileState | None:
    """The file at `path` as the plan needs it; None when it is not there, or when it cannot
    be read (then also added to `refused`)."""
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
    except PermissionError as exc:
        # logrotate's `create` may make the new file one the daemon cannot read: the rotated
        # file's tail is still read; the rest waits until it can be (doctor names the fix)
        log.warning("CDR file %s cannot be read: %s", path, exc.strerror)
        refused.append(path)
        return None
    return FileState(stat.st_ino, stat.st_dev, stat.st_size, holds_mark)


def _rows(data: bytes, whole: bool) -> tuple[list[bytes], int]:
    """The CSV rows of `data` (which starts at a row's start) and how many bytes they span. A
    newline inside quotes does not end a row, unless the row has ROW_LINES lines already. A last
    row without its newline, or still inside quotes, is taken only if `whole`."""
    rows: list[bytes] = []
    end = start = 0
    lines = 0
    while (newline := data.find(b"\n", end)) >= 0:
        end = newline + 1
        lines += 1
        if lines < ROW_LINES and data.count(b'"', start, newline) % 2:
            continue
        rows.append(data[start:newline])
        start, lines = end, 0
    if whole and start < len(data):
        rows.append(data[start:].removesuffix(b"\n"))
        start = len(data)
    return rows, start


def read_tail(
    path: Path,
    position: Position | None,
    max_bytes: int,
    keep: Callable[[list[bytes]], int],
    settle: float = 0.0,
) -> Tail:
    """The complete rows after `position` in `path` (or its rotated file, then `path`), about
    `max_bytes` of them: a pass ends at a row's end. `keep(rows)` says how many of them to
    take when the last of them may be followed by more of the same call: when the cap stops a
    pass (then at least one is taken), when it would stop at the end of the rotated file (a
    rotation may split a call's rows: if they are all the rotated file had left, the pass reads
    on into the new file instead), and when `path` was written to less than `settle` seconds
    ago (Asterisk writes a call's rows one by one, as each of its channels ends; if that call's
    rows began in the rotated file, nothing of the pass is taken). The rest is read again by
    the next pass.
    """
    began = position
    refused: list[Path] = []
    rotated_file = rotated_path(path)
    current, rotated = (
        _state(path, position, refused),
        _state(rotated_file, position, refused),
    )
    segments = plan(position, current, rotated)
    rows: list[bytes] = []
    budget = max_bytes
    settling = False
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        file = path if segment.source is Source.CURRENT else rotated_file
        try:
            opened = file.open("rb")
        except FileNotFoundError:  # gone since the plan (gzipped, renamed): plan again
            return Tail([], began, caught_up=False)
        with opened as f:
            stat = os.fstat(f.fileno())
            if (stat.st_ino, stat.st_dev) != (segment.file.inode, segment.file.device):
                # rotated meanwhile: plan again, from where the pass began (rows read from the
                # rotated file before may end in a call that goes on in the file that changed)
                return Tail([], began, caught_up=False)
            # the mark is taken from the bytes read, not read again after them: a copytruncate
            # in between would give the position a mark of the truncated file
            before_start = max(0, segment.start - MARK_BYTES)
            f.seek(before_start)
            before = f.read(segment.start - before_start)
            if len(before) < segment.start - before_start:
                return Tail([], began, caught_up=False)  # truncated meanwhile: the same
            data = f.read(budget)
            if len(data) == budget:  # the cap fell inside a row, perhaps: finish it
                quote_open = data.count(b'"') % 2 == 1
                joined = 0
                while (not data.endswith(b"\n") or quote_open) and joined < ROW_LINES:
                    line = f.readline()
                    if not line:
                        break
                    data += line
                    quote_open ^= line.count(b'"') % 2 == 1
                    joined += 1
            more = f.read(1) != b""
            taken, end = _rows(data, whole=not (more or last))
            # the time of the file's last write, taken after the read: a row written since is
            # not in `data`, and one written before makes the file this recent (either way
            # round: a file server's clock a little ahead; far off, the file is not held)
            written = os.fstat(f.fileno()).st_mtime
            recent = last and not more and abs(time.time() - written) < settle
            if recent and rows and keep(rows + taken) < len(rows):
                # the last call's rows began in the rotated file read before this one: the
                # pass is left whole, to be read again from where it began
                return Tail([], began, caught_up=True, settling=True)
            # the budget spent at the end of a file the pass goes on from (the rotated one)
            at_rotation = not (more or last) and end >= budget
            if (more or recent or at_rotation) and taken:
                kept = keep(taken) if recent or at_rotation else keep(taken) or len(taken)
                if at_rotation and not kept:
                    at_rotation = False  # one call left here: read on into the new file
                else:
                    settling = recent
                    end = sum(len(row) + 1 for row in taken[:kept])
                    taken = taken[:kept]
            rows += taken
            if end or segment.start:
                offset = segment.start + end
                mark = _digest((before + data[:end])[-MARK_BYTES:])
                position = Position(segment.file.inode, segment.file.device, offset, mark)
            # else: nothing read of a file from its start. A position at offset 0 would "continue"
            # any file of that inode, also one a copytruncate later emptied after moving its
            # rows to the copy, which would then never be read: where the pass stood is kept
        budget -= end
        if more or at_rotation:
            return Tail(rows, position, caught_up=False, unreadable=bool(refused))
        budget = max(budget, AFTER_ROTATION_BYTES)
    return Tail(rows, position, caught_up=True, settling=settling, unreadable=bool(refused))
