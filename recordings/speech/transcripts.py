"""A transcript engine's utterances as a SpeechResult: segments by channel in time order, the
whole text, and the configured phrases found in it (attribution.keywords)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from attribution.keywords import Word, find_phrases
from recordings.speech import Heard, Segment, SpeechResult


@dataclass(frozen=True)
class Utterance:
    channel: str | None
    words: list[tuple[str, float, float]]  # (word, start, end) in seconds


def result_of(utterances: Sequence[Utterance], phrases: Sequence[str]) -> SpeechResult:
    ordered = sorted(utterances, key=lambda u: u.words[0][1])
    segments = [
        Segment(
            u.channel,
            round(u.words[0][1], 2),
            round(u.words[-1][2], 2),
            " ".join(w.strip() for w, _s, _e in u.words),
        )
        for u in ordered
    ]
    heard = [
        Heard(phrase, round(at, 2), u.channel)
        for u in ordered
        for phrase, at in find_phrases([Word(w, s) for w, s, _e in u.words], phrases)
    ]
    return SpeechResult(
        sorted(heard, key=lambda h: (h.at_seconds, h.phrase)),
        "\n".join(s.text for s in segments),
        segments,
    )
