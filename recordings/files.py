"""Recording files: where a stored name may point, and the conversion browsers need.

MixMonitor writes 8 kHz 16-bit WAV (16 KB per second); browsers and phones play MP3 or Ogg Opus
at a tenth of that. Everything here blocks (pydub runs ffmpeg), so callers run it in a thread.
"""

from __future__ import annotations

import errno
import math
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from pydub import AudioSegment
from pydub.exceptions import CouldntDecodeError, CouldntEncodeError

from pbx.job_pool import JobFailed

WAVEFORM_BARS = 120
# (suffix, pydub export arguments): 16 kHz mono is beyond what a phone line carries
FORMATS: dict[str, tuple[str, dict[str, object]]] = {
    "mp3": (
        ".mp3",
        {"format": "mp3", "bitrate": "24k", "parameters": ["-ac", "1", "-ar", "16000"]},
    ),
    "opus": (
        ".ogg",
        {"format": "ogg", "codec": "libopus", "bitrate": "16k", "parameters": ["-ac", "1"]},
    ),
}


# an unfinished conversion (convert's `partial`): never a recording's name (recording_path)
_PARTIAL = re.compile(
    rf"^\..+\.[0-9a-f]{{8}}({'|'.join(re.escape(suffix) for suffix, _ in FORMATS.values())})$"
)


class ConversionFailed(JobFailed):
    """The recording could not be converted; `transient`: for a reason that passes (a full
    disk), so it is tried again later rather than given up on (pbx.job_pool)."""


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


def _read_back(target: Path, audio_format: str) -> Converted:
    try:
        audio = AudioSegment.from_file(target, format=audio_format)
    except (OSError, CouldntDecodeError, IndexError) as exc:
        raise ConversionFailed(
            f"{target.name}: the source is gone and this does not decode"
        ) from exc
    return Converted(target, len(audio) / 1000, waveform(audio))


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
    SQLite's synchronous=NORMAL) is that file, read back.
    """
    suffix, export = FORMATS[to]
    target = source.with_suffix(suffix)
    if not source.exists() and target.exists():
        return _read_back(target, str(export["format"]))
    # a name of its own: two daemons on one folder never write into the same unfinished file
    partial = source.with_name(f".{source.stem}.{secrets.token_hex(4)}{suffix}")
    try:
        audio = AudioSegment.from_file(source)
        if len(audio) == 0:
            raise ConversionFailed(f"{source.name}: no audio in the file")
        audio.export(partial, **export).close()
        check = AudioSegment.from_file(partial, format=str(export["format"]))
        if abs(len(check) - len(audio)) > max(250, len(audio) // 50):
            raise ConversionFailed(
                f"{source.name}: converted audio lasts {len(check)} ms instead of {len(audio)} ms"
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
