"""`calltrack transcribe -c CONFIG FILE [--json]`: the configured speech engine on one file.

For an admin choosing phrases and an engine: what would a call like this one be tagged with,
and what does the engine make of it, before the daemon does it to every call.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from attribution.keywords import tags_of


def add_commands(commands: Any) -> None:
    """The `transcribe` command, on calltrack's subcommand parser."""
    transcribe = commands.add_parser(
        "transcribe", help="run the configured speech engine on one audio file"
    )
    transcribe.add_argument("-c", "--config", required=True)
    transcribe.add_argument("file", metavar="FILE")
    transcribe.add_argument(
        "--json",
        action="store_true",
        help='print {"engine", "keywords": [{"phrase", "at_seconds"}], "tags", "transcript"}',
    )
    transcribe.set_defaults(run=cmd_transcribe)


def cmd_transcribe(args: argparse.Namespace) -> int:
    from pbx.cli import _load
    from recordings.speech import SpeechFailed, SpeechUnavailable, load_engine

    settings = _load(args.config)
    path = Path(args.file)
    if not path.is_file():
        print(f"calltrack: {path}: no such file", file=sys.stderr)
        return 1
    try:
        engine = load_engine(settings.speech)
        result = engine.analyse(path)
    except SpeechUnavailable as exc:
        print(f"calltrack: {args.config}: {exc}", file=sys.stderr)
        return 2
    except SpeechFailed as exc:
        print(f"calltrack: {path}: cannot read the audio: {exc}", file=sys.stderr)
        return 1
    keywords = settings.speech.keywords
    tags = tags_of([h.phrase for h in result.keywords], keywords)
    if args.json:
        print(
            json.dumps(
                {
                    "engine": engine.name,
                    "keywords": [
                        {"phrase": h.phrase, "at_seconds": h.at_seconds} for h in result.keywords
                    ],
                    "tags": tags,
                    "transcript": result.transcript,
                },
                ensure_ascii=False,
            )
        )
        return 0
    print(f"engine: {engine.name}")
    if not keywords:
        print("keywords: none configured (speech.keywords)")
    else:
        print(f"keywords: {'' if result.keywords else 'none heard'}".rstrip())
    for heard in result.keywords:
        channel = f" ({heard.channel})" if heard.channel else ""
        print(f"  {heard.at_seconds:8.2f} s  {heard.phrase} -> {keywords[heard.phrase]}{channel}")
    print(f"tags: {', '.join(tags) or 'none'}")
    if result.transcript is None:
        print("transcript: none (this engine only spots the configured phrases)")
    else:
        print("transcript:")
        for segment in result.segments or []:
            channel = f"[{segment.channel}] " if segment.channel else ""
            print(f"  {segment.start:8.2f} s  {channel}{segment.text}")
    return 0
