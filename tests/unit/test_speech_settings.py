"""speech: settings: phrases normalised, tags known, a model for the transcript engines."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbx.settings import ConfigError, parse_settings

BASE = "forward_to: PJSIP/realline\ntags: [lead, callback, complaint]\n"


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(BASE + text, "calltrack.yaml")
    return [str(p) for p in caught.value.problems]


def test_phrases_are_lowercase_single_spaced_and_map_to_tags() -> None:
    settings = parse_settings(
        BASE + "speech:\n  keywords:\n    Price: lead\n    'Call  me   back': callback\n",
        "calltrack.yaml",
    )
    assert settings.speech.keywords == {"price": "lead", "call me back": "callback"}
    assert settings.speech.engine == "pocketsphinx"
    assert settings.speech.workers == 1
    assert settings.speech.enabled


def test_nothing_to_do_without_keywords_for_the_spotting_engine() -> None:
    settings = parse_settings(BASE, "calltrack.yaml")
    assert not settings.speech.enabled
    assert settings.transcript_keep_days == settings.recordings.keep_days


def test_a_tag_staff_cannot_see_is_reported_at_its_phrase() -> None:
    text = "speech:\n  keywords:\n    price: lead\n    refund: refunds\n"
    assert problems(text) == [
        "calltrack.yaml:6:5: speech.keywords.refund: 'refunds' is not one of `tags`;"
        " add it there so staff can see it"
    ]


def test_the_same_phrase_twice_in_other_case_is_refused() -> None:
    assert problems("speech:\n  keywords:\n    price: lead\n    PRICE: callback\n") == [
        "calltrack.yaml:4:3: speech.keywords: 'PRICE' is the same phrase as 'price'"
    ]


def test_an_empty_phrase_is_refused() -> None:
    (problem,) = problems("speech:\n  keywords:\n    '  ': lead\n")
    assert problem.startswith("calltrack.yaml:5:5: ") and "empty" in problem


@pytest.mark.parametrize("engine", ["vosk", "faster-whisper"])
def test_transcript_engines_need_a_model_dir(engine: str) -> None:
    assert problems(f"speech:\n  engine: {engine}\n") == [
        f"calltrack.yaml:3:1: speech.model_dir: the {engine} engine needs the directory of a"
        " downloaded model"
    ]


def test_model_dir_is_read_next_to_the_file(tmp_path: Path) -> None:
    config = tmp_path / "calltrack.yaml"
    config.write_text(BASE + "speech:\n  engine: vosk\n  model_dir: models/vosk\n  keep_days: 30\n")
    from pbx.settings import load_settings

    settings = load_settings(config)
    assert settings.speech.model_dir == tmp_path / "models/vosk"
    assert settings.speech.enabled
    assert settings.transcript_keep_days == 30
