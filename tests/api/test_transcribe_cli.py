"""`calltrack transcribe` and `calltrack check` with speech: espeak-ng says a phrase through 8 kHz
like a phone call; the default engine finds it and maps it to its tag; a phrase-free sentence
gives nothing; a broken model directory or a bad file is a clear error, not a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.api.test_cli import calltrack
from tests.helpers import config_dict, write_config
from tests.speech_audio import KEYWORD_TEXT, UNRELATED_TEXT, need_espeak, speak

KEYWORDS = {"price": "lead", "call me back": "callback", "refund": "complaint"}


def config(tmp_path: Path, **speech: Any) -> Path:
    data = config_dict("sqlite+aiosqlite:///calltrack.db", tags=["lead", "callback", "complaint"])
    return write_config(
        tmp_path / "calltrack.yaml", data | {"speech": {"keywords": KEYWORDS, **speech}}
    )


def test_a_spoken_phrase_is_found_and_mapped_to_its_tag(tmp_path: Path) -> None:
    need_espeak()
    audio = speak(KEYWORD_TEXT, tmp_path / "call.wav")
    result = calltrack("transcribe", "-c", str(config(tmp_path)), str(audio), "--json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert set(found) == {"engine", "keywords", "tags", "transcript"}
    assert found["engine"] == "pocketsphinx"
    assert [k["phrase"] for k in found["keywords"]] == ["price", "call me back"]
    price, back = (k["at_seconds"] for k in found["keywords"])
    # espeak-ng at 150 words a minute (0.4 s a word, pauses at the punctuation): "price" is
    # the 5th word, "call me back" begins at the 9th
    assert 0.8 < price < 2.4 < back < 4.4
    assert found["tags"] == ["callback", "lead"]
    assert found["transcript"] is None

    readable = calltrack("transcribe", "-c", str(config(tmp_path)), str(audio))
    assert readable.returncode == 0, readable.stderr
    assert "price -> lead" in readable.stdout and "tags: callback, lead" in readable.stdout


def test_a_sentence_without_the_phrases_gives_no_keyword(tmp_path: Path) -> None:
    need_espeak()
    audio = speak(UNRELATED_TEXT, tmp_path / "call.mp3")
    result = calltrack("transcribe", "-c", str(config(tmp_path)), str(audio), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "engine": "pocketsphinx",
        "keywords": [],
        "tags": [],
        "transcript": None,
    }


def test_a_file_that_is_not_audio_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio at all")
    result = calltrack("transcribe", "-c", str(config(tmp_path)), str(junk), "--json")
    assert result.returncode == 1
    assert f"{junk}: cannot read the audio" in result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    missing = calltrack("transcribe", "-c", str(config(tmp_path)), str(tmp_path / "nope.wav"))
    assert missing.returncode == 1 and "nope.wav: no such file" in missing.stderr


def test_check_fails_on_a_broken_model_dir(tmp_path: Path) -> None:
    assert calltrack("check", str(config(tmp_path))).returncode == 0
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "readme.txt").write_text("not a model")
    result = calltrack("check", str(config(tmp_path, model_dir="model")))
    assert result.returncode == 2
    assert "speech.model_dir:" in result.stderr and "is not a pocketsphinx model" in result.stderr
    assert "Traceback" not in result.stderr
    gone = calltrack("check", str(config(tmp_path, model_dir="gone")))
    assert gone.returncode == 2 and f"{tmp_path / 'gone'} is not a directory" in gone.stderr


def test_check_fails_when_the_engine_package_is_missing(tmp_path: Path) -> None:
    (tmp_path / "vosk-model").mkdir()
    result = calltrack("check", str(config(tmp_path, engine="vosk", model_dir="vosk-model")))
    assert result.returncode == 2
    assert "pip install 'calltrack[vosk]'" in result.stderr


def test_check_fails_on_a_phrase_the_dictionary_lacks(tmp_path: Path) -> None:
    path = config(tmp_path)
    path.write_text(path.read_text().replace("refund:", "refundzz:"))
    result = calltrack("check", str(path))
    assert result.returncode == 2
    assert "'refundzz'" in result.stderr and "not in the pocketsphinx dictionary" in result.stderr
