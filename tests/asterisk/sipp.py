"""SIPp as the carrier (UAC on 5090, plays RTP audio) and as the business's real line (UAS on 5070).

The built-in `uac_pcap` scenario plays `pcap/g711a.pcap` and `pcap/dtmf_2833_1.pcap` relative to
its working directory, so each run gets its own folder with a copy of the pcap files.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import shutil
import time
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from tests.asterisk.conftest import lab

PCAP_DIR = Path("/usr/share/sip-tester")
SCENARIOS = Path(__file__).parent / "scenarios"
LAB_SIP = "127.0.0.1:5060"
UAC_PORT = 5090
UAS_PORT = 5070
AGENT_PORT = 5091
#: app_agent_pool takes no call for an agent until about 5 s after their login (the agent's
#: state is UNAVAILABLE until then, NOT_INUSE once a caller may be connected)
AGENT_READY_WITHIN = 20.0


@dataclass(frozen=True)
class CallResult:
    returncode: int
    seconds: float
    output: str


def workdir(base: Path) -> Path:
    """A folder with ./pcap/ for uac_pcap."""
    base.mkdir(parents=True, exist_ok=True)
    if not (base / "pcap").exists():
        shutil.copytree(PCAP_DIR, base / "pcap")
    return base


async def place_call(
    did: str, cwd: Path, limit: float = 40.0, scenario: str | None = None
) -> CallResult:
    """Dial `did` on the lab trunk and play the pcap's audio; returns when SIPp exits.

    `scenario` names a file in scenarios/ instead of SIPp's built-in `uac_pcap`.
    """
    started = time.monotonic()
    chosen = ["-sf", str(SCENARIOS / scenario)] if scenario else ["-sn", "uac_pcap"]
    proc = await asyncio.create_subprocess_exec(
        "sipp",
        *chosen,
        "-i",
        "127.0.0.1",
        "-p",
        str(UAC_PORT),
        "-s",
        did,
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        f"{int(limit)}s",
        "-timeout_error",
        LAB_SIP,
        cwd=workdir(cwd),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), limit + 5)
    assert proc.returncode is not None
    return CallResult(proc.returncode, time.monotonic() - started, out.decode(errors="replace"))


def wav_duration_and_rms(path: Path) -> tuple[float, float]:
    """Duration (s) and RMS of a 16-bit 8 kHz mono WAV, as MixMonitor writes them."""
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        frames = w.readframes(w.getnframes())
        seconds = w.getnframes() / w.getframerate()
    samples = array.array("h", frames)
    rms = (sum(s * s for s in samples) / max(1, len(samples))) ** 0.5
    return seconds, rms


def _mkdir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


class RealLine:
    """A running SIPp UAS; `messages()` is its SIP trace (for headers it received)."""

    def __init__(self, proc: asyncio.subprocess.Process, cwd: Path) -> None:
        self.proc = proc
        self.cwd = cwd

    def messages(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.cwd.glob("*_messages.log"))

    async def wait(self, limit: float = 30.0) -> int:
        return await asyncio.wait_for(self.proc.wait(), limit)


@contextlib.asynccontextmanager
async def real_line(cwd: Path, scenario: str = "uas") -> AsyncIterator[RealLine]:
    """The real line for one call: `uas` answers, `busy` rejects with 486, `ring` never answers,
    `hang_up` answers and hangs up a second later."""
    files = {
        "busy": "uas_busy.xml",
        "ring": "uas_ring_forever.xml",
        "hang_up": "uas_answer_hang_up.xml",
    }
    chosen = ["-sn", "uas"] if scenario == "uas" else ["-sf", str(SCENARIOS / files[scenario])]
    _mkdir(cwd)
    proc = await asyncio.create_subprocess_exec(
        "sipp",
        *chosen,
        "-i",
        "127.0.0.1",
        "-p",
        str(UAS_PORT),
        "-m",
        "1",
        "-nostdin",
        "-trace_msg",
        "-timeout",
        "60s",
        cwd=cwd,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await asyncio.sleep(0.3)  # bound to its port
    try:
        yield RealLine(proc, cwd)
    finally:
        if proc.returncode is None:
            await asyncio.to_thread(lab, "rx", "agent logoff 1001")
            with contextlib.suppress(ProcessLookupError):  # it may end with the logoff
                proc.kill()
            await proc.wait()


async def phone_call(cwd: Path, extension: str, seconds: float) -> asyncio.subprocess.Process:
    """A phone of the PBX (endpoint agentphone, from AGENT_PORT) calling `extension` of
    [lab-pbx] and hanging up `seconds` after the answer."""
    _mkdir(cwd)
    return await asyncio.create_subprocess_exec(
        "sipp",
        "-sf",
        str(SCENARIOS / "uac_phone.xml"),
        "-i",
        "127.0.0.1",
        "-p",
        str(AGENT_PORT),
        "-s",
        extension,
        "-d",
        str(int(seconds * 1000)),
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        f"{int(seconds) + 30}s",
        LAB_SIP,
        cwd=cwd,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


@contextlib.asynccontextmanager
async def agent_logged_in(cwd: Path) -> AsyncIterator[None]:
    """Agent 1001 logged in from the agent's phone (asterisk.conf.d/agents.conf) for 30 s,
    ready to take callers; logged out on leaving (a login left behind would refuse the next)."""
    proc = await phone_call(cwd, "agentlogin", 30)
    try:
        deadline = time.monotonic() + AGENT_READY_WITHIN
        while "NOT_INUSE" not in (await asyncio.to_thread(lab, "rx", "agent show all")).stdout:
            assert proc.returncode is None, f"the agent's phone exited early ({proc.returncode})"
            assert time.monotonic() < deadline, "agent 1001 was not ready in time"
            await asyncio.sleep(0.2)
        yield
    finally:
        if proc.returncode is None:
            await asyncio.to_thread(lab, "rx", "agent logoff 1001")
            with contextlib.suppress(ProcessLookupError):  # it may end with the logoff
                proc.kill()
            await proc.wait()
