from __future__ import annotations

import json
from pathlib import Path

import pytest

from pbx.settings import ConfigError, json_schema, load_settings, parse_settings

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
freeze_time: 15m
forward_to: PJSIP/realline
sites:
  - name: main
    origins: ["https://example.com"]
    replace: ["+7 495 123-45-67"]
    pools:
      - name: paid
        when: {utm_medium: [cpc, ppc]}
        numbers: ["+7 499 000-00-01", "0074990000002"]
    fallback: "+74951234567"
static:
  - number: "+74990000101"
    source: billboard
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, "calltrack.yaml")
    return [str(p) for p in caught.value.problems]


def test_good_config_normalises_numbers_and_durations() -> None:
    settings = parse_settings(GOOD, "calltrack.yaml")
    assert settings.freeze_time == 900
    assert settings.sites[0].pools[0].numbers == ["+74990000001", "+74990000002"]
    assert settings.sites[0].replace == ["+7 495 123-45-67"]  # the display form is kept
    assert settings.static[0].medium == "offline"


def test_bad_duration_names_file_line_and_expectation() -> None:
    assert problems(GOOD.replace("15m", "15 minutes")) == [
        "calltrack.yaml:1:1: freeze_time: expected a duration like 90s, 15m or 1h, got '15 minutes'"
    ]


def test_unknown_key_is_reported_where_it_stands() -> None:
    text = GOOD.replace("        numbers:", "        numbrs: []\n        numbers:")
    assert problems(text) == ["calltrack.yaml:10:9: sites[0].pools[0].numbrs: unknown key 'numbrs'"]


def test_bad_phone_number() -> None:
    [problem] = problems(GOOD.replace('"+74990000101"', '"12-34"'))
    assert problem.startswith("calltrack.yaml:13:5: static[0].number: '12-34' has no country code")
    assert "+74951234567" in problem


BLOCK_LISTS = """\
forward_to: PJSIP/realline
sites:
  - name: main
    origins: ["https://example.com"]
    replace:
      - "+7 495 123-45-67"
      - "+7 495 555-00-1"
    pools:
      - name: paid
        numbers:
          - "+74990000001"
          - "+7499000001"
"""


def test_an_impossible_number_is_reported_at_its_own_line() -> None:
    """+7499000001 has one digit too few for Russia: it passed the hand-written parser."""
    assert problems(BLOCK_LISTS) == [
        "calltrack.yaml:7:9: sites[0].replace[1]: '+7 495 555-00-1' is not a phone number that"
        " can exist: too few digits (+7, RU)",
        "calltrack.yaml:12:13: sites[0].pools[0].numbers[1]: '+7499000001' is not a phone number"
        " that can exist: too few digits (+7, RU)",
    ]


NATIONAL = """\
forward_to: PJSIP/realline
sites:
  - name: main
    origins: ["https://example.com"]
    replace: ["030 1234567"]
    pools:
      - name: paid
        numbers: ["030 7654321", "+49 30 7654322"]
    fallback: "(030) 765 43 29"
static:
  - number: "0049 30 7654320"
    source: billboard
"""


def test_numbers_without_a_country_code_are_read_in_the_region() -> None:
    settings = parse_settings(NATIONAL + "region: de\n", "calltrack.yaml")
    assert settings.region == "DE"
    assert settings.sites[0].pools[0].numbers == ["+49307654321", "+49307654322"]
    assert settings.sites[0].fallback == "+49307654329"
    assert settings.static[0].number == "+49307654320"
    assert settings.sites[0].replace == ["030 1234567"]


def test_without_a_region_every_number_needs_its_country_code() -> None:
    assert [p.split(": ")[1] for p in problems(NATIONAL)] == [
        "sites[0].replace[0]",
        "sites[0].pools[0].numbers[0]",
        "sites[0].fallback",
    ]
    assert all("has no country code" in p for p in problems(NATIONAL))
    # read in another country, the same digits are not a number there
    [problem, *_] = problems(NATIONAL + "region: US\n")
    assert problem.startswith("calltrack.yaml:5:15: sites[0].replace[0]: '030 1234567' is not")


def test_an_unknown_region_is_refused() -> None:
    [problem, *_] = problems(GOOD.replace("freeze_time: 15m", "region: XY"))
    assert problem == (
        "calltrack.yaml:1:1: region: unknown region 'XY'; expected an ISO 3166 code like RU, DE, US"
    )


def test_duplicate_number_across_pool_and_static_names_both_places() -> None:
    [problem] = problems(GOOD.replace('"+74990000101"', '"+7 (499) 000-00-02"'))
    assert problem == (
        "calltrack.yaml:13:5: static[0].number: +74990000002 is already used at"
        " sites[0].pools[0].numbers[1]"
    )


def test_missing_required_key() -> None:
    assert problems(GOOD.replace("forward_to: PJSIP/realline\n", "")) == [
        "calltrack.yaml: forward_to: required key 'forward_to' is missing"
    ]


def test_malformed_yaml_points_at_the_line() -> None:
    [problem] = problems(GOOD.replace("    replace:", "   replace: ]"))
    assert problem.startswith("calltrack.yaml:6:")
    assert "not valid YAML" in problem


def test_a_control_character_spelt_by_an_escape_points_at_its_setting() -> None:
    """YAML's "\\0" makes a NUL, which PostgreSQL refuses in text: every call to this number
    would have been refused. Tabs and line breaks stay allowed."""
    text = GOOD + '    campaign: "spring\\0"\n    medium: "print\\tads"\n'
    assert problems(text) == [
        "calltrack.yaml:15:15: static[0].campaign: holds the control character #x0000;"
        " no setting may"
    ]


def test_a_raw_control_character_in_the_file_is_a_line_not_a_traceback() -> None:
    [problem] = problems(GOOD.replace("source: billboard", "source: bill\x01board"))
    assert problem.startswith("calltrack.yaml:14:17: not valid YAML: character #x0001")


def test_a_static_numbers_names_fit_their_columns() -> None:
    [problem] = problems(GOOD + "    campaign: " + "c" * 513 + "\n")
    assert "static[0].campaign" in problem and "512" in problem


@pytest.mark.parametrize("name", ["(web)", "(other)", "(unattributed)", "(not set)"])
def test_a_static_number_cannot_be_named_like_a_reports_own_row(name: str) -> None:
    """Its calls would fall in that row, and a filter for the row would not find them."""
    [problem] = problems(GOOD.replace("source: billboard", f'source: "{name}"'))
    assert "static[0].source" in problem and "a row of the reports of its own" in problem


def test_every_problem_is_reported_at_once() -> None:
    text = GOOD.replace("15m", "soon").replace('"+74990000101"', '"1"')
    assert len(problems(text)) == 2


def test_origin_with_a_path_is_refused() -> None:
    [problem] = problems(GOOD.replace('"https://example.com"', '"https://example.com/shop"'))
    assert "sites[0].origins" in problem and "no path" in problem


def test_relative_paths_are_next_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "calltrack.yaml"
    path.parent.mkdir()
    path.write_text(GOOD + "database: sqlite+aiosqlite:///var/db.sqlite\n")
    settings = load_settings(path)
    assert settings.database == f"sqlite+aiosqlite:///{tmp_path}/etc/var/db.sqlite"
    assert settings.recordings.dir == tmp_path / "etc" / "var" / "recordings"


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        load_settings(tmp_path / "missing.yaml")


def test_example_config_is_valid() -> None:
    settings = load_settings(ROOT / "config" / "example.yaml")
    assert settings.sites[0].name == "main"


def test_committed_schema_matches_the_models() -> None:
    committed = json.loads((ROOT / "config" / "schema.json").read_text())
    assert committed == json_schema(), "run: calltrack schema -o config/schema.json"


USERS = """\
users:
  - name: ada
    password_argon2: "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g"
    role: admin
  - name: ada
    password_argon2: "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g"
"""


def test_users_default_to_staff_and_names_are_unique() -> None:
    settings = parse_settings(
        GOOD + USERS.replace("  - name: ada\n    password", "  - name: sam\n    password", 1),
        "c.yaml",
    )
    assert [(u.name, u.role) for u in settings.users] == [("sam", "admin"), ("ada", "staff")]
    assert problems(GOOD + USERS) == ["calltrack.yaml:19:5: users[1]: 'ada' is used twice"]


def test_a_plain_password_is_refused_with_the_command_to_hash_it() -> None:
    text = GOOD + USERS.replace(
        '"$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g"', "secret", 1
    )
    [problem] = [p for p in problems(text) if "password_argon2" in p]
    assert problem == (
        "calltrack.yaml:17:5: users[0].password_argon2: expected an argon2 hash"
        " (run `calltrack hash-password`), never the password itself"
    )


def test_tags_have_defaults_and_the_time_zone_must_exist() -> None:
    assert parse_settings(GOOD, "c.yaml").tags == ["lead", "sale", "spam", "wrong number"]
    assert problems(GOOD + "tags: [lead, lead]\n") == [
        "calltrack.yaml:15:14: tags[1]: 'lead' is used twice"
    ]
    assert problems(GOOD + "ui: {timezone: Mars/Olympus}\n") == [
        "calltrack.yaml:15:6: ui.timezone: unknown time zone 'Mars/Olympus'; expected e.g. Europe/Moscow"
    ]


def test_every_setting_has_a_description_for_editors() -> None:
    """The JSON schema is what editors show while the admin types: no key without help."""
    schema = json_schema()
    missing = [
        f"{model}.{key}"
        for model, definition in [("Settings", schema), *schema["$defs"].items()]
        for key, prop in definition.get("properties", {}).items()
        if not prop.get("description")
    ]
    assert missing == []


def test_public_url_must_be_an_http_url() -> None:
    base = "forward_to: PJSIP/office\nhttp:\n  public_url: {}\n"
    parse_settings(base.format("https://calls.example.com/calltrack"))
    with pytest.raises(ConfigError) as error:
        parse_settings(base.format("calls.example.com"), "c.yaml")
    assert error.value.problems[0].line == 3 and error.value.problems[0].where == "http.public_url"


def test_a_lead_tag_staff_cannot_give_is_refused_at_its_line() -> None:
    [problem] = problems(GOOD + "tags: [lead, sale]\nleads:\n  tags: [sale, leed]\n")
    assert problem.endswith("leads.tags[1]: 'leed' is not one of `tags`, so no call has it")
    assert problem.startswith(f"calltrack.yaml:{GOOD.count(chr(10)) + 3}:")


@pytest.mark.parametrize(
    "url",
    [
        "calltrack.db",
        "postgresql://ct:s3cret@db/calltrack",
        "sqlite:///calltrack.db",
        "://",
        "postgresql+asyncpg:/ct:s3cret@db/calltrack",  # not a URL at all: one slash
    ],
)
def test_a_database_url_without_a_driver_calltrack_ships_is_a_line(url: str) -> None:
    """Such a URL passed the config and failed at the first statement, or as a missing module
    (psycopg2 for postgresql://), with a traceback: in `serve`, `doctor`, `backup`."""
    [problem] = problems(f"forward_to: PJSIP/realline\ndatabase: '{url}'\n")
    assert problem.startswith("calltrack.yaml:2:1: database: ")
    assert "expected sqlite+aiosqlite:///path.db or postgresql+asyncpg://" in problem
    assert "s3cret" not in problem


def test_the_shipped_database_urls_are_taken() -> None:
    for url in ("sqlite+aiosqlite:///var/ct.db?timeout=20", "postgresql+asyncpg://ct@db/ct"):
        assert parse_settings(f"forward_to: x\ndatabase: '{url}'\n", "c.yaml").database == url


@pytest.mark.parametrize(
    ("written", "cents"), [("15000", 1_500_000), ("15.5", 1550), ('"15000.00"', 1_500_000)]
)
def test_a_monthly_cost_is_read_as_written(written: str, cents: int) -> None:
    text = GOOD + f"    monthly_cost: {written}\n"
    assert parse_settings(text, "calltrack.yaml").static[0].monthly_cost == cents


@pytest.mark.parametrize("written", ["15.000", "12.505"])
def test_an_unquoted_amount_with_three_decimals_is_refused_not_rounded(written: str) -> None:
    """YAML reads `15.000` (fifteen thousand, as Russian and German write it) as the float
    15.0: the billboard's rent was a thousandth of what the admin typed."""
    [problem] = problems(GOOD + f"    monthly_cost: {written}\n")
    assert problem.startswith("calltrack.yaml:15:5: static[0].monthly_cost:"), problem
    assert "may be read two ways" in problem
