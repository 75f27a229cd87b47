"""The generated dialplan: every number in both forms, the fallback line, and the safety rules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dialplan.generator import main, render_dialplan
from pbx.settings import ConfigError, Settings, parse_settings

CONFIG = """region: RU  # 84951111112 below is written with the trunk prefix 8
forward_to: PJSIP/office
sites:
  - name: shop
    origins: ["https://shop.test"]
    replace: ["+7 495 000-00-00"]
    pools:
      - name: ads
        numbers: ["+7 495 111-11-11", "84951111112"]
        forward_to: PJSIP/sales
      - name: rest
        numbers: ["+74951111113"]
    fallback: "+74951111119"
    forward_to: PJSIP/shopdesk
static:
  - number: "+49 30 1234567"
    source: billboard
asterisk:
  ami: {secret: s3cret}
  agi: {host: 0.0.0.0, port: 4600}
  context: ct-in
  ring_timeout: 25.5s
  recordings_dir: /var/spool/asterisk/calltrack
"""


def settings(text: str = CONFIG) -> Settings:
    return parse_settings(text)


def block(plan: str, exten: str) -> list[str]:
    """The priorities of one extension."""
    lines = plan.splitlines()
    start = lines.index(next(line for line in lines if line.startswith(f"exten => {exten},1,")))
    out = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith(" same =>"):
            break
        out.append(line)
    return out


def test_every_number_with_and_without_plus_or_00_and_its_real_line() -> None:
    plan = render_dialplan(settings())
    expected = {
        "74951111111": "PJSIP/sales",
        "74951111112": "PJSIP/sales",
        "74951111113": "PJSIP/shopdesk",
        "74951111119": "PJSIP/shopdesk",
        "49301234567": "PJSIP/office",
    }
    for digits, line in expected.items():
        for exten in (digits, "+" + digits, "00" + digits):
            lines = block(plan, exten)
            assert f"Set(CALLTRACK_DID=+{digits})" in lines[0]
            assert f"Set(CALLTRACK_FALLBACK={line})" in lines[1]
            assert "Goto(ct-in-call,${EXTEN},1)" in lines[2]
    russian = [d for d in expected if d.startswith("7")]  # region RU: also 8 495..., 495...
    assert plan.count("exten => ") == 3 * len(expected) + 2 * len(russian) + 2  # + shared, hangup
    assert "[ct-in]" in plan and "[ct-in-call]" in plan and "[ct-in-hangup]" in plan


def test_the_call_falls_back_unless_agi_answered() -> None:
    call = block(render_dialplan(settings()), "_[+0-9].")
    text = "\n".join(call)
    assert "AGI(agi://127.0.0.1:4600/route/${CALLTRACK_DID})" in text  # 0.0.0.0 is not dialable
    agi = next(i for i, line in enumerate(call) if "AGI(" in line)
    assert call[agi - 1].endswith("Set(CALLTRACK_DEST=)")  # nothing inherited counts as an answer
    assert '"${AGISTATUS}" != "SUCCESS"]?fallback' in call[agi + 1]
    assert '"${CALLTRACK_DEST}" != ""]?dial' in call[agi + 2]
    assert "(fallback),Set(CALLTRACK_DEST=${CALLTRACK_FALLBACK})" in call[agi + 3]
    assert "(dial),Dial(${CALLTRACK_DEST},26)" in call[agi + 4]
    assert "Dial(${CALLTRACK_DEST},26)" in call[-2]  # second try on the real line


def test_recording_named_by_uniqueid_only_and_bridged_talk_only() -> None:
    plan = render_dialplan(settings())
    (mix,) = [line for line in plan.splitlines() if "MixMonitor(" in line and "Stop" not in line]
    assert "MixMonitor(/var/spool/asterisk/calltrack/${CALLTRACK_RECORDING},b)" in mix
    assert "Set(CALLTRACK_RECORDING=${UNIQUEID}.wav)" in plan
    assert "CALLERID" not in plan


def test_hangup_handler_stops_recording_then_reports() -> None:
    hangup = block(render_dialplan(settings()), "s")
    assert hangup[0].endswith("StopMixMonitor()")
    assert "UserEvent(CalltrackEnd,DID: ${CALLTRACK_DID},DialStatus: ${DIALSTATUS}," in hangup[1]
    assert hangup[-1].endswith("Return()")
    assert not any(re.search(r"\b(AGI|System|Dial|Wait)\(", line) for line in hangup)


def test_a_fallback_that_is_also_a_pool_number_is_refused() -> None:
    """It would be shown to visitors with no number while a session holds it."""
    text = CONFIG.replace('fallback: "+74951111119"', 'fallback: "+74951111111"')
    with pytest.raises(ConfigError, match=r"sites\[0\]\.fallback: \+74951111111 is already used"):
        settings(text)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("forward_to: PJSIP/sales", "forward_to: PJSIP/sales,60,tT"),  # Dial option injection
        ("forward_to: PJSIP/office", "forward_to: 'PJSIP/office)'"),
        ("recordings_dir: /var/spool/asterisk/calltrack", "recordings_dir: /tmp/a b"),
        ("recordings_dir: /var/spool/asterisk/calltrack", "recordings_dir: /tmp/x,b"),
    ],
)
def test_unsafe_values_are_refused(old: str, new: str) -> None:
    with pytest.raises(ValueError):
        render_dialplan(settings(CONFIG.replace(old, new)))


def test_cli_writes_the_file_and_reports_config_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "calltrack.yaml"
    config.write_text(CONFIG)
    out = tmp_path / "extensions_calltrack.conf"
    assert main(["-c", str(config), "-o", str(out)]) == 0
    assert out.read_text() == render_dialplan(settings())
    config.write_text(CONFIG.replace("secret: s3cret", "secrt: s3cret"))
    assert main(["-c", str(config)]) == 2
    assert "calltrack.yaml" in capsys.readouterr().err
    config.write_text("forward_to: PJSIP/x\n")
    assert main(["-c", str(config)]) == 2
    assert "asterisk" in capsys.readouterr().err


def test_lab_config_renders() -> None:
    lab = Path(__file__).parents[1] / "fixtures" / "lab.yaml"
    assert "exten => +74990000002,1," in render_dialplan(parse_settings(lab.read_text()))


def test_national_forms_of_the_region_are_answered() -> None:
    """A carrier may send the dialled number nationally: 8 495 ... or 495 ... in Russia."""
    plan = render_dialplan(settings())  # CONFIG has region RU
    for exten in ("74951111111", "+74951111111", "84951111111", "4951111111"):
        assert f"exten => {exten},1,Set(CALLTRACK_DID=+74951111111)" in plan
    assert "exten => 301234567," not in plan  # the German number has no RU national form


def test_the_trunks_other_numbers_go_on_to_the_context_they_entered_before() -> None:
    """The README pointed the carrier trunk at calltrack's context, which has only the tracked
    numbers: the office's main line, its fax and every other DID on that trunk found no
    extension there and were refused. `asterisk.other_numbers_context` names the context they
    entered before; it is included after the tracked numbers."""
    plan = render_dialplan(settings())
    assert "include =>" not in plan
    plan = render_dialplan(
        settings(
            CONFIG.replace(
                "  context: ct-in\n", "  context: ct-in\n  other_numbers_context: from-trunk\n"
            )
        )
    )
    lines = plan.splitlines()
    section = lines[lines.index("[ct-in]") : lines.index("[ct-in-call]")]
    assert section.count("include => from-trunk") == 1
    assert section.index("include => from-trunk") > max(
        i for i, line in enumerate(section) if line.startswith("exten => ")
    )
    assert "include" not in "\n".join(lines[lines.index("[ct-in-call]") :])


@pytest.mark.parametrize("own", ["ct-in", "ct-in-call", "ct-in-hangup"])
def test_the_other_numbers_context_is_none_of_calltracks_own(own: str) -> None:
    with pytest.raises(ValueError, match="one of calltrack's own contexts"):
        render_dialplan(
            settings(
                CONFIG.replace(
                    "  context: ct-in\n", f"  context: ct-in\n  other_numbers_context: {own}\n"
                )
            )
        )
    with pytest.raises(ConfigError):
        settings(
            CONFIG.replace(
                "  context: ct-in\n", "  context: ct-in\n  other_numbers_context: 'a,b'\n"
            )
        )


def test_config_text_cannot_write_dialplan_lines() -> None:
    """A static number's source went into a comment line as it was: a newline in it made the
    rest a line of dialplan (`exten => _X.,1,System(...)` ran for any number)."""
    evil = CONFIG.replace(
        "source: billboard", 'source: "billboard\\nexten => _X.,1,System(touch /tmp/pwned)"'
    )
    plan = render_dialplan(settings(evil))
    assert "System(" not in "\n".join(
        line for line in plan.splitlines() if not line.lstrip().startswith(";")
    )
    assert (
        "; +49301234567: static, source billboard exten => _X.,1,System(touch /tmp/pwned)" in plan
    )


@pytest.mark.parametrize("host", ["127.0.0.1)", "10.0.0.1,x", "host\nexten", "a b"])
def test_an_agi_host_that_is_no_address_or_name_is_refused(host: str) -> None:
    """It goes into the dialplan's AGI(agi://HOST:PORT/...) line as it is."""
    with pytest.raises(ConfigError) as caught:
        settings(CONFIG.replace("host: 0.0.0.0", f"host: {host!r}".replace("'", '"')))
    assert "asterisk.agi.host" in str(caught.value) or "host" in str(caught.value)


@pytest.mark.parametrize("host", ["", "0.0.0.0", "::", "10.0.0.5", "fd00::5", "pbx-1.example.com"])
def test_an_agi_host_address_or_name_is_taken(host: str) -> None:
    assert settings(CONFIG.replace("host: 0.0.0.0", f'host: "{host}"')).asterisk is not None
