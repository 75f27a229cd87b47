"""Where to go on reading the CDR file after it may have been rotated: decisions only, no I/O.

Reconciliation reads `Master.csv` a piece at a time and remembers where it stopped: the file's
identity (inode and device) and the byte offset after the last complete line, with a mark (a
digest of the bytes just before that offset) that tells the same file from one rewritten in place.
Between two passes logrotate may have moved the file:

- `create` mode renames Master.csv to Master.csv.1 (same inode) and Asterisk starts a new file:
  the rest of the old file is read from Master.csv.1, then the new one from its start;
- `copytruncate` mode copies Master.csv to Master.csv.1 and truncates Master.csv (same inode):
  rows written between the copy and the truncation are only in the copy, past our offset, so its
  tail is read, then Master.csv from its start. A truncated file may already have grown past our
  offset again: the mark, not the size, tells that it was rewritten.

If neither file continues what was read (rotated more than once since, or replaced), the rotated
file is the older of the two that remain and is read whole, then the current one: calls read twice
are stored once (the store is idempotent on Linkedid) and old ones are left out by the caller's
`since`. That holds when the current file is still ours by inode too: copytruncate keeps the inode
on every rotation, so after two of them Master.csv.1 holds only rows never read. (A file truncated
by hand beside a Master.csv.1 already read costs a second reading of it, nothing more.)

The first pass reads both files in the same order: a rotation just before the daemon's first
start (or its first after the position was lost) would otherwise hide the calls to recover.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Source(Enum):
    CURRENT = "current"  # Master.csv
    ROTATED = "rotated"  # Master.csv.1


@dataclass(frozen=True)
class Position:
    """Where the last pass stopped: after the last complete line it read."""

    inode: int
    device: int
    offset: int
    mark: str  # digest of the bytes just before `offset`; "" at offset 0


@dataclass(frozen=True)
class FileState:
    inode: int
    device: int
    size: int
    holds_mark: bool  # its bytes before the position's offset are the position's mark


@dataclass(frozen=True)
class Segment:
    """Read `source` (which must still be the file `file` describes) from byte `start` on."""

    source: Source
    file: FileState
    start: int


def plan(
    position: Position | None, current: FileState | None, rotated: FileState | None
) -> list[Segment]:
    """The files to read, in order, to go on from `position` (None: nothing read yet)."""
    fresh = [Segment(Source.CURRENT, current, 0)] if current else []
    older = [Segment(Source.ROTATED, rotated, 0)] if rotated else []
    if position is None:
        # the first pass: a rotation just before it left the latest calls in the rotated file
        return [*older, *fresh]

    def ours(state: FileState | None) -> bool:
        # the inode, not the device: an NFS remount, or another daemon's mount of the same
        # file, gives it another st_dev, and both files were read again whole at every pass
        # (the mark still tells a file that only reused the inode)
        return state is not None and state.inode == position.inode

    def continues(state: FileState | None) -> bool:
        return state is not None and state.size >= position.offset and state.holds_mark

    if ours(current) and continues(current):
        assert current is not None
        return [Segment(Source.CURRENT, current, position.offset)]
    if continues(rotated):  # create mode (our own file renamed) or copytruncate (its copy)
        assert rotated is not None
        return [Segment(Source.ROTATED, rotated, position.offset), *fresh]
    # neither continues: rotated more than once since (copytruncate keeps our inode on the
    # current file every time, and create mode may give a freed inode back to it), or replaced
    return [*older, *fresh]
