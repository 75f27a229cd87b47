"""doctor's dialplan and rights lines against a session answering CLI commands as Asterisk 22
prints them (main/pbx.c's show_dialplan_helper, manager.c's `manager show user`)."""

from __future__ import annotations

from pathlib import Path

from dialplan.generator import render_dialplan
from pbx.doctor import Status
from pbx.doctor.asterisk_text import Extensions, conf_includes, parse_extensions_conf
from pbx.doctor.pbx_checks import dialplan_check, rights_check
from pbx.settings import Ami, Settings
from tests.helpers import settings_for


def shown(context: str, extensions: Extensions, includes: list[str]) -> list[str]:
    """`dialplan show CONTEXT` in Asterisk's layout."""
    lines = [f"[ Context '{context}' created by 'pbx_config' ]"]
    for exten, priorities in extensions.items():
        for i, p in enumerate(priorities):
            head = f"  '{exten}' =>" if i == 0 else (f"     [{p.label}]" if p.label else "")
            lines.append(f"{head:<18}{p.number}. {p.app:<45} [extensions_calltrack.conf:{i}]")
    lines += [f"  Include =>        {name!r:<45} [pbx_config]" for name in includes]
    return [*lines, "", f"-= {len(extensions)} extensions in 1 context. =-"]


class CliAsterisk:
    """Answers `dialplan show` from a loaded extensions.conf text, and `manager show user`."""

    def __init__(self, loaded: str, contexts: set[str], includes: bool = True) -> None:
        self.contexts = parse_extensions_conf(loaded)
        self.includes = conf_includes(loaded) if includes else {}
        self.others = contexts
        self.ami = Ami(username="calltrack-doctor", secret="x")
        self.asked: list[str] = []

    async def command(self, command: str) -> list[str]:
        self.asked.append(command)
        if command.startswith("manager show user "):
            name = command.rsplit(" ", 1)[1]
            read = "call,user" if name == "calltrack-doctor" else "call"
            return [f"          username: {name}", f"         read perm: {read}"]
        context = command.removeprefix("dialplan show ")
        if context in self.contexts:
            return shown(context, self.contexts[context], self.includes.get(context, []))
        if context in self.others:
            return shown(context, {}, [])
        return [f"There is no existence of '{context}' context"]


def with_other(tmp_path: Path, other: str | None) -> Settings:
    return settings_for(
        tmp_path,
        asterisk={
            "ami": {"secret": "x"},
            "recordings_dir": str(tmp_path),
            "other_numbers_context": other,
        },
    )


async def test_a_loaded_dialplan_without_the_trunks_other_context_is_not_current(
    tmp_path: Path,
) -> None:
    """The include of asterisk.other_numbers_context was read on neither side: a dialplan
    generated before the key was set passed as current while Asterisk refused every number
    calltrack does not track."""
    settings = with_other(tmp_path, "lab-pbx")
    text = render_dialplan(settings)
    current = CliAsterisk(text, {"lab-pbx"})
    result = await dialplan_check(current, settings, "c.yaml")  # type: ignore[arg-type]
    assert result.status is Status.OK, result.line()
    stale = CliAsterisk(text, {"lab-pbx"}, includes=False)
    result = await dialplan_check(stale, settings, "c.yaml")  # type: ignore[arg-type]
    assert result.status is Status.FAIL
    assert "calltrack-inbound is not current: it does not include lab-pbx" in result.message
    assert "extensions_custom.conf" in result.fix, "FreePBX's file named too"


async def test_an_other_numbers_context_asterisk_does_not_have_is_a_fail(tmp_path: Path) -> None:
    """Asterisk takes an include of a context it does not have (a typo) and finds nothing in
    it: every untracked number refused, and doctor said OK."""
    settings = with_other(tmp_path, "from-trunks")
    missing = CliAsterisk(render_dialplan(settings), {"from-trunk"})
    result = await dialplan_check(missing, settings, "c.yaml")  # type: ignore[arg-type]
    assert result.status is Status.FAIL, result.line()
    assert "context from-trunks (asterisk.other_numbers_context) is not loaded" in result.message


async def test_the_rights_read_are_the_daemons_users_when_doctor_logs_in_as_another(
    tmp_path: Path,
) -> None:
    """With --ami-user, `manager show user` asked about doctor's own login: the daemon's
    `read = call` (its UserEvents lost) passed as 'calltrack-doctor reads call, user'."""
    session = CliAsterisk("", set())
    own, _ = await rights_check(session)  # type: ignore[arg-type]
    assert own.status is Status.OK
    daemons, _ = await rights_check(session, "calltrack")  # type: ignore[arg-type]
    assert session.asked[-1] == "manager show user calltrack"
    assert daemons.status is Status.FAIL and "'calltrack' reads call;" in daemons.message


async def test_a_login_already_in_use_says_so_and_what_to_do() -> None:
    """With allowmultiplelogin = no, Asterisk answers 'Login Already In Use' while the daemon
    is logged in as the same user (manager.c): doctor told the admin to fix the secret."""
    import asyncio

    from pbx.doctor.pbx_checks import AmiSession, login_check

    async def asterisk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/11.0.0\r\n")
        raw = (await reader.readuntil(b"\r\n\r\n")).decode()
        action_id = next(line for line in raw.split("\r\n") if line.startswith("ActionID"))
        writer.write(
            f"Response: Error\r\nMessage: Login Already In Use\r\n{action_id}\r\n\r\n".encode()
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(asterisk, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    session = AmiSession(Ami(host="127.0.0.1", port=port, username="calltrack", secret="x"))
    try:
        result = await login_check(session)
    finally:
        session.close()
        server.close()
    assert result.status is Status.FAIL
    assert "Asterisk allows one login of it" in result.message
    assert "allowmultiplelogin = yes" in result.fix and "secret" not in result.fix
