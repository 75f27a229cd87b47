"""Audio as the engines read it: 16 kHz mono 16-bit PCM, one stream per channel.

Recordings are telephone audio (8 kHz, nothing above 4 kHz), while pocketsphinx's English model
was trained on 16 kHz speech: on plain resampled phone audio its empty upper filter bands wreck
recognition (measured: "oh rad well you you go" for "I saw your advert, what is the price").
A faint white noise (about -50 dBFS) in those bands brings it back ("hello i thought you around
with what ... call me back tomorrow i may want a refund"); the transcript engines do not mind it.
"""

from __future__ import annotations

import errno
import json
import signal
import subprocess
from pathlib import Path

from recordings.speech import SpeechFailed, SpeechInterrupted

RATE = 16000
NOISE = "anoisesrc=a=0.005:c=white:r=16000:seed=1"
CHANNEL_NAMES = ("caller", "staff")  # MixMonitor's stereo: what it read, what it wrote
PROBE = ("ffprobe", "-v", "error", "-select_streams", "a:0")
PROBE_CHANNELS = ("-show_entries", "stream=channels", "-of", "json")
RAW = ("-ac", "1", "-ar", str(RATE), "-f", "s16le", "-")
TIMEOUT = 600.0  # an hour of audio decodes in seconds; a hung ffmpeg must not hold a worker
#: a process that could not start for these passes by itself: memory, processes for a moment
PASSING = (errno.ENOMEM, errno.EAGAIN)


def channels(path: Path) -> list[tuple[str | None, bytes]]:
    """(channel name, PCM) per channel: one unnamed for mono audio, caller and staff for
    stereo; SpeechFailed when ffmpeg cannot read the file."""
    count = _channel_count(path)
    if count < 2:
        return [(None, _pcm(path, "c0=c0"))]
    return [(name, _pcm(path, f"c0=c{i}")) for i, name in enumerate(CHANNEL_NAMES)]


def _channel_count(path: Path) -> int:
    probe = _run([*PROBE, *PROBE_CHANNELS, str(path)])
    try:
        streams = json.loads(probe)["streams"]
        return int(streams[0]["channels"])
    except (ValueError, KeyError, IndexError, TypeError):
        raise SpeechFailed(f"{path.name}: no audio stream") from None


def _pcm(path: Path, pan: str) -> bytes:
    graph = (
        f"[0:a]aresample={RATE},pan=mono|{pan}[s];{NOISE}[n];"
        "[s][n]amix=inputs=2:duration=first:normalize=0"
    )
    return _run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-filter_complex", graph, *RAW]
    )


def _run(command: list[str]) -> bytes:
    try:
        done = subprocess.run(command, capture_output=True, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise SpeechInterrupted(f"{command[0]} ran out of time ({TIMEOUT:g} s)") from None
    except OSError as exc:
        if exc.errno in PASSING:
            raise SpeechInterrupted(
                f"{command[0]} could not start: {exc}", transient=True
            ) from None
        raise SpeechFailed(f"{command[0]} failed: {exc}") from None
    if done.returncode == -signal.SIGKILL:  # the OOM killer's (a crash is SEGV, ABRT: the file)
        raise SpeechInterrupted(f"{command[0]} was killed (SIGKILL)")
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise SpeechFailed(lines[-1] if lines else f"{command[0]} exited {done.returncode}")
    return done.stdout
