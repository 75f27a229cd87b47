"""Whose X-Forwarded-For is believed (`http.trusted_proxies`): addresses and networks, a peer
written as a dual-stack socket gives it, and a chain of proxies (a CDN's edge, then the site's
nginx) read from its end past every trusted hop."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict, CIMultiDictProxy

from pbx import http
from pbx.http import client_ip, served_over_https
from pbx.keys import SETTINGS
from pbx.settings import ConfigError
from tests.helpers import settings_for


def request(tmp_path: Path, trusted: list[str], peer: str, *lines: tuple[str, str]) -> web.Request:
    app = web.Application()
    app[SETTINGS] = settings_for(tmp_path, http={"trusted_proxies": trusted})
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda key, default=None: (
        (peer, 40000) if key == "peername" else default
    )
    headers = CIMultiDictProxy(CIMultiDict(lines))
    return make_mocked_request(
        "POST", "/api/v1/visits", headers=headers, app=app, transport=transport
    )


def test_a_network_of_proxies_is_trusted(tmp_path: Path) -> None:
    """An exact string compare trusted only the addresses written out: a load balancer's
    pool (10.0.0.0/24) put every visitor in the proxy's one bucket, where one client could spend
    the site's hourly new visits and its 200 numbers."""
    forwarded = ("X-Forwarded-For", "203.0.113.7")
    assert client_ip(request(tmp_path, ["10.0.0.0/24"], "10.0.0.17", forwarded)) == "203.0.113.7"
    assert client_ip(request(tmp_path, ["10.0.0.0/24"], "10.0.1.17", forwarded)) == "10.0.1.17"


def test_a_dual_stack_peer_and_an_ipv6_written_otherwise_match(tmp_path: Path) -> None:
    forwarded = ("X-Forwarded-For", "203.0.113.7")
    mapped = request(tmp_path, ["10.0.0.5"], "::ffff:10.0.0.5", forwarded)
    assert client_ip(mapped) == "203.0.113.7"
    upper = request(tmp_path, ["2001:DB8::1"], "2001:db8::1", forwarded)
    assert client_ip(upper) == "203.0.113.7"


def test_a_chain_of_trusted_proxies_is_read_past(tmp_path: Path) -> None:
    """CDN edge 198.51.100.9 -> nginx 10.0.0.5 -> calltrack: the last hop is the CDN's."""
    trusted = ["10.0.0.5", "198.51.100.0/24"]
    chain = ("X-Forwarded-For", "192.0.2.1, 203.0.113.7, 198.51.100.9")  # forged, client, CDN
    assert client_ip(request(tmp_path, trusted, "10.0.0.5", chain)) == "203.0.113.7"
    # the client's own line first, each proxy's after it (HAProxy's option forwardfor)
    lines = [("X-Forwarded-For", "192.0.2.1"), ("X-Forwarded-For", "203.0.113.7, 198.51.100.9")]
    assert client_ip(request(tmp_path, trusted, "10.0.0.5", *lines)) == "203.0.113.7"
    with_ports = ("X-Forwarded-For", "203.0.113.7:50312, [2001:db8::7]:443")  # Azure's
    assert client_ip(request(tmp_path, trusted, "10.0.0.5", with_ports)) == "2001:db8::7"
    garbage = ("X-Forwarded-For", "203.0.113.7, not-an-address, 198.51.100.9")
    assert client_ip(request(tmp_path, trusted, "10.0.0.5", garbage)) == "10.0.0.5"
    https = ("X-Forwarded-Proto", "https")
    assert served_over_https(request(tmp_path, ["10.0.0.0/8"], "10.1.2.3", https))


def test_a_proxy_that_is_no_address_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_for(tmp_path, http={"trusted_proxies": ["10.0.0.0/8", "nginx.local"]})
    assert "expected an IP address or a network like 10.0.0.0/8, got 'nginx.local'" in str(
        caught.value
    )


def test_a_local_peer_forwarding_unheeded_is_named_once_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The site's nginx left out of trusted_proxies: every visitor is its one client, whose caps
    then bind the whole site, silently until this warning."""
    http._untrusted_forwarder.cache_clear()
    forwarded = ("X-Forwarded-For", "203.0.113.7")
    for _ in range(3):
        assert client_ip(request(tmp_path, [], "10.0.0.5", forwarded)) == "10.0.0.5"
    # a public peer: a visitor through their office's proxy (documentation ranges are not public)
    assert client_ip(request(tmp_path, [], "8.8.4.4", forwarded)) == "8.8.4.4"
    assert client_ip(request(tmp_path, [], "10.0.0.6")) == "10.0.0.6"  # no header: no proxy
    named = [r.getMessage() for r in caplog.records if "trusted_proxies" in r.getMessage()]
    assert len(named) == 1 and named[0].startswith("10.0.0.5 sends X-Forwarded-For"), named
