"""Which configured phrases a transcript contains, and when: pure matching for the transcript
engines (vosk, faster-whisper), which give words with times but know nothing of the phrases.

Matching is by whole words, case-insensitive, punctuation ignored ("Price?" is price, "prices"
is not), so a phrase is heard where staff would say it was said.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

_WORD_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


@dataclass(frozen=True)
class Word:
    """A word as an engine recognised it, with its start in seconds."""

    text: str
    start: float


def words_of(text: str) -> list[str]:
    """The words of a phrase or a recognised word, lowercase, without punctuation."""
    return _WORD_RE.findall(text.lower())


def find_phrases(words: Sequence[Word], phrases: Iterable[str]) -> list[tuple[str, float]]:
    """(phrase, time of its first word) for each place a phrase is said, in time order."""
    tokens = [(token, word.start) for word in words for token in words_of(word.text)]
    spoken = [token for token, _ in tokens]
    found = []
    for phrase in phrases:
        wanted = words_of(phrase)
        if not wanted:
            continue
        for i in range(len(spoken) - len(wanted) + 1):
            if spoken[i : i + len(wanted)] == wanted:
                found.append((phrase, tokens[i][1]))
    return sorted(found, key=lambda hit: (hit[1], hit[0]))


def tags_of(phrases: Iterable[str], keywords: Mapping[str, str]) -> list[str]:
    """The tags the heard phrases map to, each once, sorted."""
    return sorted({keywords[p] for p in phrases if p in keywords})
