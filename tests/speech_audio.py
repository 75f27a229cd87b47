"""Speech for tests and benches: espeak-ng says a text, sent through 8 kHz mono like a phone call."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

#: 4.5 s at 150 words a minute: fits the lab's 7.1 s call
KEYWORD_TEXT = "Hello, what is the price of the sofa? Please call me back."
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
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(spoken), text], check=True)
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


def speech_pcap(text: str, path: Path) -> Path:
    """`text` spoken as a carrier sends it: G.711 A-law RTP, 20 ms a packet, in a pcap file that
    SIPp's play_pcap_audio plays into a call (Ethernet, IPv4, UDP, RTP payload type 8)."""
    spoken = speak(text, path.with_suffix(".wav"))
    alaw = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(spoken), "-f", "alaw", "-"],
        check=True,
        capture_output=True,
    ).stdout
    spoken.unlink()
    records = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for seq, at in enumerate(range(0, len(alaw), 160)):
        rtp = struct.pack("!BBHII", 0x80, 8 | (0x80 if seq == 0 else 0), seq, at, 0x5EED)
        udp = struct.pack("!HHHH", 5000, 6000, 8 + len(rtp) + 160, 0) + rtp + alaw[at : at + 160]
        header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), seq, 0x4000, 64, 17, 0,
                             bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))  # fmt: skip
        header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
        frame = bytes(12) + b"\x08\x00" + header + udp
        micros = seq * 20_000
        records.append(
            struct.pack("<IIII", micros // 1_000_000, micros % 1_000_000, len(frame), len(frame))
        )
        records.append(frame)
    path.write_bytes(b"".join(records))
    return path


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
