"""Where a visit came from, read the way analytics tools read it: UTM tags, click ids, referrer."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from attribution.reports import OWN_ROWS, TOTAL, WEB

CLICK_ID_SOURCES = {
    "gclid": ("google", "cpc"),
    "gbraid": ("google", "cpc"),
    "wbraid": ("google", "cpc"),
    "yclid": ("yandex", "cpc"),
    "msclkid": ("bing", "cpc"),
    "fbclid": ("facebook", "referral"),  # also set on organic shares, so not "paid"
    "ttclid": ("tiktok", "cpc"),
    "vkclid": ("vk", "cpc"),
}
SEARCH_ENGINES = {
    "google": "google",
    "yandex": "yandex",
    "ya.ru": "yandex",
    "bing.com": "bing",
    "duckduckgo.com": "duckduckgo",
    "search.yahoo.com": "yahoo",
    "baidu.com": "baidu",
    "go.mail.ru": "mail.ru",
    "ecosia.org": "ecosia",
}
UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
MAX_VALUE = 512
MAX_URL = 1024  # the longest URL kept: one client must not fill the disk with URLs
#: the report's rows that name no channel (attribution.reports), never a visitor's tag
RESERVED_KEYS = OWN_ROWS | {WEB, TOTAL}
DIRECT = "(direct)"
NONE = "(none)"
REFERRAL = "referral"  # the medium of an untagged link from another site


@dataclass(frozen=True)
class TrafficSource:
    source: str
    medium: str
    campaign: str | None = None
    term: str | None = None
    content: str | None = None
    click_ids: dict[str, str] = field(default_factory=dict)
    referrer: str | None = None
    landing_url: str = ""

    @property
    def referrer_host(self) -> str | None:
        return host_of(self.referrer) if self.referrer else None

    @property
    def landing_path(self) -> str:
        return path_of(self.landing_url)


def path_of(url: str) -> str:
    """A landing page as reports group it: its path, without query or fragment."""
    try:
        return urlsplit(url).path or "/"
    except ValueError:
        return "/"


def host_of(url: str) -> str | None:
    """A referrer as reports group it: its host, lower case, without "www."."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host.lower().removeprefix("www.") if host else None


def _search_engine(host: str) -> str | None:
    for marker, name in SEARCH_ENGINES.items():
        if host == marker or host.startswith(marker + ".") or host.endswith("." + marker):
            return name
        if "." not in marker and (f".{marker}." in f".{host}."):
            return name
    return None


#: the control characters no page address or campaign tag holds: the visitor API refuses them in
#: what a browser sends (web_widget.api), and read_source drops them from decoded tags
CONTROL_CHARACTERS = r"\x00-\x1f\x7f"
_CONTROL = re.compile(f"[{CONTROL_CHARACTERS}]")


def channel_name(value: str) -> str:
    """A tag (or a referrer's host, or a cost file's name) that spells one of the report's own
    rows ("(unattributed)") is kept apart from it: a visitor's link must not add to, or hide
    in, the row of calls nobody is credited with, and an exported "(other)" row's cost is not
    the report's folded visits. A visit and a cost spelt alike still meet on one row."""
    return f"utm:{value}" if value in RESERVED_KEYS else value


def read_source(url: str, referrer: str | None) -> TrafficSource:
    """The visit's source: explicit UTM tags first, then click ids, then the referrer."""
    try:
        pairs = parse_qsl(urlsplit(url).query, keep_blank_values=False)
    except ValueError:
        pairs = []
    # decoded, a value may hold what the address could not (%00): control characters go, they
    # name no campaign (and PostgreSQL refuses a NUL in text)
    query = {k: _CONTROL.sub("", v) for k, v in pairs}
    tags = {k: channel_name(query[k][:MAX_VALUE]) for k in UTM_KEYS if query.get(k)}
    click_ids = {k: query[k][:MAX_VALUE] for k in CLICK_ID_SOURCES if query.get(k)}
    referrer = referrer[:MAX_URL] if referrer else None
    ref_host = host_of(referrer) if referrer else None
    if ref_host and ref_host == host_of(url):
        ref_host = None  # moving inside the site is not a source
    if ref_host:  # a forged referrer "http://(unattributed)/" is a tag by another name
        # a host is at most 253 characters in DNS, but a referrer's can be anything: cut to
        # the source column's width like the tags (PostgreSQL refuses a longer value)
        ref_host = channel_name(ref_host[:MAX_VALUE])
    if "utm_source" in tags or "utm_medium" in tags:
        source = tags.get("utm_source") or ref_host or "(not set)"
        medium = tags.get("utm_medium", NONE)
    elif click_ids:
        source, medium = CLICK_ID_SOURCES[next(iter(click_ids))]
    elif ref_host and (engine := _search_engine(ref_host)):
        source, medium = engine, "organic"
    elif ref_host:
        source, medium = ref_host, REFERRAL
    else:
        source, medium = DIRECT, NONE
    return TrafficSource(
        source=source,
        medium=medium,
        campaign=tags.get("utm_campaign"),
        term=tags.get("utm_term"),
        content=tags.get("utm_content"),
        click_ids=click_ids,
        referrer=referrer,
        landing_url=url[:MAX_URL],
    )
