"""Calls under load through the lab: every call stored exactly once, and how fast.

200 calls at 10 calls/s, at most 20 at once (SIPp as the carrier, 2 s each, and as the real
line), all to a tracking number held by a visitor session, so each call is attributed through
the lease history. Reports how many were stored (must be exactly 200, one per Linkedid) and the
hangup-to-stored-record latency: the record's `stored_at` minus the hangup time Asterisk put on
its AMI Hangup event.

    .venv/bin/python -m bench.call_load [--calls 200]   (from the repository root)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from ruamel.yaml import YAML

from tests.asterisk.lablock import hold_lab

ROOT = Path(__file__).resolve().parents[1]
LAB_CONFIG = ROOT / "tests" / "fixtures" / "lab.yaml"
LAB_DIALPLAN = Path("/var/lib/calltrack-lab/etc/extensions_calltrack.conf")
ORIGIN = "http://127.0.0.1:8080"


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


def prepare(work: Path) -> tuple[Path, int]:
    """A config for the lab with its own database, migrated, and its dialplan loaded."""
    config = YAML(typ="safe").load(LAB_CONFIG.read_text())
    port = 18480
    config.update(database=f"sqlite+aiosqlite:///{work / 'bench.db'}", http={"port": port})
    path = work / "calltrack.yaml"
    with path.open("w") as f:
        YAML().dump(config, f)
    cli = [sys.executable, "-m", "pbx.cli"]
    subprocess.run([*cli, "db", "upgrade", "-c", str(path)], check=True, capture_output=True)
    subprocess.run([*cli, "dialplan", "-c", str(path), "-o", str(LAB_DIALPLAN)], check=True)
    lab("rx", "dialplan reload")
    return path, port


def stored(db_path: Path, since: float, number: str) -> list[tuple[str, float, float]]:
    with sqlite3.connect(db_path) as db:
        return db.execute(
            "SELECT linkedid, ended_at, stored_at FROM calls WHERE started_at >= ? AND did = ?",
            (since, number),
        ).fetchall()


async def measure(
    url: str, work: Path, calls: int, rate: int, limit: int, seconds: float
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
    carrier = await asyncio.create_subprocess_exec(
        "sipp",
        "-sn",
        "uac",
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
    await asyncio.wait_for(real_line.wait(), 30)
    db_path = work / "bench.db"
    for _ in range(60):  # up to 30 s for the last records
        if len(stored(db_path, began, number)) >= calls:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(2)  # anything stored twice would show up by now
    rows = stored(db_path, began, number)
    with sqlite3.connect(db_path) as db:
        attributed = db.execute(
            "SELECT count(*) FROM calls WHERE started_at >= ? AND attribution = 'session'",
            (began,),
        ).fetchone()[0]
    latencies = [(stored_at - ended) * 1000 for _, ended, stored_at in rows]
    return {
        "calls placed": calls,
        "sipp exit status": carrier.returncode,
        "records stored": len(rows),
        "distinct linkedids": len({r[0] for r in rows}),
        "attributed to the session": attributed,
        "latency p50 ms": round(statistics.median(latencies), 1) if latencies else None,
        "latency p99 ms": round(percentile(latencies, 99), 1) if latencies else None,
        "latency max ms": round(max(latencies), 1) if latencies else None,
    }


def run(args: argparse.Namespace, work: Path) -> dict[str, object]:
    path, port = prepare(work)
    with (work / "daemon.log").open("w") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "pbx.cli", "serve", "-c", str(path)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        return asyncio.run(
            measure(
                f"http://127.0.0.1:{port}", work, args.calls, args.rate, args.limit, args.seconds
            )
        )
    finally:
        daemon.terminate()
        daemon.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rate", type=int, default=10, help="calls per second")
    parser.add_argument("--limit", type=int, default=20, help="calls at once")
    parser.add_argument("--seconds", type=float, default=2.0, help="talk time of each call")
    args = parser.parse_args()
    hold_lab()  # the lab's ports are shared with test runs
    with tempfile.TemporaryDirectory() as tmp:
        lab("start")
        result = run(args, Path(tmp))
    print(json.dumps(result, indent=2))
    ok = result["records stored"] == result["distinct linkedids"] == args.calls
    lines = [
        "# Calls under load (bench/call_load.py)",
        "",
        f"{args.calls} calls at {args.rate}/s, at most {args.limit} at once,"
        f" {args.seconds} s each,",
        "through the lab Asterisk 22 (SIPp carrier and real line), SQLite, one daemon.",
        "",
        "| measure | value |",
        "| --- | --- |",
        *[f"| {k} | {v} |" for k, v in result.items()],
        "",
        f"Every call stored exactly once: {'yes' if ok else 'NO'}. Target: p99 < 250 ms.",
    ]
    out = ROOT / "bench" / "results" / "call_load.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
