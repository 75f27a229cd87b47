"""Speech benchmark (issue 16): the engine's real-time factor here, and whether a backlog of
recordings waiting for speech analysis moves the visitor API's latency.

1. Real-time factor: espeak-ng speaks a few sentences with and without the configured phrases
   (`--seconds` of audio, about 40), sent through 8 kHz mono like a phone call and converted as
   the recording worker stores it (recordings.files.convert, mp3); the configured engine's
   analyse() is timed `--repeats` times after its model is loaded. RTF = analysis seconds /
   audio seconds, on one core (one worker process analyses one call at a time).
2. Lease API with speech queued: `calltrack serve` with speech configured, its lease+ping mix
   driven by bench/lease_mix.lua (bench/lease_api.py's pieces), once with nothing to analyse
   and once with `--queued` converted recordings waiting (so `speech.workers` processes analyse
   all through the run), interleaved A/B per round so that noise hits both. The figures that
   matter are queued / idle for p99 and req/s, side by side in one run, and the verdict: the
   idle rounds vary among themselves (±15 % here), so one pair proves nothing; the queued
   rounds' median p99 is compared with the idle rounds' range and by an exact permutation test.

Usage: .venv/bin/python -m bench.speech [--rounds 8] [--duration 10] [--queued 20]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from attribution.calls import CallReport
from bench import lease_api
from pbx.settings import Settings, Speech, load_settings
from pbx.storage.calls import CallStore
from pbx.storage.db import open_engine
from pbx.storage.visits import VisitStore
from recordings.files import convert
from recordings.speech import load_engine
from tests.speech_audio import KEYWORD_TEXT, UNRELATED_TEXT, speak

BENCH = Path(__file__).absolute().parent
MAX_SPLITS = 200_000  # 10 rounds a side: 184,756 splits, a second of medians
KEYWORDS = {"price": "lead", "call me back": "callback", "refund": "complaint"}
TAGS = ["lead", "callback", "complaint", "spam"]


def recording(folder: Path, seconds: float) -> tuple[Path, float]:
    """About `seconds` of speech as the recording worker stores a call: 8 kHz, then mp3."""
    sentences = []
    while len(" ".join(sentences).split()) < seconds * 2.5:  # 150 words a minute
        sentences += [KEYWORD_TEXT, UNRELATED_TEXT]
    wav = speak(" ".join(sentences), folder / "speech.wav")
    converted = convert(wav, "mp3")
    wav.unlink()
    return converted.path, converted.seconds


def real_time_factor(speech: Speech, audio: Path, seconds: float, repeats: int) -> dict[str, float]:
    started = time.perf_counter()
    engine = load_engine(speech)
    loaded = time.perf_counter() - started
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = engine.analyse(audio)
        times.append(time.perf_counter() - started)
    analyse = statistics.median(times)
    print(
        f"  {speech.engine}: load {loaded:.2f} s, analyse {analyse:.2f} s for {seconds:.1f} s"
        f" of audio: RTF {analyse / seconds:.3f}; heard {len(result.keywords)} phrase(s)",
        flush=True,
    )
    return {"load_s": loaded, "analyse_s": analyse, "audio_s": seconds, "rtf": analyse / seconds}


@dataclass
class LeaseRun:
    kind: str  # "idle" or "queued"
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    backlog_before: float
    backlog_after: float
    analysed: float


async def queue_calls(settings: Settings, audio: Path, count: int) -> None:
    """`count` answered calls whose converted recordings wait for speech analysis."""
    engine = open_engine(settings.database)
    try:
        visits = VisitStore(engine, settings, time.time)
        store = CallStore(engine, settings, visits, time.time)
        now = time.time() - 3600
        for i in range(count):
            name = f"bench-{i}.mp3"
            shutil.copy(audio, settings.asterisk_recordings_dir / name)
            report = CallReport(
                f"bench.{i}", "+79161234567", "+74990000099", now + i, now + i + 60, now + i + 2,
                "ANSWER", name,
            )  # fmt: skip
            await store.store(report)
    finally:
        await engine.dispose()


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def lease_run(
    args: argparse.Namespace, kind: str, round_no: int, audio: Path, workdir: Path
) -> LeaseRun:
    run_dir = workdir / f"{kind}-{round_no}"
    run_dir.mkdir()
    config = lease_api.write_config(run_dir, args.numbers)
    data = json.loads(config.read_text())
    data |= {"tags": TAGS, "speech": {"keywords": KEYWORDS, "workers": args.workers}}
    config.write_text(json.dumps(data))
    env = lease_api.server_env()
    upgrade = [sys.executable, "-m", "pbx.cli", "db", "upgrade", "-c", str(config)]
    subprocess.run(upgrade, check=True, capture_output=True, env=env)
    settings = load_settings(config)
    settings.asterisk_recordings_dir.mkdir(parents=True, exist_ok=True)
    if kind == "queued":
        asyncio.run(queue_calls(settings, audio, args.queued))
    port = lease_api.free_port()
    argv = [sys.executable, "-m", "pbx.cli", "serve", "-c", str(config), "--port", str(port)]
    with lease_api.server(argv, port, run_dir / "server.log"):
        sessions = run_dir / "sessions.txt"
        lease_api.start_visits(port, lease_api.HELD_VISITS, sessions)
        if args.warmup > 0:
            lease_api.run_wrk(args, None, port, args.warmup, sessions, "mix")
        backlog_before = metric(port, "calltrack_speech_backlog")
        raw = lease_api.run_wrk(args, None, port, args.duration, sessions, "mix")
        backlog_after = metric(port, "calltrack_speech_backlog")
        analysed = metric(port, 'calltrack_speech_calls_total{outcome="analysed"}')
    run = LeaseRun(
        kind,
        round_no,
        raw["requests"] / (raw["duration_us"] / 1e6),
        raw["p50_us"] / 1000,
        raw["p99_us"] / 1000,
        raw["non2xx"],
        backlog_before,
        backlog_after,
        analysed,
    )
    print(
        f"  {kind:<6} round {round_no}: {run.rps:7.0f} req/s  p50 {run.p50_ms:6.2f} ms"
        f"  p99 {run.p99_ms:6.2f} ms  non-2xx {run.non2xx}  backlog {backlog_before:.0f} ->"
        f" {backlog_after:.0f} (analysed {analysed:.0f})",
        flush=True,
    )
    return run


def markdown(args: argparse.Namespace, rtf: dict[str, float], runs: list[LeaseRun]) -> str:
    load = os.getloadavg()
    lines = [
        f"# Speech bench ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"`.venv/bin/python -m bench.speech {' '.join(args.argv)}` on {os.cpu_count()} cores,"
        f" load {load[0]:.1f} at the end; {lease_api.versions()}",
        "",
        "## Real-time factor (one worker process, after the model is loaded)",
        "",
        "| engine | audio | model load | analysis | RTF |",
        "|---|---:|---:|---:|---:|",
        f"| {args.engine} | {rtf['audio_s']:.1f} s | {rtf['load_s']:.2f} s"
        f" | {rtf['analyse_s']:.2f} s | {rtf['rtf']:.3f} |",
    ]
    if not runs:  # --rounds 0: the real-time factor only
        return "\n".join(lines) + "\n"
    lines += [
        "",
        f"## Lease API (lease+ping mix, {args.connections} connections, {args.duration:g} s"
        f" per run) with {args.queued} recordings queued for speech vs none",
        "",
        "| round | idle req/s | queued req/s | req/s ratio | idle p99 | queued p99 | p99 ratio"
        " | backlog during the queued run |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for round_no in range(1, args.rounds + 1):
        idle = next(r for r in runs if r.kind == "idle" and r.round == round_no)
        queued = next(r for r in runs if r.kind == "queued" and r.round == round_no)
        lines.append(
            f"| {round_no} | {idle.rps:.0f} | {queued.rps:.0f} | {queued.rps / idle.rps:.2f}"
            f" | {idle.p99_ms:.1f} ms | {queued.p99_ms:.1f} ms"
            f" | {queued.p99_ms / idle.p99_ms:.2f} | {queued.backlog_before:.0f} →"
            f" {queued.backlog_after:.0f} |"
        )
    return "\n".join([*lines, "", *verdict(runs)]) + "\n"


def permutation_p(a: list[float], b: list[float]) -> float:
    """Two-sided exact permutation test of the difference of medians: the share of all ways to
    split the pooled rounds into groups of len(a) and len(b) whose medians differ at least as
    much as a's and b's do. Exact (no random draws) for the few rounds a bench runs."""
    pooled = a + b
    seen = abs(statistics.median(a) - statistics.median(b))
    if math.comb(len(pooled), len(a)) > MAX_SPLITS:
        raise SystemExit(f"too many rounds for an exact test ({len(a)} + {len(b)}); at most 10")
    splits = as_far = 0
    for chosen in itertools.combinations(range(len(pooled)), len(a)):
        inside = set(chosen)
        first = [pooled[i] for i in chosen]
        second = [v for i, v in enumerate(pooled) if i not in inside]
        splits += 1
        if abs(statistics.median(first) - statistics.median(second)) >= seen - 1e-12:
            as_far += 1
    return as_far / splits


def verdict(runs: list[LeaseRun]) -> list[str]:
    """Did speech move the lease p99 beyond the idle rounds' own noise? It did if the queued
    rounds' median p99 lies outside the idle rounds' range, or if the permutation test says the
    two medians differ (p < 0.05)."""
    idle = [r.p99_ms for r in runs if r.kind == "idle"]
    queued = [r.p99_ms for r in runs if r.kind == "queued"]
    p = permutation_p(idle, queued)
    middle = statistics.median(queued)
    moved = not min(idle) <= middle <= max(idle) or p < 0.05
    return [
        f"Lease p99 over {len(idle)} rounds each: idle median {statistics.median(idle):.1f} ms"
        f" (range {min(idle):.1f}–{max(idle):.1f} ms), queued median {middle:.1f} ms"
        f" (range {min(queued):.1f}–{max(queued):.1f} ms); ratio of medians"
        f" {middle / statistics.median(idle):.2f}; permutation test of the medians p = {p:.2f}.",
        "",
        "**Verdict: "
        + ("moved beyond noise" if moved else "within the idle rounds' own noise")
        + "** (moved = the queued median outside the idle range, or p < 0.05).",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="pocketsphinx", help="speech.engine to time")
    parser.add_argument("--model-dir", type=Path, help="speech.model_dir (vosk, faster-whisper)")
    parser.add_argument("--seconds", type=float, default=40.0, help="audio length for the RTF")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--rounds", type=int, default=8, help="idle/queued pairs (0: the real-time factor only)"
    )
    parser.add_argument("--queued", type=int, default=20, help="recordings waiting for speech")
    parser.add_argument("--workers", type=int, default=1, help="speech.workers")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pings", type=int, default=9)
    parser.add_argument("--think-ms", type=int, default=0)
    parser.add_argument("--numbers", type=int, default=20000)
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "speech.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if not 0 <= args.rounds <= 10:
        parser.error("--rounds: 0 to 10 (the verdict's exact test enumerates every split)")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    for tool in ("wrk", "espeak-ng", "ffmpeg"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (scripts/bootstrap installs it)")
    # (the tags of a Speech outside a config must be among the default tags: all lead here)
    speech = Speech(
        engine=args.engine, keywords=dict.fromkeys(KEYWORDS, "lead"), model_dir=args.model_dir
    )
    with tempfile.TemporaryDirectory(prefix="calltrack-speech-bench-") as tmp:
        workdir = Path(tmp)
        audio, seconds = recording(workdir, args.seconds)
        print("real-time factor:", flush=True)
        rtf = real_time_factor(speech, audio, seconds, args.repeats)
        print("lease API, idle vs queued:", flush=True)
        runs = [
            lease_run(args, kind, round_no, audio, workdir)
            for round_no in range(1, args.rounds + 1)
            for kind in (("idle", "queued") if round_no % 2 else ("queued", "idle"))
        ]
    report = markdown(args, rtf, runs)
    print(report)
    if not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
