"""pocketsphinx keyword spotting: the default engine, English, its model in its wheel.

It gives no transcript, only the configured phrases it heard. Each phrase has a detection
threshold; longer phrases need a lower one to be found at all, short ones a higher one not to fire
on every similar sound. The threshold is 1e-(2 x the phrase's phones + 16 x its word boundaries),
tuned on espeak-ng speech (three voices, 130-160 words a minute) sent through 8 kHz, and through
G.711 and a 24 kbit/s mp3 like a lab call's recording: "price" (1e-8) and "call me back" (1e-48)
are found in most of them, "refund" (1e-12) fired once on 24 sentences without it; with a plain
factor per phone (3.5) it fired on a quarter of them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recordings.speech import Heard, SpeechResult, SpeechUnavailable
from recordings.speech.audio import RATE, channels

EXPONENT_PER_PHONE = 2
EXPONENT_PER_BOUNDARY = 16


class PocketsphinxEngine:
    name = "pocketsphinx"

    def __init__(self, phrases: Sequence[str], model_dir: Path | None) -> None:
        try:
            import pocketsphinx
        except ImportError:
            raise SpeechUnavailable(
                "the pocketsphinx engine needs the pocketsphinx package (pip install pocketsphinx)"
            ) from None
        folder = model_dir or Path(pocketsphinx.get_model_path()) / "en-us"
        acoustic, dictionary = _model_files(folder)
        self._phrases = list(phrases)
        self._decoder: Any = None
        if not self._phrases:
            return  # nothing to spot: no decoder needed
        pronunciations = _pronunciations(dictionary)
        lines = []
        for phrase in self._phrases:
            unknown = [w for w in phrase.split() if w not in pronunciations]
            if unknown:
                raise SpeechUnavailable(
                    f"speech.keywords: {', '.join(map(repr, unknown))} (in {phrase!r}) is not in"
                    f" the pocketsphinx dictionary {dictionary}; use another word"
                )
            words = phrase.split()
            phones = sum(pronunciations[w] for w in words)
            exponent = EXPONENT_PER_PHONE * phones + EXPONENT_PER_BOUNDARY * (len(words) - 1)
            lines.append(f"{phrase} /1e-{exponent}/\n")
        with tempfile.NamedTemporaryFile("w", suffix=".kws") as kws:  # read once, here
            kws.write("".join(lines))
            kws.flush()
            try:
                self._decoder = pocketsphinx.Decoder(
                    samprate=RATE,
                    hmm=str(acoustic),
                    dict=str(dictionary),
                    kws=kws.name,
                    loglevel="FATAL",
                )
            except RuntimeError as exc:
                raise SpeechUnavailable(
                    f"speech.model_dir: pocketsphinx cannot load the model in {folder}: {exc}"
                ) from None

    def analyse(self, path: Path) -> SpeechResult:
        heard: list[Heard] = []
        if self._decoder is None:
            return SpeechResult(heard)
        for channel, pcm in channels(path):
            decoder = self._decoder
            decoder.start_utt()
            decoder.process_raw(pcm, full_utt=True)
            decoder.end_utt()
            rate = float(decoder.config["frate"])
            heard += [
                Heard(segment.word.strip(), round(segment.start_frame / rate, 2), channel)
                for segment in decoder.seg() or ()
            ]
        return SpeechResult(sorted(heard, key=lambda h: (h.at_seconds, h.phrase)))


def _model_files(folder: Path) -> tuple[Path, Path]:
    """The acoustic model (the subdirectory with `mdef`) and the one pronunciation dictionary
    (*.dict) of a model directory laid out like the package's en-us model."""
    if not folder.is_dir():
        raise SpeechUnavailable(f"speech.model_dir: {folder} is not a directory")
    acoustic = [mdef.parent for mdef in folder.glob("*/mdef")]
    dictionaries = list(folder.glob("*.dict"))
    if len(acoustic) != 1 or len(dictionaries) != 1:
        raise SpeechUnavailable(
            f"speech.model_dir: {folder} is not a pocketsphinx model: expected one acoustic"
            " model directory (with mdef) and one *.dict file in it"
        )
    return acoustic[0], dictionaries[0]


def _pronunciations(dictionary: Path) -> dict[str, int]:
    """Each word's number of phones (its first pronunciation)."""
    phones: dict[str, int] = {}
    try:
        with dictionary.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                word, *sounds = line.split()
                if sounds:
                    phones.setdefault(word, len(sounds))
    except (OSError, ValueError) as exc:
        raise SpeechUnavailable(f"speech.model_dir: cannot read {dictionary}: {exc}") from None
    return phones
