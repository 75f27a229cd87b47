"""Where reconciliation goes on in a CDR file that logrotate may have moved: the decision alone,
from hand-made file states (tests/unit/test_cdr_rotation.py runs it on real files)."""

from __future__ import annotations

from ami_bridge.cdr_follow import FileState, Position, Segment, Source, plan

AT = Position(inode=7, device=1, offset=500, mark="m")


def state(inode: int, size: int, holds_mark: bool = False) -> FileState:
    return FileState(inode=inode, device=1, size=size, holds_mark=holds_mark)


def test_nothing_read_yet_reads_the_rotated_file_then_the_current_one_from_their_starts() -> None:
    current, rotated = state(7, 900), state(6, 800)
    assert plan(None, current, rotated) == [
        Segment(Source.ROTATED, rotated, 0),
        Segment(Source.CURRENT, current, 0),
    ]
    assert plan(None, current, None) == [Segment(Source.CURRENT, current, 0)]
    assert plan(None, None, rotated) == [Segment(Source.ROTATED, rotated, 0)]
    assert plan(None, None, None) == []


def test_the_same_file_grown_goes_on_from_the_offset() -> None:
    current = state(7, 900, holds_mark=True)
    assert plan(AT, current, None) == [Segment(Source.CURRENT, current, 500)]


def test_create_mode_finishes_the_renamed_file_then_starts_the_new_one() -> None:
    current, rotated = state(8, 120), state(7, 650, holds_mark=True)
    assert plan(AT, current, rotated) == [
        Segment(Source.ROTATED, rotated, 500),
        Segment(Source.CURRENT, current, 0),
    ]
    # between the rename and Asterisk's next row there is no Master.csv
    assert plan(AT, None, rotated) == [Segment(Source.ROTATED, rotated, 500)]


def test_copytruncate_reads_the_copys_tail_then_the_truncated_file_from_its_start() -> None:
    copy = state(9, 650, holds_mark=True)
    for truncated in (state(7, 120), state(7, 900)):  # still short, or grown past the offset
        assert plan(AT, truncated, copy) == [
            Segment(Source.ROTATED, copy, 500),
            Segment(Source.CURRENT, truncated, 0),
        ]


def test_a_file_rewritten_in_place_with_no_copy_starts_again() -> None:
    current = state(7, 900)  # same inode, but its bytes before the offset changed
    assert plan(AT, current, None) == [Segment(Source.CURRENT, current, 0)]


def test_copytruncate_twice_since_the_last_pass_reads_the_newer_copy_whole() -> None:
    """The current file keeps our inode through every copytruncate: after two, Master.csv.1 is
    the copy made at the second one and holds only rows never read (the first copy, with the
    rest of ours, is Master.csv.2 or gone). The same when create mode gives a freed inode back."""
    current, copy = state(7, 900), state(5, 4000)
    assert plan(AT, current, copy) == [
        Segment(Source.ROTATED, copy, 0),
        Segment(Source.CURRENT, current, 0),
    ]


def test_a_file_gone_reads_the_newer_rotated_file_whole_then_the_current() -> None:
    """Rotated twice since the last pass: ours is Master.csv.2 (or deleted); Master.csv.1 came
    after it, so all of it is new."""
    current, rotated = state(9, 100), state(8, 4000)
    assert plan(AT, current, rotated) == [
        Segment(Source.ROTATED, rotated, 0),
        Segment(Source.CURRENT, current, 0),
    ]
    assert plan(AT, state(9, 100), None) == [Segment(Source.CURRENT, state(9, 100), 0)]


def test_the_same_file_on_another_device_number_goes_on_from_the_offset() -> None:
    """An NFS remount (or another daemon's mount of the file) changes st_dev: the file was
    taken for another one, and both files were read again whole at every pass."""
    remounted = FileState(inode=7, device=2, size=900, holds_mark=True)
    assert plan(AT, remounted, None) == [Segment(Source.CURRENT, remounted, 500)]
