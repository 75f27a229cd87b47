"""Phrases found in a transcript engine's words: whole words, any case, with the first word's time."""

from __future__ import annotations

from attribution.keywords import Word, find_phrases, tags_of
from recordings.speech import Heard, Segment
from recordings.speech.transcripts import Utterance, result_of


def words(*pairs: tuple[str, float]) -> list[Word]:
    return [Word(text, start) for text, start in pairs]


def test_a_phrase_is_found_by_whole_words_in_any_case_with_punctuation_ignored() -> None:
    said = words((" What's", 0.5), (" the", 0.8), (" PRICE?", 1.1), (" Call", 2.0), (" me", 2.3),
                 (" back,", 2.5), (" prices", 3.0), (" callback", 4.0))  # fmt: skip
    assert find_phrases(said, ["price", "call me back", "refund"]) == [
        ("price", 1.1),
        ("call me back", 2.0),
    ]


def test_a_word_inside_another_word_is_not_the_phrase() -> None:
    assert find_phrases(words(("overpriced", 1.0), ("refunds", 2.0)), ["price", "refund"]) == []


def test_tags_of_heard_phrases_each_once() -> None:
    keywords = {"price": "lead", "cost": "lead", "refund": "complaint"}
    assert tags_of(["price", "cost", "refund", "price"], keywords) == ["complaint", "lead"]


def test_utterances_become_segments_by_channel_and_a_transcript_in_time_order() -> None:
    staff = Utterance("staff", [("hello", 0.2, 0.5), ("shop", 0.6, 0.9)])
    caller = Utterance("caller", [("the", 1.0, 1.1), ("price", 1.2, 1.6)])
    result = result_of([caller, staff], ["price"])
    assert result.segments == [
        Segment("staff", 0.2, 0.9, "hello shop"),
        Segment("caller", 1.0, 1.6, "the price"),
    ]
    assert result.transcript == "hello shop\nthe price"
    assert result.keywords == [Heard("price", 1.2, "caller")]
