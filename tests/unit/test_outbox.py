"""The outbox is written in the transaction that makes an event true (issue 14): a stored call,
a changed review and a new sale each write one row per target that takes the event, and a call
whose transaction fails leaves none. And the `webhooks:` config, list or mapping, with its
errors at their lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from attribution.calls import CallReport
from pbx.settings import ConfigError
from pbx.storage import call_credits
from pbx.storage.calls import CallStore, ReviewChanges
from pbx.storage.db import open_engine
from pbx.storage.outbox import Outbox
from pbx.storage.sales import Credited, Sale, SaleStore
from pbx.storage.tables import calls, outbox
from pbx.storage.visits import VisitStore
from tests.helpers import FakeClock, migrate, settings_for

SECRET = "s" * 32
HOOKS = [
    {"name": "crm", "url": "http://127.0.0.1:9/crm", "secret": SECRET},  # call.completed only
    {
        "name": "all",
        "url": "http://127.0.0.1:9/all",
        "secret": SECRET,
        "events": ["call.completed", "call.updated", "sale.created"],
    },
]
GA4 = {"measurement_id": "G-TEST1234", "api_secret": "secret-of-the-stream"}


async def harness(tmp_path: Path, **config: Any) -> tuple[CallStore, SaleStore, Any, FakeClock]:
    settings = settings_for(tmp_path, **config)
    await migrate(settings)
    engine = open_engine(settings.database)
    clock = FakeClock()
    box = Outbox(settings, clock)
    woken: list[int] = []
    box.on_added(lambda: woken.append(1))
    store = CallStore(engine, settings, VisitStore(engine, settings, clock), clock, box)
    sales = SaleStore(engine, "RU", 90, clock, box)
    return store, sales, (engine, woken), clock


async def rows(engine: Any) -> list[tuple[str, str, int, str | None]]:
    async with engine.connect() as conn:
        result = await conn.execute(
            select(outbox.c.target, outbox.c.event, outbox.c.call_id, outbox.c.sale_reference)
            .where(outbox.c.state == "pending")
            .order_by(outbox.c.id)
        )
        return [tuple(r) for r in result]  # type: ignore[misc]


def report(linkedid: str, at: float) -> CallReport:
    return CallReport(linkedid, "+79161234567", "+74990000101", at, at + 60, at + 5, "ANSWER")


async def test_each_event_is_written_for_each_target_that_takes_it(tmp_path: Path) -> None:
    store, sales, (engine, woken), clock = await harness(tmp_path, webhooks=HOOKS, ga4=GA4)
    assert await store.store(report("a1", clock.now))
    assert await rows(engine) == [
        ("crm", "call.completed", 1, None),
        ("all", "call.completed", 1, None),
        ("ga4", "call.completed", 1, None),
    ]
    assert await store.amend(1, ReviewChanges(notes="called back"), "ada")
    credited = await sales.record(Sale("deal-1", "+79161234567", 150000, None), "crm")
    assert isinstance(credited, Credited) and credited.call_id == 1
    again = await sales.record(Sale("deal-1", "+79161234567", 150000, None), "crm")
    assert isinstance(again, Credited) and not again.created  # the same sale: no new event
    assert (await rows(engine))[3:] == [
        ("all", "call.updated", 1, None),
        ("all", "sale.created", 1, "deal-1"),
    ]
    assert len(woken) == 3  # once per committed change that wrote events
    # a correction of the amount: the call's sale figures changed, so call.updated for it
    fixed = await sales.record(Sale("deal-1", "+79161234567", 175000, None), "crm")
    assert isinstance(fixed, Credited) and not fixed.created and fixed.changed == (1,)
    assert (await rows(engine))[5:] == [("all", "call.updated", 1, None)]
    async with engine.connect() as conn:
        ids = list(await conn.scalars(select(outbox.c.event_id)))
        due = set(await conn.scalars(select(outbox.c.due_at)))
        give_up = set(await conn.scalars(select(outbox.c.give_up_at)))
    assert len(set(ids)) == 6 and all(len(i) == 32 for i in ids)
    assert due == {clock.now}
    assert give_up == {clock.now + 86400, clock.now + 72 * 3600}  # webhooks 24 h, GA4 72 h
    await engine.dispose()


async def test_a_call_whose_transaction_fails_leaves_no_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _, (engine, woken), clock = await harness(tmp_path, webhooks=HOOKS)

    async def broken(*_: Any) -> None:
        raise RuntimeError("the credits could not be written")

    monkeypatch.setattr(call_credits.CallCredits, "write", broken)
    with pytest.raises(RuntimeError):
        await store.store(report("b1", clock.now))
    assert await rows(engine) == [] and woken == []
    async with engine.connect() as conn:
        assert await conn.scalar(select(calls.c.id)) is None
    await engine.dispose()


async def test_without_targets_nothing_is_written(tmp_path: Path) -> None:
    store, _, (engine, woken), clock = await harness(tmp_path)
    assert await store.store(report("c1", clock.now))
    assert await rows(engine) == [] and woken == []
    await engine.dispose()


def test_webhooks_may_be_a_list_or_a_mapping(tmp_path: Path) -> None:
    listed = settings_for(tmp_path, webhooks=HOOKS)
    assert [t.name for t in listed.webhooks.targets] == ["crm", "all"]
    assert listed.webhooks.recording_link_ttl == 7 * 86400
    mapped = settings_for(tmp_path, webhooks={"targets": HOOKS, "recording_link_ttl": "1d"})
    assert mapped.webhooks.recording_link_ttl == 86400 and len(mapped.webhooks.targets) == 2


def test_a_secret_may_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = {"name": "crm", "url": "https://crm.example/hook", "secret_env": "CRM_HOOK_SECRET"}
    with pytest.raises(ConfigError) as missing:
        settings_for(tmp_path, webhooks=[hook])
    text = str(missing.value)
    assert "calltrack.yaml:" in text and "webhooks[0]" in text
    assert "the environment variable CRM_HOOK_SECRET is not set" in text
    monkeypatch.setenv("CRM_HOOK_SECRET", "from-the-environment-0123")
    settings = settings_for(tmp_path, webhooks=[hook])
    assert settings.webhooks.targets[0].signing_secret == "from-the-environment-0123"


@pytest.mark.parametrize(
    ("hooks", "message"),
    [
        ([{"name": "crm", "url": "https://crm.example/h"}], "needs secret or secret_env"),
        ([{**HOOKS[0], "url": "ftp://crm.example/h"}], "webhooks[0].url"),
        ([{**HOOKS[0], "events": ["call.deleted"]}], "webhooks[0].events[0]"),
        ([{**HOOKS[0], "format": "amo"}], "webhooks[0].format"),
        ([HOOKS[0], HOOKS[0]], "'crm' is already used"),
        ([{**HOOKS[0], "name": "ga4"}], "'ga4' is already used"),
    ],
)
def test_bad_webhooks_are_config_errors_at_their_line(
    tmp_path: Path, hooks: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        settings_for(tmp_path, webhooks=hooks)
    text = str(error.value)
    assert message in text, text
    assert "calltrack.yaml:" in text and ":None" not in text


async def test_settled_deliveries_past_keep_days_are_forgotten_pending_ones_kept(
    tmp_path: Path,
) -> None:
    from sqlalchemy import update

    from pbx.storage.deliveries import forget_settled_before

    store, _, (engine, _), clock = await harness(tmp_path, webhooks=HOOKS)
    for n in range(3):  # six rows: two targets per call
        assert await store.store(report(f"k{n}", clock.now))
    async with engine.begin() as conn:
        await conn.execute(update(outbox).where(outbox.c.id.in_([1, 2])).values(state="delivered"))
        await conn.execute(update(outbox).where(outbox.c.id == 3).values(state="failed"))
        await conn.execute(update(outbox).where(outbox.c.id == 4).values(state="skipped"))
        await conn.execute(update(outbox).where(outbox.c.id == 2).values(created_at=clock.now + 5))
    assert await forget_settled_before(engine, clock.now + 1, batch=1) == 3  # 1, 3 and 4
    async with engine.connect() as conn:
        kept = dict((await conn.execute(select(outbox.c.id, outbox.c.state))).all())
    assert kept == {2: "delivered", 5: "pending", 6: "pending"}  # newer, and still due
    await engine.dispose()


async def test_deliveries_to_a_target_gone_from_the_config_are_skipped_after_their_window(
    tmp_path: Path,
) -> None:
    """No worker claims them (each claims its config's targets), so they stayed pending for
    ever: "retry now" said yes and sent nothing, retention kept them. Within their retry
    window they wait: a daemon whose config lags another's must not skip what it sends."""
    from sqlalchemy import update

    from pbx.storage.deliveries import TARGET_GONE_AFTER, skip_targets_gone

    store, _, (engine, _), clock = await harness(tmp_path, webhooks=HOOKS)
    assert await store.store(report("g1", clock.now))  # one row per target: crm, and the other
    names = sorted({hook["name"] for hook in HOOKS})
    still = frozenset(names[:1])  # the second target left the config
    assert await skip_targets_gone(engine, still, clock.now + 60) == 0, "within its window"
    give_up = clock.now + 86400.0
    assert await skip_targets_gone(engine, still, give_up + 60) == 0, "its last attempt is due"
    later = give_up + TARGET_GONE_AFTER + 1
    async with engine.begin() as conn:  # another daemon, whose config has it, is sending it
        await conn.execute(update(outbox).values(claimed_until=later + 10))
    assert await skip_targets_gone(engine, still, later) == 0, "claimed: being sent"
    async with engine.begin() as conn:
        await conn.execute(update(outbox).values(claimed_until=None))
    assert await skip_targets_gone(engine, still, later) == 1
    async with engine.connect() as conn:
        rows = {
            r.target: (r.state, r.last_error)
            for r in await conn.execute(
                select(outbox.c.target, outbox.c.state, outbox.c.last_error)
            )
        }
    assert rows == {
        names[0]: ("pending", None),
        names[1]: ("skipped", "its target is no longer in the config"),
    }
    await engine.dispose()


async def test_a_call_stored_again_after_a_restore_sends_its_event_under_the_same_id(
    tmp_path: Path,
) -> None:
    """Restored from a backup, the database lacks the calls stored since, and reconciliation
    stores them again from the CDR: their call.completed went out again under new random ids,
    so a receiver that drops ids it has (Bitrix24's ORIGIN_ID) made their leads twice."""

    async def event_ids(folder: Path) -> dict[str, str]:
        store, _, (engine, _), clock = await harness(folder, webhooks=HOOKS)
        assert await store.store(report("1795807245.16", clock.now))
        async with engine.connect() as conn:
            ids = dict((await conn.execute(select(outbox.c.target, outbox.c.event_id))).all())
        await engine.dispose()
        return ids

    (tmp_path / "before").mkdir()
    (tmp_path / "restored").mkdir()
    before, after = await event_ids(tmp_path / "before"), await event_ids(tmp_path / "restored")
    assert set(before) == {"crm", "all"}
    assert after == before  # the same ids: the receivers drop them
    assert len(set(before.values())) == 2  # one per target
    store, _, (engine, _), clock = await harness(tmp_path / "before", webhooks=HOOKS)
    assert await store.store(report("1795807245.17", clock.now))  # another call, other ids
    async with engine.connect() as conn:
        assert len(set(await conn.scalars(select(outbox.c.event_id)))) == 4
    await engine.dispose()
