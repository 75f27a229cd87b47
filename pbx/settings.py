"""The one YAML file an admin edits, as typed, validated settings.

Every problem is reported with the file, line and what was expected, because the person reading
the message is editing YAML by hand, not reading a Python traceback.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from attribution.phone import PhoneNumberError, to_e164

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def _parse_duration(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a duration like 90s, 15m or 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION_RE.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(f"expected a duration like 90s, 15m or 1h, got {value!r}")
    if seconds <= 0:
        raise ValueError(f"expected a positive duration, got {value!r}")
    return seconds


def _parse_e164(value: Any) -> str:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ValueError("expected a phone number in E.164 form like +74951234567")
    try:
        return to_e164(str(value))
    except PhoneNumberError as exc:
        raise ValueError(str(exc)) from None


Seconds = Annotated[
    float,
    BeforeValidator(_parse_duration),
    WithJsonSchema({"type": ["string", "number"], "pattern": r"^\d+(\.\d+)?(ms|s|m|h|d)?$"}),
]
E164 = Annotated[
    str,
    BeforeValidator(_parse_e164),
    PlainSerializer(str),
    WithJsonSchema({"type": "string", "pattern": r"^\+?[0-9 ()\-.]{8,24}$"}),
]
Patterns = Annotated[
    list[str],
    BeforeValidator(lambda v: [v] if isinstance(v, str) else v),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PoolRule(_Model):
    """Which visits a pool serves; every key given must match (glob patterns, any case)."""

    utm_source: Patterns | None = None
    utm_medium: Patterns | None = None
    utm_campaign: Patterns | None = None
    utm_term: Patterns | None = None
    utm_content: Patterns | None = None
    referrer_host: Patterns | None = None
    landing_path: Patterns | None = None
    click_id: Patterns | None = Field(
        None, description="names of click ids that must be present, e.g. gclid, yclid"
    )


class Pool(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    when: PoolRule | None = Field(None, description="no `when`: every visit not matched earlier")
    numbers: list[E164] = Field(min_length=1)
    forward_to: str | None = None


class Site(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    origins: list[str] = Field(min_length=1, description="e.g. https://example.com")
    replace: list[str] = Field(min_length=1, description="the site's own numbers, as shown")
    pools: list[Pool] = Field(default_factory=list)
    fallback: E164 | None = Field(None, description="shown when the matching pool is exhausted")
    forward_to: str | None = None
    respect_privacy_signals: bool = Field(
        False, description="no tracking number for visitors sending DNT or GPC"
    )

    @field_validator("origins")
    @classmethod
    def _origins_are_origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?", origin):
                raise ValueError(
                    f"expected an origin like https://example.com (scheme, host, optional port,"
                    f" no path), got {origin!r}"
                )
        return [o.lower() for o in origins]

    @field_validator("replace")
    @classmethod
    def _replace_are_numbers(cls, shown: list[str]) -> list[str]:
        for text in shown:
            try:
                to_e164(text)
            except PhoneNumberError as exc:
                raise ValueError(f"{text!r}: {exc}") from None
        return shown


class StaticNumber(_Model):
    number: E164
    source: str = Field(min_length=1, max_length=128)
    medium: str = "offline"
    campaign: str | None = None
    forward_to: str | None = None


class Recordings(_Model):
    dir: Path = Path("var/recordings")
    keep_days: int = Field(365, ge=1, description="older recordings are deleted, the calls kept")
    format: Literal["mp3", "opus"] = Field(
        "mp3", description="what WAVs are converted to: mp3 plays in every browser, opus is smaller"
    )


class Http(_Model):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    public_url: str | None = Field(
        None,
        description="how browsers reach the daemon, e.g. https://calls.example.com: used for links"
        " such as recording_url (not the request's Host header); https makes cookies Secure",
    )
    max_body_bytes: int = Field(16384, ge=256)
    max_leases_per_ip: int = Field(
        200, ge=1, description="generous: offices and mobile carriers share one IP"
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="peers whose X-Forwarded-For and X-Forwarded-Proto are believed",
    )
    ping_interval: Seconds = 30.0


class ApiToken(_Model):
    name: str
    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class User(_Model):
    """A person who logs in to the staff pages; admins also see the configuration status."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    password_argon2: str = Field(
        description="from `calltrack hash-password`",
        json_schema_extra={"pattern": r"^\$argon2(id|i|d)\$"},
    )
    role: Literal["admin", "staff"] = "staff"

    @field_validator("password_argon2")
    @classmethod
    def _is_a_hash(cls, value: str) -> str:
        if not re.match(r"^\$argon2(id|i|d)\$", value):
            raise ValueError(
                "expected an argon2 hash (run `calltrack hash-password`), never the password itself"
            )
        return value


class Ui(_Model):
    session_idle: Seconds = Field(12 * 3600.0, description="a login ends after this idle time")
    session_max: Seconds = Field(
        30 * 86400.0, description="a login ends this long after it began, even if in use"
    )
    timezone: str = Field("UTC", description="times on the staff pages, e.g. Europe/Moscow")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r}; expected e.g. Europe/Moscow") from None
        return name


Tag = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[^,]+$")]
DEFAULT_TAGS = ["lead", "sale", "spam", "wrong number"]


class Ami(_Model):
    host: str = "127.0.0.1"
    port: int = Field(5038, ge=1, le=65535)
    username: str = "calltrack"
    secret: str
    action_timeout: Seconds = 5.0
    ping_interval: Seconds = 10.0


class Agi(_Model):
    host: str = "127.0.0.1"
    port: int = Field(4573, ge=1, le=65535)
    answer_within: Seconds = Field(0.5, le=1.0, description="then the dialplan's fallback")
    exit_on_stall: Seconds = Field(
        3.0,
        description="the daemon exits when its event loop stalls this long, so Asterisk's AGI"
        " connections close and calls go to the real line instead of waiting on it",
    )


class Asterisk(_Model):
    ami: Ami
    agi: Agi = Agi()
    context: str = Field("calltrack-inbound", pattern=r"^[A-Za-z0-9_-]+$")
    ring_timeout: Seconds = 30.0
    recordings_dir: Path | None = Field(
        None, description="where Asterisk writes recordings; default: recordings.dir"
    )
    cdr_csv: Path | None = Field(None, description="Asterisk's Master.csv, for reconciliation")


class Settings(_Model):
    freeze_time: Seconds = Field(900.0, description="a number stays held this long after activity")
    forward_to: str = Field(description="the business's real line, e.g. PJSIP/realline")
    sites: list[Site] = Field(default_factory=list)
    static: list[StaticNumber] = Field(default_factory=list)
    recordings: Recordings = Recordings()
    database: str = "sqlite+aiosqlite:///var/calltrack.db"
    api_tokens: list[ApiToken] = Field(default_factory=list)
    users: list[User] = Field(default_factory=list, description="who may log in to the staff pages")
    tags: list[Tag] = Field(
        default_factory=lambda: list(DEFAULT_TAGS), description="what staff may tag calls with"
    )
    ui: Ui = Ui()
    http: Http = Http()
    asterisk: Asterisk | None = None

    @model_validator(mode="after")
    def _numbers_unique(self) -> Settings:
        seen: dict[str, tuple[Any, ...]] = {}
        problems: list[str] = []
        for loc, number in self.number_locations():
            if number in seen:
                first = _dotted(seen[number])
                problems.append(f"{_dotted(loc)}: {number} is already used at {first}")
            else:
                seen[number] = loc
        for key, values in (
            ("sites", [site.name for site in self.sites]),
            ("users", [user.name for user in self.users]),
            ("tags", self.tags),
        ):
            for i, value in enumerate(values):
                if value in values[:i]:
                    problems.append(f"{key}[{i}]: {value!r} is used twice")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def number_locations(self) -> Iterable[tuple[tuple[Any, ...], str]]:
        """Every tracking, fallback and static number with where it stands in the file."""
        for s, site in enumerate(self.sites):
            for p, pool in enumerate(site.pools):
                for n, number in enumerate(pool.numbers):
                    yield ("sites", s, "pools", p, "numbers", n), number
        for i, static in enumerate(self.static):
            yield ("static", i, "number"), static.number

    def site(self, name: str) -> Site | None:
        return next((s for s in self.sites if s.name == name), None)

    @property
    def asterisk_recordings_dir(self) -> Path:
        if self.asterisk and self.asterisk.recordings_dir:
            return self.asterisk.recordings_dir
        return self.recordings.dir


@dataclass(frozen=True)
class ConfigProblem:
    file: str
    line: int | None
    column: int | None
    where: str
    message: str

    def __str__(self) -> str:
        position = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        return (
            f"{position}: {self.where}: {self.message}"
            if self.where
            else f"{position}: {self.message}"
        )


class ConfigError(Exception):
    """The configuration file cannot be used; `problems` says every reason found."""

    def __init__(self, problems: Sequence[ConfigProblem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def _dotted(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _position(tree: Any, loc: Sequence[Any]) -> tuple[int | None, int | None]:
    """Line and column (1-based) of the deepest node of `loc` that exists in the parsed YAML."""
    line: int | None = None
    column: int | None = None
    node = tree
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line, column = node.lc.key(part)
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line, column = node.lc.item(part)
            node = node[part]
        else:
            break
    return (line + 1, column + 1) if line is not None and column is not None else (None, None)


def _friendly(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown key {error['loc'][-1]!r}"
    if kind == "missing":
        return f"required key {error['loc'][-1]!r} is missing"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _problems_from(error: ValidationError, file: str, tree: Any) -> list[ConfigProblem]:
    problems = []
    for item in error.errors():
        loc = tuple(
            p for p in item["loc"] if not (isinstance(p, str) and p.startswith("function-"))
        )
        message = _friendly(item)
        if item["type"] == "extra_forbidden" or item["type"] == "missing":
            where_loc = loc[:-1] if item["type"] == "missing" else loc
        else:
            where_loc = loc
        if item["type"] == "value_error" and not loc:
            # cross-field checks name their own places: "sites[0].pools[1].numbers[0]: ..."
            for part in message.split("; "):
                where, _, text = part.partition(": ")
                line, column = _position(tree, _parse_dotted(where))
                problems.append(ConfigProblem(file, line, column, where, text))
            continue
        line, column = _position(tree, where_loc)
        problems.append(ConfigProblem(file, line, column, _dotted(loc), message))
    return problems


def _parse_dotted(where: str) -> tuple[Any, ...]:
    parts: list[Any] = []
    for name, index in re.findall(r"([A-Za-z_]+)|\[(\d+)\]", where):
        parts.append(name if name else int(index))
    return tuple(parts)


def parse_settings(text: str, file: str = "<config>", base_dir: Path | None = None) -> Settings:
    """Parse and validate YAML text; relative paths are taken from `base_dir`."""
    try:
        tree = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        raise ConfigError(
            [ConfigProblem(file, line, column, "", f"not valid YAML: {exc.problem or exc}")]
        ) from None
    if tree is None:
        tree = CommentedMap()
    if not isinstance(tree, dict):
        raise ConfigError([ConfigProblem(file, 1, 1, "", "expected a mapping of settings")])
    try:
        settings = Settings.model_validate(_plain(tree))
    except ValidationError as exc:
        raise ConfigError(_problems_from(exc, file, tree)) from None
    return _rebase(settings, base_dir) if base_dir else settings


def _plain(node: Any) -> Any:
    """ruamel's round-trip types (kept for line numbers) as plain dicts, lists and scalars."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    return node


def _rebase(settings: Settings, base_dir: Path) -> Settings:
    """Relative paths in the file mean: next to the file, wherever the daemon was started."""
    recordings = settings.recordings.model_copy(update={"dir": base_dir / settings.recordings.dir})
    update: dict[str, Any] = {"recordings": recordings}
    prefix = "sqlite+aiosqlite:///"
    if settings.database.startswith(prefix):
        path = settings.database.removeprefix(prefix)
        if path and not path.startswith("/") and not path.startswith(":memory:"):
            update["database"] = prefix + str((base_dir / path).resolve())
    if settings.asterisk:
        paths = {
            key: base_dir / value
            for key in ("recordings_dir", "cdr_csv")
            if (value := getattr(settings.asterisk, key)) is not None
        }
        update["asterisk"] = settings.asterisk.model_copy(update=paths)
    return settings.model_copy(update=update)


def load_settings(path: str | Path) -> Settings:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [ConfigProblem(str(path), None, None, "", exc.strerror or str(exc))]
        ) from None
    except UnicodeDecodeError:
        raise ConfigError([ConfigProblem(str(path), None, None, "", "not UTF-8 text")]) from None
    return parse_settings(text, str(path), path.resolve().parent)


def json_schema() -> dict[str, Any]:
    schema = Settings.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "calltrack configuration"
    return schema
