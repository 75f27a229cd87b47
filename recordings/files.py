"""Recording files: where a stored name may point, and the conversion browsers need.

MixMonitor writes 8 kHz 16-bit WAV (16 KB per second); browsers and phones play MP3 or Ogg Opus
at a tenth of that. Everything here blocks (pydub runs ffmpeg), so callers run it in a thread.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pydub import AudioSegment
from pydub.exceptions import CouldntDecodeError, CouldntEncodeError

from pbx.job_pool import JobFailed

WAVEFORM_BARS = 120


@dataclass(frozen=True)
class Format:
    suffix: str
    container: str  # ffmpeg's (and pydub's) name of it
    encode: tuple[str, ...]  # ffmpeg's output options


# 16 kHz mono is beyond what a phone line carries
FORMATS = {
    "mp3": Format(".mp3", "mp3", ("-b:a", "24k", "-ac", "1", "-ar", "16000")),
    "opus": Format(".ogg", "ogg", ("-c:a", "libopus", "-b:a", "16k", "-ac", "1")),
}
#: a WAV this small holds no audio, only its header: MixMonitor's file of a call that was
#: never bridged (one whose header Asterisk had no time to finish is larger, and is kept)
EMPTY_WAV_BYTES = 64
#: what ffmpeg may take, beyond a second per FFMPEG_SPEED seconds of audio: a hung one (a stalled
#: network mount, a decoder stuck on a bad file) must not hold the only worker for ever
FFMPEG_SECONDS = 60.0
FFMPEG_SPEED = 4.0
#: the check decode's rate: a millisecond is one sample, and an hour's check is 7 MB, not 115
CHECK_RATE = 1000


# an unfinished conversion (convert's `partial`): never a recording's name (recording_path)
_PARTIAL = re.compile(
    rf"^\..+\.[0-9a-f]{{8}}({'|'.join(re.escape(f.suffix) for f in FORMATS.values())})$"
)


class ConversionFailed(JobFailed):
    """The recording could not be converted; `transient`: for a reason that passes (a full
    disk), so it is tried again later rather than given up on (pbx.job_pool)."""


class NoAudio(ConversionFailed):
    """The WAV is its header alone: there is nothing to keep (the worker drops it)."""


@dataclass(frozen=True)
class Converted:
    path: Path
    seconds: float
    peaks: list[int]  # WAVEFORM_BARS loudness values, 0..100 of the loudest


def recording_path(folder: Path, name: str) -> Path | None:
    """The file `name` inside `folder`, or None when the name tries to leave it."""
    if not name or name != Path(name).name or name.startswith("."):
        return None
    root = folder.resolve()
    path = (root / name).resolve()
    return path if path.parent == root else None


def waveform(audio: AudioSegment, bars: int = WAVEFORM_BARS) -> list[int]:
    """The loudest sample of each of `bars` slices, scaled so the loudest slice is 100."""
    length = len(audio)  # milliseconds
    if length == 0:
        return []
    step = max(1, math.ceil(length / bars))
    loudest = [int(audio[start : start + step].max) for start in range(0, length, step)]
    top = max(loudest) or 1
    return [round(100 * value / top) for value in loudest]


def _sync(path: Path) -> None:
    """fsync a file, or a folder (its entries: a rename into it)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def converted_beside(source: Path, first: str | None = None) -> tuple[Path, str] | None:
    """The file convert() made of the recording `source` beside it, and its container, of any
    format (recordings.format may have changed since), `first` looked for first; None when there
    is none, or the folder cannot be looked at (what reads the file says what is wrong)."""
    kinds = list(FORMATS.values())
    if first is not None:
        kinds.sort(key=lambda kind: kind is not FORMATS[first])
    for kind in kinds:
        converted = source.with_suffix(kind.suffix)
        with contextlib.suppress(OSError):
            if converted.is_file():
                return converted, kind.container
    return None


def _read_back(target: Path, audio_format: str) -> Converted:
    try:
        audio = AudioSegment.from_file(target, format=audio_format)
    except (OSError, CouldntDecodeError, IndexError) as exc:
        raise ConversionFailed(
            f"{target.name}: the source is gone and this does not decode"
        ) from exc
    return Converted(target, len(audio) / 1000, waveform(audio))


def _ffmpeg(arguments: list[str], limit: float) -> bytes:
    """Run ffmpeg (pydub's, AudioSegment.converter) with `arguments`; what it wrote to its
    standard output. Its own error line, or running past `limit` seconds, fails the file."""
    command = [AudioSegment.converter, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    try:
        done = subprocess.run([*command, *arguments], capture_output=True, timeout=limit)
    except subprocess.TimeoutExpired:
        raise CouldntEncodeError(f"ffmpeg did not finish in {limit:.0f} s") from None
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip()
        raise CouldntEncodeError(said or f"ffmpeg exited with {done.returncode}")
    return done.stdout


def stale_partials(folder: Path, older_than: float) -> list[Path]:
    """Unfinished conversions a worker left when it was killed, last written before
    `older_than` (time.time()): a conversion lasts seconds."""
    stale = []
    for path in folder.glob(".*"):
        try:
            if _PARTIAL.match(path.name) and path.stat().st_mtime < older_than:
                stale.append(path)
        except OSError:  # gone meanwhile
            continue
    return stale


def convert(source: Path, to: str) -> Converted:
    """Write the recording as `to` beside `source` and check it decodes to the same length.

    The source is left alone: the caller deletes it once the call points at the new file, so
    the new file is on disk (fsync'd, its name too) before this returns: renamed into place
    without, a power cut could leave it empty after the source was deleted. A source already
    gone beside its converted file (the call's row lost its last commit in that power cut:
    SQLite's synchronous=NORMAL, or a restore from a backup older than the conversion) is that
    file, read back; also when it is of another format than `to` (recordings.format changed
    since it was written).
    """
    kind = FORMATS[to]
    target = source.with_suffix(kind.suffix)
    if not source.exists() and (found := converted_beside(source, first=to)) is not None:
        return _read_back(*found)
    # a name of its own: two daemons on one folder never write into the same unfinished file
    partial = source.with_name(f".{source.stem}.{secrets.token_hex(4)}{kind.suffix}")
    try:
        audio = AudioSegment.from_file(source)
        if len(audio) == 0:
            if source.stat().st_size <= EMPTY_WAV_BYTES:
                raise NoAudio(f"{source.name}: no audio in the file, only its header")
            raise ConversionFailed(f"{source.name}: no audio in the file")
        limit = FFMPEG_SECONDS + len(audio) / 1000 / FFMPEG_SPEED
        # ffmpeg from file to file: pydub's export copied the whole WAV into the temporary
        # folder first, and left both its temporary files there whenever ffmpeg failed
        _ffmpeg(["-i", str(source), "-f", kind.container, *kind.encode, str(partial)], limit)
        check = _ffmpeg(
            ["-i", str(partial), "-f", "s16le", "-ac", "1", "-ar", str(CHECK_RATE), "-"], limit
        )
        decoded_ms = len(check) // 2 * 1000 // CHECK_RATE
        if abs(decoded_ms - len(audio)) > max(250, len(audio) // 50):
            raise ConversionFailed(
                f"{source.name}: converted audio lasts {decoded_ms} ms instead of {len(audio)} ms"
            )
        _sync(partial)
        os.replace(partial, target)
        _sync(target.parent)
    except (OSError, CouldntDecodeError, CouldntEncodeError, IndexError) as exc:
        # ffmpeg's banner is long; its last line says what went wrong
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        # the disk full, whether Python or ffmpeg found it, or ffmpeg could not start for want
        # of memory or processes for a moment: waited out, not counted against the file
        passing = getattr(exc, "errno", None) in (
            errno.ENOSPC,
            errno.EDQUOT,
            errno.ENOMEM,
            errno.EAGAIN,
        )
        passing = passing or "No space left on device" in str(exc)
        raise ConversionFailed(f"{source.name}: {reason}", transient=passing) from exc
    finally:
        partial.unlink(missing_ok=True)
    return Converted(target, len(audio) / 1000, waveform(audio))
