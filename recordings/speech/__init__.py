"""Speech engines behind one small interface: what a recording says, offline.

`load_engine` picks the configured engine and loads its model once (a worker process keeps it
for every call); whatever keeps it from working (the package not installed, a missing or wrong
model directory, a phrase the model cannot say) is a `SpeechUnavailable` raised there, so
`calltrack check` reports it instead of the first call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pbx.job_pool import JobFailed
from pbx.settings import Speech


class SpeechUnavailable(Exception):
    """The configured engine cannot run here; the message says what to install or fix."""


class SpeechFailed(Exception):
    """This audio could not be analysed (not audio, truncated, unreadable)."""


class SpeechInterrupted(JobFailed):
    """The analysis stopped, maybe for a reason outside the file: ffmpeg could not start (no
    memory for a moment), was killed (the OOM killer), or ran out of time on a loaded machine.
    The call is tried again, and marked failed only when it keeps happening (the speech
    worker's MAX_ATTEMPTS), where a SpeechFailed is at once. `transient`: it passes by itself,
    so it is waited out without counting an attempt (pbx.job_pool)."""


@dataclass(frozen=True)
class Heard:
    """A configured phrase heard at `at_seconds` from the recording's start; `channel` is
    caller or staff when the recording keeps them apart, else None."""

    phrase: str
    at_seconds: float
    channel: str | None = None


@dataclass(frozen=True)
class Segment:
    """A stretch of transcript (an engine's utterance) on one channel."""

    channel: str | None
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class SpeechResult:
    keywords: list[Heard] = field(default_factory=list)
    transcript: str | None = None  # None: the engine only spots phrases
    segments: list[Segment] | None = None


class SpeechEngine(Protocol):
    name: str

    def analyse(self, path: Path) -> SpeechResult:
        """What the audio file at `path` says; raises SpeechFailed for unreadable audio."""
        ...


def load_engine(speech: Speech) -> SpeechEngine:
    """The configured engine, its model loaded; SpeechUnavailable if it cannot run."""
    phrases = sorted(speech.keywords)
    if speech.engine == "pocketsphinx":
        from recordings.speech.pocketsphinx_engine import PocketsphinxEngine

        return PocketsphinxEngine(phrases, speech.model_dir)
    if speech.model_dir is None:  # the settings require one; a model_copy may not
        raise SpeechUnavailable(f"the {speech.engine} engine needs speech.model_dir")
    if speech.engine == "vosk":
        from recordings.speech.vosk_engine import VoskEngine

        return VoskEngine(phrases, speech.model_dir)
    from recordings.speech.whisper_engine import WhisperEngine

    return WhisperEngine(phrases, speech.model_dir)
