"""Reading Asterisk 22's CLI output (captured from the lab) and calltrack's own dialplan text."""

from __future__ import annotations

from pbx.doctor.asterisk_text import (
    Priority,
    conf_includes,
    first_difference,
    parse_dialplan_show,
    parse_extensions_conf,
    parse_fields,
    permissions,
    shown_includes,
)

# `dialplan show calltrack-inbound-call` on the lab (Asterisk 22.10.1), trimmed to 4 priorities
SHOW_CALL = """\
[ Context 'calltrack-inbound-call' created by 'pbx_config' ]
  '_[+0-9].' =>     1. Set(CHANNEL(hangup_handler_push)=calltrack-inbound-hangup,s,1) [extensions_calltrack.conf:78]
                    9. GotoIf($["${AGISTATUS}" != "SUCCESS"]?fallback) [extensions_calltrack.conf:86]
     [fallback]     11. Set(CALLTRACK_DEST=${CALLTRACK_FALLBACK}) [extensions_calltrack.conf:88]
     [done]         17. Hangup()                                  [extensions_calltrack.conf:94]

-= 1 extension (17 priorities) in 1 context. =-
""".splitlines()

# `dialplan show 74990000002@calltrack-inbound`
SHOW_DID = """\
[ Context 'calltrack-inbound' created by 'pbx_config' ]
  '74990000002' =>  1. Set(CALLTRACK_DID=+74990000002)            [extensions_calltrack.conf:7]
                    2. Set(CALLTRACK_FALLBACK=PJSIP/realline)     [extensions_calltrack.conf:8]
                    3. Goto(calltrack-inbound-call,${EXTEN},1)    [extensions_calltrack.conf:9]

-= 1 extension (3 priorities) in 1 context. =-
""".splitlines()

SHOW_MISSING_CONTEXT = [
    "There is no existence of 'nosuch' context",
    "Command 'dialplan show nosuch' failed.",
]
SHOW_MISSING_EXTEN = [
    "There is no existence of 70000000000@calltrack-inbound extension",
    "Command 'dialplan show 70000000000@calltrack-inbound' failed.",
]

MANAGER_SHOW_USER = """
          username: calltrack
            secret: <Set>
               ACL: yes
         read perm: call,user
        write perm: <none>
   displayconnects: yes
allowmultiplelogin: yes
         Variables: 
ACL: (unnamed)
---------------------------------------------
  0:  deny - 0.0.0.0/0.0.0.0
  1: allow - 127.0.0.1/255.255.255.255
""".splitlines()  # noqa: W291


def test_dialplan_show_keeps_priorities_labels_and_calls_not_layout() -> None:
    assert parse_dialplan_show(SHOW_CALL) == {
        "_[+0-9].": [
            Priority(1, None, "Set(CHANNEL(hangup_handler_push)=calltrack-inbound-hangup,s,1)"),
            Priority(9, None, 'GotoIf($["${AGISTATUS}" != "SUCCESS"]?fallback)'),
            Priority(11, "fallback", "Set(CALLTRACK_DEST=${CALLTRACK_FALLBACK})"),
            Priority(17, "done", "Hangup()"),
        ]
    }


def test_dialplan_show_of_one_extension() -> None:
    assert parse_dialplan_show(SHOW_DID) == {
        "74990000002": [
            Priority(1, None, "Set(CALLTRACK_DID=+74990000002)"),
            Priority(2, None, "Set(CALLTRACK_FALLBACK=PJSIP/realline)"),
            Priority(3, None, "Goto(calltrack-inbound-call,${EXTEN},1)"),
        ]
    }


def test_missing_context_or_extension_is_none() -> None:
    assert parse_dialplan_show(SHOW_MISSING_CONTEXT) is None
    assert parse_dialplan_show(SHOW_MISSING_EXTEN) is None


CONF = """\
; generated
[calltrack-inbound]
; +74990000002: site lab
exten => 74990000002,1,Set(CALLTRACK_DID=+74990000002)
 same => n,Set(CALLTRACK_FALLBACK=PJSIP/realline)
 same => n,Goto(calltrack-inbound-call,${EXTEN},1)

[calltrack-inbound-call]
exten => _[+0-9].,1,Set(CALLTRACK_DEST=)
 same => n(fallback),Set(CALLTRACK_DEST=${CALLTRACK_FALLBACK})
"""


def test_extensions_conf_numbers_n_priorities_and_keeps_labels() -> None:
    contexts = parse_extensions_conf(CONF)
    assert contexts == {
        "calltrack-inbound": {
            "74990000002": [
                Priority(1, None, "Set(CALLTRACK_DID=+74990000002)"),
                Priority(2, None, "Set(CALLTRACK_FALLBACK=PJSIP/realline)"),
                Priority(3, None, "Goto(calltrack-inbound-call,${EXTEN},1)"),
            ]
        },
        "calltrack-inbound-call": {
            "_[+0-9].": [
                Priority(1, None, "Set(CALLTRACK_DEST=)"),
                Priority(2, "fallback", "Set(CALLTRACK_DEST=${CALLTRACK_FALLBACK})"),
            ]
        },
    }


def test_same_dialplan_shown_by_asterisk_has_no_difference() -> None:
    wanted = parse_extensions_conf(CONF)["calltrack-inbound"]
    loaded = parse_dialplan_show(SHOW_DID)
    assert loaded is not None
    assert first_difference(wanted, loaded) is None


def test_differences_are_named() -> None:
    wanted = parse_extensions_conf(CONF)["calltrack-inbound"]
    stale = [line.replace("PJSIP/realline", "PJSIP/oldline") for line in SHOW_DID]
    loaded = parse_dialplan_show(stale)
    assert loaded is not None
    assert first_difference(wanted, loaded) == (
        "74990000002 priority 2 is `2,Set(CALLTRACK_FALLBACK=PJSIP/oldline)`,"
        " expected `2,Set(CALLTRACK_FALLBACK=PJSIP/realline)`"
    )
    assert first_difference(wanted, {}) == "extension 74990000002 is missing"
    short = parse_dialplan_show(SHOW_DID[:3])
    assert short is not None
    assert first_difference(wanted, short) == "74990000002 has 2 priorities, expected 3"
    extra = {**loaded, "74990000099": []}
    extra["74990000002"] = wanted["74990000002"]
    assert first_difference(wanted, extra) == "extension 74990000099 is not calltrack's"


def test_manager_show_user_rights() -> None:
    fields = parse_fields(MANAGER_SHOW_USER)
    assert fields["username"] == "calltrack"
    assert permissions(fields["read perm"]) == {"call", "user"}
    assert permissions(fields["write perm"]) == set()


def test_includes_are_read_from_asterisk_and_from_the_generated_file() -> None:
    """main/pbx.c prints a context's includes as `  Include =>        'name'   [registrar]`;
    they were skipped on both sides, so a loaded dialplan without the trunk's other context
    passed as current."""
    shown = [
        "[ Context 'calltrack-inbound' created by 'pbx_config' ]",
        "  '74990000002' =>  1. Set(CALLTRACK_DID=+74990000002)    [extensions_calltrack.conf:7]",
        f"  Include =>        {'from-trunk'!r:<45} [pbx_config]",
        "",
        "-= 1 extension (1 priority) in 1 context. =-",
    ]
    assert shown_includes(shown) == ["from-trunk"]
    assert "from-trunk" not in parse_dialplan_show(shown)  # type: ignore[operator]
    conf = "[ct]\nexten => 1,1,NoOp()\ninclude => from-trunk\n\n[ct-call]\nexten => 2,1,NoOp()\n"
    assert conf_includes(conf) == {"ct": ["from-trunk"]}
