"""Speech for tests and benches: espeak-ng says a text, sent through 8 kHz mono like a phone call."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

KEYWORD_TEXT = (
    "Hello, I saw your advert. What is the price of the blue sofa? Please call me back tomorrow."
)
UNRELATED_TEXT = (
    "Our shop opens at nine. The delivery van will arrive on Monday with twelve boxes of paper."
)


def need_espeak() -> None:
    """Skip without espeak-ng, except in CI (scripts/bootstrap installs it there)."""
    if shutil.which("espeak-ng") is None:
        if os.environ.get("CI"):
            pytest.fail("espeak-ng is not installed: scripts/bootstrap installs it")
        pytest.skip("espeak-ng is not installed (Debian package espeak-ng)")


def speak(text: str, path: Path, rate: int = 8000, channels: int = 1) -> Path:
    """`text` spoken into `path` (its suffix picks the format), `rate` Hz, `channels` copies."""
    spoken = path.with_name(path.stem + ".espeak.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(spoken), text], check=True)
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-i",
            str(spoken),
            "-ar",
            str(rate),
            "-ac",
            str(channels),
            str(path),
        ],
        check=True,
    )
    spoken.unlink()
    return path
