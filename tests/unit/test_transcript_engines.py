"""The vosk and faster-whisper engines' glue on real audio files: stereo split into caller and
staff, the words each engine gives matched to the phrases, a model directory checked. Both are
optional extras not installed here, so stand-in modules answer as vosk's KaldiRecognizer (JSON
results) and faster-whisper's WhisperModel (segments of words with times) do."""

from __future__ import annotations

import json
import subprocess
import sys
import types
import wave
from pathlib import Path
from typing import Any

import pytest

from recordings.speech import Heard, Segment, SpeechUnavailable
from recordings.speech.audio import RATE, channels

#: what each recogniser (one per channel, in order) hears: (word, start, end)
SAID = [
    [("hello", 0.1, 0.4), ("what's", 0.5, 0.7), ("the", 0.7, 0.8), ("price", 0.8, 1.2)],
    [("call", 1.5, 1.7), ("me", 1.7, 1.8), ("back", 1.8, 2.0)],
]


class FakeRecognizer:
    """vosk.KaldiRecognizer's methods (their names are vosk's)."""

    made = 0

    def __init__(self, model: Any, rate: int) -> None:
        assert rate == RATE
        self.words = SAID[FakeRecognizer.made]
        FakeRecognizer.made += 1
        self.fed = 0

    def SetWords(self, on: bool) -> None:
        assert on

    def AcceptWaveform(self, chunk: bytes) -> bool:
        self.fed += len(chunk)
        return False

    def Result(self) -> str:
        raise AssertionError("not reached: AcceptWaveform never completes an utterance")

    def FinalResult(self) -> str:
        assert self.fed > 0, "the audio was fed"
        words = [{"word": w, "start": s, "end": e, "conf": 1.0} for w, s, e in self.words]
        return json.dumps({"result": words, "text": " ".join(w for w, _s, _e in self.words)})


@pytest.fixture
def fake_vosk(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("vosk")
    module.Model = lambda path: ("model", path)  # type: ignore[attr-defined]
    module.KaldiRecognizer = FakeRecognizer  # type: ignore[attr-defined]
    module.SetLogLevel = lambda level: None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vosk", module)
    FakeRecognizer.made = 0
    return module


def tone(path: Path, channels: int) -> Path:
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=2",
            "-ac",
            str(channels),
            "-ar",
            "8000",
            str(path),
        ],
        check=True,
    )
    return path


def test_stereo_is_analysed_per_channel_and_mono_as_one(tmp_path: Path) -> None:
    stereo = channels(tone(tmp_path / "stereo.wav", 2))
    mono = channels(tone(tmp_path / "mono.mp3", 1))
    assert [name for name, _pcm in stereo] == ["caller", "staff"]
    assert [name for name, _pcm in mono] == [None]
    two_seconds = 2 * RATE * 2  # 16-bit samples
    assert all(abs(len(pcm) - two_seconds) < RATE for _name, pcm in stereo + mono)


def test_vosk_words_become_segments_and_phrases_by_channel(
    tmp_path: Path, fake_vosk: types.ModuleType
) -> None:
    from recordings.speech.vosk_engine import VoskEngine

    (tmp_path / "model" / "am").mkdir(parents=True)
    (tmp_path / "model" / "am" / "final.mdl").write_bytes(b"")
    engine = VoskEngine(["price", "call me back", "refund"], tmp_path / "model")
    result = engine.analyse(tone(tmp_path / "call.wav", 2))
    assert result.keywords == [Heard("price", 0.8, "caller"), Heard("call me back", 1.5, "staff")]
    assert result.segments == [
        Segment("caller", 0.1, 1.2, "hello what's the price"),
        Segment("staff", 1.5, 2.0, "call me back"),
    ]
    assert result.transcript == "hello what's the price\ncall me back"


def test_a_directory_that_is_not_a_vosk_model_is_refused(
    tmp_path: Path, fake_vosk: types.ModuleType
) -> None:
    from recordings.speech.vosk_engine import VoskEngine

    with pytest.raises(SpeechUnavailable, match="is not a vosk model"):
        VoskEngine(["price"], tmp_path)


class FakeWhisperModel:
    """faster_whisper.WhisperModel's constructor and transcribe (their names are its)."""

    def __init__(self, path: str, device: str, compute_type: str, cpu_threads: int) -> None:
        assert (device, compute_type, cpu_threads) == ("cpu", "int8", 1)
        self.heard: list[float] = []

    def transcribe(self, audio: Any, word_timestamps: bool) -> tuple[Any, Any]:
        assert word_timestamps
        with wave.open(audio) as wav:  # what faster-whisper's decode_audio reads
            assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, RATE)
            self.heard.append(wav.getnframes() / RATE)
        said = SAID[len(self.heard) - 1]  # whisper's words carry a leading space, punctuation
        words = [
            types.SimpleNamespace(word=f" {w.capitalize()}?" if w == "price" else f" {w}",
                                  start=s, end=e)
            for w, s, e in said
        ]  # fmt: skip
        segment = types.SimpleNamespace(words=words)
        return iter([segment]), types.SimpleNamespace(language="en")


@pytest.fixture
def fake_whisper(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("faster_whisper")
    module.WhisperModel = FakeWhisperModel  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "faster_whisper", module)
    return module


def test_whisper_words_become_segments_and_phrases_by_channel(
    tmp_path: Path, fake_whisper: types.ModuleType
) -> None:
    from recordings.speech.whisper_engine import WhisperEngine

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.bin").write_bytes(b"")
    engine = WhisperEngine(["price", "call me back", "refund"], tmp_path / "model")
    result = engine.analyse(tone(tmp_path / "call.wav", 2))
    assert engine._model.heard == [pytest.approx(2.0, abs=0.1)] * 2, "each channel, 2 s"
    assert result.keywords == [Heard("price", 0.8, "caller"), Heard("call me back", 1.5, "staff")]
    assert result.segments == [
        Segment("caller", 0.1, 1.2, "hello what's the Price?"),
        Segment("staff", 1.5, 2.0, "call me back"),
    ]


def test_a_directory_that_is_not_a_whisper_model_is_refused(
    tmp_path: Path, fake_whisper: types.ModuleType
) -> None:
    from recordings.speech.whisper_engine import WhisperEngine

    with pytest.raises(SpeechUnavailable, match="is not a faster-whisper model"):
        WhisperEngine(["price"], tmp_path)
