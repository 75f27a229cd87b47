"""Signed recording links (issue 14): `/recordings/{id}?expires=&sig=` plays the call's recording
without a login until it expires; a changed call, expiry or signature is refused with a JSON
403; the key is kept in the database, so another daemon (or a restart) on it accepts the link.
The signatures are computed here with hmac from the key in the table, not by the code under test.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from pbx.app import build_app
from pbx.keys import ENGINE, LINK_KEYS
from pbx.storage.link_keys import KEY_REFRESH, READ_TIMEOUT, REREAD_AFTER, rotate
from pbx.storage.tables import link_keys
from tests.api.test_cli import calltrack
from tests.api.test_staff_ui import store_call
from tests.helpers import FakeClock, db_error, migrate, settings_for, staff_users

Client = TestClient  # type: ignore[type-arg]
AUDIO = bytes(range(256)) * 40  # 10240 bytes
DAY = 86_400


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def config(tmp_path: Path) -> dict[str, object]:
    return {"users": staff_users(), "recordings": {"dir": "rec"}}


@pytest.fixture
async def client(
    tmp_path: Path, clock: FakeClock, aiohttp_client: Callable[..., Awaitable[Client]]
) -> Client:
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "r1.mp3").write_bytes(AUDIO)
    settings = settings_for(tmp_path, **config(tmp_path))
    await migrate(settings)
    return await aiohttp_client(build_app(settings, clock=clock))


async def another_daemon(
    tmp_path: Path, clock: FakeClock, aiohttp_client: Callable[..., Awaitable[Client]]
) -> Client:
    """A second daemon on the same database (a restart, or one behind the same balancer)."""
    return await aiohttp_client(build_app(settings_for(tmp_path, **config(tmp_path)), clock=clock))


async def stored_key(client: Client) -> bytes:
    await client.app[LINK_KEYS].key()  # made on first use
    async with client.app[ENGINE].connect() as conn:
        secret = await conn.scalar(
            select(link_keys.c.secret).where(link_keys.c.name == "recordings")
        )
    return bytes.fromhex(secret)


def link(key: bytes, call_id: int, expires: int) -> str:
    sig = hmac.new(key, f"recording:{call_id}:{expires}".encode(), hashlib.sha256).hexdigest()
    return f"/recordings/{call_id}?expires={expires}&sig={sig}"


async def test_a_valid_link_plays_without_a_login_and_seeks(
    client: Client, clock: FakeClock
) -> None:
    call = await store_call(client, "r1", recording="r1.mp3")
    url = link(await stored_key(client), call, int(clock.now) + 7 * DAY)
    whole = await client.get(url)
    assert whole.status == 200 and await whole.read() == AUDIO
    assert whole.headers["Content-Type"] == "audio/mpeg"
    part = await client.get(url, headers={"Range": "bytes=1000-1999"})
    assert part.status == 206 and part.headers["Content-Range"] == "bytes 1000-1999/10240"
    assert await part.read() == AUDIO[1000:2000]


async def test_an_expired_link_is_refused(client: Client, clock: FakeClock) -> None:
    call = await store_call(client, "r1", recording="r1.mp3")
    url = link(await stored_key(client), call, int(clock.now) + 60)
    assert (await client.get(url)).status == 200
    clock.advance(60)
    expired = await client.get(url)
    assert expired.status == 403
    assert await expired.json() == {"error": "this link has expired"}


async def test_tampered_links_are_refused(client: Client, clock: FakeClock) -> None:
    call = await store_call(client, "r1", recording="r1.mp3")
    other = await store_call(client, "r2", recording="r1.mp3", at=clock.now + 100)
    key = await stored_key(client)
    expires = int(clock.now) + 60
    good = link(key, call, expires)
    sig = good.rsplit("=", 1)[1]
    forged = [
        good.replace(f"expires={expires}", f"expires={expires + 10 * DAY}"),  # made to last
        f"/recordings/{other}?expires={expires}&sig={sig}",  # moved to another call
        good[:-1] + ("0" if good[-1] != "0" else "1"),  # a changed signature
        link(b"another server's key", call, expires),
        f"/recordings/{call}?expires={expires}",  # no signature
        f"/recordings/{call}?expires=soon&sig={sig}",
    ]
    for url in forged:
        response = await client.get(url)
        assert response.status == 403, url
        assert await response.json() == {"error": "this link is not valid"}, url


@pytest.fixture
async def day_link(client: Client, clock: FakeClock) -> tuple[int, str]:
    """A call with a recording, and a link to it that expires in a day."""
    call = await store_call(client, "r1", recording="r1.mp3")
    return call, link(await stored_key(client), call, int(clock.now) + DAY)


@pytest.fixture
async def second(
    client: Client,
    clock: FakeClock,
    tmp_path: Path,
    aiohttp_client: Callable[..., Awaitable[Client]],
) -> Client:
    """Another daemon on `client`'s database."""
    return await another_daemon(tmp_path, clock, aiohttp_client)


async def test_the_key_survives_a_restart_and_is_shared_by_daemons(
    client: Client, second: Client, day_link: tuple[int, str]
) -> None:
    _, url = day_link
    assert await second.app[LINK_KEYS].key() == await stored_key(client)
    assert (await second.get(url)).status == 200


async def test_a_link_to_a_call_without_recording_is_a_clear_404(
    client: Client, clock: FakeClock
) -> None:
    call = await store_call(client, "n1")
    response = await client.get(link(await stored_key(client), call, int(clock.now) + DAY))
    assert response.status == 404 and "error" in await response.json()


def rotate_cli(tmp_path: Path, *flags: str) -> str:
    result = calltrack("links", "rotate", "-c", str(tmp_path / "calltrack.yaml"), *flags)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_the_command_rotates_the_key_and_says_what_becomes_of_earlier_links(
    client: Client, tmp_path: Path
) -> None:
    old_key = await stored_key(client)
    said = rotate_cli(tmp_path)
    assert "links sent before open until they expire (webhooks.recording_link_ttl: 7 days" in said
    assert "Running daemons take it within 30 s" in said
    assert await stored_key(client) not in (old_key,)
    assert "links sent before no longer open" in rotate_cli(tmp_path, "--revoke")


async def test_a_rotated_key_signs_from_then_and_earlier_links_open_until_they_expire(
    client: Client, clock: FakeClock
) -> None:
    """A key read from a leaked database or backup signs links to every recording: it can be
    replaced while daemons run. Webhooks sign with the new key once the daemon has read it
    again (within KEY_REFRESH seconds); links sent before still open until they expire."""
    call = await store_call(client, "r1", recording="r1.mp3")
    old_key = await stored_key(client)
    old_link = link(old_key, call, int(clock.now) + 7 * DAY)  # the longest a webhook signs
    await rotate(client.app[ENGINE], clock.now, revoke=False)
    new_key = await stored_key(client)
    assert new_key != old_key
    new_link = link(new_key, call, int(clock.now) + DAY)
    assert await client.app[LINK_KEYS].key() == old_key  # read less than KEY_REFRESH ago
    clock.advance(KEY_REFRESH)
    assert await client.app[LINK_KEYS].key() == new_key
    assert (await client.get(old_link)).status == 200
    assert (await client.get(new_link)).status == 200
    await rotate(client.app[ENGINE], clock.now, revoke=False)  # a second one drops the first key
    clock.advance(KEY_REFRESH)
    assert (await client.get(old_link)).status == 403
    assert (await client.get(new_link)).status == 200


async def test_the_previous_key_opens_no_link_made_to_outlive_the_rotation(
    client: Client, clock: FakeClock
) -> None:
    """Whoever holds the leaked key could sign a link that expires in years: the previous key
    opens only links that expire within the link lifetime of the rotation, as it signed them."""
    call = await store_call(client, "r1", recording="r1.mp3")
    leaked = await stored_key(client)
    await rotate(client.app[ENGINE], clock.now, revoke=False)
    clock.advance(KEY_REFRESH)
    last_signed = link(leaked, call, int(clock.now - KEY_REFRESH) + 7 * DAY)
    assert (await client.get(last_signed)).status == 200
    forged = await client.get(link(leaked, call, int(clock.now) + 365 * DAY))
    assert forged.status == 403 and await forged.json() == {"error": "this link is not valid"}


async def test_a_link_signed_with_a_new_key_opens_on_a_daemon_that_read_the_old_one(
    client: Client,
    clock: FakeClock,
    tmp_path: Path,
    aiohttp_client: Callable[..., Awaitable[Client]],
) -> None:
    """Daemon A reads the rotated key and a webhook sends its link; the CRM fetches it at once
    through daemon B, which read the keys a few seconds before the rotation."""
    call = await store_call(client, "r1", recording="r1.mp3")
    before = link(await stored_key(client), call, int(clock.now) + DAY)
    assert (await client.get(before)).status == 200  # B (client) holds the old key now
    await rotate(client.app[ENGINE], clock.now, revoke=False)
    other = await another_daemon(tmp_path, clock, aiohttp_client)
    signed_by_a = link(await other.app[LINK_KEYS].key(), call, int(clock.now) + DAY)
    clock.advance(REREAD_AFTER)
    assert (await client.get(signed_by_a)).status == 200


async def test_a_revoked_key_stops_its_links_in_every_daemon(
    client: Client, clock: FakeClock, second: Client, day_link: tuple[int, str]
) -> None:
    call, leaked = day_link
    assert (await second.get(leaked)).status == 200
    await rotate(client.app[ENGINE], clock.now, revoke=True)
    clock.advance(KEY_REFRESH)
    for daemon in (client, second):
        refused = await daemon.get(leaked)
        assert refused.status == 403
        assert await refused.json() == {"error": "this link is not valid"}
    fresh = link(await stored_key(client), call, int(clock.now) + DAY)
    assert (await second.get(fresh)).status == 200


async def test_what_cannot_be_a_link_is_refused_without_reading_the_keys(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    call = await store_call(client, "r1", recording="r1.mp3")

    async def no_database(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the keys were read")

    monkeypatch.setattr(client.app[LINK_KEYS], "ring", no_database)
    for query in ("", "?expires=1&sig=zz", "?expires=9999999999999&sig=" + "0" * 64):
        response = await client.get(f"/recordings/{call}{query}")
        assert response.status == 403, query


async def test_links_keep_opening_while_the_keys_cannot_be_read_again(
    client: Client,
    clock: FakeClock,
    tmp_path: Path,
    aiohttp_client: Callable[..., Awaitable[Client]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The keys are read again every KEY_REFRESH seconds: a database away then must not turn
    every link into a 500 (the keys read last serve). A daemon that never read them answers
    503 (try again), and reads again at most once in REREAD_AFTER, however many ask."""
    call = await store_call(client, "r1", recording="r1.mp3")
    url = link(await stored_key(client), call, int(clock.now) + DAY)
    reads = 0

    async def away(name: str) -> None:
        nonlocal reads
        reads += 1
        clock.advance(READ_TIMEOUT)  # a read that hung until its bound
        raise db_error(OperationalError, "unable to open database file")

    monkeypatch.setattr(client.app[LINK_KEYS], "_read", away)
    clock.advance(KEY_REFRESH)
    assert (await client.get(url)).status == 200
    ring = await client.app[LINK_KEYS].ring()
    assert ring.current == await stored_key(client) and ring.previous is None
    assert reads == 1
    fresh = await another_daemon(tmp_path, clock, aiohttp_client)
    monkeypatch.setattr(fresh.app[LINK_KEYS], "_read", away)
    for _ in range(5):
        unavailable = await fresh.get(url)
        assert unavailable.status == 503 and "try again" in (await unavailable.json())["error"]
    assert reads == 2


async def test_a_link_a_daemon_signed_with_the_old_key_after_the_rotation_opens(
    client: Client, clock: FakeClock
) -> None:
    """Daemons sign with the keys they read up to KEY_REFRESH ago: a link signed just after a
    rotation with the old key (expiring a little after the rotation's lifetime) opens."""
    call = await store_call(client, "r1", recording="r1.mp3")
    old_key = await client.app[LINK_KEYS].key()
    await rotate(client.app[ENGINE], clock.now, revoke=False)
    clock.advance(KEY_REFRESH - 1)
    signed = await client.app[LINK_KEYS].key()
    assert signed == old_key
    url = link(signed, call, int(clock.now) + 7 * DAY)
    clock.advance(KEY_REFRESH)
    assert await client.app[LINK_KEYS].key() != old_key
    assert (await client.get(url)).status == 200
