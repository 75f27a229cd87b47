"""Calls under load through the lab: every call stored exactly once, and how fast.

200 calls at 10 calls/s, at most 20 at once (SIPp as the carrier, 2 s each, and as the real
line), all to a tracking number held by a visitor session, so each call is attributed through
the lease history. Reports how many were stored (must be exactly 200, one per Linkedid) and the
hangup-to-stored-record latency: the record's `stored_at` minus the hangup time Asterisk put on
its AMI Hangup event; the daemon's CPU per call (utime+stime from /proc over the run, of its own
process and with its child processes: the recording pool, ffmpeg); and how fast FastAGI answers
during the burst, from a probe that asks the route of a tracked number ten times a second as
Asterisk does (connect, send the AGI environment, time to the first command).

With `--before DIR` (a checkout of an earlier revision: `git worktree add /tmp/old REV`) each
round also runs that revision's daemon through the same burst, the two alternating, so the
figures compare on the same machine in the same run. With `--speech` each round also runs this
daemon with speech analysis on (every call's converted recording goes through pocketsphinx while
the burst goes on), alternating with the one without: issue 16's "a burst of calls must never
delay call storage". Then every call of every daemon carries speech (SIPp plays espeak-ng's
"what is the price ... call me back" as G.711 RTP for 7.1 s, tests/asterisk/scenarios/
uac_audio.xml), so each recording is converted, and analysed where speech is on; without it
SIPp sends no audio and the recordings are empty.

    .venv/bin/python -m bench.call_load [--calls 200] [--before DIR]   (from the repository root)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
from ruamel.yaml import YAML

from tests.asterisk.lablock import hold_lab
from tests.speech_audio import KEYWORD_TEXT, speech_pcap

ROOT = Path(__file__).resolve().parents[1]
LAB_CONFIG = ROOT / "tests" / "fixtures" / "lab.yaml"
AUDIO_SCENARIO = ROOT / "tests" / "asterisk" / "scenarios" / "uac_audio.xml"
LAB_CDR = Path("/var/lib/calltrack-lab/cdr/Master.csv")
LAB_RECORDINGS = Path("/var/lib/calltrack-lab/recordings")
LAB_DIALPLAN = Path("/var/lib/calltrack-lab/etc/extensions_calltrack.conf")
ORIGIN = "http://127.0.0.1:8080"
AGI = ("127.0.0.1", 4573)
PROBE_EVERY = 0.1
TICKS = os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def lab(*args: str) -> None:
    subprocess.run([str(ROOT / "scripts" / "asterisk-lab"), *args], check=True, capture_output=True)


async def wait_ready(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(150):
            try:
                async with http.get(url + "/healthz") as response:
                    if (await response.json())["pbx"].get("ami") == "connected":
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit("the daemon did not connect to the lab's AMI")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU time of the process alone, and with its children (live ones and reaped ones)."""

    def stat(p: int) -> list[str]:
        raw = Path(f"/proc/{p}/stat").read_text()
        return raw[raw.rindex(")") + 2 :].split()  # fields from the 3rd (state) on

    def children(p: int) -> list[int]:
        found: list[int] = []
        for task in Path(f"/proc/{p}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(c) for c in (task / "children").read_text().split()]
        return found

    fields = stat(pid)
    own = (int(fields[11]) + int(fields[12])) / TICKS
    total = own + (int(fields[13]) + int(fields[14])) / TICKS
    stack = children(pid)
    while stack:
        child = stack.pop()
        with contextlib.suppress(OSError, ValueError):
            f = stat(child)
            total += sum(int(v) for v in f[11:15]) / TICKS
            stack += children(child)
    return own, total


async def agi_probe(did: str, stop: asyncio.Event) -> list[float]:
    """Ask the daemon's FastAGI where a call to `did` goes, every PROBE_EVERY seconds until
    `stop`; the milliseconds from connecting to the first command, as Asterisk would wait."""
    waits: list[float] = []
    env = (
        "agi_network: yes\nagi_network_script: route\nagi_request: agi://127.0.0.1/route\n"
        f"agi_channel: PJSIP/trunk-probe\nagi_callerid: 79990001122\nagi_arg_1: {did}\n\n"
    ).encode()

    async def one() -> None:
        began = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection(*AGI)
        except OSError:
            return
        try:
            writer.write(env)
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 10)
            if line.startswith(b"SET VARIABLE"):
                waits.append((time.perf_counter() - began) * 1000)
            writer.write(b"200 result=1\n")
            await writer.drain()
            while await asyncio.wait_for(reader.readline(), 10):
                writer.write(b"200 result=1\n")
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()

    probes: set[asyncio.Task[None]] = set()
    while not stop.is_set():
        task = asyncio.create_task(one())
        probes.add(task)
        task.add_done_callback(probes.discard)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PROBE_EVERY)
    if probes:
        await asyncio.wait(probes)
    return waits


def prepare(work: Path, repo: Path, speech: bool) -> tuple[Path, int]:
    """A config for the lab with its own database, migrated, and its dialplan loaded."""
    config = YAML(typ="safe").load(LAB_CONFIG.read_text())
    port = 18480
    config.update(database=f"sqlite+aiosqlite:///{work / 'bench.db'}", http={"port": port})
    if speech:
        config["speech"] = {"keywords": {"price": "lead", "call me back": "lead"}}
    # the live AMI path only: the lab's CDR holds every earlier run's calls, which a fresh
    # database would import (reconciliation) in the middle of the burst
    config["asterisk"]["cdr_csv"] = str(work / "no-cdr.csv")
    path = work / "calltrack.yaml"
    with path.open("w") as f:
        YAML().dump(config, f)
    cli = [sys.executable, "-m", "pbx.cli"]
    env = daemon_env(repo)
    subprocess.run(
        [*cli, "db", "upgrade", "-c", str(path)], check=True, capture_output=True, cwd=repo, env=env
    )
    subprocess.run(
        [*cli, "dialplan", "-c", str(path), "-o", str(LAB_DIALPLAN)], check=True, cwd=repo, env=env
    )
    lab("rx", "dialplan reload")
    return path, port


@contextlib.contextmanager
def lab_left_as_found() -> Iterator[None]:
    """Take the bench's calls out of the lab again: its CDR lines (the file cut back to its size
    before) and its recordings. Thousands of bench calls left in the lab's CDR make every later
    daemon with a fresh database import them all (the lab e2e tests then time out)."""
    size = LAB_CDR.stat().st_size if LAB_CDR.exists() else 0
    before = set(os.listdir(LAB_RECORDINGS)) if LAB_RECORDINGS.is_dir() else set()
    try:
        yield
    finally:
        if LAB_CDR.exists() and LAB_CDR.stat().st_size > size:
            os.truncate(LAB_CDR, size)
        if LAB_RECORDINGS.is_dir():
            for name in set(os.listdir(LAB_RECORDINGS)) - before:
                (LAB_RECORDINGS / name).unlink(missing_ok=True)


def daemon_env(repo: Path) -> dict[str, str]:
    """The environment that makes `python -m pbx.cli` run the code of `repo`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo), env.get("PYTHONPATH")]))
    return env


def stored(db_path: Path, since: float, number: str) -> list[tuple[str, float, float]]:
    with sqlite3.connect(db_path) as db:
        return db.execute(
            "SELECT linkedid, ended_at, stored_at FROM calls WHERE started_at >= ? AND did = ?",
            (since, number),
        ).fetchall()


async def measure(
    url: str,
    work: Path,
    calls: int,
    rate: int,
    limit: int,
    seconds: float,
    pid: int,
    audio: bool,
) -> dict[str, object]:
    await wait_ready(url)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            url + "/api/v1/visits",
            headers={"Origin": ORIGIN},
            json={"site": "lab", "url": "http://127.0.0.1:8080/?utm_source=google&utm_medium=cpc"},
        ) as response,
    ):
        number = (await response.json())["numbers"][0]["number"]
    began = time.time() - 1
    cpu_before = cpu_seconds(pid)
    stop_probe = asyncio.Event()
    probe = asyncio.create_task(agi_probe(number, stop_probe))
    real_line = await asyncio.create_subprocess_exec(
        "sipp",
        "-sn",
        "uas",
        "-i",
        "127.0.0.1",
        "-p",
        "5070",
        "-m",
        str(calls),
        "-nostdin",
        "-timeout",
        "300s",
        cwd=work,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await asyncio.sleep(0.3)
    if audio:
        (work / "pcap").mkdir(exist_ok=True)
        speech_pcap(KEYWORD_TEXT, work / "pcap" / "g711a.pcap")  # what uac_audio.xml plays
    scenario = ["-sf", str(AUDIO_SCENARIO)] if audio else ["-sn", "uac"]
    carrier = await asyncio.create_subprocess_exec(
        "sipp",
        *scenario,
        "-i",
        "127.0.0.1",
        "-p",
        "5090",
        "-s",
        number.lstrip("+"),
        "-r",
        str(rate),
        "-l",
        str(limit),
        "-m",
        str(calls),
        "-d",
        str(int(seconds * 1000)),
        "-nostdin",
        "-timeout",
        "300s",
        "127.0.0.1:5060",
        cwd=work,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    await carrier.communicate()
    stop_probe.set()
    agi_waits = await probe
    await asyncio.wait_for(real_line.wait(), 30)
    db_path = work / "bench.db"
    for _ in range(600):  # up to 60 s for the last records
        if len(stored(db_path, began, number)) >= calls:
            break
        await asyncio.sleep(0.1)
    cpu_after = cpu_seconds(pid)
    await asyncio.sleep(2)  # anything stored twice would show up by now
    rows = stored(db_path, began, number)
    with sqlite3.connect(db_path) as db:
        attributed = db.execute(
            "SELECT count(*) FROM calls WHERE started_at >= ? AND attribution = 'session'",
            (began,),
        ).fetchone()[0]
    latencies = [(stored_at - ended) * 1000 for _, ended, stored_at in rows]
    analysed = await speech_analysed(url)
    return {
        "calls placed": calls,
        "sipp exit status": carrier.returncode,
        "records stored": len(rows),
        "distinct linkedids": len({r[0] for r in rows}),
        "attributed to the session": attributed,
        "latency p50 ms": round(statistics.median(latencies), 1) if latencies else None,
        "latency p99 ms": round(percentile(latencies, 99), 1) if latencies else None,
        "latency max ms": round(max(latencies), 1) if latencies else None,
        "daemon CPU ms per call": round((cpu_after[0] - cpu_before[0]) * 1000 / calls, 2),
        "with child processes": round((cpu_after[1] - cpu_before[1]) * 1000 / calls, 2),
        "FastAGI probes answered": len(agi_waits),
        "FastAGI answer p50 ms": round(statistics.median(agi_waits), 1) if agi_waits else None,
        "FastAGI answer p99 ms": round(percentile(agi_waits, 99), 1) if agi_waits else None,
        "recordings analysed for speech by then": analysed,
    }


async def speech_analysed(url: str) -> int:
    """calltrack_speech_calls_total over both outcomes, from /metrics (0 without speech)."""
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as response:
        text = await response.text()
    return round(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("calltrack_speech_calls_total{")
        )
    )


def run(args: argparse.Namespace, work: Path, repo: Path, speech: bool) -> dict[str, object]:
    work.mkdir()
    path, port = prepare(work, repo, speech)
    with (work / "daemon.log").open("w") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "pbx.cli", "serve", "-c", str(path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=repo,
            env=daemon_env(repo),
        )
    try:
        return asyncio.run(
            measure(
                f"http://127.0.0.1:{port}",
                work,
                args.calls,
                args.rate,
                args.limit,
                args.seconds,
                daemon.pid,
                args.speech,
            )
        )
    finally:
        daemon.terminate()
        daemon.wait(10)
        log_text = (work / "daemon.log").read_text()
        print(f"AMI connections: {log_text.count('AMI connected')}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rate", type=int, default=10, help="calls per second")
    parser.add_argument("--limit", type=int, default=20, help="calls at once")
    parser.add_argument("--seconds", type=float, default=2.0, help="talk time of each call")
    parser.add_argument(
        "--before", type=Path, help="also run this checkout's daemon, alternating with this one"
    )
    parser.add_argument(
        "--speech", action="store_true", help="also run this daemon with speech analysis on"
    )
    parser.add_argument("--rounds", type=int, default=1, help="bursts per daemon")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "call_load.md")
    args = parser.parse_args()
    hold_lab()  # the lab's ports are shared with test runs
    daemons = [("now", ROOT, False)]
    daemons += [("before", args.before.resolve(), False)] if args.before else []
    daemons += [("speech", ROOT, True)] if args.speech else []
    results: list[tuple[str, dict[str, object]]] = []
    loads: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, lab_left_as_found():
        lab("start")
        for round_no in range(args.rounds):
            order = daemons if round_no % 2 else daemons[::-1]  # the last one first in round 1
            for name, repo, speech in order:
                loads.append(" ".join(f"{v:.2f}" for v in os.getloadavg()))
                result = run(args, Path(tmp) / f"{name}-{round_no}", repo, speech)
                print(name, json.dumps(result, indent=2), flush=True)
                results.append((f"{name} ({round_no + 1})", result))
    ok = all(r["records stored"] == r["distinct linkedids"] == args.calls for _, r in results)
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    keys = list(results[0][1])
    lines = [
        "# Calls under load (bench/call_load.py)",
        "",
        f"{args.calls} calls at {args.rate}/s, at most {args.limit} at once,"
        + (" 7.1 s of speech each," if args.speech else f" {args.seconds} s each,"),
        "through the lab Asterisk 22 (SIPp carrier and real line), SQLite, one daemon.",
        *(
            [f"`before`: the daemon of `{args.before}`, alternating with this one."]
            if args.before
            else []
        ),
        *(
            ["`speech`: this daemon with speech.keywords set (pocketsphinx on every recording)."]
            if args.speech
            else []
        ),
        f"Load averages before each burst: {', '.join(loads)}; after: `{uptime}`.",
        "",
        "| measure | " + " | ".join(name for name, _ in results) + " |",
        "| --- |" + " ---: |" * len(results),
        *[f"| {k} | " + " | ".join(str(r[k]) for _, r in results) + " |" for k in keys],
        "",
        f"Every call stored exactly once: {'yes' if ok else 'NO'}.",
    ]
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
