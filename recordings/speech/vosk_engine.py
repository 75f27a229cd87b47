"""vosk (Kaldi): full transcripts in the language of the model the admin downloaded
(https://alphacephei.com/vosk/models; the "small" ones, about 50 MB, fit a 2-core machine)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recordings.speech import SpeechResult, SpeechUnavailable
from recordings.speech.audio import RATE, channels
from recordings.speech.transcripts import Utterance, result_of

CHUNK = RATE * 2 * 4  # 4 s of 16-bit audio per call into the recogniser


class VoskEngine:
    name = "vosk"

    def __init__(self, phrases: Sequence[str], model_dir: Path) -> None:
        try:
            import vosk
        except ImportError:
            raise SpeechUnavailable(
                "the vosk engine needs the vosk package: pip install 'calltrack[vosk]'"
            ) from None
        if not (model_dir / "am" / "final.mdl").is_file():
            raise SpeechUnavailable(
                f"speech.model_dir: {model_dir} is not a vosk model (no am/final.mdl); unpack a"
                " model from https://alphacephei.com/vosk/models there"
            )
        vosk.SetLogLevel(-1)
        try:
            self._model: Any = vosk.Model(str(model_dir))
        except Exception as exc:  # vosk raises a bare Exception for a model it cannot load
            raise SpeechUnavailable(
                f"speech.model_dir: vosk cannot load {model_dir}: {exc}"
            ) from None
        self._vosk: Any = vosk
        self._phrases = list(phrases)

    def analyse(self, path: Path) -> SpeechResult:
        utterances: list[Utterance] = []
        for channel, pcm in channels(path):
            recogniser = self._vosk.KaldiRecognizer(self._model, RATE)
            recogniser.SetWords(True)
            results = []
            for at in range(0, len(pcm), CHUNK):
                if recogniser.AcceptWaveform(pcm[at : at + CHUNK]):
                    results.append(recogniser.Result())
            results.append(recogniser.FinalResult())
            for text in results:
                words = json.loads(text).get("result") or []
                if words:
                    utterances.append(
                        Utterance(
                            channel,
                            [(w["word"], float(w["start"]), float(w["end"])) for w in words],
                        )
                    )
        return result_of(utterances, self._phrases)
