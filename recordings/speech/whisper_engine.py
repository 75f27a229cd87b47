"""faster-whisper (CTranslate2): transcripts in ~100 languages from a converted Whisper model the
admin downloaded (e.g. Systran/faster-whisper-tiny or -base: int8 on CPU fits a 2-core machine;
small and larger are slower than the calls come in)."""

from __future__ import annotations

import io
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recordings.speech import SpeechResult, SpeechUnavailable
from recordings.speech.audio import RATE, channels
from recordings.speech.transcripts import Utterance, result_of


class WhisperEngine:
    name = "faster-whisper"

    def __init__(self, phrases: Sequence[str], model_dir: Path) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise SpeechUnavailable(
                "the faster-whisper engine needs the faster-whisper package:"
                " pip install 'calltrack[whisper]'"
            ) from None
        if not (model_dir / "model.bin").is_file():
            raise SpeechUnavailable(
                f"speech.model_dir: {model_dir} is not a faster-whisper model (no model.bin);"
                " download one, e.g. huggingface.co/Systran/faster-whisper-base"
            )
        try:  # one thread: speech.workers processes share the machine with the calls
            self._model: Any = WhisperModel(
                str(model_dir), device="cpu", compute_type="int8", cpu_threads=1
            )
        except Exception as exc:  # CTranslate2 raises RuntimeError or ValueError
            raise SpeechUnavailable(
                f"speech.model_dir: faster-whisper cannot load {model_dir}: {exc}"
            ) from None
        self._phrases = list(phrases)

    def analyse(self, path: Path) -> SpeechResult:
        utterances: list[Utterance] = []
        for channel, pcm in channels(path):
            segments, _info = self._model.transcribe(_wav(pcm), word_timestamps=True)
            for segment in segments:
                words = [(w.word, float(w.start), float(w.end)) for w in segment.words or ()]
                if words:
                    utterances.append(Utterance(channel, words))
        return result_of(utterances, self._phrases)


def _wav(pcm: bytes) -> io.BytesIO:
    """One channel's PCM as the WAV file faster-whisper decodes itself (a file-like object is
    one of the inputs it takes, so this glue needs no numpy of its own)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(pcm)
    out.seek(0)
    return out
