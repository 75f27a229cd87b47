"""Which page loads are a search engine's or a link preview's crawler, not a visitor: they run
the widget (Googlebot, YandexBot and Bingbot render pages with JavaScript) but never call.

Given a tracking number, each crawl would hold one for the freeze time, and a crawl of a big site
drains the pools real visitors need; stored, crawls would fill the reports' organic and direct
rows with sessions nobody made. The server owns the rule (the widget asks, the server decides),
on the User-Agent: crawlers say who they are there, and a browser pretending to be one only
gives up its own tracking number.
"""

from __future__ import annotations

import re

#: a name ending in "bot" (Googlebot, bingbot, YandexBot, Applebot, DuckDuckBot, AhrefsBot,
#: GPTBot...), but not a phone's (CUBOT), a crawler or spider by name (Baiduspider,
#: Bytespider), and those that say neither
_CRAWLER = re.compile(
    r"(?<!cu)bot\b|crawler|spider|slurp|facebookexternalhit|bingpreview"
    r"|mediapartners-google|adsbot-google|google-inspectiontool|googleother|feedfetcher"
    r"|ia_archiver|yandex(?:metrika|direct|images|video|media|news|favicons|webmaster"
    r"|pagechecker|screenshot|renderresources)",
    re.IGNORECASE,
)
#: a User-Agent is read up to this many characters: the crawlers' names come first
_READ = 512


def is_crawler(user_agent: str | None) -> bool:
    """Whether the User-Agent names a crawler (see the module's docstring for why)."""
    if not user_agent:
        return False
    return _CRAWLER.search(user_agent[:_READ]) is not None
